"""A stakeholder consultation: comments until the (extendable) deadline, then a disposition for every one."""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        Comment,
        CommentReceipt,
        CommentSubmission,
        ConsultationInput,
        ConsultationMailing,
        ConsultationStatus,
        DispositionInput,
        ExtendInput,
        MailingResult,
    )
    from workflows.common import MAIL_HEARTBEAT, MAIL_RETRY, MAIL_TIMEOUT, ledger


@workflow.defn
class ConsultationWorkflow:
    @workflow.init
    def __init__(self, consultation: ConsultationInput) -> None:
        self._input = consultation
        self._deadline = consultation.deadline
        self._comments: dict[str, Comment] = {}
        self._extensions = 0
        self._closed = False

    @workflow.run
    async def run(self, consultation: ConsultationInput) -> ConsultationStatus:
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
        receipt = await ledger(
            self._input.proposal_id,
            "comment",
            f"{workflow.info().workflow_id}:comment:{comment_id}",
            {"comment_id": comment_id, **submission.model_dump(mode="json")},
        )
        self._comments[comment_id] = Comment(
            comment_id=comment_id,
            stakeholder_id=submission.stakeholder_id,
            sector=submission.sector,
            text=submission.text,
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
        if self._closed:
            raise ApplicationError("the consultation is closed", type="ConsultationClosed")
        if submission.proposal_id != self._input.proposal_id or submission.stage_index != self._input.stage_index:
            raise ApplicationError("this link is for another consultation", type="WrongConsultation")
        if submission.sector not in self._input.sectors:
            raise ApplicationError("your sector is not invited to this consultation", type="NotInvited")
        if submission.document_sha256 != self._input.document.sha256:
            raise ApplicationError("the comment names another document version", type="DocumentMismatch")

    @workflow.update
    async def respond(self, answer: DispositionInput) -> Comment:
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

    @respond.validator
    def _check_response(self, answer: DispositionInput) -> None:
        if answer.comment_id not in self._comments:
            raise ApplicationError(f"no comment {answer.comment_id!r} in this consultation", type="UnknownComment")

    @workflow.update
    async def extend(self, extension: ExtendInput) -> datetime:
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

    @extend.validator
    def _check_extension(self, extension: ExtendInput) -> None:
        if self._closed:
            raise ApplicationError(
                "the consultation has closed; it can no longer be extended", type="ConsultationClosed"
            )

    @workflow.query
    def status(self) -> ConsultationStatus:
        return ConsultationStatus(
            workflow_id=workflow.info().workflow_id,
            deadline=self._deadline,
            is_open=not self._closed,
            document=self._input.document,
            comments=sorted(self._comments.values(), key=lambda c: c.submitted_at),
        )

    async def _mail(self, step: str) -> MailingResult:
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
