"""Each body's own word and the report to the ASEAN Summit, on the time-skipping server (issue 18, point 3)."""

from __future__ import annotations

from datetime import timedelta

from models.labels import status_text
from models.messages import ProposalState, StageStatus
from models.positions import Position
from models.process import EndorsementMode, MinisterialStage, SeniorOfficialsStage, StageType, SummitReportStage
from models.states import MemberState
from tests.harness import Harness, everyone, review


def ad_referendum(stage: type[SeniorOfficialsStage | MinisterialStage]) -> SeniorOfficialsStage | MinisterialStage:
    return stage.model_validate({"mode": EndorsementMode.AD_REFERENDUM, "deadline": timedelta(days=14)})


async def test_a_proposal_adgmin_endorsed_is_endorsed_by_the_adgmin_and_reported_to_the_summit(
    harness: Harness,
) -> None:
    handle = await harness.start(
        review(),
        ad_referendum(SeniorOfficialsStage),
        ad_referendum(MinisterialStage),
        SummitReportStage(summit="the 50th ASEAN Summit"),
    )
    await harness.round_open(handle.id, 1)
    await everyone(harness, handle.id, 1)
    result = await harness.result(handle)  # both ad referendums pass in silence at their deadlines

    assert (result.status, result.decided_by, result.summit_reported) == (
        ProposalState.ENDORSED,
        StageType.MINISTERIAL,
        True,
    )
    assert status_text(result.status, result.decided_by, result.summit_reported) == (
        "endorsed by the ADGMIN; reported to the ASEAN Summit"
    )
    assert [s.decision for s in result.stages] == ["recommended_for_endorsement", "endorsed", "endorsed", "reported"]
    assert result.stages[3].status is StageStatus.PASSED
    assert result.stages[3].outcome == "reported to the 50th ASEAN Summit"
    assert result.stage == "endorsed"

    (report,) = [m for m in harness.backend.summit_reports if m.proposal_id == handle.id]
    assert (report.status, report.decided_by, report.summit) == (
        ProposalState.ENDORSED,
        StageType.MINISTERIAL,
        "the 50th ASEAN Summit",
    )
    assert report.stage_index == 3 and report.document.sha256 == result.document.sha256
    (entry,) = harness.backend.payloads(handle.id, "summit_reported")
    assert entry == {
        "index": 3,
        "summit": "the 50th ASEAN Summit",
        "status": "endorsed",
        "decided_by": "ministerial",
        "sha256": result.document.sha256,
        "notified": 1,
    }
    kinds = harness.backend.kinds(handle.id)
    assert kinds.index("summit_reported") < kinds.index("proposal_closed")
    (closed,) = harness.backend.payloads(handle.id, "proposal_closed")
    assert (closed["status"], closed["decided_by"]) == ("endorsed", "ministerial")
    (outcome,) = [o for o in harness.backend.outcomes if o.proposal_id == handle.id]
    assert (outcome.status, outcome.decided_by, outcome.summit_reported) == (
        ProposalState.ENDORSED,
        StageType.MINISTERIAL,
        True,
    )


async def test_wg_ai_agrees_when_no_higher_body_follows(harness: Harness) -> None:
    handle = await harness.start(review())
    await harness.round_open(handle.id, 1)
    await everyone(harness, handle.id, 1)
    result = await harness.result(handle)

    assert (result.status, result.decided_by) == (ProposalState.AGREED, StageType.MEMBER_REVIEW)
    assert result.stages[0].decision == "agreed" and not result.summit_reported
    assert status_text(result.status, result.decided_by) == "agreed by the WG-AI"


async def test_an_adgsom_objection_is_not_endorsed_by_the_adgsom_and_nothing_goes_to_the_summit(
    harness: Harness,
) -> None:
    handle = await harness.start(review(), ad_referendum(SeniorOfficialsStage), SummitReportStage())
    await harness.round_open(handle.id, 1)
    await everyone(harness, handle.id, 1)
    await harness.round_open(handle.id, 2)
    await harness.answer(handle.id, 2, MemberState.SG, Position.OBJECT, "needs ministerial clearance first")
    result = await harness.result(handle)

    assert (result.status, result.decided_by) == (ProposalState.NOT_ENDORSED, StageType.SENIOR_OFFICIALS)
    assert [s.decision for s in result.stages[:2]] == ["recommended_for_endorsement", "not_endorsed"]
    assert result.stages[2].status is StageStatus.PENDING and not result.summit_reported
    assert not [m for m in harness.backend.summit_reports if m.proposal_id == handle.id]
    assert "summit_reported" not in harness.backend.kinds(handle.id)
    assert status_text(result.status, result.decided_by) == "not endorsed by the ADGSOM"
