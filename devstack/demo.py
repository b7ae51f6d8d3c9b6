"""`aisafe demo`: a whole review cycle with delegates simulated by opening their emailed links over HTTP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine
from temporalio.client import Client

import operations
from models.messages import ProposalState, ProposalStatus
from models.roster import load_roster_file
from models.settings import Settings
from web.mailbox import read_mailbox

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_LINK = re.compile(r"https?://\S+/act/[A-Za-z0-9_\-.]+")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')

# Round 1: the Philippines asks for a data-protection safeguard, Singapore approves with a reservation,
# Timor-Leste's alternate answers for its state; everyone else's focal point approves.
ROUND_1 = {
    "PH": ("request_changes", "Add a data-protection safeguard for sharing incident information."),
    "SG": ("approve_with_reservation", "Testing approaches should stay interoperable with existing national schemes."),
}
ROUND_2 = {"MM": ("abstain", "")}
ALTERNATE_ANSWERS = {"TL"}


@dataclass
class Mail:
    state: str
    to: str
    step: str
    round: int
    link: str
    message_id: str


@dataclass
class DemoResult:
    proposal_id: str
    status: ProposalStatus
    receipts: list[str] = field(default_factory=list)
    emails: int = 0


def read_mails(mail_dir: Path, proposal_id: str) -> list[Mail]:
    """The round emails the sink received for one proposal, with the action link of each."""
    found = []
    for item in read_mailbox(mail_dir):
        link = _LINK.search(item.text)
        if item.aisafe.get("proposal") == proposal_id and link:
            found.append(
                Mail(
                    state=item.aisafe.get("state", ""),
                    to=item.to,
                    step=item.aisafe.get("step", ""),
                    round=int(item.aisafe.get("round", "0")),
                    link=link.group(0),
                    message_id=item.message_id,
                )
            )
    return found


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def invitations(mail_dir: Path, proposal_id: str, round_number: int, expected: int) -> list[Mail]:
    result: list[Mail] = []

    async def arrived() -> bool:
        nonlocal result
        mails = await asyncio.to_thread(read_mails, mail_dir, proposal_id)
        result = [m for m in mails if m.round == round_number and m.step == "invitation"]
        return len(result) >= expected

    await wait_for(arrived, f"{expected} invitations for round {round_number}")
    return result


async def answer(http: httpx.AsyncClient, link: str, position: str, reason: str = "") -> str:
    """What a delegate does: open the link (nothing recorded), then press a position button."""
    page = await http.get(link)
    page.raise_for_status()
    csrf = _CSRF.search(page.text)
    if csrf is None:
        raise RuntimeError(f"the action page at {link} has no form")
    receipt = await http.post(link, data={"csrf": csrf.group(1), "position": position, "reason": reason})
    receipt.raise_for_status()
    entry = re.search(r'id="entry-hash">([0-9a-f]{64})<', receipt.text)
    if entry is None:
        raise RuntimeError("the receipt page shows no ledger entry hash")
    return entry.group(1)


async def answer_round(
    http: httpx.AsyncClient, mails: list[Mail], answers: dict[str, tuple[str, str]], roster_roles: dict[str, str]
) -> list[str]:
    chosen: dict[str, Mail] = {}
    for mail in sorted(mails, key=lambda m: m.to):
        wanted = "alternate" if mail.state in ALTERNATE_ANSWERS else "focal_point"
        if roster_roles.get(mail.to) == wanted:
            chosen[mail.state] = mail
    return list(
        await asyncio.gather(
            *(answer(http, m.link, *answers.get(state, ("approve", ""))) for state, m in sorted(chosen.items()))
        )
    )


async def run_demo(
    client: Client, engine: Engine, settings: Settings, say: Callable[[str], None] = lambda _: None
) -> DemoResult:
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    added, updated, _ = operations.import_roster(engine, roster)
    say(f"roster: {len(roster.delegates)} delegates ({added} added, {updated} updated)")
    roles = {f"{d.name} <{d.email}>": d.role.value for d in roster.delegates}

    proposal_id = await operations.propose(client, engine, settings, EXAMPLES / "operational-framework.yaml")
    say(f"proposed {proposal_id}")
    result = DemoResult(proposal_id=proposal_id, status=await operations.status(client, proposal_id))
    async with httpx.AsyncClient(timeout=60) as http:
        mails = await invitations(settings.mail_dir, proposal_id, 1, expected=len(roster.delegates))
        say(f"round 1: {len(mails)} invitations delivered; delegates answering through their links")
        result.receipts += await answer_round(http, mails, ROUND_1, roles)
        await _wait_stage(client, proposal_id, {"revision"})
        say("round 1: changes requested by PH; uploading version 2")
        await operations.revise(client, engine, proposal_id, EXAMPLES / "operational-framework-v2.md")

        mails = await invitations(settings.mail_dir, proposal_id, 2, expected=len(roster.delegates))
        say(f"round 2: {len(mails)} invitations delivered; delegates answering")
        result.receipts += await answer_round(http, mails, ROUND_2, roles)
        result.status = await _wait_stage(client, proposal_id, {s.value for s in ProposalState} - {"running"})
    result.emails = len(await asyncio.to_thread(read_mails, settings.mail_dir, proposal_id))
    say(f"outcome: {result.status.status.value} after {result.status.round} round(s)")
    return result


async def _wait_stage(client: Client, proposal_id: str, stages: set[str]) -> ProposalStatus:
    current: ProposalStatus | None = None

    async def reached() -> bool:
        nonlocal current
        current = await operations.status(client, proposal_id)
        return current.stage in stages

    await wait_for(reached, f"{proposal_id} to reach {sorted(stages)}")
    assert current is not None
    return current
