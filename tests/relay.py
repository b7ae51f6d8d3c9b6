"""A real SMTP relay (aiosmtpd) that refuses some recipients, for tests of what a mailing does with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from devstack.services import SmtpSink, _MaildirHandler


@dataclass
class Refusals:
    """Which recipients the relay refuses, by the end of their address (a domain such as "@ph.example.org").

    `refuse`: 550 at RCPT, as a relay answers for an unknown mailbox. `bounce`: the message is taken to the end,
    then refused (554), as a relay whose filter rejects it does. `defer`: 451 at RCPT. Change them while the relay
    runs."""

    refuse: set[str] = field(default_factory=set)
    bounce: set[str] = field(default_factory=set)
    defer: set[str] = field(default_factory=set)  # 451 at RCPT, as a greylisting relay answers
    kept: list[tuple[list[str], bytes]] = field(default_factory=list)  # each message kept: recipients, content
    asked: list[str] = field(default_factory=list)  # every RCPT TO the relay was given

    @staticmethod
    def _matches(address: str, ends: set[str]) -> bool:
        return any(address.lower().endswith(end) for end in ends)


class _RefusingHandler(_MaildirHandler):
    def __init__(self, mail_dir: Path, refusals: Refusals) -> None:
        super().__init__(mail_dir)
        self._refusals = refusals

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        self._refusals.asked.append(address)
        if Refusals._matches(address, self._refusals.refuse):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        if Refusals._matches(address, self._refusals.defer):
            return f"451 4.7.1 <{address}>: Recipient address rejected: Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if any(Refusals._matches(a, self._refusals.bounce) for a in envelope.rcpt_tos):
            return f"554 5.7.1 <{envelope.rcpt_tos[0]}>: message refused by the content filter"
        content = envelope.original_content or envelope.content
        self._refusals.kept.append(
            (list(envelope.rcpt_tos), content if isinstance(content, bytes) else content.encode())
        )
        return await super().handle_DATA(server, session, envelope)


class RefusingSink(SmtpSink):
    """The dev stack's SMTP sink, filing what it keeps in a Maildir, but refusing as `refusals` says."""

    def __init__(self, mail_dir: Path, *, port: int, refusals: Refusals, host: str = "127.0.0.1") -> None:
        super().__init__(mail_dir, port=port, host=host)
        self.refusals = refusals

    def start(self) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.mail_dir / sub).mkdir(parents=True, exist_ok=True)
        self._controller = Controller(
            _RefusingHandler(self.mail_dir, self.refusals), hostname=self.host, port=self.port
        )
        self._controller.start()
