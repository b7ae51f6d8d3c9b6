"""`aisafe audit report`: one self-contained HTML page (no network, inline SVG, prints well)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from audit.record import AuditRecord
from audit.verify import Verification

TEMPLATES = Path(__file__).parent / "templates"
STATUS_COLOURS = {
    "passed": "#2e7d32",
    "failed": "#c62828",
    "running": "#1565c0",
    "cancelled": "#6d6d6d",
    "skipped": "#9e9e9e",
}
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
STYLE = (TEMPLATES / "report.css").read_text(encoding="utf-8")
# The page's one inline <style>, by hash, for a Content-Security-Policy that allows nothing else inline.
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode()


def utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def amount(value: str | None) -> str:
    """`60000.00` as `60,000.00`; the ledger keeps amounts as exact decimal text."""
    try:
        return f"{Decimal(value):,.2f}" if value is not None else "—"
    except InvalidOperation:
        return str(value)


_env.filters["utc"] = utc
_env.filters["amount"] = amount


def timeline_svg(record: AuditRecord, width: int = 880, *, title_id: str = "timeline-title") -> Markup:
    """The stages as bars on one time axis, from the proposal's start to its last entry.

    `title_id` names the SVG's title element; a page with several timelines gives each its own."""
    label_width, row, top = 250, 28, 26
    spans = record.stages
    start = record.started_at
    end = max([record.last_at or start] + [s.ended_at or s.started_at for s in spans]) if start else None
    height = top + row * max(len(spans), 1) + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{escape(title_id)}" '
        f'width="100%" viewBox="0 0 {width} {height}" class="timeline">',
        f'<title id="{escape(title_id)}">Stage timeline of the proposal</title>',
    ]
    if start is None or end is None or not spans:
        parts.append(f'<text x="0" y="{top}" font-size="13">No stage has started.</text></svg>')
        return Markup("".join(parts))
    total = max((end - start).total_seconds(), 1.0)
    scale = (width - label_width - 10) / total

    def x(moment: datetime) -> float:
        return label_width + (moment - start).total_seconds() * scale

    parts.append(f'<text x="{label_width}" y="14" font-size="11" fill="#444">{escape(utc(start))}</text>')
    parts.append(
        f'<text x="{width - 10}" y="14" font-size="11" fill="#444" text-anchor="end">{escape(utc(end))}</text>'
    )
    for number, span in enumerate(spans):
        y = top + number * row
        left = x(span.started_at)
        bar = max(x(span.ended_at or end) - left, 4)
        colour = STATUS_COLOURS.get(span.status, "#1565c0")
        parts.append(
            f'<text x="0" y="{y + 17}" font-size="12">{escape(span.body)}</text>'
            f'<rect x="{left:.1f}" y="{y + 4}" width="{bar:.1f}" height="18" rx="3" fill="{colour}">'
            f"<title>{escape(span.body)}: {escape(span.status)}, {escape(utc(span.started_at))} to "
            f"{escape(utc(span.ended_at))}. {escape(span.outcome)}</title></rect>"
        )
    axis = top + row * len(spans) + 6
    parts.append(f'<line x1="{label_width}" y1="{axis}" x2="{width - 10}" y2="{axis}" stroke="#999"/>')
    legend_x = label_width
    for status in ("passed", "failed", "running", "cancelled"):
        parts.append(
            f'<rect x="{legend_x}" y="{axis + 6}" width="10" height="10" fill="{STATUS_COLOURS[status]}"/>'
            f'<text x="{legend_x + 14}" y="{axis + 15}" font-size="11">{status}</text>'
        )
        legend_x += 90
    parts.append("</svg>")
    return Markup("".join(parts))


def render_report(
    record: AuditRecord,
    verification: Verification | None,
    *,
    links: dict[str, str] | None = None,
) -> str:
    """The report page; `links` (label to URL) adds a navigation bar for the web app's copy of it."""
    return _env.get_template("report.html").render(
        record=record,
        verification=verification,
        timeline=timeline_svg(record),
        generated_at=datetime.now(UTC),
        links=links or {},
        style=Markup(STYLE),
    )
