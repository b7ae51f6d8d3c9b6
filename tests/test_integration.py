"""The engine as users meet it: real dev server, real SMTP sink, real web app and database, the real CLI."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import devstack.stack
import operations
from devstack.demo import EXAMPLES, answer, invitations, open_form, read_mails, wait_for
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.roster import load_roster_file
from models.states import MemberState
from models.tokens import sign_action, verify_action
from tests.integration import (
    acli,
    assert_chain_intact,
    cli,
    ledger_entries,
    postgres_database,
    stack_env,
    start_worker,
)

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def address_of(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


async def make_stack(tmp_path: Path, dev_env: WorkflowEnvironment, *, run_worker: bool = True) -> EmbeddedStack:
    stack = EmbeddedStack(
        tmp_path / "data",
        StackPorts(web=free_port(), temporal=0, ui=None, smtp=free_port()),
        temporal_address=address_of(dev_env),
        task_queue=f"aisafe-{uuid.uuid4().hex[:8]}",
        run_worker=run_worker,
    )
    await stack.start()
    assert stack.reused_temporal
    return stack


@pytest.fixture(params=["sqlite", "postgresql"])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[EmbeddedStack]:
    """The embedded stack on the shared dev server, its ledger on SQLite and (when CI provides it) PostgreSQL."""
    if request.param == "sqlite":
        stack = await make_stack(tmp_path, dev_env)
        yield stack
        await stack.stop()
        return
    with postgres_database() as url:
        monkeypatch.setenv("AISAFE_DATABASE_URL", url)
        stack = await make_stack(tmp_path, dev_env)
        assert stack.settings and stack.settings.sqlalchemy_url == url
        yield stack
        await stack.stop()


async def propose_sample(stack: EmbeddedStack) -> str:
    assert stack.settings and stack.client
    engine = make_engine(stack.settings.sqlalchemy_url)
    operations.import_roster(engine, load_roster_file(EXAMPLES / "roster.yaml"))
    return await operations.propose(stack.client, engine, stack.settings, EXAMPLES / "review-round.yaml")


def focal_points(mails: list) -> dict[str, str]:  # type: ignore[type-arg]
    """One link per state: the first delegate of each state in address order."""
    chosen: dict[str, str] = {}
    for mail in sorted(mails, key=lambda m: m.to):
        chosen.setdefault(mail.state, mail.link)
    return chosen


async def test_a_round_decided_through_emailed_links(stack: EmbeddedStack) -> None:
    assert stack.settings and stack.client
    proposal_id = await propose_sample(stack)
    mails = await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22)
    assert len(mails) == 22 and len({m.message_id for m in mails}) == 22
    assert {m.state for m in mails} == {"BN", "KH", "ID", "LA", "MY", "MM", "PH", "SG", "TH", "TL", "VN"}

    async with httpx.AsyncClient(timeout=30) as http:
        # Mail scanners prefetch links: opening every link (twice) records nothing.
        for mail in mails:
            for _ in range(2):
                page = await http.get(mail.link)
                assert page.status_code == 200
                assert "ASEAN AI SAFE Operational Framework" in page.text
                assert 'method="post"' in page.text and page.text.count('name="position"') == 5
        assert [e.kind for e in ledger_entries(stack, proposal_id)].count("position") == 0
        status = await operations.status(stack.client, proposal_id)
        assert status.stage == "member_review" and set(status.positions.values()) == {None}

        receipts = await asyncio.gather(*(answer(http, link, "approve") for link in focal_points(mails).values()))
    assert len(set(receipts)) == 11

    async def adopted() -> bool:
        return (await operations.status(stack.client, proposal_id)).status.value == "agreed"  # type: ignore[union-attr]

    await wait_for(adopted, "adoption")
    await stack.client.get_workflow_handle(proposal_id).result()  # the outcome notice and the closing entry
    entries = ledger_entries(stack, proposal_id)
    assert_chain_intact(entries)
    positions = [e for e in entries if e.kind == "position"]
    assert len(positions) == 11
    assert {e.entry_hash for e in positions} == set(receipts)  # each receipt names its ledger entry
    assert entries[-1].kind == "proposal_closed"

    shown = await acli("status", proposal_id, "--json", env=stack_env(stack))
    assert shown.code == 0, shown.stderr
    data = shown.json()
    assert {"id", "title", "stage", "status", "round", "positions", "deadline"} <= data.keys()
    assert data["id"] == proposal_id and data["status"] == "agreed" and data["round"] == 1
    assert data["positions"] == dict.fromkeys(
        ["BN", "KH", "ID", "LA", "MY", "MM", "PH", "SG", "TH", "TL", "VN"], "approve"
    )
    human = await acli("status", proposal_id, env=stack_env(stack))
    assert human.code == 0 and "agreed by the WG-AI" in human.stdout and "Viet Nam" in human.stdout

    listed = await acli("list", "--json", env=stack_env(stack))
    assert listed.code == 0 and proposal_id in [p["id"] for p in listed.json()]


async def test_repeated_post_gives_the_same_receipt_and_the_latest_answer_stands(stack: EmbeddedStack) -> None:
    assert stack.settings and stack.client
    proposal_id = await propose_sample(stack)
    links = focal_points(await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22))
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(links["PH"])
        form = {"csrf": _CSRF.search(page.text).group(1), "position": "object", "reason": "needs safeguards"}  # type: ignore[union-attr]
        first = await http.post(links["PH"], data=form)
        again = await http.post(links["PH"], data=form)
        assert first.status_code == again.status_code == 200
        hash_of = re.compile(r'id="entry-hash">([0-9a-f]{64})<')
        assert hash_of.search(first.text).group(1) == hash_of.search(again.text).group(1)  # type: ignore[union-attr]
        assert [e.kind for e in ledger_entries(stack, proposal_id)].count("position") == 1

        # Opening the link again shows the state's current position; a new answer replaces it.
        page = await http.get(links["PH"])
        assert "current position" in page.text and "Object" in page.text
        await answer(http, links["PH"], "approve")
        status = await operations.status(stack.client, proposal_id)
        assert status.positions["PH"].value == "approve"  # type: ignore[index,union-attr]

        for state, link in links.items():
            if state != "PH":
                await answer(http, link, "approve")

        async def closed() -> bool:
            return (await operations.status(stack.client, proposal_id)).status.value == "agreed"  # type: ignore[union-attr]

        await wait_for(closed, "adoption")
        # After the round closed: the old form still gets its receipt; a new form gets a clear "closed" page.
        replay = await http.post(links["PH"], data=form)
        assert replay.status_code == 200 and hash_of.search(replay.text)
        closed_page = await http.get(links["PH"])
        assert closed_page.status_code == 410 and "closed" in closed_page.text
    assert [e.kind for e in ledger_entries(stack, proposal_id)].count("position") == 12


async def test_a_revoked_delegates_links_stop_working(stack: EmbeddedStack) -> None:
    assert stack.settings and stack.client
    proposal_id = await propose_sample(stack)
    mails = await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22)
    singapore = sorted((m for m in mails if m.state == "SG"), key=lambda m: m.to)
    env = stack_env(stack) | {"AISAFE_DATABASE_URL": stack.settings.sqlalchemy_url}
    revoked = await acli("roster", "revoke", singapore[0].to, "--state", "SG", env=env)
    assert revoked.code == 0, revoked.stderr
    unknown = await acli("roster", "revoke", "nobody@example.org", env=env)
    assert unknown.code == 2 and "no delegate" in unknown.stderr
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(singapore[0].link)
        assert page.status_code == 403 and "no longer on the roster" in page.text
        still = await http.get(singapore[1].link)  # the state's other delegate can still answer
        assert still.status_code == 200
    listed = (await acli("roster", "show", "--json", env=env)).json()
    assert not [d for d in listed if d["email"] in singapore[0].to]  # off the roster
    assert len(listed) == 53 - 1


async def test_bad_links_and_forms_get_clear_4xx_pages(stack: EmbeddedStack) -> None:
    assert stack.settings and stack.client
    proposal_id = await propose_sample(stack)
    mails = await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22)
    link = mails[0].link
    token = link.rsplit("/", 1)[1]
    claims = verify_action(stack.settings.signing_key, token)
    base = stack.web_url
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    forged = sign_action("not-the-key", claims)
    expired = sign_action(
        stack.settings.signing_key, claims.model_copy(update={"expires_at": claims.expires_at.replace(year=2020)})
    )
    stranger = sign_action(stack.settings.signing_key, claims.model_copy(update={"delegate_id": "MY-0000000000000000"}))
    cross_state = sign_action(
        stack.settings.signing_key,
        claims.model_copy(update={"state": MemberState.VN if claims.state != MemberState.VN else MemberState.MY}),
    )
    async with httpx.AsyncClient(timeout=30) as http:
        cases = {
            f"{base}/act/{tampered}": 400,
            f"{base}/act/{forged}": 400,
            f"{base}/act/garbage": 400,
            f"{base}/act/{expired}": 410,
            f"{base}/act/{stranger}": 403,
            f"{base}/act/{cross_state}": 403,
        }
        for url, expected in cases.items():
            for method in ("GET", "POST"):
                response = await http.request(method, url, data={"position": "approve", "csrf": "x.y"})
                assert response.status_code == expected, (url, method, response.status_code)
                assert "<h1>" in response.text and "Traceback" not in response.text

        page = await http.get(link)
        csrf = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        no_csrf = await http.post(link, data={"position": "approve"})
        assert no_csrf.status_code == 403
        altered = csrf[:-1] + ("1" if csrf.endswith("0") else "0")  # always a different MAC
        wrong_csrf = await http.post(link, data={"position": "approve", "csrf": altered})
        assert wrong_csrf.status_code == 403
        bad_position = await http.post(link, data={"position": "veto", "csrf": csrf})
        assert bad_position.status_code == 400 and "Nothing was recorded: choose one" in bad_position.text
        no_reason = await http.post(link, data={"position": "object", "csrf": csrf, "reason": "  "})
        assert no_reason.status_code == 400 and "reason is required" in no_reason.text
        unknown = await http.get(f"{base}/no/such/page")
        assert unknown.status_code == 404
    assert [e.kind for e in ledger_entries(stack, proposal_id)].count("position") == 0


async def test_worker_killed_mid_round_loses_nothing(
    tmp_path: Path, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISAFE_ACCEPT_TIMEOUT", "120")  # here the POSTs wait for the worker (no Signal fallback)
    stack = await make_stack(tmp_path, dev_env, run_worker=False)
    env = stack_env(stack)

    worker = start_worker(env)
    try:
        assert stack.settings and stack.client
        proposal_id = await propose_sample(stack)
        links = focal_points(await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22))
        states = sorted(links)
        async with httpx.AsyncClient(timeout=120) as http:
            for state in states[:4]:
                await answer(http, links[state], "approve")
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            # Delegates keep clicking while no worker runs; their POSTs wait, none is lost.
            pending = [asyncio.create_task(answer(http, links[s], "approve")) for s in states[4:8]]
            await asyncio.sleep(1.5)
            assert not any(t.done() for t in pending)
            worker = start_worker(env)
            await asyncio.gather(*pending)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker(env)
            for state in states[8:]:
                await answer(http, links[state], "approve")

        async def adopted() -> bool:
            return (await operations.status(stack.client, proposal_id)).status.value == "agreed"  # type: ignore[union-attr]

        await wait_for(adopted, "adoption", timeout=90)
        await stack.client.get_workflow_handle(proposal_id).result()
        entries = ledger_entries(stack, proposal_id)
        assert_chain_intact(entries)
        assert [e.kind for e in entries].count("position") == 11
        assert [e.kind for e in entries].count("round_opened") == 1
        mails = read_mails(stack.settings.mail_dir, proposal_id)
        assert len({m.message_id for m in mails}) == len(mails)  # no email sent twice
        assert len([m for m in mails if m.step == "invitation"]) == 22
    finally:
        worker.kill()
        worker.wait()
        await stack.stop()


async def test_a_position_given_while_no_worker_runs_is_received_then_recorded_once(
    tmp_path: Path, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISAFE_ACCEPT_TIMEOUT", "2")
    stack = await make_stack(tmp_path, dev_env, run_worker=False)
    env = stack_env(stack)

    worker = start_worker(env)
    try:
        assert stack.settings and stack.client
        proposal_id = await propose_sample(stack)
        links = focal_points(await invitations(stack.settings.mail_dir, proposal_id, 1, expected=22))
        state, link = sorted(links.items())[0]
        async with httpx.AsyncClient(timeout=60) as http:
            form = {"csrf": await open_form(http, link), "position": "approve_with_reservation", "reason": "noted"}
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            received = [await http.post(link, data=form) for _ in range(2)]  # and a retry
            for page in received:
                assert page.status_code == 202 and "Answer received" in page.text
            decision = re.search(r'id="decision-id">([^<]+)<', received[0].text).group(1)  # type: ignore[union-attr]
            assert [e for e in ledger_entries(stack, proposal_id) if e.kind == "position"] == []

            worker = start_worker(env)

            async def recorded() -> bool:
                return any(e.kind == "position" for e in ledger_entries(stack, proposal_id))

            await wait_for(recorded, "the position to be recorded", timeout=60)
            again = await http.post(link, data=form)  # the same form once more: the receipt, not a new answer
            assert again.status_code == 200 and decision in again.text and "Position recorded" in again.text
            page = await http.get(link)
            assert "Approve with reservation" in page.text  # the same link shows the answer as recorded
        positions = [e for e in ledger_entries(stack, proposal_id) if e.kind == "position"]
        assert len(positions) == 1 and decision in positions[0].idempotency_key
        history = await stack.client.get_workflow_handle(f"{proposal_id}.round-1").fetch_history()
        signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
        assert len(signals) == 2  # both deliveries reached the round; one entry was recorded
    finally:
        worker.kill()
        worker.wait()
        await stack.stop()


async def test_cli_input_errors_and_roster_import(tmp_path: Path, dev_env: WorkflowEnvironment) -> None:
    env = {
        **stack_env_for(tmp_path, address_of(dev_env)),
    }
    first = await acli("roster", "import", str(EXAMPLES / "roster.yaml"), "--json", env=env)
    assert first.code == 0, first.stderr
    assert first.json() == {"added": 53, "updated": 0, "unchanged": 0}
    second = await acli("roster", "import", str(EXAMPLES / "roster.yaml"), "--json", env=env)
    assert second.json() == {"added": 0, "updated": 0, "unchanged": 53}
    shown = await acli("roster", "show", "--json", env=env)
    rows = shown.json()
    assert len(rows) == 53 and all({"state", "role", "name", "email", "timezone"} <= set(r) for r in rows)
    assert sum(1 for r in rows if r["role"] == "stakeholder" and r["state"] is None and r["sector"]) == 8

    bad = tmp_path / "bad.yaml"
    bad.write_text("title: X\nkind: operational_framework\ndocument: missing.md\nprocess:\n  stages: []\n")
    result = await acli("propose", str(bad), env=env)
    assert result.code == 2 and "bad.yaml" in result.stderr and "stages" in result.stderr
    assert "Traceback" not in result.stderr
    missing = await acli("propose", str(tmp_path / "nope.yaml"), env=env)
    assert missing.code == 2 and "no such file" in missing.stderr
    unknown = await acli("status", "no-such-proposal", env=env)
    assert unknown.code == 2 and "no proposal" in unknown.stderr
    usage = await acli("status", env=env)
    assert usage.code == 2
    helped = await acli("--help", env=env)
    assert helped.code == 0 and "propose" in helped.stdout
    unreachable = await acli("status", "x", env={**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert unreachable.code == 1 and "cannot reach Temporal" in unreachable.stderr


def stack_env_for(tmp_path: Path, address: str) -> dict[str, str]:
    import os

    # AISAFE_DEV=1: a shell beside `aisafe dev` uses the dev payload key of its data dir.
    return {**os.environ, "TEMPORAL_ADDRESS": address, "AISAFE_DATA_DIR": str(tmp_path / "cli-data"), "AISAFE_DEV": "1"}


async def test_demo_command_runs_a_whole_cycle(tmp_path: Path) -> None:
    import os

    result = await asyncio.to_thread(
        cli,
        "demo",
        "--json",
        env={**os.environ, "AISAFE_DATA_DIR": str(tmp_path / "demo"), "AISAFE_WEB_PORT": str(free_port())},
        timeout=180,
    )
    assert result.code == 0, result.stderr[-2000:]
    data = result.json()
    assert data["status"] == "endorsed"
    assert [(s["type"], s["status"], s["decision"]) for s in data["stages"]] == [
        ("drafting", "passed", None),
        ("member_review", "passed", "recommended_for_endorsement"),
        ("consultation", "passed", None),
        ("member_review", "passed", "recommended_for_endorsement"),
        ("senior_officials", "passed", "endorsed"),
        ("ministerial", "passed", "endorsed"),
        ("funding", "passed", None),
        ("summit_report", "passed", "reported"),
    ]
    # The first review (overdue, then a silence procedure), the final review's two rounds, ADGSOM, the ad referendum
    # of the state absent from ADGMIN, and funding's indications and confirmations.
    verdicts = ["passed", "changes_requested", "passed", "passed", "passed", "passed", "passed"]
    assert [r["verdict"] for r in data["rounds"]] == verdicts
    first = data["rounds"][0]["positions"]
    assert first["VN"]["deemed"] and first["VN"]["position"] == "approve"
    assert data["comments"] == 3
    # The first review: 10 states (Viet Nam deemed to concur); the final review's rounds 2 and 3: 11 states each;
    # ADGSOM: 6 concur explicitly; ADGMIN: the absent Lao PDR concurs; funding: 11 indicate, 10 offices confirm.
    assert data["receipts"] == 10 + 11 + 11 + 6 + 1 + 11 + 10
    funding = data["stages"][-2]["details"]
    ministerial = data["stages"][5]["details"]
    assert ministerial["meeting"]["absent"] == ["LA"] and ministerial["ad_referendum"]["verdict"] == "passed"
    assert funding["participating"] and "MM" not in funding["participating"]
    assert Decimal(funding["total"]) >= Decimal(funding["budget_target"])
    assert funding["partner_pledges"]
    assert funding["not_confirmed"] == [] and "MM" not in funding["confirmed_by_states"]
    assert [p["activities"] for p in funding["trust_fund"]] == [["capacity building"]]


async def test_a_dev_server_whose_frontend_is_not_healthy_yet_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in a `make test` run: the dev server's port was open, its frontend not yet serving, and the stack's
    first connection failed. The stack now retries that refusal while the server it started is running."""
    stack = EmbeddedStack(tmp_path, StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port()))
    try:
        await stack.start()
        assert stack.settings is not None
        real_connect = devstack.stack.connect
        refusals = 2
        not_healthy = RuntimeError(
            "Failed client connect: `get_system_info` call error after connection: Status { code: Unavailable, "
            'message: "Frontend is not healthy yet" }'
        )

        async def starting(settings: object) -> object:
            nonlocal refusals
            if refusals:
                refusals -= 1
                raise not_healthy
            return await real_connect(stack.settings)

        monkeypatch.setattr(devstack.stack, "connect", starting)
        client = await stack._connect(stack.settings)  # noqa: SLF001 (the step under test)
        assert refusals == 0 and await client.count_workflows() is not None

        async def broken(settings: object) -> object:
            raise RuntimeError("Failed client connect: Status { code: PermissionDenied }")

        monkeypatch.setattr(devstack.stack, "connect", broken)
        with pytest.raises(RuntimeError, match="PermissionDenied"):  # any other failure is not retried
            await stack._connect(stack.settings)  # noqa: SLF001
        refusals = 100
        monkeypatch.setattr(devstack.stack, "connect", starting)
        with pytest.raises(RuntimeError, match="not healthy yet"):  # nor this one for ever
            await stack._connect(stack.settings, timeout=0.3)  # noqa: SLF001
    finally:
        await stack.stop()


