"""Record the Temporal histories of a finished demo run into tests/histories/ for the replay test.

Run after a change to workflow code that is meant to be compatible: `.venv/bin/python -m tests.record_histories`
(the demo's whole cycle), and `... -m tests.record_histories --resend` (a round with a state not invited, then
invited by `aisafe resend`).
Old files are kept: every recorded history must keep replaying against the current code.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import httpx

import operations
from audit.export import clear_history_json
from devstack.demo import EXAMPLES, answer, invitations, mails_matching, run_demo
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.roster import RosterFile, load_roster_file
from models.states import MemberState

HISTORIES = Path(__file__).resolve().parent / "histories"


async def record(*, resend: bool = False) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="aisafe-histories-") as tmp:
        ports = StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port())
        async with EmbeddedStack(Path(tmp), ports) as stack:
            assert stack.client and stack.settings
            engine = make_engine(stack.settings.sqlalchemy_url)
            if resend:
                proposal_id = await _round_with_a_state_resent(stack)
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


if __name__ == "__main__":
    for path in asyncio.run(record(resend="--resend" in sys.argv)):
        print(f"wrote {path}")
