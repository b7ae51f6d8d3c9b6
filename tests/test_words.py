"""Issue 18, points 3, 6, 8 and 9 without a server: each body's own word for the final status, the Summit report
stage, the default process in ASEAN's order, states in ASEAN's order, a meeting's chair, and default reminders
that fit the deadline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine
from typer.testing import CliRunner

import operations
import starter
from audit.bundle import LedgerLine
from audit.record import AuditRecord, build_record, name_key
from audit.report import render_report
from models.labels import status_text
from models.messages import DocumentRef, ProposalState, ProposalStatus
from models.outcomes import CARRIED, FinalWord, StageWord, final_state, higher_body_follows, round_word
from models.positions import Position
from models.process import (
    ConsultationStage,
    FundingStage,
    InputFileError,
    MemberReviewStage,
    ProcessDefinition,
    StageType,
    load_proposal_file,
)
from models.roster import load_roster_file
from models.states import MemberState

REVIEW, ADGSOM, ADGMIN = StageType.MEMBER_REVIEW, StageType.SENIOR_OFFICIALS, StageType.MINISTERIAL
FUNDING, SUMMIT = StageType.FUNDING, StageType.SUMMIT_REPORT
# Codes and names disagree on these: by code ID, KH, MM, MY; by English name Cambodia, Indonesia, Malaysia, Myanmar.
ID, KH, MM, MY = MemberState.ID, MemberState.KH, MemberState.MM, MemberState.MY
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# --- point 3: the final status in the deciding body's word ---------------------------------------------------


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ([StageWord(REVIEW, True, "agreed")], FinalWord(ProposalState.AGREED, REVIEW)),
        (
            [StageWord(REVIEW, True, "recommended_for_endorsement"), StageWord(ADGSOM, True, "endorsed")],
            FinalWord(ProposalState.ENDORSED, ADGSOM),
        ),
        (
            [StageWord(REVIEW, True), StageWord(ADGSOM, True), StageWord(ADGMIN, True, "approved")],
            FinalWord(ProposalState.APPROVED, ADGMIN),
        ),
        ([StageWord(REVIEW, True), StageWord(ADGMIN, True, "noted")], FinalWord(ProposalState.NOTED, ADGMIN)),
        # A meeting stage that said no word of its own (an older meeting record) endorses.
        ([StageWord(REVIEW, True), StageWord(ADGMIN, True)], FinalWord(ProposalState.ENDORSED, ADGMIN)),
        # Funding and the Summit report after ADGMIN leave ADGMIN's word standing.
        (
            [StageWord(ADGMIN, True, "endorsed"), StageWord(FUNDING, True), StageWord(SUMMIT, True, "reported")],
            FinalWord(ProposalState.ENDORSED, ADGMIN),
        ),
        ([StageWord(FUNDING, True)], FinalWord(ProposalState.APPROVED, FUNDING)),
        ([StageWord(REVIEW, False, "not_agreed")], FinalWord(ProposalState.NOT_AGREED, REVIEW)),
        ([StageWord(REVIEW, True), StageWord(ADGSOM, False)], FinalWord(ProposalState.NOT_ENDORSED, ADGSOM)),
        ([StageWord(ADGMIN, False, "not_endorsed")], FinalWord(ProposalState.NOT_ENDORSED, ADGMIN)),
        ([StageWord(ADGMIN, True), StageWord(FUNDING, False)], FinalWord(ProposalState.NOT_FUNDED, FUNDING)),
    ],
)
def test_the_final_status_is_the_deciding_bodys_word(stages: list[StageWord], expected: FinalWord) -> None:
    assert final_state(stages) == expected


def test_wg_ai_agrees_alone_and_recommends_when_a_higher_body_follows() -> None:
    types = [StageType.DRAFTING, REVIEW, StageType.CONSULTATION, REVIEW, ADGSOM]
    assert higher_body_follows(types, 1) and higher_body_follows(types, 3) and not higher_body_follows(types, 4)
    assert round_word(REVIEW, True, higher_body_follows=True) == "recommended_for_endorsement"
    assert round_word(REVIEW, True) == "agreed"
    assert round_word(REVIEW, False) == "not_agreed"
    assert (round_word(ADGSOM, True), round_word(ADGMIN, False)) == ("endorsed", "not_endorsed")


def test_status_text_names_the_body_and_the_summit_report() -> None:
    assert status_text(ProposalState.ENDORSED, ADGMIN) == "endorsed by the ADGMIN"
    assert status_text(ProposalState.ENDORSED, ADGMIN, True) == "endorsed by the ADGMIN; reported to the ASEAN Summit"
    assert status_text(ProposalState.ENDORSED, ADGSOM) == "endorsed by the ADGSOM"
    assert status_text(ProposalState.AGREED, REVIEW) == "agreed by the WG-AI"
    assert status_text(ProposalState.NOT_AGREED, REVIEW) == "not agreed by the WG-AI"
    assert status_text(ProposalState.NOT_FUNDED, FUNDING) == "not funded"
    # Proposals closed before the bodies' words keep theirs, with no body named.
    assert status_text(ProposalState.ADOPTED) == "adopted" and status_text(ProposalState.NOT_ADOPTED) == "not adopted"
    assert ProposalState.ADOPTED in CARRIED and ProposalState.NOT_ENDORSED not in CARRIED


def test_the_audit_record_shows_the_final_word() -> None:
    record = AuditRecord(proposal_id="p", status="endorsed", decided_by="ministerial", summit_reported=True)
    assert record.status_words == "endorsed by the ADGMIN; reported to the ASEAN Summit"
    assert AuditRecord(proposal_id="p", status="adopted").status_words == "adopted"
    assert AuditRecord(proposal_id="p", status="something_else").status_words == "something else"


# --- the summit_report stage and the default process ---------------------------------------------------------


def test_a_summit_report_stage_may_only_be_last() -> None:
    process = ProcessDefinition.model_validate({"stages": [{"type": "member_review"}, {"type": "summit_report"}]})
    assert process.stages[-1].type is SUMMIT
    with pytest.raises(ValidationError, match="a summit_report stage may only be the last stage"):
        ProcessDefinition.model_validate({"stages": [{"type": "summit_report"}, {"type": "member_review"}]})


def write_proposal(tmp_path: Path, stages: str) -> Path:
    (tmp_path / "doc.md").write_text("# A text\n", encoding="utf-8")
    path = tmp_path / "proposal.yaml"
    path.write_text(
        f"title: A proposal\nkind: operational_framework\ndocument: doc.md\nprocess:\n  stages:\n{stages}",
        encoding="utf-8",
    )
    return path


# --- point 8: a meeting's chair is a member state on the meeting date ----------------------------------------

MEETING = """    - type: ministerial
      mode: meeting
      date: {date}
      chair: {chair}
