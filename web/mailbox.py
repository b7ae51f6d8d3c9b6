"""The dev mailbox: reads the Maildir that the dev SMTP sink writes."""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path


@dataclass(frozen=True)
class MailItem:
    key: str
    subject: str
    sender: str
    to: str
    date: str
    message_id: str
    text: str
    html: str | None
    aisafe: dict[str, str]  # the X-Aisafe-* headers: proposal, step, round, state


def read_mailbox(mail_dir: Path) -> list[MailItem]:
    """Every message in the Maildir, newest first."""
    if not (mail_dir / "cur").exists() and not (mail_dir / "new").exists():
        return []
    box = mailbox.Maildir(mail_dir, factory=None, create=False)
    items = []
    for key in box.keys():
        try:
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):
            continue  # removed while we listed
        items.append(_item(key, BytesParser(policy=policy.default).parsebytes(raw)))  # type: ignore[arg-type]
    return sorted(items, key=lambda i: i.date, reverse=True)


def _item(key: str, message: EmailMessage) -> MailItem:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    try:
        date = parsedate_to_datetime(str(message["Date"])).isoformat()
    except (TypeError, ValueError):
        date = ""
    return MailItem(
        key=key,
        subject=str(message["Subject"] or ""),
        sender=str(message["From"] or ""),
        to=str(message["To"] or ""),
        date=date,
        message_id=str(message["Message-ID"] or ""),
        text=text_part.get_content() if text_part else "",
        html=html_part.get_content() if html_part else None,
        aisafe={k[len("x-aisafe-") :].lower(): str(v) for k, v in message.items() if k.lower().startswith("x-aisafe-")},
    )
