"""activities/smtp.send_recorded against a real SMTP sink: once the outbox row may be committed, the message
reaches the relay, whatever cancels the sender meanwhile."""

from __future__ import annotations

import asyncio
import mailbox
import threading
import time

import aiosmtplib
import pytest

from activities.smtp import send_recorded
from devstack.services import SmtpSink

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n"


def delivered(sink: SmtpSink) -> list[bytes]:
    return [message.as_bytes() for message in mailbox.Maildir(sink.mail_dir, create=False)]


async def test_a_sender_cancelled_while_its_outbox_commit_runs_still_delivers_the_message(sink: SmtpSink) -> None:
    committed = threading.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_commit() -> None:  # a database write that waits for its lock, as under load
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.5)
        committed.set()

    async def unrecord() -> None:
        raise AssertionError("the relay accepted the message: nothing to take back")

    async with aiosmtplib.SMTP(hostname=sink.host, port=sink.port, timeout=10) as smtp:
        sending = asyncio.create_task(
            send_recorded(
                smtp, "a@example.org", "b@example.org", MESSAGE, [], lambda: asyncio.to_thread(slow_commit), unrecord
            )
        )
        await started.wait()
        sending.cancel()  # e.g. the activity's heartbeat timed out
        with pytest.raises(asyncio.CancelledError):
            await sending

    # The row says "sent", so the message must be at the relay: the retry will skip this recipient.
    assert committed.is_set()
    assert [b"<m1@example.org>" in m for m in delivered(sink)] == [True]


async def test_a_sender_cancelled_before_its_commit_leaves_no_message_and_no_row(sink: SmtpSink) -> None:
    recorded = []

    async def record() -> None:
        recorded.append(True)

    async def unrecord() -> None:
        recorded.clear()

    async with aiosmtplib.SMTP(hostname=sink.host, port=sink.port, timeout=10) as smtp:
        await smtp.mail("a@example.org")
        await smtp.rset()
        sending = asyncio.create_task(
            send_recorded(smtp, "a@example.org", "b@example.org", MESSAGE, [], record, unrecord)
        )
        sending.cancel()  # before it has written anything
        with pytest.raises(asyncio.CancelledError):
            await sending
    assert recorded == [] and delivered(sink) == []
