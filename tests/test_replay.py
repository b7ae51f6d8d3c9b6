"""Recorded histories of finished proposals replay against the current workflow code without
non-determinism: a change that would break running proposals fails here (record new ones with
`python -m tests.record_histories`).

What the recorded runs stand for (each era's runs may still be open when the next code is deployed):
- `operational-framework-776ca791.*`, `review-round-with-two-reminders-*`: every ledger write a regular activity;
- `operational-framework-bf104d89.round-*`: rounds of `workflow.patched("position-ledger-local")`, whose
  position writes alone are local activities (recorded at 29539a2; that run's other workflows are the same as
  776ca791's and were not kept);
- `operational-framework-a7a48b4c.*`: every ledger write a local activity (`workflow.patched("ledger-local")`).
- `operational-framework-a215612a.*`: issue 17's integrity patches: coordinator Updates and the meeting record under
  the workflow's lock (`serial-coordinator-handlers`, `serial-meeting-record`), mail outcomes in the ledger
  (`round-invited-only`, `meeting-mail-outcome`), comment bodies by hash with bulk dispositions
  (`consultation-comments-by-hash`);
- `operational-framework-931ca95e.*`: a round with Timor-Leste not invited (nobody on the roster), then invited by
  the round's `resend` Update (`python -m tests.record_histories --resend`).
- `operational-framework-4b8ceb85.*`: issue 18's governance, the demo in ASEAN's order: a silent state makes the first
  review overdue and a silence procedure resolves it (`round-silence-not-consent`), the stage loop that can go back
  and meetings that decide, with an absent state consulted ad referendum (`stage-loop-goes-back`,
  `meeting-decisions`), funding indicated then confirmed (`funding-ministers-confirm`), membership read from the
  table (`members-from-table`), each body's own final word and the Summit report (`final-words-of-the-bodies`);
- `operational-framework-b491a28b.*`: a round overdue, extended, overdue again and closed without consensus, then the
  text revised and agreed (`python -m tests.record_histories --overdue`).
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = Path(__file__).resolve().parent / "histories"


async def test_recorded_histories_replay_against_the_current_code() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    # A proposal, its consultation, meeting and every round: at least one history of each workflow type.
    types = {
        WorkflowHistory.from_json(f.stem, f.read_text())
        .events[0]
        .workflow_execution_started_event_attributes.workflow_type.name
        for f in files
    }
    assert types >= {"ProposalWorkflow", "ReviewRoundWorkflow", "ConsultationWorkflow", "MeetingWorkflow"}
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    for path in files:
        result = await replayer.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
