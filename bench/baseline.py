"""The raw-Temporal baseline: a workflow whose Update records an item and returns at once.

`record_awaiting` does the same and also upserts the search attribute of the states still awaited, as a review
round does on each answer (DESIGN.md: "states still awaited"): what that one upsert costs on the same server.

Nothing here runs at import time: the worker's sandbox imports this module again.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, Field

    from workflows.review_round import AWAITING  # the very key a round publishes, registered on the dev server


class BaselineInput(BaseModel):
    expected: int = Field(ge=1, description="the workflow ends once this many items are recorded")
    states: list[str] = Field(default_factory=list, description="whose items are awaited (record_awaiting)")


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
        self._states = request.states
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

    @workflow.update
    def record_awaiting(self, item: BaselineItem) -> BaselineReceipt:
        receipt = self.record(item)
        answered = {i.state for i in self._items}
        workflow.upsert_search_attributes([AWAITING.value_set([s for s in self._states if s not in answered])])
        return receipt

    @workflow.signal
    def finish(self) -> None:
        self._finish = True

    @workflow.query
    def recorded(self) -> int:
        return len(self._items)