async def test_a_partner_pledge_earmarked_to_activities_through_the_cli(stack: EmbeddedStack, tmp_path: Path) -> None:
    assert stack.settings and stack.client
    operations.import_roster(make_engine(stack.settings.sqlalchemy_url), load_roster_file(EXAMPLES / "roster.yaml"))
    folder = tmp_path / "funding"
    folder.mkdir()
    (folder / "funding.md").write_text("# Funding model\n\nEqual shares.\n", encoding="utf-8")
    (folder / "funding.yaml").write_text(
        "title: ASEAN AI SAFE Funding Model\nkind: funding_model\ndocument: funding.md\nprocess:\n  stages:\n"
        "    - type: funding\n      budget_target: '1100000.00'\n      deadline: P30D\n      reminders: []\n",
        encoding="utf-8",
    )
    env = stack_env(stack)
    proposed = await acli("propose", str(folder / "funding.yaml"), "--json", env=env)
    assert proposed.code == 0, proposed.stderr
    proposal_id = proposed.json()["id"]

    earmarked = ("--activity", "capacity building", "--activity", "testing cooperation")
    pledge = ("pledge", proposal_id, "--partner", "Japan", "--amount", "150000", *earmarked)
    recorded = await acli(*pledge, "--json", env=env)
    assert recorded.code == 0, recorded.stderr
    assert recorded.json()["activities"] == ["capacity building", "testing cooperation"]
    said = await acli(
        "pledge", proposal_id, "--partner", "Korea", "--amount", "80000", "--activity", "secretariat", env=env
    )
    assert said.code == 0, said.stderr
    assert "pledge recorded: Korea 80,000.00 to the trust fund, earmarked to secretariat" in said.stdout

    too_short = await acli("pledge", proposal_id, "--partner", "Korea", "--amount", "1", "--activity", "x", env=env)
    assert too_short.code == 2 and "activities" in too_short.stderr and "Traceback" not in too_short.stderr

    shown = await acli("status", proposal_id, env=env)
    assert shown.code == 0, shown.stderr
    assert "trust fund (dialogue partners' pledges, apart from the core budget):" in shown.stdout
    assert "Japan: 150,000.00 — earmarked to capacity building; testing cooperation" in shown.stdout
    entries = [json.loads(e.payload_json) for e in ledger_entries(stack, proposal_id) if e.kind == "partner_pledge"]
    assert [(e["partner"], e["activities"]) for e in entries] == [
        ("Japan", ["capacity building", "testing cooperation"]),
        ("Korea", ["secretariat"]),
    ]
    withdrawn = await acli("withdraw", proposal_id, "--reason", "test finished", env=env)
    assert withdrawn.code == 0, withdrawn.stderr
