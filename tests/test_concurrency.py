"""Coordinator steps and positions sent at the same moment, on the real dev server: what the workflow accepted is
exactly what the ledger holds.

Two coordinators, or one script, can send the same step at once. For each step, at least eight at a time: every
accepted one is in the ledger exactly once under its own number, the status agrees with the ledger, the ones the
earlier ones made impossible are refused with a clear message, and the exported bundle verifies.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

import operations
from activities.ledger import append_entry
from devstack.demo import EXAMPLES, answer, invitations, wait_for
from devstack.stack import EmbeddedStack
from models.db import make_engine, write_session
from models.messages import LedgerAppend, WithdrawInput
from models.roster import load_roster_file
from models.states import MemberState
from models.tokens import meeting_workflow_id
from tests.integration import acli, assert_chain_intact, ledger_entries, postgres_database, stack_env
from tests.test_integration import make_stack
from workflows.meeting import MeetingWorkflow
from workflows.proposal import ProposalWorkflow

AT_ONCE = 8


@pytest.fixture(params=["sqlite", "postgresql"])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[EmbeddedStack]:
    if request.param == "postgresql":
        with postgres_database() as url:
            monkeypatch.setenv("AISAFE_DATABASE_URL", url)
            stack = await make_stack(tmp_path, dev_env)
            yield stack
            await stack.stop()
        return
    stack = await make_stack(tmp_path, dev_env)
    yield stack
    await stack.stop()


def proposal_file(folder: Path, *stages: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "operational-framework.md", folder / "text.md")
    path = folder / f"proposal-{uuid.uuid4().hex[:6]}.yaml"
    body = {
        "title": "ASEAN AI SAFE Operational Framework",
        "kind": "operational_framework",
        "lead_state": "MY",
        "document": "text.md",
        "process": {"stages": list(stages)},
    }
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


async def launch(stack: EmbeddedStack, path: Path) -> str:
    assert stack.client and stack.settings
    engine = make_engine(stack.settings.sqlalchemy_url)
    operations.import_roster(engine, load_roster_file(EXAMPLES / "roster.yaml"))
    proposal_id = await operations.propose(stack.client, engine, stack.settings, path)

    async def started() -> bool:
        return any(e.kind == "stage_started" for e in ledger_entries(stack, proposal_id))

    await wait_for(started, "the first stage")
    return proposal_id


@contextmanager
def ledger_stalled(stack: EmbeddedStack, proposal_id: str) -> Iterator[None]:
    """Hold the proposal's ledger write lock, as a slow or briefly unavailable database would: the first step's
    write waits, and the steps sent meanwhile are accepted while it is still in flight."""
    assert stack.settings
    engine = make_engine(stack.settings.sqlalchemy_url)
    with write_session(engine) as session:  # on SQLite, its first statement takes the database's write lock
        if engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:p, 0))").bindparams(p=proposal_id))
        else:
            session.execute(text("DELETE FROM ledger_entry WHERE 0"))
        try:
            yield
        finally:
            session.rollback()
    engine.dispose()


async def all_accepted_while_stalled(
    stack: EmbeddedStack, proposal_id: str, workflow_id: str, update: Any, args: list[tuple[Any, ...]]
) -> list[Any]:
    """Send one Update per argument while the ledger is stalled; wait until the workflow has accepted every one,
    then let the ledger go and return each Update's result (or the error it failed with)."""
    assert stack.client
    handle = stack.client.get_workflow_handle(workflow_id)
    with ledger_stalled(stack, proposal_id):
        started = await asyncio.gather(
            *(handle.start_update(update, *arg, wait_for_stage=WorkflowUpdateStage.ACCEPTED) for arg in args)
        )
    return await asyncio.gather(*(u.result() for u in started), return_exceptions=True)


def accepted_and_refused(results: list[Any]) -> tuple[list[Any], list[str]]:
    """Results split into those accepted and the messages the others were refused with (by operations, as the
    CLI shows them, or by the workflow when the Update was sent directly)."""
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [str(r.cause if isinstance(r, WorkflowUpdateFailedError) else r) for r in results if r not in accepted]
    expected = (operations.OperationError, WorkflowUpdateFailedError)
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, expected)]
    assert not unexpected, unexpected
    return accepted, refused


def kinds(stack: EmbeddedStack, proposal_id: str, kind: str) -> list[Any]:
    return [e for e in ledger_entries(stack, proposal_id) if e.kind == kind]


async def verified(stack: EmbeddedStack, proposal_id: str, out: Path) -> None:
    """Export the proposal's bundle and verify it, as an auditor would."""
    env = stack_env(stack)
    exported = await acli("audit", "export", proposal_id, "--out", str(out), "--json", env=env)
    assert exported.code == 0, exported.stderr
    checked = await acli("audit", "verify", str(out), "--public-key", exported.json()["public_key"], "--json")
    assert checked.code == 0, checked.stdout + checked.stderr
    assert_chain_intact(ledger_entries(stack, proposal_id))


