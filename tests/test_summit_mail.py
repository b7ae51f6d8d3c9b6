"""The outcome notice in each body's own word, and the report to the ASEAN Summit, through the real activity and
SMTP sink (issue 18, point 3)."""

from __future__ import annotations

from activities.email import MailActivities
from models.messages import DocumentRef, OutcomeMailing, ProposalState, SummitReportMailing
from models.process import StageType
from models.settings import Settings
from tests.test_email_activity import (
    PROPOSAL_ID,
    TITLE,
    by_address,
    document,
    engine,
    example_roster,
    mail,
    run,
    settings,
)
from web.mailbox import read_mailbox

__all__ = ["document", "engine", "example_roster", "mail", "settings"]  # the fixtures, shared


async def test_the_report_to_the_summit_goes_to_the_contact_for_the_leaders_only(
    mail: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    mailing = SummitReportMailing(
        proposal_id=PROPOSAL_ID,
        title=TITLE,
        stage_index=6,
        status=ProposalState.ENDORSED,
        decided_by=StageType.MINISTERIAL,
        summit="the 50th ASEAN Summit",
        document=document,
    )

    result = await run(mail.send_summit_report, mailing)

    assert (result.sent, result.already_sent) == (1, 0)
    (item,) = by_address(read_mailbox(settings.mail_dir)).values()
    assert item.to.endswith("<farah.zulkifli@summit-desk.my.example.org>")
    assert item.subject == f"[ASEAN AI SAFE] Reported to the 50th ASEAN Summit: {TITLE}"
    assert item.aisafe["kind"] == "summit_report" and item.aisafe["stage"] == "summit_report"
    assert "reported to the 50th ASEAN Summit" in item.text and "Outcome: Endorsed by the ADGMIN" in item.text
    assert item.html is not None and "Endorsed by the ADGMIN" in item.html and document.sha256 in item.html

    again = await run(mail.send_summit_report, mailing)
    assert (again.sent, again.already_sent) == (0, 1)


async def test_the_outcome_notice_says_which_body_decided_and_the_summit_report(
    mail: MailActivities, document: DocumentRef, settings: Settings
) -> None:
    mailing = OutcomeMailing(
        proposal_id=PROPOSAL_ID,
        title=TITLE,
        status=ProposalState.ENDORSED,
        reason="every stage passed",
        document=document,
        decided_by=StageType.MINISTERIAL,
        summit_reported=True,
    )

    await run(mail.send_outcome_mail, mailing)

    items = read_mailbox(settings.mail_dir)
    assert items and all(
        item.subject == f"[ASEAN AI SAFE] Endorsed by the ADGMIN; reported to the ASEAN Summit: {TITLE}"
        for item in items
    )
    sentence = "The proposal below was endorsed by the ADGMIN and reported to the ASEAN Summit."
    assert all(sentence in item.text and item.html and sentence in item.html for item in items)
    assert not any("adopted" in item.text for item in items)
    assert {item.aisafe["outcome"] for item in items} == {"endorsed"}
