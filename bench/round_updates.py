"""Where a click's cost lies: the same positions sent as Updates straight to the round workflows, without the web.

The web action path (`bench.runner.run_ours`) is the web request plus this Update; timing this alone, on rounds of
its own, in the same run, splits the click's cost between the web app and the round's workflow side (the ledger
write, the search-attribute upsert, the answer notice). It is a reference beside the goal's figure, not a goal.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial

from sqlalchemy import Engine

from bench.runner import BenchError, CpuMeter, Figure, cpu_seconds, open_rounds, timed_calls
from devstack.stack import EmbeddedStack
from models.messages import PositionReceipt, PositionSubmission
from models.positions import Position
from models.tokens import ActionClaims, verify_action

SETTLE_S = 30.0  # at most this long waiting for the work left by what ran before (notices, outcome mail)


async def settle(quiet_share: float = 0.05, window_s: float = 0.5, limit_s: float = SETTLE_S) -> None:
    """Wait until this process uses under `quiet_share` of a core over `window_s` (or `limit_s` has passed)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_seconds() or 0.0
        await asyncio.sleep(window_s)
        if (cpu_seconds() or 0.0) - before < quiet_share * window_s:
            return


async def run_round_updates(
    stack: EmbeddedStack, engine: Engine, proposals: int, states: list[str], concurrency: int
) -> Figure:
    """Open `proposals` rounds of their own (untimed), then time one `submit_position` Update per state and round,
    in the click benchmark's order, each with what the web app would send for that delegate's link."""
    assert stack.client is not None and stack.settings is not None
    ids, found = await open_rounds(stack, engine, proposals, states, timeout=60 + 3 * proposals)
    keys = stack.settings.signing_keys

    def answer(claims: ActionClaims) -> PositionSubmission:
        return PositionSubmission(
            proposal_id=claims.proposal_id,
            round=claims.round,
            state=claims.state,
            delegate_id=claims.delegate_id,
            document_sha256=claims.document_sha256,
            position=Position.APPROVE,
        )

    async def submit(claims: ActionClaims) -> PositionReceipt:
        handle = stack.client.get_workflow_handle(claims.round_workflow_id)  # type: ignore[union-attr]
        return await handle.execute_update(
            "submit_position", answer(claims), id=str(uuid.uuid4()), result_type=PositionReceipt
        )

    links = [verify_action(keys, found[p][s].link.rsplit("/", 1)[1]) for s in states for p in ids]
    await settle()
    with CpuMeter(stack.temporal.pid if stack.temporal else None) as cpu:
        timed = await timed_calls([partial(submit, link) for link in links], concurrency)
    figure = Figure.of_calls(
        "execute_update submit_position straight to the round workflows (no web)", "positions/s", timed, cpu.used
    )
    receipts = [r for r in timed[2] if isinstance(r, PositionReceipt) and r.ledger_seq > 0]
    if not figure.errors and len(receipts) != len(links):
        raise BenchError(f"only {len(receipts)} of {len(links)} Updates to the rounds returned a ledger receipt")
    return figure
