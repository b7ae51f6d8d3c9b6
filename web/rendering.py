"""Safe rendering of coordinator-written Markdown, plain-text mail bodies and document diffs; amounts as
people read and write them; the names pages give to stages, sectors and dispositions."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from models.process import StageType

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_URL = re.compile(r"https?://[^\s<>\"']+")

STAGE_LABELS: dict[str, str] = {
    StageType.DRAFTING: "Drafting",
    StageType.CONSULTATION: "Stakeholder consultation",
    StageType.MEMBER_REVIEW: "WG-AI member review",
    StageType.SENIOR_OFFICIALS: "ADGSOM endorsement",
    StageType.MINISTERIAL: "ADGMIN endorsement",
    StageType.FUNDING: "Funding approval",
    StageType.SUMMIT_REPORT: "Report to the ASEAN Summit",
    "revision": "Revision",
}


def markdown_to_html(text: str) -> Markup:
    """Markdown with raw HTML disabled, then sanitised again: a document can never inject markup."""
    return Markup(nh3.clean(_markdown.render(text)))


def linkify_text(text: str) -> Markup:
    escaped = str(escape(text))
    return Markup(_URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped))


def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage.replace("_", " ").capitalize())


@dataclass(frozen=True)
class DocumentDiff:
    html: Markup
    added: int
    removed: int


def document_diff(old: str, new: str, *, old_name: str, new_name: str) -> DocumentDiff | None:
    """A line-by-line unified diff as escaped HTML (one classed line each), or None when the texts agree."""
    lines = list(
        difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=old_name, tofile=new_name, lineterm="", n=2)
    )
    if not lines:
        return None
    rendered = []
    added = removed = 0
    for number, line in enumerate(lines):
        if number < 2:  # the "--- old" and "+++ new" header; a removed "-- x" line must not pass for one
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind, added = "add", added + 1
        elif line.startswith("-"):
            kind, removed = "del", removed + 1
        else:
            kind = "ctx"
        rendered.append(f'<span class="diff-{kind}">{escape(line)}</span>')
    # Each line is a block of its own (see app.css), so no newlines between them.
    return DocumentDiff(Markup('<pre class="diff">' + "".join(rendered) + "</pre>"), added, removed)


class AmountError(ValueError):
    """An amount a person typed that we cannot take; the message is fit for the page."""


_AMOUNT = re.compile(r"^(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d*)?$|^\.\d+$")
_MAX_AMOUNT = Decimal("9999999999999999.99")  # what the ledger's 18 digits with 2 decimals hold


def parse_amount(text: str) -> Decimal | None:
    """A typed amount ("125000", "125,000.50") as a Decimal; None when left empty.

    Commas are taken only as thousands separators, so "1,5" is refused rather than read as 15."""
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    if not cleaned:
        return None
    if not _AMOUNT.match(cleaned):
        if cleaned.startswith("-"):
            raise AmountError("The amount cannot be negative.")
        raise AmountError("Enter the amount as a number, using a point for decimals (for example 125000.50).")
    try:
        amount = Decimal(cleaned.replace(",", ""))
    except InvalidOperation:
        raise AmountError("Enter the amount as a number (for example 125000.50).") from None
    if amount > _MAX_AMOUNT:
        raise AmountError("The amount is too large.")
    if amount != amount.quantize(Decimal("0.01")):
        raise AmountError("Enter the amount with at most two decimal places.")
    return amount.quantize(Decimal("0.01"))
