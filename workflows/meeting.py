"""An ADGSOM or ADGMIN meeting: invitations with a calendar file, a durable sleep until the date, the record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.decisions import MeetingDecision
    from models.messages import (
        CancelMeetingInput,
        MailingResult,
        MeetingInput,
        MeetingMailing,
        MeetingOutcome,
        MeetingRecord,
        MeetingStatus,
        RescheduleInput,
    )
    from models.positions import MEETING_POSITIONS, Position
    from models.rules import Verdict, decide
    from models.states import MemberState
    from workflows.common import MAIL_HEARTBEAT, MAIL_RETRY, MAIL_TIMEOUT, ledger

# Meetings that take a record since this patch take it under the workflow's lock (see `record_meeting`).
SERIAL_RECORD = "serial-meeting-record"
# Meetings since this patch record the invitation's outcome per recipient in the ledger.
MEETING_MAIL_OUTCOME = "meeting-mail-outcome"
# Meetings the proposal starts with `decides` record the Meeting's decision (who was present, the decision, its
# paragraph, reservations) keyed by the Update, and take reschedules and cancellations; this marks their histories.
MEETINGS_DECIDE = "meetings-decide"

# The Meeting's decisions that carry the text forward (once any absent state's ad referendum passes).
CARRIED = {MeetingDecision.ENDORSED, MeetingDecision.APPROVED, MeetingDecision.NOTED}
DECISION_WORDS = {
    MeetingDecision.ENDORSED: "endorsed the text",
    MeetingDecision.APPROVED: "approved the text",
    MeetingDecision.NOTED: "noted the text",
    MeetingDecision.DEFERRED: "deferred its consideration to a later meeting",
    MeetingDecision.REFERRED_BACK: "referred the text back to WG-AI",
    MeetingDecision.NOT_ENDORSED: "did not endorse the text",
}


@workflow.defn
class MeetingWorkflow:
    @workflow.init
    def __init__(self, meeting: MeetingInput) -> None:
        self._input = meeting
        self._record: MeetingRecord | None = None
        self._held = False
        self._closed = False
        self._lock = asyncio.Lock()
        # Meetings that decide: the date and venue as rescheduled, the calendar SEQUENCE, why the meeting waits
        # for a new date (None: it does not), and a counter every reschedule or cancellation moves on.
        self._date: datetime = meeting.date
        self._venue = meeting.venue
        self._sequence = 0
        self._waiting: str | None = None
        self._changes = 0
        self._deferrals = 0

    @workflow.run
    async def run(self, meeting: MeetingInput) -> MeetingOutcome:
        if meeting.decides and workflow.patched(MEETINGS_DECIDE):
            return await self._decide(meeting)
        await self._scheduled()
        invited = await self._send("invitation")
        if workflow.patched(MEETING_MAIL_OUTCOME):
            # Who was actually written to is part of the record, as for a round's invitations.
            await self._mail_outcome("invitation", invited)
        try:
            until_meeting = (meeting.date - workflow.now()).total_seconds()
            if until_meeting > 0:
                await workflow.sleep(until_meeting)
            self._held = True
            try:
                await workflow.wait_condition(lambda: self._record is not None, timeout=meeting.grace.total_seconds())
            except TimeoutError:
                pass
        except asyncio.CancelledError:
            self._closed = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._record is None:
            return MeetingOutcome(
                recorded=False, reason=f"no outcome was recorded within {meeting.grace} of the meeting"
            )
        # A participating state with no recorded position did not take part in the decision: it abstained.
        positions = {s.value: self._record.positions.get(s, Position.ABSTAIN) for s in meeting.participants}
        decision = decide(meeting.rule, positions, min_participants=meeting.min_participants)
        return MeetingOutcome(
            recorded=True,
            record=self._record,
            verdict=decision.verdict,
            reason=decision.reason,
            participating=[MemberState(s) for s in decision.participating] if decision.participating else None,
        )

    # --- meetings that decide as meetings ------------------------------------------------------------------

    async def _decide(self, meeting: MeetingInput) -> MeetingOutcome:
        """Invite, wait for the date (moved by reschedules, paused by a cancellation), take the record; a deferral
        waits for a new date and meets again."""
        await self._scheduled({"sitting": meeting.sitting})
        try:
            if self._date <= workflow.now():  # (a reschedule may already have come while the entry was written)
                await self._date_passed()
            else:
                await self._mail("invitation")
            record = await self._hold()
        except asyncio.CancelledError:
            self._closed = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        if record is None:
            return MeetingOutcome(
                recorded=False, reason=f"no outcome was recorded within {meeting.grace} of the meeting"
            )
        assert record.decision is not None and record.present is not None
        absent = [s for s in meeting.participants if s not in record.present]
        reason = f"the Meeting {DECISION_WORDS[record.decision]}"
        if absent and record.decision in CARRIED:
            reason += f"; {', '.join(s.value for s in absent)} absent, to be consulted ad referendum"
        return MeetingOutcome(
            recorded=True,
            record=record,
            verdict=Verdict.PASSED if record.decision in CARRIED else Verdict.NOT_PASSED,
            reason=reason,
            decision=record.decision,
            absent=absent,
        )

    async def _hold(self) -> MeetingRecord | None:
        """The record of the meeting once held, or None if none came within the grace after it."""
        while True:
            while self._waiting is not None or workflow.now() < self._date:
                moved = self._moved_since(self._changes)
                if self._waiting is not None:
                    await workflow.wait_condition(moved)
                    continue
                try:
                    await workflow.wait_condition(moved, timeout=(self._date - workflow.now()).total_seconds())
                except TimeoutError:
                    pass
            self._held = True
            try:
                await workflow.wait_condition(
                    self._recorded_or_moved_since(self._changes), timeout=self._input.grace.total_seconds()
                )
            except TimeoutError:
                return None
            if self._record is not None:
                return self._record
            # Deferred, or rescheduled after the date: wait for the (new) date and meet again.

    def _recorded_or_moved_since(self, changes: int) -> Callable[[], bool]:
        return lambda: self._record is not None or self._changes != changes

    def _moved_since(self, changes: int) -> Callable[[], bool]:
        """Whether a reschedule, cancellation or deferral came since the count was `changes`."""
        return lambda: self._changes != changes

    async def _date_passed(self) -> None:
        """The stage opened after the meeting's date (the review overran): tell the coordinator, wait for a date."""
        self._waiting = (
            f"the meeting date {self._date.isoformat()} had passed when the stage opened; "
            f"give a new date with `aisafe reschedule {self._input.proposal_id} --date ...`"
        )
        await ledger(
            self._input.proposal_id,
            "meeting_date_passed",
            f"{workflow.info().workflow_id}:date-passed",
            {
                "stage": self._input.stage_type.value,
                "date": self._date.isoformat(),
                "opened": workflow.now().isoformat(),
            },
        )
        await self._mail("date-passed", previous_date=self._date)

    async def _scheduled(self, extra: dict[str, object] | None = None) -> None:
        meeting = self._input
        await ledger(
            meeting.proposal_id,
            "meeting_scheduled",
            f"{workflow.info().workflow_id}:scheduled",
            {
                "stage": meeting.stage_type.value,
                "date": meeting.date.isoformat(),
                "venue": meeting.venue,
                "chair": meeting.chair.value,
                "document": meeting.document.model_dump(mode="json"),
            }
            | (extra or {}),
        )

    async def _mail(self, step: str, *, reason: str | None = None, previous_date: datetime | None = None) -> None:
        """Send a step's mailing at the meeting's present date and SEQUENCE, and record whom it reached."""
        await self._mail_outcome(step, await self._send(step, reason=reason, previous_date=previous_date))

    async def _send(
        self, step: str, *, reason: str | None = None, previous_date: datetime | None = None
    ) -> MailingResult:
        meeting = self._input
        return await workflow.execute_activity(
            "send_meeting_mail",
            MeetingMailing(
                proposal_id=meeting.proposal_id,
                title=meeting.title,
                stage_index=meeting.stage_index,
                stage_type=meeting.stage_type,
                step=step,
                date=self._date,
                venue=self._venue,
                chair=meeting.chair,
                states=meeting.participants,
                roles=meeting.roles,
                document=meeting.document,
                sequence=self._sequence,
                sitting=meeting.sitting,
                reason=reason,
                previous_date=previous_date,
            ),
            result_type=MailingResult,
            start_to_close_timeout=MAIL_TIMEOUT,
            heartbeat_timeout=MAIL_HEARTBEAT,
            retry_policy=MAIL_RETRY,
        )

    async def _mail_outcome(self, step: str, result: MailingResult) -> None:
        meeting = self._input
        await ledger(
            meeting.proposal_id,
            "mail_outcome",
            f"{workflow.info().workflow_id}:mail:{step}",
            {
                "step": step,
                "round": None,
                "stage_index": meeting.stage_index,
                "recipients": [o.model_dump(mode="json") for o in result.recipients],
                "not_invited": [n.model_dump(mode="json") for n in result.not_invited],
            },
        )

    def _update_id(self) -> str:
        info = workflow.current_update_info()
        assert info is not None
        return info.id

    @workflow.update
    async def reschedule(self, request: RescheduleInput) -> MeetingStatus:
        """A new date (and venue): the invitation again, with the calendar entry updated (same UID, SEQUENCE+1)."""
        async with self._lock:
            self._check_reschedule(request)
            previous = self._date
            sequence = self._sequence + 1
            await ledger(
                self._input.proposal_id,
                "meeting_rescheduled",
                f"{workflow.info().workflow_id}:rescheduled:{self._update_id()}",
                request.model_dump(mode="json") | {"sequence": sequence, "previous_date": previous.isoformat()},
                after_accept=True,
            )
            self._date, self._sequence = request.date, sequence
            self._venue = request.venue or self._venue
            self._waiting, self._held = None, False
            self._changes += 1
            await self._mail(f"reschedule-{sequence}", previous_date=previous)
            return self.meeting_status()

    @reschedule.validator
    def _check_reschedule(self, request: RescheduleInput) -> None:
        self._require_date_movable()
        if request.date.tzinfo is None:
            raise ApplicationError(
                "give the date with its UTC offset, e.g. 2027-02-01T09:00:00+08:00", type="NaiveDate"
            )
        if request.date <= workflow.now():
            raise ApplicationError(f"the new date {request.date.isoformat()} has already passed", type="DatePassed")

    @workflow.update
    async def cancel_meeting(self, request: CancelMeetingInput) -> MeetingStatus:
        """Cancel the date (METHOD:CANCEL to every invitee); the stage waits for `reschedule`."""
        async with self._lock:
            self._check_cancel(request)
            sequence = self._sequence + 1
            await ledger(
                self._input.proposal_id,
                "meeting_cancelled",
                f"{workflow.info().workflow_id}:cancelled:{self._update_id()}",
                request.model_dump(mode="json") | {"sequence": sequence, "date": self._date.isoformat()},
                after_accept=True,
            )
            self._sequence = sequence
            self._waiting = "the meeting was cancelled" + (f" ({request.reason})" if request.reason else "")
            self._waiting += "; it waits for a new date (aisafe reschedule)"
            self._held = False
            self._changes += 1
            await self._mail(f"cancel-{sequence}", reason=request.reason)
            return self.meeting_status()

    @cancel_meeting.validator
    def _check_cancel(self, request: CancelMeetingInput) -> None:
        self._require_date_movable()
        if self._waiting is not None:
            raise ApplicationError(f"there is no date to cancel: {self._waiting}", type="NoDate")

    def _require_date_movable(self) -> None:
        if not self._input.decides:
            raise ApplicationError(
                "this meeting was scheduled before meetings could be rescheduled; record its outcome as it is",
                type="NotReschedulable",
            )
        if self._closed or self._record is not None:
            raise ApplicationError("this meeting's outcome is already settled", type="MeetingClosed")

    async def _record_decision(self, record: MeetingRecord) -> MeetingRecord:
        await ledger(
            self._input.proposal_id,
            "meeting_recorded",
            f"{workflow.info().workflow_id}:recorded:{self._update_id()}",
            record.model_dump(mode="json"),
            after_accept=True,
        )
        if record.decision is MeetingDecision.DEFERRED:
            self._deferrals += 1
            self._waiting = "the Meeting deferred its consideration; it waits for a later meeting (aisafe reschedule)"
            self._held = False
            self._changes += 1
        else:
            self._record = record
        return record

    def _check_decision(self, record: MeetingRecord) -> None:
        if record.decision is None:
            raise ApplicationError(
                "this meeting records the Meeting's decision (--present, --decision, --paragraph), "
                "not a roll call of positions",
                type="RollCallRefused",
            )
        assert record.present is not None
        strangers = sorted(s.value for s in record.present if s not in self._input.participants)
        if strangers:
            raise ApplicationError(f"not participants in this meeting: {', '.join(strangers)}", type="NotParticipant")

    @workflow.query
    def meeting_status(self) -> MeetingStatus:
        return MeetingStatus(
            date=self._date,
            venue=self._venue,
            sequence=self._sequence,
            held=self._held,
            waiting_for_date=self._waiting,
            decision=self._record.decision if self._record else None,
        )

    @workflow.update
    async def record_meeting(self, record: MeetingRecord) -> MeetingRecord:
        """The meeting's record, once. Records sent at the same moment all pass the validator (none is set yet);
        under the lock the first is written and the others are refused, instead of each overwriting the last
        under the ledger's one key for the record."""
        if self._input.decides:
            async with self._lock:
                self._check_record(record)
                return await self._record_decision(record)
        if not workflow.patched(SERIAL_RECORD):
            return await self._record_meeting(record, after_accept=False)
        async with self._lock:
            self._check_record(record)
            return await self._record_meeting(record, after_accept=True)

    async def _record_meeting(self, record: MeetingRecord, *, after_accept: bool) -> MeetingRecord:
        await ledger(
            self._input.proposal_id,
            "meeting_recorded",
            f"{workflow.info().workflow_id}:recorded",
            record.model_dump(mode="json"),
            after_accept=after_accept,  # written only for a record the history holds as accepted
        )
        self._record = record
        return record

    @record_meeting.validator
    def _check_record(self, record: MeetingRecord) -> None:
        if self._closed or self._record is not None:
            raise ApplicationError("this meeting's outcome is already settled", type="MeetingClosed")
        if self._input.decides and self._waiting is not None:
            raise ApplicationError(f"the meeting has no date: {self._waiting}", type="NotYetHeld")
        if not self._held:
            raise ApplicationError(
                f"the meeting takes place on {self._date.isoformat()}; record it afterwards", type="NotYetHeld"
            )
        if self._input.decides:
            self._check_decision(record)
            return
        if record.decision is not None:
            raise ApplicationError(
                "this meeting was scheduled before meetings recorded their decision; record each state's position",
                type="DecisionRefused",
            )
        strangers = sorted(s.value for s in record.positions if s not in self._input.participants)
        if strangers:
            raise ApplicationError(f"not participants in this meeting: {', '.join(strangers)}", type="NotParticipant")
        wrong = sorted(f"{s.value}: {p.value}" for s, p in record.positions.items() if p not in MEETING_POSITIONS)
        if wrong:
            raise ApplicationError(f"positions a meeting does not take: {', '.join(wrong)}", type="PositionNotAllowed")

    @workflow.query
    def status(self) -> MeetingInput:
        return self._input
