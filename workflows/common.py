"""Activity options shared by the workflows: every call has a timeout and an explicit retry policy."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from models.messages import LedgerAppend, LedgerReceipt

# The ledger must never lose an entry: retry until the database is back (entries are idempotent).
LEDGER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
LEDGER_TIMEOUT = timedelta(seconds=30)

# Mail is retried until the relay takes it; the outbox makes each recipient's message go once.
MAIL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=2))
MAIL_TIMEOUT = timedelta(minutes=5)
# A fan-out heartbeats as it goes (at most once a second), so a worker that dies mid-fan-out is noticed in
# seconds, not minutes.
MAIL_HEARTBEAT = timedelta(seconds=10)


async def ledger(proposal_id: str, kind: str, key: str, payload: dict[str, object]) -> LedgerReceipt:
    """Append one idempotent entry to the proposal's ledger."""
    return await workflow.execute_activity(
        "append_ledger",
        LedgerAppend(proposal_id=proposal_id, kind=kind, idempotency_key=key, payload=payload),
        result_type=LedgerReceipt,
        start_to_close_timeout=LEDGER_TIMEOUT,
        retry_policy=LEDGER_RETRY,
    )


async def ledger_local(proposal_id: str, kind: str, key: str, payload: dict[str, object]) -> LedgerReceipt:
    """The same entry written by a local activity: for writes someone is waiting on (a delegate's receipt)."""
    return await workflow.execute_local_activity(
        "append_ledger",
        LedgerAppend(proposal_id=proposal_id, kind=kind, idempotency_key=key, payload=payload),
        result_type=LedgerReceipt,
        start_to_close_timeout=LEDGER_TIMEOUT,
        retry_policy=LEDGER_RETRY,
    )
