"""A stakeholder consultation: comments until the (extendable) deadline, then a disposition for every one.

Runs started since PATCH_BY_HASH keep counts, not comments: each comment's body is stored once in the database under
its SHA-256 and the Update, the ledger and the workflow carry only the hash, so a consultation's payloads stay small
however long its comments are. The comments themselves are read from the ledger (activities/comments.py). A run
continues as new before its history grows past CONTINUE_AT events, handing over counts and deadlines only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        Comment,
        CommentLimits,
        CommentLookup,
        CommentQuery,
        CommentReceipt,
        CommentSubmission,
        ConsultationCarry,
        ConsultationInput,
        ConsultationMailing,
        ConsultationStatus,
        DispositionBatch,
        DispositionInput,
        DispositionsRecorded,
        ExtendInput,
        LedgerAppend,
        LedgerReceipt,
        MailingResult,
        RespondManyInput,
        RespondManyResult,
    )
    from workflows.common import LEDGER_RETRY, LEDGER_TIMEOUT, MAIL_HEARTBEAT, MAIL_RETRY, MAIL_TIMEOUT, ledger

# Runs started since this patch carry comment hashes, not bodies; guard their handlers against interleaving (state
# changes before the first await, or under the lock); close only once accepted handlers have finished and the
# deadline in force has passed; and continue as new before the history grows large.
PATCH_BY_HASH = "consultation-comments-by-hash"
# A run continues as new once its handlers have spent this many events (well under the 10,000 we allow, leaving
# room for the handlers still running then); the worker's settings may say otherwise. Each handler's cost is an upper
# bound: its Update's accepted and completed events, its markers or activity events, and a workflow task of its own.
CONTINUE_AT = 3000
RUN_EVENTS = 20  # a run's own: started, its first workflow tasks, the continue-as-new
COMMENT_EVENTS = 8
RESPOND_EVENTS = 10
EXTEND_EVENTS = 12
BATCH_EVENTS = 6  # one more activity of a bulk disposition
# Dispositions written per ledger transaction: each batch's activity input and result stay a few kilobytes.
DISPOSITION_BATCH = 200


@workflow.defn
class ConsultationWorkflow:
    @workflow.init
    def __init__(self, consultation: ConsultationInput) -> None:
        self._input = consultation
        carried = consultation.carried
        self._deadline = carried.deadline if carried else consultation.deadline
        # Before PATCH_BY_HASH: every comment of the consultation; since: this run's comments (no bodies).
        self._comments: dict[str, Comment] = {}
        self._extensions = carried.extensions if carried else 0
        self._closed = carried.closed if carried else False
        # A continued run was started by code that knows the patch; a first run decides in `run`.
        self._by_hash = carried is not None
        self._limits = carried.limits if carried else None
        self._comment_count = carried.comments if carried else 0
        self._open = (carried.open or 0) if carried else 0
        self._per_link: dict[str, int] = dict(carried.per_link) if carried else {}
        self._runs = carried.run if carried else 1
        self._spent = RUN_EVENTS
        self._closing = False  # the deadline has passed: accepted handlers finish, then the deadline is re-checked
        self._draining = False  # about to continue as new: new messages are refused with "Retry"
        self._answering = asyncio.Lock()  # dispositions read the ledger, then write it: one at a time

    @workflow.run
    async def run(self, consultation: ConsultationInput) -> ConsultationStatus:
        if consultation.carried is None:
            self._by_hash = workflow.patched(PATCH_BY_HASH)
            if self._by_hash:
                self._limits = await workflow.execute_local_activity(
                    "comment_limits",
                    result_type=CommentLimits,
                    start_to_close_timeout=LEDGER_TIMEOUT,
                    retry_policy=LEDGER_RETRY,
                )
        if not self._by_hash:
            return await self._run_with_bodies(consultation)
        if consultation.carried is None:
            await self._open_consultation(consultation)
        try:
            if not self._closed:
                await self._comment_period()
        except asyncio.CancelledError:
            self._closed = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        # No more comments; the stage closes once the coordinator has answered every one of them. From here on the
        # open count is the ledger's, which is exact now that no comment handler can be running.
        async with self._answering:
            self._open = (await self._lookup([])).still_open
        while True:
            await workflow.wait_condition(lambda: self._open == 0 or self._should_continue())
            if self._open > 0:
                await self._continue_as_new()
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._open == 0:
                break
        tally = (await self._lookup([])).dispositions
        await ledger(
            consultation.proposal_id,
            "consultation_closed",
            f"{workflow.info().workflow_id}:closed",
            {
                "comment_count": self._comment_count,
                "dispositions": tally,
                "runs": self._runs,
                "deadline": self._deadline.isoformat(),
            },
        )
        return self.status().model_copy(update={"comments": [], "dispositions": tally})

    async def _open_consultation(self, consultation: ConsultationInput) -> None:
        await ledger(
            consultation.proposal_id,
            "consultation_opened",
            f"{workflow.info().workflow_id}:opened",
            {
                "stage_index": consultation.stage_index,
                "document": consultation.document.model_dump(mode="json"),
                "sectors": [s.value for s in consultation.sectors],
                "deadline": consultation.deadline.isoformat(),
            },
        )
        await self._mail("invitation")

    async def _comment_period(self) -> None:
        """Until the deadline in force has passed and every handler accepted before it has finished."""
        while True:
            if self._should_continue():
                await self._continue_as_new()
            remaining = (self._deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                # Refuse new comments and extensions, let the accepted ones finish (an extension accepted a moment
                # ago has already moved the deadline), then look at the deadline again.
                self._closing = True
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._deadline <= workflow.now():
                    self._closed = True
                    return
                self._closing = False
                continue
            deadline = self._deadline
            try:
                await workflow.wait_condition(
                    lambda d=deadline: self._deadline != d or self._should_continue(), timeout=remaining
                )
            except TimeoutError:
                pass

    def _should_continue(self) -> bool:
        # Counted from what the handlers did, which the history holds, not from the server's event count or its
        # suggestion: those are also seen in speculative tasks for Updates that the server may drop, and a decision
        # taken there would not replay (seen on the dev server as a nondeterminism error under 64 senders).
        return not self._draining and self._spent >= ((self._limits and self._limits.events_per_run) or CONTINUE_AT)

    async def _continue_as_new(self) -> NoReturn:
        """Hand counts and deadlines to a fresh run once every accepted handler has finished."""
        self._draining = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        carry = ConsultationCarry(
            deadline=self._deadline,
            extensions=self._extensions,
            comments=self._comment_count,
            per_link={} if self._closed else self._per_link,  # no comment comes after the close
            closed=self._closed,
            open=self._open,
            run=self._runs + 1,
            limits=self._limits,
        )
        workflow.continue_as_new(self._input.model_copy(update={"carried": carry}))

    async def _run_with_bodies(self, consultation: ConsultationInput) -> ConsultationStatus:
        """The run as it was before PATCH_BY_HASH, so that histories recorded by it replay."""
        await self._open_consultation(consultation)
        try:
            await self._until_deadline()
        except asyncio.CancelledError:
            self._closed = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise
        # No more comments; the stage closes once the coordinator has answered every one of them.
        self._closed = True
        await workflow.wait_condition(lambda: all(c.disposition for c in self._comments.values()))
        await workflow.wait_condition(workflow.all_handlers_finished)
        matrix = self.status()
        await ledger(
            consultation.proposal_id,
            "consultation_closed",
            f"{workflow.info().workflow_id}:closed",
            {"comments": [c.model_dump(mode="json") for c in matrix.comments], "deadline": self._deadline.isoformat()},
        )
        return matrix

    async def _until_deadline(self) -> None:
        """Sleep until the deadline, starting over whenever the coordinator extends it."""
        while (remaining := (self._deadline - workflow.now()).total_seconds()) > 0:
            deadline = self._deadline
            try:
                await workflow.wait_condition(lambda d=deadline: self._deadline != d, timeout=remaining)
            except TimeoutError:
                return

    @workflow.update
    async def submit_comment(self, submission: CommentSubmission) -> CommentReceipt:
        update = workflow.current_update_info()
        comment_id = update.id if update else str(workflow.uuid4())
        if not self._by_hash:
            receipt = await ledger(
                self._input.proposal_id,
                "comment",
                f"{workflow.info().workflow_id}:comment:{comment_id}",
                {"comment_id": comment_id, **submission.model_dump(mode="json")},
            )
        else:
            # The link's slot is taken before the first await: comments sent at once cannot pass the limit together.
            link = submission.stakeholder_id
            self._per_link[link] = self._per_link.get(link, 0) + 1
            self._spent += COMMENT_EVENTS
            try:
                receipt = await self._record_accepted(
                    "comment",
                    f"{workflow.info().workflow_id}:comment:{comment_id}",
                    {"comment_id": comment_id, **submission.model_dump(mode="json", exclude={"text"})},
                )
            except BaseException:
                self._per_link[link] -= 1
                raise
            self._comment_count += 1
            self._open += 1
        self._comments[comment_id] = Comment(
            comment_id=comment_id,
            stakeholder_id=submission.stakeholder_id,
            sector=submission.sector,
            text=submission.text,
            text_sha256=submission.text_sha256,
            section=submission.section,
            submitted_at=receipt.recorded_at,
            ledger_entry_hash=receipt.entry_hash,
        )
        return CommentReceipt(
            comment_id=comment_id,
            proposal_id=self._input.proposal_id,
            ledger_seq=receipt.seq,
            ledger_entry_hash=receipt.entry_hash,
            recorded_at=receipt.recorded_at,
        )

    @submit_comment.validator
    def _check_comment(self, submission: CommentSubmission) -> None:
        if self._closed or self._closing:
            raise ApplicationError("the consultation is closed", type="ConsultationClosed")
        self._refuse_while_draining()
        if submission.proposal_id != self._input.proposal_id or submission.stage_index != self._input.stage_index:
            raise ApplicationError("this link is for another consultation", type="WrongConsultation")
        if submission.sector not in self._input.sectors:
            raise ApplicationError("your sector is not invited to this consultation", type="NotInvited")
        if submission.document_sha256 != self._input.document.sha256:
            raise ApplicationError("the comment names another document version", type="DocumentMismatch")
        if self._by_hash:
            self._check_limits(submission)

    def _check_limits(self, submission: CommentSubmission) -> None:
        if submission.text is not None or submission.text_sha256 is None or submission.text_length is None:
            raise ApplicationError(
                "a comment is sent as the SHA-256 and length of its stored body, not as text", type="BodyNotStored"
            )
        if self._limits is None:
            raise ApplicationError("the consultation is opening; send the comment again", type="Retry")
        if submission.text_length > self._limits.max_chars:
            raise ApplicationError(
                f"a comment can be at most {self._limits.max_chars:,} characters long; "
                f"this one has {submission.text_length:,}",
                type="CommentTooLong",
            )
        sent = self._per_link.get(submission.stakeholder_id, 0)
        if sent >= self._limits.per_link:
            raise ApplicationError(
                f"each link can send at most {self._limits.per_link} comments to this consultation, "
                f"and this one has sent {sent}",
                type="CommentLimit",
            )

    def _refuse_while_draining(self) -> None:
        if self._draining:
            # The run is handing over to its continuation; the sender tries again in a moment.
            raise ApplicationError("the consultation is busy for a moment; send again", type="Retry")

    @workflow.update
    async def respond(self, answer: DispositionInput) -> Comment:
        if not self._by_hash:
            await ledger(
                self._input.proposal_id,
                "disposition",
                f"{workflow.info().workflow_id}:disposition:{workflow.current_update_info().id}",  # type: ignore[union-attr]
                answer.model_dump(mode="json"),
            )
            comment = self._comments[answer.comment_id].model_copy(
                update={"disposition": answer.disposition, "reason": answer.reason}
            )
            self._comments[answer.comment_id] = comment
            return comment
        # The ledger is read, then written: under the lock, so two answers cannot both count a comment as newly
        # answered.
        self._spent += RESPOND_EVENTS
        async with self._answering:
            lookup = await self._lookup([answer.comment_id])
            if lookup.unknown:
                raise ApplicationError(f"no comment {answer.comment_id!r} in this consultation", type="UnknownComment")
            [before] = lookup.comments
            await self._record_accepted(
                "disposition",
                f"{workflow.info().workflow_id}:disposition:{workflow.current_update_info().id}",  # type: ignore[union-attr]
                answer.model_dump(mode="json"),
            )
            # The ledger's count, not a running one: the ledger is the record (see `_record_accepted`).
            self._open = lookup.still_open - (1 if before.disposition is None else 0)
            comment = before.model_copy(update={"disposition": answer.disposition, "reason": answer.reason})
            if answer.comment_id in self._comments:
                self._comments[answer.comment_id] = comment
            return comment

    @respond.validator
    def _check_response(self, answer: DispositionInput) -> None:
        if not self._by_hash:
            if answer.comment_id not in self._comments:
                raise ApplicationError(f"no comment {answer.comment_id!r} in this consultation", type="UnknownComment")
            return
        self._refuse_while_draining()

    @workflow.update
    async def respond_many(self, request: RespondManyInput) -> RespondManyResult:
        """One disposition for many comments: every one is known or none is answered; one ledger entry each."""
        update_id = workflow.current_update_info().id  # type: ignore[union-attr]
        answered = 0
        self._spent += RESPOND_EVENTS
        async with self._answering:
            if request.comment_ids:
                ids = request.comment_ids
                unknown: list[str] = []
                for chunk in _chunks(ids):
                    unknown += (await self._lookup(chunk)).unknown
                if unknown:
                    more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
                    raise ApplicationError(
                        f"no comment {unknown[0]!r}{more} in this consultation; none was answered",
                        type="UnknownComment",
                    )
                for chunk in _chunks(ids):
                    recorded = await self._record(update_id, request, comment_ids=chunk)
                    self._open = recorded.still_open
                answered = len(ids)
            else:
                while True:
                    recorded = await self._record(update_id, request, open_limit=DISPOSITION_BATCH)
                    answered += len(recorded.recorded)
                    self._open = recorded.still_open
                    if not recorded.recorded or recorded.still_open == 0:
                        break
            for comment_id in request.comment_ids:
                if comment_id in self._comments:
                    self._comments[comment_id] = self._comments[comment_id].model_copy(
                        update={"disposition": request.disposition, "reason": request.reason}
                    )
        return RespondManyResult(answered=answered, still_open=self._open)

    @respond_many.validator
    def _check_respond_many(self, request: RespondManyInput) -> None:
        if not self._by_hash:
            raise ApplicationError("this consultation answers one comment at a time", type="NotSupported")
        self._refuse_while_draining()

    async def _record_accepted(self, kind: str, key: str, payload: dict[str, object]) -> LedgerReceipt:
        """A handler's ledger entry, written only once the server holds the Update as accepted.

        Not a local activity: those run inside the workflow task that accepts the Update, and on the dev server
        (64, and even 12, senders at once) that task was sometimes dropped by the server after the local activity
        had written the ledger, so the ledger held comments the workflow never accepted. A regular activity is
        scheduled by the completed task, so it runs only for an Update the history shows as accepted.
        """
        entry = LedgerAppend(proposal_id=self._input.proposal_id, kind=kind, idempotency_key=key, payload=payload)
        return await workflow.execute_activity(
            "append_ledger",
            entry,
            result_type=LedgerReceipt,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
        )

    async def _lookup(self, comment_ids: list[str]) -> CommentLookup:
        self._spent += BATCH_EVENTS
        return await workflow.execute_local_activity(
            "lookup_comments",
            CommentQuery(
                workflow_id=workflow.info().workflow_id, proposal_id=self._input.proposal_id, comment_ids=comment_ids
            ),
            result_type=CommentLookup,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
        )

    async def _record(
        self, update_id: str, request: RespondManyInput, *, comment_ids: list[str] | None = None, open_limit: int = 0
    ) -> DispositionsRecorded:
        self._spent += BATCH_EVENTS
        # A regular activity, like every write of a handler (see `_record_accepted`).
        return await workflow.execute_activity(
            "record_dispositions",
            DispositionBatch(
                workflow_id=workflow.info().workflow_id,
                proposal_id=self._input.proposal_id,
                update_id=update_id,
                comment_ids=comment_ids or [],
                open_limit=open_limit,
                disposition=request.disposition,
                reason=request.reason,
            ),
            result_type=DispositionsRecorded,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=LEDGER_RETRY,
        )

    @workflow.update
    async def extend(self, extension: ExtendInput) -> datetime:
        if not self._by_hash:
            self._extensions += 1
            new_deadline = self._deadline + extension.by
            await ledger(
                self._input.proposal_id,
                "consultation_extended",
                f"{workflow.info().workflow_id}:extended-{self._extensions}",
                {"from": self._deadline.isoformat(), "to": new_deadline.isoformat()},
            )
            self._deadline = new_deadline
            await self._mail(f"extended-{self._extensions}")
            return new_deadline
        # The extension takes effect before the first await: the closing logic sees it however the awaits
        # interleave, and concurrent extensions add up.
        self._extensions += 1
        self._spent += EXTEND_EVENTS
        number = self._extensions
        self._deadline = new_deadline = self._deadline + extension.by
        # Keyed by the Update and holding only its input, so the entry says the same whatever order concurrent
        # extensions ran in: the deadline is the opening one plus every extension's `by`.
        update_id = workflow.current_update_info().id  # type: ignore[union-attr]
        await self._record_accepted(
            "consultation_extended",
            f"{workflow.info().workflow_id}:extended:{update_id}",
            extension.model_dump(mode="json"),
        )
        # Announced only now that it stands and is recorded; the mail names the deadline in force.
        await self._mail(f"extended-{number}")
        return new_deadline

    @extend.validator
    def _check_extension(self, extension: ExtendInput) -> None:
        if self._closed or self._closing:
            raise ApplicationError(
                "the consultation has closed; it can no longer be extended", type="ConsultationClosed"
            )
        self._refuse_while_draining()

    @workflow.query
    def status(self) -> ConsultationStatus:
        counts = (
            {"comment_count": self._comment_count, "open_count": self._open, "runs": self._runs}
            if self._by_hash
            else {}
        )
        return ConsultationStatus(
            workflow_id=workflow.info().workflow_id,
            deadline=self._deadline,
            is_open=not (self._closed or self._closing),
            document=self._input.document,
            comments=sorted(self._comments.values(), key=lambda c: c.submitted_at),
            **counts,
        )

    async def _mail(self, step: str) -> MailingResult:
        result = await self._send(step)
        if self._by_hash:
            # Who was actually written to is part of the record, as for a round's invitations.
            self._spent += EXTEND_EVENTS
            await self._record_accepted(
                "mail_outcome",
                f"{workflow.info().workflow_id}:mail:{step}",
                {
                    "step": step,
                    "round": None,
                    "stage_index": self._input.stage_index,
                    "recipients": [o.model_dump(mode="json") for o in result.recipients],
                    "not_invited": [],
                },
            )
        return result

    async def _send(self, step: str) -> MailingResult:
        return await workflow.execute_activity(
            "send_consultation_mail",
            ConsultationMailing(
                proposal_id=self._input.proposal_id,
                title=self._input.title,
                stage_index=self._input.stage_index,
                step=step,
                sectors=self._input.sectors,
                document=self._input.document,
                deadline=self._deadline,
            ),
            result_type=MailingResult,
            start_to_close_timeout=MAIL_TIMEOUT,
            heartbeat_timeout=MAIL_HEARTBEAT,
            retry_policy=MAIL_RETRY,
        )


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + DISPOSITION_BATCH] for i in range(0, len(ids), DISPOSITION_BATCH)]
