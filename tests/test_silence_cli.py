"""The coordinator's controls of an overdue round from the CLI, on the real dev server with the worker and the web
app: `aisafe extend` (a consultation as before, and a round), `aisafe close-round --no-consensus` (to revision) and
`aisafe silence-procedure` (the silent state deemed to concur), with `aisafe status` showing the round overdue."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import operations
from devstack.demo import EXAMPLES, answer, mails_matching, wait_for
from devstack.stack import EmbeddedStack
from models.db import make_engine
from models.roster import load_roster_file
from tests.integration import acli, assert_chain_intact, ledger_entries, stack_env
from tests.test_concurrency import verified
from tests.test_integration import make_stack

REVIEW = {
    "type": "member_review",
    "participants": ["MY", "SG"],
    "deadline": "PT30S",
    "reminders": [],
    "max_rounds": 2,
}


@pytest.fixture
async def stack(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[EmbeddedStack]:
    stack = await make_stack(tmp_path, dev_env)
    yield stack
    await stack.stop()


async def test_extend_close_round_and_silence_procedure_from_the_cli(stack: EmbeddedStack, tmp_path: Path) -> None:
    assert stack.settings and stack.client
    env = stack_env(stack)
    engine = make_engine(stack.settings.sqlalchemy_url)
    operations.import_roster(engine, load_roster_file(EXAMPLES / "roster.yaml"))
    shutil.copy(EXAMPLES / "operational-framework.md", tmp_path / "text.md")
    path = tmp_path / f"proposal-{uuid.uuid4().hex[:6]}.yaml"
    body = {"title": "ASEAN AI SAFE Operational Framework", "kind": "operational_framework", "document": "text.md"}
    consultation = {"type": "consultation", "deadline": "PT30S", "reminders": []}
    path.write_text(json.dumps(body | {"process": {"stages": [consultation, REVIEW]}}))  # JSON is YAML
    proposal_id = await operations.propose(stack.client, engine, stack.settings, path)
    mail_dir = stack.settings.mail_dir

    def entries(kind: str) -> list[dict[str, Any]]:
        return [json.loads(e.payload_json) for e in ledger_entries(stack, proposal_id) if e.kind == kind]

    async def recorded(kind: str, count: int) -> None:
        async def there() -> bool:
            return len(entries(kind)) >= count

        await wait_for(there, f"{count} {kind} entries")

    async def malaysia_approves(number: int) -> None:
        [mail, *_] = await mails_matching(
            mail_dir,
            proposal_id,
            lambda m: m.step == "invitation" and m.round == number and m.state == "MY" and "/act/" in m.link,
            1,
            f"round {number}'s invitation",
        )
        async with httpx.AsyncClient(timeout=30) as http:
            await answer(http, mail.link, "approve")

    # The same command still extends a consultation.
    async def consulting() -> bool:
        return ".consultation-" in str((await operations.status(stack.client, proposal_id)).stage_workflow_id)

    await wait_for(consulting, "the consultation")
    await recorded("consultation_opened", 1)
    window = await acli("extend", proposal_id, "PT2S", "--json", env=env)
    assert window.code == 0, window.stderr
    assert window.json()["extended"] == "consultation" and "round" not in window.json()
    await recorded("consultation_extended", 1)

    # Round 1: Malaysia approves, Singapore stays silent. Before the deadline only extend is taken.
    async def reviewing() -> bool:
        return bool((await operations.status(stack.client, proposal_id)).round_workflow_id)

    await wait_for(reviewing, "round 1")
    early = await acli("close-round", proposal_id, "--no-consensus", env=env)
    assert early.code == 1 and "is not overdue" in early.stderr and early.stderr.strip().count("\n") == 0
    await malaysia_approves(1)
    await recorded("round_overdue", 1)
    shown = await acli("status", proposal_id, "--json", env=env)
    assert shown.code == 0 and shown.json()["overdue_since"] and "silence is not consent" in shown.json()["waiting"]
    text = await acli("status", proposal_id, env=env)
    assert text.code == 0 and "OVERDUE since" in text.stdout and "Singapore (SG)" in text.stdout

    extended = await acli("extend", proposal_id, "PT5S", "--json", env=env)
    assert extended.code == 0, extended.stderr
    assert extended.json()["extended"] == "round" and extended.json()["states"] == ["SG"]
    assert extended.json()["deadline"] == entries("round_extended")[0]["deadline"]
    await mails_matching(mail_dir, proposal_id, lambda m: m.step == "extended-1" and m.state == "SG", 1, "extension")
    await recorded("round_overdue", 2)  # still silent at the new deadline: overdue again

    # Bad input is refused before anything is sent (exit 2); the round's own refusals exit 1.
    for args in (("extend", proposal_id, "seven days"), ("silence-procedure", proposal_id, "P0D")):
        bad = await acli(*args, env=env)
        assert bad.code == 2 and "P7D" in bad.stderr and bad.stderr.strip().count("\n") == 0
    missing = await acli("close-round", proposal_id, env=env)
    assert missing.code == 2 and "--no-consensus" in missing.stderr
    closed = await acli("close-round", proposal_id, "--no-consensus", "--reason", "Singapore unreachable", env=env)
    assert closed.code == 0, closed.stderr
    assert "closed without consensus" in closed.stdout and "silent: SG" in closed.stdout
    [closing] = entries("round_closed_no_consensus")
    assert closing == {"round": 1, "states": ["SG"], "reason": "Singapore unreachable"}

    async def in_revision() -> bool:
        return (await operations.status(stack.client, proposal_id)).stage == "revision"

    await wait_for(in_revision, "revision")
    (tmp_path / "v2.md").write_text("# Operational Framework\n\nVersion 2.\n")
    revised = await acli("revise", proposal_id, str(tmp_path / "v2.md"), env=env)
    assert revised.code == 0, revised.stderr

    # Round 2: Singapore silent again; a silence procedure, and at its end Singapore is deemed to concur.
    await malaysia_approves(2)
    await recorded("round_overdue", 3)
    procedure = await acli("silence-procedure", proposal_id, "PT20S", "--json", env=env)
    assert procedure.code == 0, procedure.stderr
    assert procedure.json()["states"] == ["SG"] and procedure.json()["action"] == "silence_procedure"
    again = await acli("silence-procedure", proposal_id, "PT5S", env=env)
    assert again.code == 1 and "is not overdue" in again.stderr
    await mails_matching(
        mail_dir, proposal_id, lambda m: m.step == "silence-procedure-1" and m.state == "SG", 1, "the procedure"
    )

    async def adopted() -> bool:
        return (await operations.status(stack.client, proposal_id)).status.value == "agreed"

    await wait_for(adopted, "adoption")
    outcome = [c for c in entries("round_closed") if c["round"] == 2][0]
    assert outcome["closed_because"] == "silence procedure ended" and outcome["positions"]["SG"]["deemed"]
    assert [c["verdict"] for c in entries("round_closed")] == ["no_consensus", "passed"]
    assert_chain_intact(ledger_entries(stack, proposal_id))
    late = await acli("extend", proposal_id, "P1D", env=env)
    assert late.code == 1 and "no open consultation or round" in late.stderr
    await stack.client.get_workflow_handle(proposal_id).result()
    await verified(stack, proposal_id, tmp_path / "bundle")  # the new entries are each vouched for by the histories
    engine.dispose()