DRAFTING = {"type": "drafting"}
REVIEW = {"type": "member_review", "rule": "consensus", "deadline": "P1D", "reminders": [], "max_rounds": 2}
FUNDING = {
    "type": "funding",
    "model": "voluntary",
    "budget_target": "1000000.00",
    "currency": "USD",
    "deadline": "P1D",
    "reminders": [],
    "rule": "asean_minus_x",
}


async def test_concurrent_revisions_submissions_and_positions_are_each_recorded_once(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    assert stack.client and stack.settings
    proposal_id = await launch(stack, proposal_file(tmp_path / "p", DRAFTING, REVIEW))
    engine = make_engine(stack.settings.sqlalchemy_url)
    texts = []
    for n in range(AT_ONCE):
        texts.append(tmp_path / f"v{n}.md")
        texts[-1].write_text(f"# ASEAN AI SAFE Operational Framework\n\nDraft {n} of the text.\n")

    results = await asyncio.gather(
        *(operations.revise(stack.client, engine, proposal_id, t) for t in texts), return_exceptions=True
    )
    revised, refused = accepted_and_refused(results)
    assert refused == [] and sorted(d.version for d in revised) == list(range(2, AT_ONCE + 2))
    uploaded = kinds(stack, proposal_id, "version_uploaded")
    assert len(uploaded) == AT_ONCE and len({e.seq for e in uploaded}) == AT_ONCE
    in_ledger = {
        json.loads(e.payload_json)["document"]["version"]: json.loads(e.payload_json)["document"]["sha256"]
        for e in uploaded
    }
    assert in_ledger == {d.version: d.sha256 for d in revised}
    status = await operations.status(stack.client, proposal_id)
    assert [v.version for v in status.versions] == list(range(1, AT_ONCE + 2))
    assert {v.version: v.sha256 for v in status.versions[1:]} == in_ledger

    results = await all_accepted_while_stalled(stack, proposal_id, proposal_id, ProposalWorkflow.submit, [()] * AT_ONCE)
    submitted, refused = accepted_and_refused(results)
    assert submitted == [status.document.sha256]  # one submission; the others found drafting over
    assert len(refused) == AT_ONCE - 1 and all("only a proposal in drafting" in r for r in refused), refused
    assert len(kinds(stack, proposal_id, "submitted")) == 1
    late = texts[0].with_name("late.md")
    late.write_text("# A text sent after the submission\n")
    with pytest.raises(operations.OperationError, match="only in drafting or after changes were requested"):
        await operations.revise(stack.client, engine, proposal_id, late)

    # Every delegate of ten states answers at once (two per state; the eleventh state waits, so the round stays
    # open for all of them): 20 positions, each recorded once, and what each state holds is its latest in ledger
    # order.
    mails = await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22)
    ordered = sorted(mails, key=lambda m: m.to)
    choices = {m.link: ("approve" if i % 2 else "abstain") for i, m in enumerate(ordered) if m.state != "TL"}
    async with httpx.AsyncClient(timeout=60) as http:
        receipts = await asyncio.gather(*(answer(http, link, choice) for link, choice in choices.items()))
        positions = kinds(stack, proposal_id, "position")
        assert len(positions) == 20 and {e.entry_hash for e in positions} == set(receipts)
        assert len({e.seq for e in positions}) == 20
        latest = {json.loads(e.payload_json)["state"]: json.loads(e.payload_json)["position"] for e in positions}
        shown = await operations.status(stack.client, proposal_id)
        assert {s.value: p.value for s, p in shown.positions.items() if p} == latest
        await answer(http, next(m.link for m in ordered if m.state == "TL"), "approve")
    latest["TL"] = "approve"

    async def decided() -> bool:
        current = await operations.status(stack.client, proposal_id)
        return current.status.value != "running"

    await wait_for(decided, "the round's close")
    await stack.client.get_workflow_handle(proposal_id).result()
    final = await operations.status(stack.client, proposal_id)
    assert {s.value: p.position.value for s, p in final.rounds[0].positions.items()} == latest
    await verified(stack, proposal_id, tmp_path / "bundle")


async def test_concurrent_pledges_and_withdrawals_are_each_recorded_once(stack: EmbeddedStack, tmp_path: Path) -> None:
    assert stack.client
    proposal_id = await launch(stack, proposal_file(tmp_path / "p", DRAFTING, FUNDING))
    amounts = [Decimal(1000 * (n + 1)) for n in range(AT_ONCE)]

    results = await asyncio.gather(
        *(operations.pledge(stack.client, proposal_id, f"Partner {n}", a, "USD") for n, a in enumerate(amounts)),
        return_exceptions=True,
    )
    pledged, refused = accepted_and_refused(results)
    assert refused == [] and len(pledged) == AT_ONCE
    entries = kinds(stack, proposal_id, "partner_pledge")
    assert sorted(e.idempotency_key.rsplit("-", 1)[1] for e in entries) == sorted(str(n) for n in range(1, 9))
    assert sorted(Decimal(json.loads(e.payload_json)["amount"]) for e in entries) == amounts
    status = await operations.status(stack.client, proposal_id)
    assert sorted(p.amount for p in status.pledges) == amounts

    reasons = [f"withdrawn by coordinator {n}" for n in range(AT_ONCE)]
    results = await all_accepted_while_stalled(
        stack, proposal_id, proposal_id, ProposalWorkflow.withdraw, [(WithdrawInput(reason=r),) for r in reasons]
    )
    withdrawn, refused = accepted_and_refused(results)
    assert len(withdrawn) == 1 and len(refused) == AT_ONCE - 1
    assert all("the proposal is withdrawn" in r for r in refused), refused
    (entry,) = kinds(stack, proposal_id, "withdrawn")
    assert withdrawn[0].closed_reason == f"withdrawn: {json.loads(entry.payload_json)['reason']}"
    await stack.client.get_workflow_handle(proposal_id).result()
    await verified(stack, proposal_id, tmp_path / "bundle")


