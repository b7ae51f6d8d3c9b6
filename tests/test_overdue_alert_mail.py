"""The coordinator's email when a round goes overdue: who is silent, since which deadline, and the three commands."""

from __future__ import annotations

import email
import mailbox
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.email import MailActivities
from devstack.services import SmtpSink, free_port
from models.db import init_db, make_engine
from models.messages import CoordinatorAlert, MailingResult
from models.settings import Settings
from models.states import MemberState


async def test_the_overdue_alert_names_the_silent_states_and_the_coordinators_three_choices(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        dev=True,
        secret_key=None,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_username=None,
        smtp_password=None,
        smtp_starttls=False,
        web_host="127.0.0.1",
        web_port=8000,
        public_url=None,
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    init_db(engine)
    sink = SmtpSink(tmp_path / "sink", host=settings.smtp_host, port=settings.smtp_port)
    sink.start()
    alert = CoordinatorAlert(
        proposal_id="operational-framework-1a2b3c4d",
        title="ASEAN AI SAFE Operational Framework",
        round=2,
        step="overdue-1",
        workflow_id="operational-framework-1a2b3c4d.round-2",
        not_invited=[],
        overdue=[MemberState.LA, MemberState.SG],
        deadline=datetime(2030, 3, 16, 20, 0, tzinfo=UTC),
    )
    try:
        result = await ActivityEnvironment().run(MailActivities(settings, engine).send_coordinator_alert, alert)
        again = await ActivityEnvironment().run(MailActivities(settings, engine).send_coordinator_alert, alert)
    finally:
        sink.stop()
        engine.dispose()

    assert isinstance(result, MailingResult) and result.sent == 1 and again.sent == 0  # once per step
    box = mailbox.Maildir(tmp_path / "sink", factory=None, create=False)
    [key] = box.keys()
    message = email.message_from_bytes(box.get_bytes(key), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert str(message["Subject"]) == (
        "[ASEAN AI SAFE] Overdue: LA, SG silent in round 2 of ASEAN AI SAFE Operational Framework"
    )
    assert message["X-Aisafe-Kind"] == "alert" and message["X-Aisafe-Step"] == "overdue-1"
    text, html = (part.get_content() for part in message.iter_parts())  # type: ignore[attr-defined]
    for part in (text, html):
        assert "2030-03-16 20:00 UTC" in part and "Silence is not consent" in part
        assert "Lao PDR" in part and "Singapore" in part
        for command in ("extend", "silence-procedure", "close-round"):
            assert f"aisafe {command} operational-framework-1a2b3c4d" in part