"""


def test_a_chair_that_is_not_a_member_state_is_refused_clearly(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, MEETING.format(date="2027-01-22T09:00:00+08:00", chair="XX"))
    with pytest.raises(InputFileError) as error:
        load_proposal_file(path)
    message = str(error.value)
    assert "process.stages.0.chair (line 9)" in message
    assert "the chair must be a member state" in message and "'XX'" in message and "BN, KH" in message


def test_a_chair_must_be_a_member_on_the_meeting_date(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, MEETING.format(date="2025-03-01T09:00:00+07:00", chair="TL"))
    with pytest.raises(InputFileError) as error:
        load_proposal_file(path)
    assert str(error.value) == (
        f"{path} (line 9): process.stages.0.chair: Timor-Leste (TL) is not a member state on the meeting date "
        "2025-03-01 (a member since 2025-10-26)"
    )
    later = write_proposal(tmp_path, MEETING.format(date="2027-01-22T09:00:00+07:00", chair="TL"))
    proposal, _ = load_proposal_file(later)
    assert proposal.process.stages[0].chair is MemberState.TL  # type: ignore[union-attr]


# --- point 9: default reminders only where they fit ----------------------------------------------------------


def test_a_short_deadline_with_no_reminders_written_gets_only_the_defaults_that_fit(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, "    - type: member_review\n      deadline: PT1H\n")
    proposal, _ = load_proposal_file(path)
    assert proposal.process.stages[0].reminders == []  # type: ignore[union-attr]
    assert MemberReviewStage.model_validate({"deadline": "P3D"}).reminders == [timedelta(days=1)]
    assert MemberReviewStage.model_validate({"deadline": "P1D"}).reminders == []  # P1D is not before P1D
    assert MemberReviewStage().reminders == [timedelta(days=7), timedelta(days=1)]
    assert FundingStage.model_validate({"budget_target": "10.00"}).reminders == [timedelta(days=7), timedelta(days=1)]
    assert ConsultationStage.model_validate({"deadline": "PT1H"}).reminders == []


def test_reminders_written_that_do_not_fit_are_still_refused(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, "    - type: member_review\n      deadline: PT1H\n      reminders: [P7D]\n")
    with pytest.raises(
        InputFileError, match=r"reminder P7D must be a positive duration shorter than the deadline PT1H"
    ):
        load_proposal_file(path)


def test_a_bad_deadline_is_reported_as_itself_when_no_reminders_are_written() -> None:
    with pytest.raises(ValidationError, match="is not a duration"):
        MemberReviewStage.model_validate({"deadline": 3600})


def test_running_payloads_keep_the_reminders_they_were_written_with() -> None:
    """A recorded payload holds its reminders: the defaults are not applied to it again."""
    stage = MemberReviewStage.model_validate({"deadline": "PT1H", "reminders": []})
    again = MemberReviewStage.model_validate(stage.model_dump(mode="json"))
    assert again == stage
    old = MemberReviewStage.model_validate({"deadline": "P14D", "reminders": ["P10D"]})
    assert MemberReviewStage.model_validate(old.model_dump(mode="json")).reminders == [timedelta(days=10)]


# --- point 8: states in ASEAN's order ------------------------------------------------------------------------


def test_the_report_matrix_lists_states_by_english_name() -> None:
    record = AuditRecord(proposal_id="p", answers={(s.value, 1): None for s in (MY, ID, MM, KH)})  # type: ignore[misc]
    assert record.states == [KH, ID, MY, MM]
    assert sorted(["MY", "ID", "MM", "KH", "partner"], key=name_key) == ["KH", "ID", "MY", "MM", "partner"]


@pytest.fixture
def mixed_order_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """`status` answered without a server, with states whose codes and names sort differently."""
    document = DocumentRef(sha256="ab" * 32, version=1, filename="framework.md", size=120)

    async def client_for(settings: Any) -> None:
        return None

    async def status(client: Any, proposal_id: str) -> ProposalStatus:
        return ProposalStatus(
            id=proposal_id,
            title="A proposal",
            kind="operational_framework",
            lead_state=MY,
            stage="endorsed",
            status=ProposalState.ENDORSED,
            decided_by=ADGMIN,
            summit_reported=True,
            round=1,
            deadline=datetime(2026, 12, 1, tzinfo=UTC),
            positions={MY: Position.APPROVE, ID: Position.APPROVE, MM: None, KH: Position.ABSTAIN},
            not_invited={MM: "no delegate", ID: "no delegate"},
            document=document,
            versions=[document],
            rounds=[],
        )

    monkeypatch.setattr(starter, "client_for", client_for)
    monkeypatch.setattr(operations, "status", status)


@pytest.mark.usefixtures("mixed_order_status")
def test_status_lists_states_by_english_name_in_json_and_on_screen() -> None:
    shown = CliRunner().invoke(starter.app, ["status", "p-1", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert list(data["positions"]) == ["KH", "ID", "MY", "MM"]
    assert list(data["not_invited"]) == ["ID", "MM"]
    assert (data["status"], data["decided_by"], data["summit_reported"]) == ("endorsed", "ministerial", True)

    human = CliRunner().invoke(starter.app, ["status", "p-1"])
    assert human.exit_code == 0, human.output
    assert "status: endorsed by the ADGMIN; reported to the ASEAN Summit" in human.stdout
    rows = [line.split("\t")[0] for line in human.stdout.splitlines() if line[:2] in {"KH", "ID", "MY", "MM"}]
    assert rows == ["KH Cambodia", "ID Indonesia", "MY Malaysia", "MM Myanmar"]


def ledger(*entries: tuple[str, str, dict[str, Any]]) -> list[LedgerLine]:
    return [
        LedgerLine("p", seq, kind, key, json.dumps(payload), f"2027-01-2{seq}T00:00:00Z", "0" * 64, "0" * 64)
        for seq, (kind, key, payload) in enumerate(entries, start=1)
    ]


def test_the_record_and_its_report_use_the_bodies_words() -> None:
    lines = ledger(
        ("stage_started", "p:stage-0", {"index": 0, "stage": "ministerial"}),
        (
            "stage_ended",
            "p:stage-0:ended",
            {"index": 0, "stage": "ministerial", "status": "passed", "outcome": "ADGMIN ad referendum: no objection"}
            | {"decision": "endorsed"},
        ),
        ("stage_started", "p:stage-1", {"index": 1, "stage": "summit_report"}),
        ("summit_reported", "p:stage-1:summit-reported", {"index": 1, "status": "endorsed", "notified": 1}),
        ("stage_ended", "p:stage-1:ended", {"index": 1, "stage": "summit_report", "status": "passed"}),
        ("proposal_closed", "p:closed", {"status": "endorsed", "rounds": 1, "decided_by": "ministerial"}),
    )
    record = build_record(lines)

    assert record.status_words == "endorsed by the ADGMIN; reported to the ASEAN Summit"
    assert [(s.body, s.decision) for s in record.stages] == [
        ("ASEAN Digital Ministers' Meeting (ADGMIN)", "endorsed"),
        ("Report to the ASEAN Summit", None),
    ]
    page = render_report(record, None)
    assert "status <strong>endorsed by the ADGMIN; reported to the ASEAN Summit</strong>" in page
    assert "<td>passed (endorsed)</td>" in page and "adopted" not in page


def test_roster_show_lists_states_by_english_name(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    operations.import_roster(sqlite_engine, load_roster_file(EXAMPLES / "roster.yaml"))
    monkeypatch.setattr(starter, "engine_for", lambda settings: sqlite_engine)

    shown = CliRunner().invoke(starter.app, ["roster", "show", "--json"])

    assert shown.exit_code == 0, shown.output
    states = list(dict.fromkeys(row["state"] for row in json.loads(shown.stdout) if row["state"]))
    assert [MemberState(s).official_name for s in states] == sorted(s.official_name for s in MemberState)
    assert states[:3] == ["BN", "KH", "ID"]
