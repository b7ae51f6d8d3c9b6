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


# Runs started since this patch write every ledger entry with a local activity: an entry is one short database
# write, and as a regular activity each cost a round trip through the server's activity queue and one more workflow
# task (a round's invitations waited for two of them). Runs started before keep the activities their history holds.
# `workflow.patched` decides once per run, at the run's first ledger write, and remembers the answer.
LEDGER_LOCAL = "ledger-local"


async def ledger(
    proposal_id: str,
    kind: str,
    key: str,
    payload: dict[str, object],
    *,
    local: bool = False,
    after_accept: bool = False,
) -> LedgerReceipt:
    """Append one idempotent entry to the proposal's ledger (`local` forces a local activity in an older run;
    `after_accept`, for an Update handler, a regular one: see `ledger_activity`)."""
    entry = LedgerAppend(proposal_id=proposal_id, kind=kind, idempotency_key=key, payload=payload)
    return await ledger_activity("append_ledger", entry, local=local, after_accept=after_accept)


async def ledger_activity(name: str, arg: object, *, local: bool = False, after_accept: bool = False) -> LedgerReceipt:
    """Run one of the ledger activities: as a local activity in this run's worker unless the run is older.

    `after_accept`: a regular activity even so. An Update handler's local activity runs inside the workflow task
    that accepts the Update; when the server drops that task (seen on the dev server with a dozen Updates at once)
    the entry is written for an Update the history never accepted. A regular activity is scheduled by the completed
    task, so it writes only for an accepted Update.
    """
    use_local = local or workflow.patched(LEDGER_LOCAL)  # asked first in any case: the patch marker's place is fixed
    if use_local and not after_accept:
        return await workflow.execute_local_activity(
            name, arg, result_type=LedgerReceipt, start_to_close_timeout=LEDGER_TIMEOUT, retry_policy=LEDGER_RETRY
        )
    return await workflow.execute_activity(
        name, arg, result_type=LedgerReceipt, start_to_close_timeout=LEDGER_TIMEOUT, retry_policy=LEDGER_RETRY
    )
