"""One message over an open SMTP connection, recorded as sent at the only moment that makes it exactly once.

The relay takes responsibility for a message when it reads the DATA terminator (`.`). We write the outbox
row just before sending that terminator: if the worker dies before the row is committed, the relay drops
the unfinished message and the retry sends it; if it dies after, the terminator is already in the kernel's
socket buffer (delivered even after a SIGKILL) and the retry skips it. Recording after the relay's reply
instead would resend every message whose worker died while waiting for its own database write.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiosmtplib
from aiosmtplib.status import SMTPStatus

_LINE_ENDINGS = re.compile(rb"(?:\r\n|\n|\r(?!\n))")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


async def send_recorded(
    smtp: aiosmtplib.SMTP,
    sender: str,
    recipient: str,
    message: bytes,
    mail_options: list[str],
    record: Callable[[], Awaitable[None]],
    unrecord: Callable[[], Awaitable[None]],
) -> None:
    """Send `message`; `record()` commits the outbox row just before the relay can accept it.

    Raises aiosmtplib errors as `sendmail` does (SMTPRecipientsRefused for a refused address); if the relay
    refuses the finished message, `unrecord()` takes the row back before the error is raised.
    """
    if smtp.protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("not connected")
    await smtp.mail(sender, options=mail_options)
    try:
        await smtp.rcpt(recipient)
    except aiosmtplib.SMTPRecipientRefused as exc:
        await smtp.rset()
        raise aiosmtplib.SMTPRecipientsRefused([exc]) from None
    body = _LEADING_PERIOD.sub(b"..", _LINE_ENDINGS.sub(b"\r\n", message))
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    start = await smtp.execute_command(b"DATA")
    if start.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = smtp.protocol
    protocol.write(body)
    await _flushed(protocol)
    # From here the outbox row may be committed, so the message must reach the relay: a cancellation (the
    # activity's heartbeat timeout, a worker shutting down) waits until it has, and is raised after.
    await _to_the_end(_record_and_finish(smtp, protocol, record, unrecord))


async def _record_and_finish(
    smtp: aiosmtplib.SMTP,
    protocol: Any,
    record: Callable[[], Awaitable[None]],
    unrecord: Callable[[], Awaitable[None]],
) -> None:
    try:
        await record()
    except BaseException:
        smtp.close()  # drop the connection mid-DATA: the relay discards the unfinished message
        raise
    # aiosmtplib's protocol expects to be told a reply is due before it arrives (as its own DATA does).
    protocol._response_pending = True  # noqa: SLF001
    protocol.write(b".\r\n")
    await _flushed(protocol)
    reply = await protocol.read_response(timeout=smtp.timeout)
    if reply.code != SMTPStatus.completed:
        await unrecord()
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)


async def _to_the_end(work: Awaitable[None]) -> None:
    """Await `work` to its end even if this task is cancelled meanwhile, then raise the cancellation.

    The outbox commit runs in a thread that a cancellation cannot stop: giving up at that point would leave a
    row saying "sent" for a message the relay then discards, and the retry would skip it (seen under load:
    the activity's heartbeat timed out while the commit waited for the database).
    """
    finishing = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            await asyncio.shield(finishing)
        except asyncio.CancelledError:
            if finishing.cancelled():
                raise
            cancelled = True
            continue
        break
    if cancelled:
        raise asyncio.CancelledError


async def _flushed(protocol: object) -> None:
    """Wait until asyncio has handed every written byte to the kernel (which delivers it even if we die)."""
    transport = getattr(protocol, "transport", None)
    while transport is not None and transport.get_write_buffer_size():
        await asyncio.sleep(0.001)
