"""Record the Temporal histories of a finished demo run into tests/histories/ for the replay test.

Run after a change to workflow code that is meant to be compatible: `.venv/bin/python -m tests.record_histories`
(the demo's whole cycle), `... -m tests.record_histories --resend` (a round with a state not invited, then
invited by `aisafe resend`), and `... --overdue` (a round overdue, extended, overdue again and closed without
consensus; the text revised and agreed in a second round).
Old files are kept: every recorded history must keep replaying against the current code.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
import yaml
from temporalio.client import Client

import operations
from audit.export import clear_history_json
from devstack.demo import EXAMPLES, answer, invitations, mails_matching, run_demo, wait_for
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.roster import RosterFile, load_roster_file
from models.states import MemberState

HISTORIES = Path(__file__).resolve().parent / "histories"


async def record(*, resend: bool = False, overdue: bool = False) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="aisafe-histories-") as tmp:
        ports = StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port())
        async with EmbeddedStack(Path(tmp), ports) as stack:
            assert stack.client and stack.settings
            engine = make_engine(stack.settings.sqlalchemy_url)
            if resend:
                proposal_id = await _round_with_a_state_resent(stack)
            elif overdue:
                proposal_id = await _overdue_extended_then_closed(stack)
            else:
                proposal_id = (await run_demo(stack.client, engine, stack.settings, print)).proposal_id
            HISTORIES.mkdir(exist_ok=True)
            written = []
            query = f"WorkflowId STARTS_WITH '{proposal_id}'"
            async for execution in stack.client.list_workflows(query):
                history = await stack.client.get_workflow_handle(execution.id).fetch_history()
                path = HISTORIES / f"{execution.id}.json"
                # Decoded: the replay test runs without the stack's codec key, as an auditor would.
                path.write_text(await clear_history_json(stack.client, history))
                written.append(path)
            return written


async def _round_with_a_state_resent(stack: EmbeddedStack) -> str:
    """One review round in which Timor-Leste had nobody on the roster: not invited, then invited by `resend`
    once its delegates are imported, and the round passes."""
    assert stack.client and stack.settings
    engine = make_engine(stack.settings.sqlalchemy_url)
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    operations.import_roster(
        engine, RosterFile(delegates=[d for d in roster.delegates if d.state is not MemberState.TL])
    )
    proposal_id = await operations.propose(stack.client, engine, stack.settings, EXAMPLES / "review-round.yaml")
    mail_dir = stack.settings.mail_dir
    await invitations(mail_dir, proposal_id, 1, expected=20)
    operations.import_roster(engine, roster)
    await operations.resend(stack.client, proposal_id, "TL")
    tl = await mails_matching(mail_dir, proposal_id, lambda m: m.state == "TL" and "/act/" in m.link, 2, "TL's links")
    mails = await invitations(mail_dir, proposal_id, 1, expected=20)
    links = {m.state: m.link for m in [*mails, *tl]}
    async with httpx.AsyncClient(timeout=30) as http:
        for link in links.values():
            await answer(http, link, "approve")
    await stack.client.get_workflow_handle(proposal_id).result()
    return proposal_id


async def _overdue_extended_then_closed(stack: EmbeddedStack) -> str:
    """Viet Nam stays silent: the round is overdue, `extend` gives it more time, it is overdue again, and
    `close-round --no-consensus` sends the text to revision; version 2 is agreed by everyone in round 2."""
    assert stack.client and stack.settings
    client, mail_dir = stack.client, stack.settings.mail_dir
    engine = make_engine(stack.settings.sqlalchemy_url)
    operations.import_roster(engine, load_roster_file(EXAMPLES / "roster.yaml"))
    folder = stack.settings.data_dir / "overdue"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLES / "operational-framework.md", folder / "operational-framework.md")
    (folder / "v2.md").write_text((EXAMPLES / "operational-framework.md").read_text() + "\n\nRevised.\n")
    stage = {"type": "member_review", "deadline": "PT20S", "reminders": [], "max_rounds": 2}
    path = folder / "proposal.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "title": "ASEAN AI SAFE Operational Framework (overdue)",
                "kind": "operational_framework",
                "document": "operational-framework.md",
                "process": {"stages": [stage]},
            }
        )
    )
    proposal_id = await operations.propose(client, engine, stack.settings, path)

    seen: list[object] = []

    async def overdue() -> bool:
        since = (await operations.status(client, proposal_id)).overdue_since
        if since is None or since in seen:
            return False
        seen.append(since)
        return True

    async with httpx.AsyncClient(timeout=30) as http:
        mails = await invitations(mail_dir, proposal_id, 1, expected=20)
        links = {m.state: m.link for m in mails if m.state != "VN"}
        for link in links.values():
            await answer(http, link, "approve")
        await wait_for(overdue, "the round to be overdue", timeout=90)
        await operations.extend_open(client, proposal_id, "PT5S")
        await wait_for(overdue, "the round to be overdue again", timeout=90)
        await operations.close_round(client, proposal_id, "Viet Nam did not answer")
        await wait_for(lambda: _at_stage(client, proposal_id, "revision"), "the text to go to revision", timeout=60)
        await operations.revise(client, engine, proposal_id, folder / "v2.md")
        mails = await invitations(mail_dir, proposal_id, 2, expected=20)
        for link in {m.state: m.link for m in mails}.values():
            await answer(http, link, "approve")
    await client.get_workflow_handle(proposal_id).result()
    return proposal_id


async def _at_stage(client: Client, proposal_id: str, stage: str) -> bool:
    return (await operations.status(client, proposal_id)).stage == stage


if __name__ == "__main__":
    for path in asyncio.run(record(resend="--resend" in sys.argv, overdue="--overdue" in sys.argv)):
        print(f"wrote {path}")
