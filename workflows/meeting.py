"""An ADGSOM or ADGMIN meeting: invitations with a calendar file, a durable sleep until the date, the record."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import MailingResult, MeetingInput, MeetingMailing, MeetingOutcome, MeetingRecord
    from models.positions import MEETING_POSITIONS, Position
    from models.rules import decide
    from models.states import MemberState
    from workflows.common import MAIL_HEARTBEAT, MAIL_RETRY, MAIL_TIMEOUT, ledger

# Meetings that take a record since this patch take it under the workflow's lock (see `record_meeting`).
SERIAL_RECORD = "serial-meeting-record"
# Meetings since this patch record the invitation's outcome per recipient in the ledger.
MEETING_MAIL_OUTCOME = "meeting-mail-outcome"


@workflow.defn
class MeetingWorkflow:
    @workflow.init
    def __init__(self, meeting: MeetingInput) -> None:
        self._input = meeting
        self._record: MeetingRecord | None = None
        self._held = False
        self._closed = False
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, meeting: MeetingInput) -> MeetingOutcome:
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
            },
        )
        invited = await workflow.execute_activity(
            "send_meeting_mail",
            MeetingMailing(
                proposal_id=meeting.proposal_id,
                title=meeting.title,
                stage_index=meeting.stage_index,
                stage_type=meeting.stage_type,
                step="invitation",
                date=meeting.date,
                venue=meeting.venue,
                chair=meeting.chair,
                states=meeting.participants,
                roles=meeting.roles,
                document=meeting.document,
            ),
            result_type=MailingResult,
            start_to_close_timeout=MAIL_TIMEOUT,
            heartbeat_timeout=MAIL_HEARTBEAT,
            retry_policy=MAIL_RETRY,
        )
        if workflow.patched(MEETING_MAIL_OUTCOME):
            # Who was actually written to is part of the record, as for a round's invitations.
            await ledger(
                meeting.proposal_id,
                "mail_outcome",
                f"{workflow.info().workflow_id}:mail:invitation",
                {
                    "step": "invitation",
                    "round": None,
                    "stage_index": meeting.stage_index,
                    "recipients": [o.model_dump(mode="json") for o in invited.recipients],
                    "not_invited": [n.model_dump(mode="json") for n in invited.not_invited],
                },
            )
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

    @workflow.update
    async def record_meeting(self, record: MeetingRecord) -> MeetingRecord:
        """The meeting's record, once. Records sent at the same moment all pass the validator (none is set yet);
        under the lock the first is written and the others are refused, instead of each overwriting the last
        under the ledger's one key for the record."""
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
        if not self._held:
            raise ApplicationError(
                f"the meeting takes place on {self._input.date.isoformat()}; record it afterwards", type="NotYetHeld"
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
