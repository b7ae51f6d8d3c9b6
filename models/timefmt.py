"""Deadlines as a reader sees them: in their own zone and in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def in_zone(moment: datetime, zone: str) -> str:
    local = moment.astimezone(ZoneInfo(zone))
    offset = local.strftime("%z")
    return f"{local:%A %-d %B %Y, %H:%M} ({zone}, UTC{offset[:3]}:{offset[3:]})"


def in_utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def both(moment: datetime, zone: str) -> str:
    return f"{in_zone(moment, zone)} — {in_utc(moment)}"