async def test_concurrent_meeting_records_keep_the_first_and_refuse_the_others(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    assert stack.client
    date = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    meeting = {
        "type": "senior_officials",
        "mode": "meeting",
        "date": date.isoformat(),
        "chair": "MY",
        "grace": "P1D",
        "venue": "Kuala Lumpur",
    }
    proposal_id = await launch(stack, proposal_file(tmp_path / "p", meeting))
    records = []
    for n in range(AT_ONCE):
        records.append(tmp_path / f"record-{n}.yaml")
        # Every member present: no absent state to consult ad referendum, so the proposal ends at once.
        record = {
            "summary": f"Record {n}",
            "present": [s.value for s in MemberState],
            "decision": "endorsed",
            "paragraph": "The Meeting endorsed the text.",
        }
        records[-1].write_text(json.dumps(record))

    probe = tmp_path / "probe.yaml"  # a record the meeting always refuses: once held, for being a roll call
    probe.write_text(json.dumps({"positions": {"MY": "approve"}}))

    async def held() -> bool:
        try:
            await operations.record_meeting(stack.client, proposal_id, probe)
        except operations.OperationError as refusal:
            return "not a roll call of positions" in str(refusal)
        raise AssertionError("the probe record was accepted")

    await wait_for(held, "the meeting's date", timeout=60)

    # All eight accepted while the first one's ledger write is still in flight: one is recorded, the others
    # are refused by the meeting itself.
    meeting_id = meeting_workflow_id(proposal_id, 0)
    results = await all_accepted_while_stalled(
        stack,
        proposal_id,
        meeting_id,
        MeetingWorkflow.record_meeting,
        [(operations.load_meeting_record(r),) for r in records],
    )
    recorded, refused = accepted_and_refused(results)
    assert len(recorded) == 1 and len(refused) == AT_ONCE - 1, results
    assert all("already settled" in r for r in refused), refused
    (invited,) = kinds(stack, proposal_id, "mail_outcome")  # who the meeting's invitation reached is recorded
    outcomes = json.loads(invited.payload_json)["recipients"]
    assert outcomes and {o["outcome"] for o in outcomes} == {"sent"} and "@" not in invited.payload_json
    (entry,) = kinds(stack, proposal_id, "meeting_recorded")
    assert json.loads(entry.payload_json)["summary"] == recorded[0].summary
    await stack.client.get_workflow_handle(proposal_id).result()
    final = await operations.status(stack.client, proposal_id)
    assert final.stages[0].details["meeting"]["record"]["summary"] == recorded[0].summary
    await verified(stack, proposal_id, tmp_path / "bundle")


async def test_a_step_whose_ledger_key_holds_other_content_is_refused_and_the_cli_says_so(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    """The strict ledger: a key already holding other content is never answered with the earlier receipt."""
    assert stack.client and stack.settings
    proposal_id = await launch(stack, proposal_file(tmp_path / "p", DRAFTING, REVIEW))
    engine = make_engine(stack.settings.sqlalchemy_url)
    with write_session(engine) as session:  # an entry already under the key the next revision will use
        append_entry(
            session,
            LedgerAppend(
                proposal_id=proposal_id,
                kind="version_uploaded",
                idempotency_key=f"{proposal_id}:version-2",
                payload={"document": {"sha256": "0" * 64, "version": 2, "filename": "other.md", "size": 1}},
            ),
        )
        session.commit()
    before = ledger_entries(stack, proposal_id)
    text_v2 = tmp_path / "v2.md"
    text_v2.write_text("# ASEAN AI SAFE Operational Framework\n\nA second version.\n")

    revised = await acli("revise", proposal_id, str(text_v2), env=stack_env(stack))

    assert revised.code == 1, revised.stdout + revised.stderr
    lines = revised.stderr.strip().splitlines()
    assert len(lines) == 1 and "ledger integrity" in lines[0] and f"{proposal_id}:version-2" in lines[0], lines
    assert [e.entry_hash for e in ledger_entries(stack, proposal_id)] == [e.entry_hash for e in before]
    status = await operations.status(stack.client, proposal_id)
    assert [v.version for v in status.versions] == [1]  # the workflow did not take a version it could not record
