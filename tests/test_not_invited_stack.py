"""Nobody is counted who was not asked, as a coordinator meets it: the real dev server, worker, web app and CLI,
and a relay (aiosmtpd) that answers 550 for every address of one state while another state is off the roster."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import operations
from devstack.demo import EXAMPLES, answer, mails_matching, read_mails, wait_for
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.roster import RosterFile, load_roster_file
from models.states import MemberState
from tests.integration import acli, assert_chain_intact, ledger_entries, stack_env
from tests.relay import Refusals, RefusingSink
from web.mailbox import read_mailbox

NOT_PH_OR_TL = {"BN", "KH", "ID", "LA", "MY", "MM", "SG", "TH", "VN"}


@pytest.fixture
async def relayed(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[tuple[EmbeddedStack, Refusals]]:
    """The embedded stack on the shared dev server, its mail going through a relay that refuses the Philippines."""
    refusals = Refusals(refuse={"@ph.example.org"})
    stack = EmbeddedStack(
        tmp_path / "data",
        StackPorts(web=free_port(), temporal=0, ui=None, smtp=free_port()),
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"aisafe-{uuid.uuid4().hex[:8]}",
    )
    stack.sink = RefusingSink(stack.sink.mail_dir, port=stack.ports.smtp, refusals=refusals)
    await stack.start()
    try:
        yield stack, refusals
    finally:
        await stack.stop()


async def test_states_not_invited_are_not_counted_are_shown_and_resend_lets_the_round_pass(
    relayed: tuple[EmbeddedStack, Refusals],
) -> None:
    stack, refusals = relayed
    assert stack.settings and stack.client
    env = stack_env(stack)
    engine = make_engine(stack.settings.sqlalchemy_url)
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    operations.import_roster(
        engine, RosterFile(delegates=[d for d in roster.delegates if d.state is not MemberState.TL])
    )
    proposal_id = await operations.propose(stack.client, engine, stack.settings, EXAMPLES / "review-round.yaml")
    mail_dir = stack.settings.mail_dir

    invited = await mails_matching(
        mail_dir, proposal_id, lambda m: m.step == "invitation" and "/act/" in m.link, 18, "18 invitations"
    )
    assert {m.state for m in invited} == NOT_PH_OR_TL

    async def recorded(kind: str, count: int) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []

        async def there() -> bool:
            nonlocal found
            found = [json.loads(e.payload_json) for e in ledger_entries(stack, proposal_id) if e.kind == kind]
            return len(found) >= count

        await wait_for(there, f"{count} {kind} entries")
        return found

    not_invited = await recorded("not_invited", 2)
    assert {(p["state"], p["reason"]) for p in not_invited} == {
        ("PH", "every recipient was refused or bounced"),
        ("TL", "no delegate in role focal_point, alternate"),
    }
    [outcome] = await recorded("mail_outcome", 1)
    assert outcome["step"] == "invitation"
    recipients = outcome["recipients"]
    assert isinstance(recipients, list)
    ph = [r for r in recipients if r["state"] == "PH"]
    assert len(ph) == 2 and all(r["outcome"] == "refused" and r["code"] == 550 for r in ph)
    assert all("@" not in str(r["reply"]) for r in ph)  # the relay's text, without the address it named
    assert sum(r["outcome"] == "sent" for r in recipients) == 18
    assert "@" not in str(outcome)  # delegate ids only, never addresses

    # The coordinator is told at once, at the sender's address.
    async def alerted() -> bool:
        return any(i.aisafe.get("kind") == "alert" for i in read_mailbox(mail_dir))

    await wait_for(alerted, "the coordinator's alert")
    [alert] = [i for i in read_mailbox(mail_dir) if i.aisafe.get("kind") == "alert"]
    assert "aisafe@aisafe.example.org" in alert.to
    assert "aisafe resend" in alert.text and "TL Timor-Leste" in alert.text and "PH Philippines" in alert.text

    shown = await acli("status", proposal_id, "--json", env=env)
    assert shown.code == 0, shown.stderr
    data = shown.json()
    assert data["not_invited"] == {
        "PH": "every recipient was refused or bounced",
        "TL": "no delegate in role focal_point, alternate",
    }
    assert "not invited" in data["waiting"] and "resend" in data["waiting"]
    text = await acli("status", proposal_id, env=env)
    assert text.code == 0 and text.stdout.count("NOT INVITED") == 2 and "waiting:" in text.stdout

    # Every invited state approves: the round still cannot pass while two participants were never asked.
    async with httpx.AsyncClient(timeout=30) as http:
        first = {}
        for mail in sorted(invited, key=lambda m: m.to):
            first.setdefault(mail.state, mail.link)
        await asyncio.gather(*(answer(http, link, "approve") for link in first.values()))
        await recorded("position", 9)
        current = await operations.status(stack.client, proposal_id)
        assert current.status.value == "running" and current.round_workflow_id is not None
        assert set(current.not_invited) == {MemberState.PH, MemberState.TL}

        # Clear one-line errors, exit 1, nothing recorded.
        before = len(ledger_entries(stack, proposal_id))
        nobody = await acli("resend", proposal_id, "--state", "TL", env=env)
        assert nobody.code == 1 and nobody.stderr.strip().count("\n") == 0
        assert "TL still has nobody to write to" in nobody.stderr
        unknown = await acli("resend", proposal_id, "--state", "ZZ", env=env)
        assert unknown.code == 1 and "not a member state code" in unknown.stderr
        answered = await acli("resend", proposal_id, "--state", "MY", env=env)
        assert answered.code == 1 and "Malaysia has already answered" in answered.stderr
        bad = await acli("resend", proposal_id, "--state", "PH", "--deadline", "seven days", env=env)
        assert bad.code == 1 and "ISO 8601" in bad.stderr
        assert len(ledger_entries(stack, proposal_id)) == before

        # The roster is fixed and the relay takes the Philippines' mail again: both are invited.
        operations.import_roster(engine, roster)
        refusals.refuse.clear()
        for state, extra in (("TL", []), ("PH", ["--deadline", "P7D"])):
            done = await acli("resend", proposal_id, "--state", state, *extra, "--json", env=env)
            assert done.code == 0, done.stderr
            assert done.json()["state"] == state and len(done.json()["delegate_ids"]) == 2
        resent = await recorded("invitation_resent", 2)
        assert {p["state"] for p in resent} == {"PH", "TL"}
        assert (await operations.status(stack.client, proposal_id)).not_invited == {}

        links = await mails_matching(
            mail_dir, proposal_id, lambda m: m.step.startswith("resend-") and "/act/" in m.link, 4, "4 resent links"
        )
        assert {m.state for m in links} == {"PH", "TL"}
        again = {}
        for mail in sorted(links, key=lambda m: m.to):
            again.setdefault(mail.state, mail.link)
        await asyncio.gather(*(answer(http, link, "approve") for link in again.values()))

    async def adopted() -> bool:
        return (await operations.status(stack.client, proposal_id)).status.value == "agreed"

    await wait_for(adopted, "adoption")
    await stack.client.get_workflow_handle(proposal_id).result()
    entries = ledger_entries(stack, proposal_id)
    assert_chain_intact(entries)
    closed = next(json.loads(e.payload_json) for e in entries if e.kind == "round_closed")
    assert closed["closed_because"] == "all states answered"
    assert all(not p["deemed"] for p in closed["positions"].values()) and len(closed["positions"]) == 11

    # Each answering delegate got a receipt, once per decision.
    links_used = {*first.values(), *again.values()}
    answering = sorted(m.to for m in read_mails(mail_dir, proposal_id) if m.link in links_used)
    receipts = [
        i
        for i in read_mailbox(mail_dir)
        if i.aisafe.get("proposal") == proposal_id and i.subject.startswith("[ASEAN AI SAFE] Your answer for")
    ]
    assert sorted(i.to for i in receipts) == answering and len(answering) == 11
    assert all("If this was not you, open your link again before the deadline" in i.text for i in receipts)

    late = await acli("resend", proposal_id, "--state", "TL", env=env)
    assert late.code == 1 and "has no open round" in late.stderr
    engine.dispose()
