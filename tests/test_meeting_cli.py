"""The meeting commands on the real dev server: `aisafe cancel-meeting`, `aisafe reschedule` and `aisafe
record-meeting` in its decision form, with their one-line refusals (issue 18, points 2 and 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

import operations
from devstack.demo import wait_for
from tests.integration import acli, stack_env
from tests.test_concurrency import kinds, launch, proposal_file, verified
from tests.test_integration import make_stack


async def test_a_meeting_is_cancelled_rescheduled_and_recorded_from_the_command_line(
    tmp_path: Path, dev_env: WorkflowEnvironment
) -> None:
    stack = await make_stack(tmp_path, dev_env)
    try:
        meeting = {
            "type": "senior_officials",
            "mode": "meeting",
            "date": (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat(),
            "chair": "MY",
            "grace": "P1D",
            "participants": ["MY", "SG", "TH"],
            "reminders": [],
        }
        proposal_id = await launch(stack, proposal_file(tmp_path / "p", meeting))
        env = stack_env(stack)

        naive = await acli("reschedule", proposal_id, "--date", "2027-02-01T09:00:00", env=env)
        assert naive.code == 2 and "with its UTC offset" in naive.stderr and len(naive.stderr.splitlines()) == 1
        stranger = await acli(
            "record-meeting", proposal_id, "--present", "MY,XX", "--decision", "endorsed", "--paragraph", "x", env=env
        )
        assert stranger.code == 2 and "'XX' is not a member state code" in stranger.stderr
        word = await acli(
            "record-meeting", proposal_id, "--present", "MY", "--decision", "adopted", "--paragraph", "x", env=env
        )
        assert word.code == 2 and "is not one of endorsed, approved, noted" in word.stderr

        cancelled = await acli("cancel-meeting", proposal_id, "--reason", "venue unavailable", "--json", env=env)
        assert cancelled.code == 0, cancelled.stderr
        assert cancelled.json()["sequence"] == 1 and "cancelled" in cancelled.json()["waiting_for_date"]
        waiting = await acli("status", proposal_id, env=env)
        assert "waiting: the meeting was cancelled (venue unavailable)" in waiting.stdout

        later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
        move = ["reschedule", proposal_id, "--date", later.isoformat(), "--venue", "Jakarta", "--json"]
        moved = await acli(*move, env=env)
        assert moved.code == 0, moved.stderr
        assert moved.json()["sequence"] == 2 and moved.json()["venue"] == "Jakarta" and not moved.json()["held"]
        assert datetime.fromisoformat(moved.json()["date"]) == later
        # A CLI process takes seconds to start on a small machine: the last move, to a moment away, is in-process.
        assert stack.client
        soon = datetime.now(UTC) + timedelta(seconds=2)
        assert (await operations.reschedule(stack.client, proposal_id, soon.isoformat(), None)).venue == "Jakarta"

        paragraph = tmp_path / "paragraph.md"
        paragraph.write_text("The Meeting endorsed the ASEAN AI SAFE Operational Framework.\n")
        record = [
            "record-meeting",
            proposal_id,
            "--present",
            "MY,SG,TH",
            "--decision",
            "endorsed",
            "--paragraph-file",
            str(paragraph),
            "--reservation",
            "SG=on the review clause",
            "--json",
        ]

        async def recorded() -> bool:
            done = await acli(*record, env=env)
            if done.code == 2 and "record it afterwards" in done.stderr:
                return False
            assert done.code == 0, done.stderr
            assert done.json()["decision"] == "endorsed" and done.json()["reservations"] == {
                "SG": "on the review clause"
            }
            return True

        await wait_for(recorded, "the meeting to be held", timeout=60, interval=0.5)
        await stack.client.get_workflow_handle(proposal_id).result()
        final = await acli("status", proposal_id, "--json", env=env)
        assert final.json()["status"] == "endorsed"
        assert final.json()["stages"][0]["details"]["meeting"]["decision"] == "endorsed"
        assert [len(kinds(stack, proposal_id, k)) for k in ("meeting_cancelled", "meeting_rescheduled")] == [1, 2]
        await verified(stack, proposal_id, tmp_path / "bundle")
    finally:
        await stack.stop()
