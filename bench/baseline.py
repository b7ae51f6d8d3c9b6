"""The raw-Temporal baseline: a workflow whose Update records an item and returns at once.

Nothing here runs at import time: the worker's sandbox imports this module again.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, Field


class BaselineInput(BaseModel):
    expected: int = Field(ge=1, description="the workflow ends once this many items are recorded")


class BaselineItem(BaseModel):
    """The same shape of answer a delegate sends: which state, which position."""

    state: str
    position: str


class BaselineReceipt(BaseModel):
    seq: int
    state: str


@workflow.defn
class BaselineWorkflow:
    @workflow.init
    def __init__(self, request: BaselineInput) -> None:
        self._expected = request.expected
        self._items: list[BaselineItem] = []
        self._finish = False

    @workflow.run
    async def run(self, request: BaselineInput) -> int:
        await workflow.wait_condition(lambda: self._finish or len(self._items) >= self._expected)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return len(self._items)

    @workflow.update
    def record(self, item: BaselineItem) -> BaselineReceipt:
        self._items.append(item)
        return BaselineReceipt(seq=len(self._items), state=item.state)

    @workflow.signal
    def finish(self) -> None:
        self._finish = True

    @workflow.query
    def recorded(self) -> int:
        return len(self._items)
