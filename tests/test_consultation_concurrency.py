"""Consultation handlers under concurrent delivery, and the deadline against handlers still running.

The race tests hold one ledger write open (the handler is then parked at its first await) while the clock passes
the deadline, and look at what the consultation does; the concurrency tests send many Updates at once to the real
dev server and check that each accepted one is in the real ledger exactly once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.comments import CommentActivities, store_comment_body
from activities.ledger import LedgerActivities
from models.messages import (
    CommentReceipt,
    CommentSubmission,
    ConsultationInput,
    ConsultationMailing,
    ConsultationStatus,
    DispositionInput,
    DocumentRef,
    ExtendInput,
    LedgerAppend,
    LedgerReceipt,
    MailingResult,
    RespondManyInput,
)
from models.positions import Disposition
from models.roster import Sector
from models.settings import Settings
from models.tables import LedgerEntry
from models.update_retry import retrying
from tests.fakes import FakeBackend
from workflows.consultation import ConsultationWorkflow

DOCUMENT = DocumentRef(sha256="c" * 64, version=1, filename="framework.md", size=100)


def consultation_input(proposal_id: str, deadline: datetime) -> ConsultationInput:
    return ConsultationInput(
        proposal_id=proposal_id,
        title="Framework",
        stage_index=0,
        document=DOCUMENT,
        sectors=list(Sector),
        deadline=deadline,
    )


def submission(proposal_id: str, link: str, sha256: str, length: int) -> CommentSubmission:
    return CommentSubmission(
        proposal_id=proposal_id,
        stage_index=0,
        stakeholder_id=link,
        sector=Sector.CIVIL_SOCIETY,
        document_sha256=DOCUMENT.sha256,
        text_sha256=sha256,
        text_length=length,
    )


async def rejected(update: Any) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await update
    assert isinstance(failed.value.cause, ApplicationError)
    return str(failed.value.cause.type)


# --- the deadline against a handler parked at its first await ---------------------------------------------------


class HeldLedger:
    """The fake ledger, holding every write of one kind until released."""

    def __init__(self, backend: FakeBackend, kind: str) -> None:
        self.backend, self.kind = backend, kind
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    def activities(self) -> list[object]:
        @activity.defn(name="append_ledger")
        async def append_ledger(entry: LedgerAppend) -> LedgerReceipt:
            if entry.kind == self.kind:
                self.held.set()
                await self.release.wait()
            return self.backend._append(entry)

        others = [a for a in self.backend.activities() if getattr(a, "__name__", "") != "append_ledger"]
        return [append_ledger, *others]


@dataclass
class Race:
    env: WorkflowEnvironment
    backend: FakeBackend
    ledger: HeldLedger
    handle: WorkflowHandle[ConsultationWorkflow, ConsultationStatus]
    proposal_id: str
    opened_deadline: datetime

    def steps(self) -> list[str]:
        return [m.step for m in self.backend.consultation_mailings if m.proposal_id == self.proposal_id]

    async def past(self, moment: datetime) -> None:
        """Wait until `moment` has passed and the workflow has dealt with it: every timer due by then has fired or
        been cancelled, and no workflow task is outstanding."""
        while datetime.now(UTC) <= moment:
            await asyncio.sleep(0.05)
        for _ in range(400):
            events = [e async for e in self.handle.fetch_history_events()]
            due = {
                e.timer_started_event_attributes.timer_id
                for e in events
                if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
                and e.event_time.ToDatetime(UTC) + e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
                <= moment
            }
            resolved = {
                e.timer_fired_event_attributes.timer_id or e.timer_canceled_event_attributes.timer_id
                for e in events
                if e.event_type in (EventType.EVENT_TYPE_TIMER_FIRED, EventType.EVENT_TYPE_TIMER_CANCELED)
            }
            kinds = [e.event_type for e in events]
            tasks_open = kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED) - sum(
                kinds.count(k)
                for k in (
                    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
                    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
                )
            )
            if due <= resolved and tasks_open == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the workflow did not settle after {moment}")


async def start_race(env: WorkflowEnvironment, held_kind: str) -> AsyncIterator[Race]:
    """A consultation on the real dev server, closing in two seconds, with one kind of ledger write held.

    Not the time-skipping server: it does not move its clock while an activity is running, and here one is."""
    backend = FakeBackend()
    ledger = HeldLedger(backend, held_kind)
    task_queue = f"tq-{uuid.uuid4()}"
    async with Worker(
        env.client, task_queue=task_queue, workflows=[ConsultationWorkflow], activities=ledger.activities()
    ):
        proposal_id = f"p-{uuid.uuid4().hex[:8]}"
        deadline = datetime.now(UTC) + timedelta(seconds=2)
        handle = await env.client.start_workflow(
            ConsultationWorkflow.run,
            consultation_input(proposal_id, deadline),
            id=f"{proposal_id}.consultation-0",
            task_queue=task_queue,
        )
        race = Race(env, backend, ledger, handle, proposal_id, deadline)
        for _ in range(200):
            if "invitation" in race.steps():
                break
            await asyncio.sleep(0.025)
        yield race
        ledger.release.set()
        try:
            await handle.terminate("test finished")
        except RPCError:
            pass  # it had finished


@pytest.fixture
async def extension_race(dev_env: WorkflowEnvironment) -> AsyncIterator[Race]:
    async for race in start_race(dev_env, "consultation_extended"):
        yield race


@pytest.fixture
async def comment_race(dev_env: WorkflowEnvironment) -> AsyncIterator[Race]:
    async for race in start_race(dev_env, "comment"):
        yield race


async def test_an_extension_racing_the_deadline_stands_and_the_close_uses_the_new_deadline(
    extension_race: Race,
) -> None:
    race = extension_race
    extension = await race.handle.start_update(
        ConsultationWorkflow.extend, ExtendInput(by=timedelta(seconds=4)), wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )
    await asyncio.wait_for(race.ledger.held.wait(), 10)
    # The old deadline passes while the extension's ledger write is still under way.
    await race.past(race.opened_deadline)
    status = await race.handle.query(ConsultationWorkflow.status)
    assert status.is_open and status.deadline == race.opened_deadline + timedelta(seconds=4)
    assert "consultation_closed" not in race.backend.kinds(race.proposal_id)
    assert race.steps() == ["invitation"]  # not announced before it is recorded

    race.ledger.release.set()
    new_deadline = await extension.result()
    assert new_deadline == race.opened_deadline + timedelta(seconds=4)
    assert race.steps() == ["invitation", "extended-1"]
    assert "consultation_closed" not in race.backend.kinds(race.proposal_id)

    # It closes at the new deadline, and says so.
    result = await race.handle.result()
    assert not result.is_open and result.deadline == new_deadline and datetime.now(UTC) >= new_deadline
    [closed] = race.backend.payloads(race.proposal_id, "consultation_closed")
    assert closed["deadline"] == new_deadline.isoformat()


async def test_an_extension_refused_at_the_deadline_sends_no_email(comment_race: Race) -> None:
    race = comment_race
    sha256 = race.backend.store_comment_body("on time")
    comment = await race.handle.start_update(
        ConsultationWorkflow.submit_comment,
        submission(race.proposal_id, "SH-1", sha256, 7),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    await asyncio.wait_for(race.ledger.held.wait(), 10)
    await race.past(race.opened_deadline)
    assert not (await race.handle.query(ConsultationWorkflow.status)).is_open

    # The deadline has passed: the consultation waits for the comment it accepted, and takes no extension.
    refused = race.handle.execute_update(ConsultationWorkflow.extend, ExtendInput(by=timedelta(days=7)))
    assert await rejected(refused) == "ConsultationClosed"
    race.ledger.release.set()
    receipt = await comment.result()
    await race.handle.execute_update(
        ConsultationWorkflow.respond,
        DispositionInput(comment_id=receipt.comment_id, disposition=Disposition.NOTED, reason="noted"),
    )
    result = await race.handle.result()
    assert result.deadline == race.opened_deadline and result.comment_count == 1
    assert race.steps() == ["invitation"]
    assert "consultation_extended" not in race.backend.kinds(race.proposal_id)


# --- many Updates at once on the real dev server ----------------------------------------------------------------


@dataclass
class Live:
    client: Client
    engine: Engine
    settings: Settings
    handle: WorkflowHandle[ConsultationWorkflow, ConsultationStatus]
    proposal_id: str
    opened_deadline: datetime
    mail_steps: list[str]

    def entries(self, kind: str) -> list[LedgerEntry]:
        with Session(self.engine) as session:
            return list(
                session.exec(
                    select(LedgerEntry)
                    .where(LedgerEntry.proposal_id == self.proposal_id, LedgerEntry.kind == kind)
                    .order_by(LedgerEntry.seq)  # type: ignore[arg-type]
                )
            )

    async def comment(self, link: str, text: str) -> CommentReceipt:
        sha256 = await asyncio.to_thread(store_comment_body, self.engine, text)
        update_id = f"c-{uuid.uuid4().hex}"
        return await retrying(
            lambda: self.handle.execute_update(
                ConsultationWorkflow.submit_comment,
                submission(self.proposal_id, link, sha256, len(text)),
                id=update_id,
            ),
            for_seconds=60,
        )


async def live_consultation(dev_env: WorkflowEnvironment, sqlite_engine: Engine, **limits: int) -> AsyncIterator[Live]:
    settings = Settings(**limits)
    steps: list[str] = []

    @activity.defn(name="send_consultation_mail")
    async def send_consultation_mail(mailing: ConsultationMailing) -> MailingResult:
        steps.append(mailing.step)
        return MailingResult(sent=1, already_sent=0)

    task_queue = f"tq-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            dev_env.client,
            task_queue=task_queue,
            workflows=[ConsultationWorkflow],
            activities=[
                LedgerActivities(sqlite_engine).append_ledger,
                *CommentActivities(settings, sqlite_engine).activities(),
                send_consultation_mail,
            ],
            activity_executor=executor,
        ):
            proposal_id = f"p-{uuid.uuid4().hex[:8]}"
            deadline = datetime.now(UTC) + timedelta(days=1)
            handle = await dev_env.client.start_workflow(
                ConsultationWorkflow.run,
                consultation_input(proposal_id, deadline),
                id=f"{proposal_id}.consultation-0",
                task_queue=task_queue,
            )
            live = Live(dev_env.client, sqlite_engine, settings, handle, proposal_id, deadline, steps)
            for _ in range(200):
                if "invitation" in steps:
                    break
                await asyncio.sleep(0.025)
            yield live
            await handle.terminate("test finished")


@pytest.fixture
async def live(dev_env: WorkflowEnvironment, sqlite_engine: Engine) -> AsyncIterator[Live]:
    async for running in live_consultation(dev_env, sqlite_engine):
        yield running


@pytest.fixture
async def live_limited(dev_env: WorkflowEnvironment, sqlite_engine: Engine) -> AsyncIterator[Live]:
    async for running in live_consultation(dev_env, sqlite_engine, comments_per_link=5):
        yield running


async def test_concurrent_dispositions_and_extensions_are_each_recorded_once(live: Live) -> None:
    receipts = [await live.comment(f"SH-{n}", f"Comment {n} on section {n}.") for n in range(12)]
    extensions = [timedelta(hours=n) for n in range(1, 11)]
    answers = receipts[:10]

    async def respond(receipt: CommentReceipt) -> Any:
        answer = DispositionInput(comment_id=receipt.comment_id, disposition=Disposition.ACCEPTED, reason="agreed")
        update_id = f"r-{uuid.uuid4().hex}"
        return await retrying(
            lambda: live.handle.execute_update(ConsultationWorkflow.respond, answer, id=update_id), for_seconds=60
        )

    extend_ids = [f"e-{uuid.uuid4().hex}" for _ in extensions]

    async def extend(by: timedelta, update_id: str) -> datetime:
        return await retrying(
            lambda: live.handle.execute_update(ConsultationWorkflow.extend, ExtendInput(by=by), id=update_id),
            for_seconds=60,
        )

    results = await asyncio.gather(
        *(respond(r) for r in answers), *(extend(by, i) for by, i in zip(extensions, extend_ids, strict=True))
    )
    new_deadlines = results[len(answers) :]

    # Every disposition once, for its own comment.
    dispositions = [json.loads(e.payload_json) for e in live.entries("disposition")]
    assert sorted(d["comment_id"] for d in dispositions) == sorted(r.comment_id for r in answers)
    # Every extension once, under its own Update, with what it asked for; the deadlines add up.
    extended = {e.idempotency_key: json.loads(e.payload_json) for e in live.entries("consultation_extended")}
    assert len(live.entries("consultation_extended")) == len(extensions)
    assert extended == {
        f"{live.handle.id}:extended:{i}": ExtendInput(by=by).model_dump(mode="json")
        for by, i in zip(extensions, extend_ids, strict=True)
    }
    final = live.opened_deadline + sum(extensions, timedelta())
    assert max(new_deadlines) == final
    assert len(set(new_deadlines)) == len(extensions)  # each answered with the deadline it made
    # The status agrees, and each extension was announced once.
    status = await live.handle.query(ConsultationWorkflow.status)
    assert status.deadline == final and status.comment_count == 12 and status.open_count == 2
    assert sorted(s for s in live.mail_steps if s.startswith("extended-")) == sorted(
        f"extended-{n}" for n in range(1, len(extensions) + 1)
    )


async def test_one_link_sending_at_once_cannot_pass_its_limit(live_limited: Live) -> None:
    live = live_limited

    async def attempt(n: int) -> str:
        try:
            await live.comment("SH-eager", f"Comment number {n}.")
        except WorkflowUpdateFailedError as exc:
            assert isinstance(exc.cause, ApplicationError)
            return str(exc.cause.type)
        return "accepted"

    outcomes = await asyncio.gather(*(attempt(n) for n in range(12)))
    assert sorted(outcomes) == ["CommentLimit"] * 7 + ["accepted"] * 5
    assert len(live.entries("comment")) == 5
    other = await live.comment("SH-other", "Another stakeholder's link has its own limit.")
    assert other.ledger_seq > 0


async def test_one_disposition_for_many_comments_is_all_or_nothing(live: Live) -> None:
    receipts = [await live.comment(f"SH-{n}", f"Out of scope, number {n}.") for n in range(6)]
    chosen = [r.comment_id for r in receipts[:3]]
    answer = {"disposition": Disposition.NOT_ACCEPTED, "reason": "outside the scope of the framework"}

    with_unknown = RespondManyInput(comment_ids=[*chosen, "d-no-such-comment"], **answer)
    assert await rejected(live.handle.execute_update(ConsultationWorkflow.respond_many, with_unknown)) == (
        "UnknownComment"
    )
    assert live.entries("disposition") == []

    update_id = f"bulk-{uuid.uuid4().hex[:8]}"
    done = await live.handle.execute_update(
        ConsultationWorkflow.respond_many, RespondManyInput(comment_ids=chosen, **answer), id=update_id
    )
    assert (done.answered, done.still_open) == (3, 3)
    entries = live.entries("disposition")
    assert sorted(e.idempotency_key for e in entries) == sorted(
        f"{live.handle.id}:disposition:{update_id}:{c}" for c in chosen
    )
    assert {json.loads(e.payload_json)["reason"] for e in entries} == {"outside the scope of the framework"}

    rest = await live.handle.execute_update(
        ConsultationWorkflow.respond_many,
        RespondManyInput(all_open=True, disposition=Disposition.NOTED, reason="noted for the next revision"),
    )
    assert (rest.answered, rest.still_open) == (3, 0)
    by_comment = {json.loads(e.payload_json)["comment_id"]: e for e in live.entries("disposition")}
    assert set(by_comment) == {r.comment_id for r in receipts} and len(live.entries("disposition")) == 6


@pytest.mark.parametrize(
    "fields",
    [
        {"comment_ids": [], "all_open": False},
        {"comment_ids": ["d-1"], "all_open": True},
        {"comment_ids": ["d-1", "d-1"], "all_open": False},
    ],
)
def test_a_bulk_disposition_names_its_comments_one_way(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RespondManyInput(disposition=Disposition.NOTED, reason="noted", **fields)
