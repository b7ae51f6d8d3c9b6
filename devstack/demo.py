"""`aisafe demo`: the whole default process on a running stack, delegates and stakeholders simulated by
opening their emailed links over HTTP (GET the page, then choose an answer and send the form), the
coordinator by operations.

drafting -> WG-AI first review (one round) -> consultation on the text the member states cleared (comments,
an extension, dispositions) -> WG-AI final review (a change request, a revised version, a second round) ->
ADGSOM ad referendum (silence procedure) -> ADGMIN meeting (dated a few seconds ahead, then recorded) ->
funding (equal shares indicated by focal points and confirmed by ministers' offices, one state opting out, a
partner's trust-fund pledge) -> report to the ASEAN Summit -> endorsed by the ADGMIN.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import Engine
from temporalio.client import Client

import operations
from models.labels import status_text
from models.messages import ProposalState, ProposalStatus, RoundStatus
from models.positions import Disposition
from models.roster import Role, load_roster_file
from models.settings import Settings
from models.states import MemberState, in_name_order
from models.tokens import round_workflow_id
from models.yamlfile import read_yaml
from web.mailbox import read_mailbox

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_LINK = re.compile(r"https?://\S+/(?:act|comment)/[A-Za-z0-9_\-.]+")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ENTRY_HASH = re.compile(r'id="entry-hash">([0-9a-f]{64})<')
_COMMENT_ID = re.compile(r'id="comment-id">([^<]+)<')

# Round 1: the Philippines asks for a data-protection safeguard, Singapore approves with a reservation,
# Timor-Leste's alternate answers for its state; everyone else's focal point approves.
ROUND_1 = {
    "PH": ("request_changes", "Add a data-protection safeguard for sharing incident information."),
    "SG": ("approve_with_reservation", "Testing approaches should stay interoperable with existing national schemes."),
}
ROUND_2 = {"MM": ("abstain", "")}
ALTERNATE_ANSWERS = {"TL"}
# The first review: Viet Nam stays silent past the deadline (seconds, in the demo); the coordinator runs a
# silence procedure for it. The ADGMIN meeting: Lao PDR is absent and is consulted ad referendum.
FIRST_REVIEW_SILENT = "VN"
FIRST_REVIEW_SECONDS = 25
MEETING_ABSENT = "LA"
# ADGSOM ad referendum: these senior officials concur explicitly; the others stay silent and are deemed to.
AD_REFERENDUM_CONCUR = {"BN", "ID", "MY", "SG", "TH", "VN"}
# Funding: Myanmar declines and opts out (ASEAN-minus-X); a dialogue partner's pledge closes the gap.
FUNDING_DECLINE = {"MM"}
MEETING_NOTICE = timedelta(seconds=5)  # how far ahead the coordinator brings the ADGMIN meeting
COMMENTS = [
    ("civil_society", "4.1", "Incident reports should never identify affected individuals."),
    ("academia", "8", "Please add a research-access track to the 2026-2027 work plan."),
    ("industry", None, "Welcome the voluntary, non-binding approach; align testing with existing standards."),
]


@dataclass
class Mail:
    kind: str
    state: str
    to: str
    step: str
    round: int
    link: str
    message_id: str
    stage: str = ""


@dataclass
class DemoResult:
    proposal_id: str
    status: ProposalStatus
    receipts: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    emails: int = 0


def read_mails(mail_dir: Path, proposal_id: str) -> list[Mail]:
    """The emails the sink received for one proposal, with the personal link of each (if it has one)."""
    found = []
    for item in read_mailbox(mail_dir):
        if item.aisafe.get("proposal") != proposal_id:
            continue
        link = _LINK.search(item.text)
        found.append(
            Mail(
                kind=item.aisafe.get("kind", "round"),
                state=item.aisafe.get("state", ""),
                to=item.to,
                step=item.aisafe.get("step", ""),
                round=int(item.aisafe.get("round", "0") or 0),
                link=link.group(0) if link else "",
                message_id=item.message_id,
                stage=item.aisafe.get("stage", ""),
            )
        )
    return found


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def mails_matching(
    mail_dir: Path, proposal_id: str, keep: Callable[[Mail], bool], expected: int, what: str
) -> list[Mail]:
    result: list[Mail] = []

    async def arrived() -> bool:
        nonlocal result
        result = [m for m in await asyncio.to_thread(read_mails, mail_dir, proposal_id) if keep(m)]
        return len(result) >= expected

    await wait_for(arrived, what)
    return result


async def invitations(mail_dir: Path, proposal_id: str, round_number: int, expected: int) -> list[Mail]:
    return await mails_matching(
        mail_dir,
        proposal_id,
        lambda m: m.round == round_number and m.step == "invitation" and "/act/" in m.link,
        expected,
        f"{expected} invitations for round {round_number}",
    )


async def open_form(http: httpx.AsyncClient, link: str) -> str:
    page = await http.get(link)
    page.raise_for_status()
    csrf = _CSRF.search(page.text)
    if csrf is None:
        raise RuntimeError(f"the page at {link} has no form")
    return csrf.group(1)


async def answer(http: httpx.AsyncClient, link: str, position: str, reason: str = "", amount: str | None = None) -> str:
    """What a delegate does: open the link (nothing recorded), then choose a position and send the form."""
    form = {"csrf": await open_form(http, link), "position": position, "reason": reason}
    if amount is not None:
        form["amount"] = amount
    receipt = await http.post(link, data=form)
    receipt.raise_for_status()
    entry = ENTRY_HASH.search(receipt.text)
    if entry is None:
        raise RuntimeError("the receipt page shows no ledger entry hash")
    return entry.group(1)


async def comment(http: httpx.AsyncClient, link: str, text: str, section: str | None) -> str:
    """What a stakeholder does: open the comment link, write, send; returns the comment id."""
    form = {"csrf": await open_form(http, link), "text": text, "section": section or ""}
    receipt = await http.post(link, data=form)
    receipt.raise_for_status()
    found = _COMMENT_ID.search(receipt.text)
    if found is None:
        raise RuntimeError("the comment receipt shows no comment id")
    return found.group(1).strip()


async def answer_round(
    http: httpx.AsyncClient,
    mails: list[Mail],
    answers: dict[str, tuple[str, str]],
    roles: dict[str, str],
    *,
    default: str = "approve",
    only: set[str] | None = None,
) -> list[str]:
    """One delegate per state answers (the focal point, or the alternate for ALTERNATE_ANSWERS)."""
    chosen: dict[str, Mail] = {}
    for mail in sorted(mails, key=lambda m: m.to):
        wanted = "alternate" if mail.state in ALTERNATE_ANSWERS else "focal_point"
        if roles.get(mail.to) in (wanted, "senior_official", "minister_office") and mail.state not in chosen:
            chosen[mail.state] = mail
    states = sorted(s for s in chosen if only is None or s in only)
    return list(await asyncio.gather(*(answer(http, chosen[s].link, *answers.get(s, (default, ""))) for s in states)))


def demo_proposal(workdir: Path, meeting_at: datetime, max_rounds: int = 3) -> Path:
    """The demo's proposal file: the example's default process in ASEAN's order, with deadlines of seconds, not
    weeks, and a funding stage before the Summit report."""
    funding = read_yaml(EXAMPLES / "funding-model.yaml")[0]["process"]["stages"][-1]  # type: ignore[index]
    spec: dict[str, Any] = {
        "title": "ASEAN AI SAFE Operational Framework (demo)",
        "kind": "operational_framework",
        "lead_state": "MY",
        "document": "operational-framework.md",  # copied beside it: a proposal reads only from its own folder
        "process": {
            "stages": [
                {"type": "drafting"},
                # The first review's deadline passes with one state silent: the round is overdue, and the
                # coordinator puts that state to a silence procedure (deadline and procedure in seconds).
                {"type": "member_review", "deadline": f"PT{FIRST_REVIEW_SECONDS}S", "reminders": [], "max_rounds": 1},
                {"type": "consultation", "deadline": "PT15S", "reminders": []},
                {"type": "member_review", "deadline": "P14D", "reminders": ["P7D", "P1D"], "max_rounds": max_rounds},
                {"type": "senior_officials", "mode": "ad_referendum", "deadline": "PT20S", "reminders": []},
                {
                    "type": "ministerial",
                    "mode": "meeting",
                    "date": meeting_at.isoformat(),
                    "venue": "Kuala Lumpur (demo)",
                    "chair": "TH",
                    "grace": "PT60S",
                    "on_no_record": "ad_referendum",
                    # The state absent from the meeting is consulted ad referendum on its decision.
                    "absent_ad_referendum": "PT20S",
                },
                # The demo's process counts the partner's pledge toward the target (the example's does not).
                {**funding, "deadline": "PT30S", "reminders": [], "partner_pledges_count": True},
                {"type": "summit_report"},
            ]
        },
    }
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLES / "operational-framework.md", workdir / "operational-framework.md")
    path = workdir / f"demo-proposal-{int(time.time())}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def run_demo(
    client: Client,
    engine: Engine,
    settings: Settings,
    say: Callable[[str], None] = lambda _: None,
    *,
    review_rounds: int = 2,
) -> DemoResult:
    """The whole default process; `review_rounds` WG-AI rounds, each but the last sending the text back."""
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    added, updated, _ = operations.import_roster(engine, roster)
    say(f"roster: {len(roster.delegates)} delegates and stakeholders ({added} added, {updated} updated)")
    roles = {f"{d.name} <{d.email}>": d.role.value for d in roster.delegates}
    review_delegates = sum(1 for d in roster.delegates if d.role in (Role.FOCAL_POINT, Role.ALTERNATE))
    sectors = {f"{d.name} <{d.email}>": d.sector.value for d in roster.delegates if d.sector}

    # The meeting is set for tomorrow; once the rounds before it are done (their pace depends on the machine), the
    # coordinator brings it forward with `aisafe reschedule`: a date never passes before its stage opens.
    meeting_at = datetime.now(UTC) + timedelta(days=1)
    path = demo_proposal(settings.data_dir / "demo", meeting_at, max_rounds=max(3, review_rounds))
    proposal_id = await operations.propose(client, engine, settings, path)
    say(f"proposed {proposal_id}")
    result = DemoResult(proposal_id=proposal_id, status=await operations.status(client, proposal_id))
    mail_dir = settings.mail_dir
    async with httpx.AsyncClient(timeout=60) as http:
        # Drafting: the coordinator submits version 1 as it stands.
        await _wait_stage(client, proposal_id, {"drafting"})
        await operations.submit(client, proposal_id)
        say("drafting: version 1 submitted")

        # WG-AI first review: member states see the text before anyone outside them. One state stays silent past
        # the deadline: silence is not consent, so the round is overdue until the coordinator acts; a silence
        # procedure writes to that state alone, and at its end it is deemed to concur.
        mails = await invitations(mail_dir, proposal_id, 1, expected=review_delegates)
        answering = {m.state for m in mails} - {FIRST_REVIEW_SILENT}
        result.receipts += await answer_round(http, mails, {}, roles, only=answering)
        say(f"first review: {len(answering)} states approve; {FIRST_REVIEW_SILENT} stays silent past the deadline")
        await _wait_for(client, proposal_id, lambda s: s.overdue_since is not None, "the first review to be overdue")
        await operations.silence_procedure(client, proposal_id, "PT5S")
        say(
            f"first review: overdue; a silence procedure for {FIRST_REVIEW_SILENT}: it concurs unless it objects in 5 s"
        )
        await _wait_stage(client, proposal_id, {"consultation"})
        say("first review: consensus (the silent state deemed to concur); version 1 is cleared for the consultation")

        # Consultation: stakeholders comment; the window is extended once; every comment gets a disposition.
        invited = await mails_matching(
            mail_dir,
            proposal_id,
            lambda m: m.kind == "consultation" and "/comment/" in m.link,
            len(sectors),
            "consultation invitations",
        )
        by_sector: dict[str, Mail] = {}
        for mail in invited:
            by_sector.setdefault(sectors.get(mail.to, ""), mail)
        for sector, section, text in COMMENTS:
            result.comments.append(await comment(http, by_sector[sector].link, text, section))
        await operations.extend(client, proposal_id, "PT5S")
        say(f"consultation: {len(result.comments)} comments from stakeholders; window extended by 5 seconds")
        await _wait_for(
            client, proposal_id, lambda s: bool(s.consultation and not s.consultation.is_open), "the window"
        )
        dispositions = [
            (Disposition.ACCEPTED, "Section 4.1.2 now requires anonymised incident reports."),
            (Disposition.PARTLY, "A research-access item is added for 2027; a separate track is deferred."),
            (Disposition.NOTED, "The framework stays voluntary and standards-aligned."),
        ]
        for comment_id, (disposition, reason) in zip(result.comments, dispositions, strict=True):
            await operations.respond(client, proposal_id, comment_id, disposition, reason)
        say("consultation: every comment answered (response-to-comments matrix complete)")

        # WG-AI final review: a change request in each round but the last, a revised version each time, then
        # consensus. Rounds are numbered across the proposal: the first review had round 1.
        for number in range(2, review_rounds + 1):
            mails = await invitations(mail_dir, proposal_id, number, expected=review_delegates)
            say(f"final review round {number}: {len(mails)} invitations; delegates answering through their links")
            result.receipts += await answer_round(http, mails, ROUND_1, roles)
            await _wait_stage(client, proposal_id, {"revision"})
            say(f"final review round {number}: changes requested by PH; uploading version {number}")
            await operations.revise(client, engine, proposal_id, _revision(settings.data_dir / "demo", number))
        mails = await invitations(mail_dir, proposal_id, review_rounds + 1, expected=review_delegates)
        result.receipts += await answer_round(http, mails, ROUND_2, roles)
        say(f"final review round {review_rounds + 1}: consensus; the WG-AI recommends the text for endorsement")

        # ADGSOM ad referendum: some concur, the rest stay silent and are deemed to concur at the deadline.
        mails = await mails_matching(
            mail_dir,
            proposal_id,
            lambda m: m.round == review_rounds + 2 and m.step == "invitation",
            11,
            "ADGSOM invitations",
        )
        result.receipts += await answer_round(http, mails, {}, roles, only=AD_REFERENDUM_CONCUR)
        say(f"ADGSOM ad referendum: {len(AD_REFERENDUM_CONCUR)} concur, the others stay silent until the deadline")

        # ADGMIN meeting: brought forward to a few seconds from now; the workflow sleeps until the date, then the
        # secretariat records the Meeting's decision.
        await _wait_stage(client, proposal_id, {"ministerial"}, timeout=90)
        meeting_at = await _bring_forward(client, proposal_id, MEETING_NOTICE)
        record = settings.data_dir / "demo" / "adgmin-record.yaml"
        record.write_text(
            yaml.safe_dump(
                {
                    "held_on": meeting_at.isoformat(),
                    "summary": "ADGMIN endorsed the operational framework.",
                    "present": [s.value for s in in_name_order(MemberState) if s.value != MEETING_ABSENT],
                    "decision": "endorsed",
                    "paragraph": "The Meeting endorsed the ASEAN AI SAFE Operational Framework.",
                }
            )
        )
        say(f"ADGMIN meeting at {meeting_at:%H:%M:%S} UTC: waiting for it, then recording the outcome")
        await _record_when_held(client, proposal_id, record)
        # The state absent is consulted ad referendum on the decision; its minister's office concurs through its link.
        absent = await mails_matching(
            mail_dir,
            proposal_id,
            lambda m: (
                m.stage == "ministerial" and m.state == MEETING_ABSENT and m.step == "invitation" and "/act/" in m.link
            ),
            1,
            "the absent state's ad referendum invitation",
        )
        result.receipts += await answer_round(http, absent, {}, roles)
        say(f"ADGMIN: {MEETING_ABSENT} was absent; consulted ad referendum, it concurs: the decision is final")

        # Funding: equal shares; Myanmar opts out; a dialogue partner's trust-fund pledge closes the gap. Focal points
        # indicate, subject to domestic clearance; then the ministers' offices confirm.
        mails = await mails_matching(
            mail_dir,
            proposal_id,
            lambda m: m.stage == "funding" and m.step == "invitation" and bool(m.link),
            review_delegates,
            "funding invitations",
        )
        current = await operations.status(client, proposal_id)
        live = await client.get_workflow_handle(round_workflow_id(proposal_id, current.round)).query(
            "status", result_type=RoundStatus
        )
        assert live.funding is not None
        gap = sum((live.funding.expected.get(MemberState(s), Decimal(0)) for s in FUNDING_DECLINE), Decimal(0))
        await operations.pledge(client, proposal_id, "Dialogue Partner (demo)", gap, None, ["capacity building"])
        say(f"funding: a dialogue partner pledges {gap:,.2f} to cover the share of {', '.join(FUNDING_DECLINE)}")
        decline = {s: ("decline", "Not in a position to contribute this cycle.") for s in FUNDING_DECLINE}
        result.receipts += await answer_round(http, mails, decline, roles, default="indicate")
        offices = sum(
            1 for d in roster.delegates if d.role is Role.MINISTER_OFFICE and d.state.value not in FUNDING_DECLINE
        )
        mails = await invitations(mail_dir, proposal_id, current.round + 1, expected=offices)
        say(f"funding: {len(mails)} ministers' offices asked to confirm the contributions indicated")
        result.receipts += await answer_round(http, mails, {}, roles, default="confirm")
        result.status = await _wait_stage(client, proposal_id, {s.value for s in ProposalState} - {"running"})
    result.emails = len(await asyncio.to_thread(read_mails, mail_dir, proposal_id))
    for report in result.status.stages:
        say(f"  {report.type.value:<17} {report.status.value:<9} {report.outcome or ''}")
    say(f"outcome: {status_text(result.status.status, result.status.decided_by, result.status.summit_reported)}")
    return result


def _revision(workdir: Path, version: int) -> Path:
    """Version 2 of the example as it stands; later versions add a line, so each has its own hash."""
    second = EXAMPLES / "operational-framework-v2.md"
    if version == 2:
        return second
    path = workdir / f"operational-framework-v{version}.md"
    path.write_text(second.read_text() + f"\n_Revision {version}: wording aligned with the WG-AI's comments._\n")
    return path


async def _bring_forward(client: Client, proposal_id: str, notice: timedelta) -> datetime:
    """Reschedule the open meeting to `notice` from now (once its workflow has sent the invitations)."""
    moved: list[datetime] = []

    async def rescheduled() -> bool:
        try:
            when = (datetime.now(UTC) + notice).replace(microsecond=0)
            moved.append((await operations.reschedule(client, proposal_id, when.isoformat(), None)).date)
        except operations.OperationError as exc:
            if "no open meeting" in str(exc):
                return False
            raise
        return True

    await wait_for(rescheduled, "the ADGMIN meeting to be open", timeout=60, interval=0.5)
    return moved[-1]


async def _record_when_held(client: Client, proposal_id: str, record: Path) -> None:
    async def recorded() -> bool:
        try:
            await operations.record_meeting(client, proposal_id, record)
        except operations.OperationError as exc:
            if "record it afterwards" in str(exc) or "no open meeting" in str(exc):
                return False
            raise
        return True

    await wait_for(recorded, "the ADGMIN meeting to be held and recorded", timeout=120, interval=1)


async def _wait_for(
    client: Client, proposal_id: str, check: Callable[[ProposalStatus], bool], what: str, timeout: float = 60
) -> ProposalStatus:
    current: ProposalStatus | None = None

    async def reached() -> bool:
        nonlocal current
        current = await operations.status(client, proposal_id)
        return check(current)

    await wait_for(reached, f"{proposal_id}: {what}", timeout=timeout)
    assert current is not None
    return current


async def _wait_stage(client: Client, proposal_id: str, stages: set[str], timeout: float = 60) -> ProposalStatus:
    return await _wait_for(client, proposal_id, lambda s: s.stage in stages, f"stage {sorted(stages)}", timeout)
