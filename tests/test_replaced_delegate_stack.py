"""A delegate replaced mid-round, and one delegate invited again, as a coordinator does it: the real dev server,
worker, web app and CLI (`aisafe roster import --replace`, `aisafe resend --delegate`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

import operations
from devstack.demo import EXAMPLES, answer, mails_matching
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.roster import DelegateIn, load_roster_file
from models.states import MemberState
from tests.integration import acli, ledger_entries, stack_env

NEW_SG = {
    "state": "SG",
    "role": "focal_point",
    "name": "Tan Wei Ling",
    "email": "new.focal@sg.example.org",
    "timezone": "Asia/Singapore",
}


@pytest.fixture
async def stack(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[EmbeddedStack]:
    stack = EmbeddedStack(
        tmp_path / "data",
        StackPorts(web=free_port(), temporal=0, ui=None, smtp=free_port()),
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"aisafe-{uuid.uuid4().hex[:8]}",
    )
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


def roster_file(path: Path, delegates: list[DelegateIn | dict[str, str]]) -> Path:
    rows = [d if isinstance(d, dict) else d.model_dump(mode="json", exclude_none=True) for d in delegates]
    path.write_text(yaml.safe_dump({"delegates": rows}, allow_unicode=True), encoding="utf-8")
    return path


async def test_a_replaced_delegate_gets_a_link_at_once_and_the_old_link_stops_working(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    assert stack.settings and stack.client
    env = stack_env(stack)
    engine = make_engine(stack.settings.sqlalchemy_url)
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    operations.import_roster(engine, roster)
    proposal_id = await operations.propose(stack.client, engine, stack.settings, EXAMPLES / "review-round.yaml")
    mail_dir = stack.settings.mail_dir
    invited = await mails_matching(
        mail_dir, proposal_id, lambda m: m.step == "invitation" and "/act/" in m.link, 22, "22 invitations"
    )

    singapore = [d for d in roster.delegates if d.state is MemberState.SG]
    old, kept = singapore[0], singapore[1:]
    old_link = next(m.link for m in invited if m.to.endswith(f"<{old.email}>") or m.to == old.email)
    replaced = await acli(
        "roster", "import", str(roster_file(tmp_path / "sg.yaml", [*kept, NEW_SG])), "--replace", "--json", env=env
    )
    assert replaced.code == 0, replaced.stderr
    report = replaced.json()
    assert (report["added"], report["removed"], report["rounds_not_told"]) == (1, 1, None)
    [told] = report["rounds"]
    new_id = DelegateIn.model_validate(NEW_SG).delegate_id
    assert told["state"] == "SG" and told["withdrawn"] == [old.delegate_id] and told["invited"] == [new_id]

    [fresh] = await mails_matching(
        mail_dir, proposal_id, lambda m: m.step.startswith("replaced-") and "/act/" in m.link, 1, "the new link"
    )
    assert NEW_SG["email"] in fresh.to and fresh.state == "SG"
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(old_link)
        assert page.status_code == 403 and "no longer on the roster" in page.text
        await answer(http, fresh.link, "approve")
    [entry] = [json.loads(e.payload_json) for e in ledger_entries(stack, proposal_id) if e.kind == "delegates_replaced"]
    assert entry["withdrawn"] == [old.delegate_id] and entry["invited"] == [new_id]
    [position] = [json.loads(e.payload_json) for e in ledger_entries(stack, proposal_id) if e.kind == "position"]
    assert (position["state"], position["delegate_id"]) == ("SG", new_id)

    # One delegate of Malaysia is written to again, with the state following from the id.
    malaysia = next(d for d in roster.delegates if d.state is MemberState.MY)
    again = await acli("resend", proposal_id, "--delegate", malaysia.delegate_id, "--json", env=env)
    assert again.code == 0, again.stderr
    assert again.json()["state"] == "MY" and again.json()["delegate_ids"] == [malaysia.delegate_id]
    [resent] = await mails_matching(
        mail_dir, proposal_id, lambda m: m.step.startswith("resend-") and "/act/" in m.link, 1, "the resent link"
    )
    assert malaysia.email in resent.to
    mismatch = await acli("resend", proposal_id, "--delegate", malaysia.delegate_id, "--state", "SG", env=env)
    assert mismatch.code == 1 and "speaks for MY, not for SG" in mismatch.stderr
    stranger = await acli("resend", proposal_id, "--delegate", "MY-0000000000000000", env=env)
    assert stranger.code == 1 and "not on the roster for MY" in stranger.stderr
    neither = await acli("resend", proposal_id, env=env)
    assert neither.code == 2 and "--delegate" in neither.stderr

    # Temporal out of reach: the roster is still imported, and the coordinator is told what is left to do.
    back = await acli(
        "roster",
        "import",
        str(roster_file(tmp_path / "sg-again.yaml", singapore)),
        "--replace",
        env={**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"},
    )
    assert back.code == 1 and "the open rounds were not told" in back.stderr and "--delegate" in back.stderr
    listed = {d["email"] for d in (await acli("roster", "show", "--json", env=env)).json()}
    assert old.email in listed and NEW_SG["email"] not in listed
    engine.dispose()
