"""The ASEAN Secretariat: on the roster without a state, copied on every invitation and outcome (never with a link
that answers), reading the dashboard and the audit record and acting on nothing; and the sender, configurable, by
default Malaysia as lead proponent (real SMTP sink, real database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.testing import ActivityEnvironment

from activities.email import MailActivities
from models.files import InputFileError
from models.messages import (
    ConsultationMailing,
    DocumentRef,
    MeetingMailing,
    OutcomeMailing,
    ProposalState,
    RoundMailing,
)
from models.process import StageType
from models.roster import Role, RosterFile, Sector, load_roster_file
from models.settings import Settings
from models.states import MemberState
from models.users import UserRole, add_user
from operations import import_roster
from tests.test_access import app_client
from tests.test_email_activity import document, example_roster, invitation, settings
from web.mailbox import MailItem, read_mailbox

__all__ = ["app_client", "document", "example_roster", "invitation", "settings"]  # fixtures used here

SECRETARIAT = {
    "role": "asean_secretariat",
    "name": "ASEAN Secretariat, Digital Division",
    "email": "digital@asean.example.org",
    "timezone": "Asia/Jakarta",
}
LINKS = ("/act/", "/comment/")
OLD_SENDER = "ASEAN AI SAFE Secretariat"


@pytest.fixture
def engine(sqlite_engine: Engine, example_roster: RosterFile) -> Engine:
    import_roster(sqlite_engine, example_roster)
    import_roster(sqlite_engine, RosterFile.model_validate({"delegates": [SECRETARIAT]}))
    return sqlite_engine


def copies(mail_dir: Path) -> list[MailItem]:
    return [i for i in read_mailbox(mail_dir) if i.aisafe.get("kind") == "copy"]


def assert_no_link(item: MailItem) -> None:
    assert not any(link in item.text for link in LINKS), item.text
    assert item.html is not None and not any(link in item.html for link in LINKS)
    assert "href=" not in item.html
    assert "state" not in item.aisafe  # a copy speaks for no state


def test_the_secretariat_is_on_the_roster_without_a_state(tmp_path: Path) -> None:
    entry = RosterFile.model_validate({"delegates": [SECRETARIAT]}).delegates[0]
    assert entry.state is None and entry.role is Role.ASEAN_SECRETARIAT
    assert entry.delegate_id.startswith("ASEC-")
    path = tmp_path / "roster.yaml"
    path.write_text(
        "delegates:\n  - role: asean_secretariat\n    state: SG\n    name: Someone\n"
        "    email: someone@asean.example.org\n    timezone: Asia/Jakarta\n"
    )
    with pytest.raises(InputFileError, match="speaks for no member state"):
        load_roster_file(path)


async def test_an_invitation_is_copied_to_the_secretariat_with_no_answering_link(
    settings: Settings, engine: Engine, invitation: RoundMailing
) -> None:
    mail = MailActivities(settings, engine)
    result = await ActivityEnvironment().run(mail.send_round_mail, invitation)

    assert result.sent == 22  # the copy is not an invitation of a state
    [copy] = copies(settings.mail_dir)
    assert copy.to.endswith("<digital@asean.example.org>")
    assert copy.subject.startswith("[ASEAN AI SAFE] Copy: Review round 1: ")
    assert "Brunei Darussalam (BN), Cambodia (KH)" in copy.text and "Viet Nam (VN)" in copy.text
    assert "no link" in copy.text and invitation.document.sha256 in copy.text
    assert_no_link(copy)

    # A reminder is not copied; the same invitation sent again copies nothing twice.
    await ActivityEnvironment().run(mail.send_round_mail, invitation.model_copy(update={"step": "reminder-1"}))
    await ActivityEnvironment().run(mail.send_round_mail, invitation)
    assert len(copies(settings.mail_dir)) == 1


async def test_meeting_consultation_and_outcome_are_copied_without_links(
    settings: Settings, engine: Engine, document: DocumentRef
) -> None:
    mail = MailActivities(settings, engine)
    run = ActivityEnvironment().run
    meeting = MeetingMailing(
        proposal_id="p-1",
        title="ASEAN AI SAFE Operational Framework",
        stage_index=5,
        stage_type=StageType.MINISTERIAL,
        step="invitation",
        date=datetime(2030, 5, 20, 2, 0, tzinfo=UTC),
        venue="Kuala Lumpur",
        chair=MemberState.MY,
        states=[MemberState.SG, MemberState.MY],
        roles=[Role.MINISTER_OFFICE],
        document=document,
    )
    await run(mail.send_meeting_mail, meeting)
    consultation = ConsultationMailing(
        proposal_id="p-1",
        title="ASEAN AI SAFE Operational Framework",
        stage_index=2,
        step="invitation",
        sectors=[Sector.CIVIL_SOCIETY],
        document=document,
        deadline=datetime.now(UTC) + timedelta(days=30),
    )
    await run(mail.send_consultation_mail, consultation)
    outcome = OutcomeMailing(
        proposal_id="p-1",
        title="ASEAN AI SAFE Operational Framework",
        status=ProposalState.WITHDRAWN,
        reason=None,
        document=document,
    )
    await run(mail.send_outcome_mail, outcome)

    found = {c.aisafe["step"]: c for c in copies(settings.mail_dir)}
    assert set(found) == {"invitation", "outcome"} and len(copies(settings.mail_dir)) == 3
    subjects = sorted(c.subject for c in copies(settings.mail_dir))
    assert any("ADGMIN meeting on 20 May 2030" in s for s in subjects)
    assert any("Public consultation on" in s for s in subjects)
    assert any(s.endswith("Copy: Withdrawn: ASEAN AI SAFE Operational Framework") for s in subjects)
    for copy in copies(settings.mail_dir):
        assert_no_link(copy)
    # The Secretariat's outcome is its copy, not a delegate's notice ("no further answer is needed from None").
    to_secretariat = [i for i in read_mailbox(settings.mail_dir) if "digital@asean.example.org" in i.to]
    assert {i.aisafe["kind"] for i in to_secretariat} == {"copy"}


async def test_the_sender_is_the_lead_proponent_by_default_and_configurable(
    settings: Settings, engine: Engine, invitation: RoundMailing
) -> None:
    mail = MailActivities(settings, engine)
    await ActivityEnvironment().run(mail.send_round_mail, invitation.model_copy(update={"states": [MemberState.SG]}))
    for item in read_mailbox(settings.mail_dir):
        assert item.sender == "Malaysia as lead proponent of ASEAN AI SAFE <aisafe@aisafe.example.org>"
        assert "Ministry of Digital, Malaysia, lead proponent of ASEAN AI SAFE" in item.text
        assert OLD_SENDER not in item.text and OLD_SENDER not in (item.html or "")

    configured = settings.model_copy(
        update={
            "mail_from": "Kementerian Digital Malaysia <ai-safe@digital.example.my>",
            "mail_signature": "Kementerian Digital Malaysia",
            "mail_copies": False,
        }
    )
    mail = MailActivities(configured, engine)
    await ActivityEnvironment().run(
        mail.send_round_mail, invitation.model_copy(update={"states": [MemberState.SG], "round": 2})
    )
    items = [i for i in read_mailbox(settings.mail_dir) if i.aisafe.get("round") == "2"]
    assert len(items) == 2 and all(i.aisafe["kind"] == "round" for i in items)  # Singapore's two, no copy
    for item in items:
        assert item.sender == "Kementerian Digital Malaysia <ai-safe@digital.example.my>"
        assert item.text.rstrip().endswith("Kementerian Digital Malaysia")


def test_no_template_or_setting_calls_the_sender_an_ai_safe_secretariat() -> None:
    root = Path(__file__).resolve().parent.parent
    for path in [*(root / "activities" / "templates").iterdir(), root / "activities" / "email.py"]:
        assert OLD_SENDER not in path.read_text(encoding="utf-8"), path
    assert OLD_SENDER not in Settings.model_fields["mail_from"].default


async def test_the_secretariat_reads_the_dashboard_and_audit_and_cannot_decrypt_or_act(
    app_client: tuple[httpx.AsyncClient, object],
) -> None:
    http, engine = app_client
    token = add_user(engine, "ASEAN Secretariat", UserRole.ASEAN_SECRETARIAT)  # type: ignore[arg-type]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/", headers=bearer)).status_code == 200
    assert (await http.get("/audit", headers=bearer)).status_code == 200
    # Temporal's payloads stay with coordinators and auditors; no page lets an account answer for a state.
    decode = await http.post("/codec/decode", headers=bearer, json={"payloads": []})
    assert decode.status_code == 403 and "asean_secretariat" in decode.text
    act = await http.post("/act/not-a-token", headers=bearer, data={"position": "approve"})
    assert act.status_code in (400, 403, 404) and "recorded" not in act.text.lower()
