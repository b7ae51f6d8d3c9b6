"""Proposal and roster files: the examples load, and bad files are refused with messages a coordinator can act on."""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from devstack.services import free_port
from models.positions import DecisionRule, Position, SilencePolicy
from models.process import InputFileError, MemberReviewStage, load_proposal_file
from models.roster import Role, Sector, delegate_id, load_roster_file
from models.states import MemberState
from operations import load_meeting_record
from tests.integration import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PROPOSAL = """\
title: ASEAN AI SAFE Funding Model
kind: funding_model
lead_state: MY
document: funding-model.md
process:
  stages:
    - type: drafting
    - type: member_review
      rule: consensus
      deadline: P14D
      reminders: [P7D, P1D]
      max_rounds: 3
"""

ROSTER = """\
delegates:
  - state: MM
    role: focal_point
    name: "Aye Thida Win"
    email: aye.thida.win@mm.example.org
    timezone: Asia/Yangon
  - state: TL
    role: alternate
    name: "Joaquim da Silva Pereira"
    email: joaquim.pereira@tl.example.org
    timezone: Asia/Dili
"""


def write_proposal(tmp_path: Path, text: str, *, document: str | None = "# Funding model\n\nEqual shares.\n") -> Path:
    if document is not None:
        (tmp_path / "funding-model.md").write_text(document, encoding="utf-8")
    path = tmp_path / "proposal.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def write_roster(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(load: object, path: Path) -> str:
    with pytest.raises(InputFileError) as caught:
        load(path)  # type: ignore[operator]
    return str(caught.value)


def line_of(text: str, fragment: str) -> int:
    """1-based line number of the first line of `text` containing `fragment`."""
    return next(n for n, line in enumerate(text.splitlines(), start=1) if fragment in line)


def problem(message: str, field: str) -> str:
    """The bullet of `message` that reports on `field` (the last element of its location)."""
    bullets = [line for line in message.splitlines() if re.match(rf"\s*- \S*\b{re.escape(field)}\b", line)]
    assert bullets, f"no problem reported for {field!r} in:\n{message}"
    return bullets[0]


# --- the examples ---------------------------------------------------------------------------------------


def test_example_proposal_loads_with_its_process_and_document() -> None:
    proposal, body = load_proposal_file(EXAMPLES / "operational-framework.yaml")

    assert proposal.title == "ASEAN AI SAFE Operational Framework"
    assert proposal.kind == "operational_framework"
    assert proposal.lead_state is MemberState.MY
    assert body == (EXAMPLES / "operational-framework.md").read_text(encoding="utf-8")
    assert body.startswith("# ASEAN AI SAFE Operational Framework")
    # ASEAN's order: member states see the text first, stakeholders comment on what they cleared (issue 18).
    assert [s.type.value for s in proposal.process.stages] == [
        "drafting",
        "member_review",
        "consultation",
        "member_review",
        "senior_officials",
        "ministerial",
        "summit_report",
    ]
    review = proposal.process.stages[3]
    assert isinstance(review, MemberReviewStage)
    assert review.rule is DecisionRule.CONSENSUS
    assert review.deadline == timedelta(days=14)
    assert review.reminders == [timedelta(days=7), timedelta(days=1)]
    assert review.max_rounds == 3


def test_example_roster_has_a_focal_point_and_an_alternate_for_each_of_the_eleven_states() -> None:
    roster = load_roster_file(EXAMPLES / "roster.yaml")

    state_roles = (Role.FOCAL_POINT, Role.ALTERNATE, Role.SENIOR_OFFICIAL, Role.MINISTER_OFFICE)
    delegates = [d for d in roster.delegates if d.role in state_roles]
    roles = Counter((d.state, d.role) for d in delegates)
    assert roles == {(state, role): 1 for state in MemberState for role in state_roles}
    stakeholders = [d for d in roster.delegates if d.role is Role.STAKEHOLDER]
    assert Counter(d.sector for d in stakeholders) == {sector: 2 for sector in Sector}
    assert all(d.state is None and d.organisation for d in stakeholders)
    assert [d.state for d in roster.delegates if d.role is Role.LEADERS_CONTACT] == [MemberState.MY]
    assert len({d.delegate_id for d in roster.delegates}) == len(roster.delegates) == 53
    assert len({d.email for d in roster.delegates}) == 53
    myanmar = {d.timezone for d in roster.delegates if d.state is MemberState.MM}
    assert myanmar == {"Asia/Yangon"}


def test_roster_email_is_stored_lower_case_so_the_delegate_id_does_not_depend_on_case(tmp_path: Path) -> None:
    path = write_roster(tmp_path, ROSTER.replace("aye.thida.win@mm.example.org", "Aye.Thida.Win@MM.Example.org"))

    delegate = load_roster_file(path).delegates[0]

    assert delegate.email == "aye.thida.win@mm.example.org"
    assert delegate.delegate_id == delegate_id(MemberState.MM, "aye.thida.win@mm.example.org")
    assert "aye" not in delegate.delegate_id, "the id travels in links and histories; it must not reveal the address"


def test_proposal_file_with_defaults_gets_the_default_review_process(tmp_path: Path) -> None:
    text = "title: ASEAN AI SAFE Funding Model\nkind: funding_model\ndocument: funding-model.md\n"
    text += "process:\n  stages:\n    - type: member_review\n"

    proposal, _ = load_proposal_file(write_proposal(tmp_path, text))

    assert proposal.lead_state is MemberState.MY
    [review] = proposal.process.stages
    assert isinstance(review, MemberReviewStage)
    assert (review.rule, review.deadline, review.silence) == (
        DecisionRule.CONSENSUS,
        timedelta(days=14),
        SilencePolicy.ABSTAIN,
    )


# --- bad proposal files -----------------------------------------------------------------------------------


def test_missing_title_is_named(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, PROPOSAL.replace("title: ASEAN AI SAFE Funding Model\n", ""))

    message = refusal(load_proposal_file, path)

    assert str(path) in message
    assert "Field required" in problem(message, "title")


def test_unknown_rule_is_named_with_its_line_and_the_allowed_rules(tmp_path: Path) -> None:
    text = PROPOSAL.replace("rule: consensus", "rule: majority")
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    assert str(path) in message
    bullet = problem(message, "rule")
    assert "stages.1" in bullet
    assert f"(line {line_of(text, 'rule: majority')})" in bullet
    assert "consensus" in bullet and "unanimity" in bullet


def test_bad_duration_is_named_with_its_line(tmp_path: Path) -> None:
    text = PROPOSAL.replace("deadline: P14D", "deadline: fortnight")
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    assert str(path) in message
    bullet = problem(message, "deadline")
    assert f"(line {line_of(text, 'deadline: fortnight')})" in bullet
    assert "timedelta" in bullet or "duration" in bullet


def test_zero_deadline_is_refused_with_an_example_of_a_valid_one(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, PROPOSAL.replace("deadline: P14D", "deadline: P0D").replace("[P7D, P1D]", "[]"))

    message = refusal(load_proposal_file, path)

    assert "P14D" in problem(message, "deadline")


def test_reminder_longer_than_the_deadline_is_refused(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, PROPOSAL.replace("reminders: [P7D, P1D]", "reminders: [P7D, P20D]"))

    message = refusal(load_proposal_file, path)

    assert str(path) in message
    assert "stages.1" in message
    assert "reminder P20D" in message
    assert "shorter than the deadline P14D" in message


def test_unknown_lead_state_is_named_with_its_line_and_the_valid_codes(tmp_path: Path) -> None:
    text = PROPOSAL.replace("lead_state: MY", "lead_state: XX")
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    assert str(path) in message
    bullet = problem(message, "lead_state")
    assert f"(line {line_of(text, 'lead_state: XX')})" in bullet
    assert "'TL'" in bullet and "'MY'" in bullet


def test_invalid_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    text = PROPOSAL.replace("lead_state: MY", "lead_state: MY: Malaysia")
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    assert message.startswith(str(path))
    assert f"line {line_of(text, 'lead_state: MY: Malaysia')}, column 15" in message
    assert "not valid YAML" in message


def test_a_file_that_is_not_a_mapping_says_what_is_expected(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, "- title\n- kind\n")

    message = refusal(load_proposal_file, path)

    assert str(path) in message
    assert "expected a mapping" in message


def test_missing_proposal_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    message = refusal(load_proposal_file, path)

    assert message == f"{path}: no such file"


def test_missing_document_names_the_document_path(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, PROPOSAL.replace("document: funding-model.md", "document: funding-model-v9.md"))

    message = refusal(load_proposal_file, path)

    assert message == f"{path} (line 4): document 'funding-model-v9.md': no such file in {tmp_path.resolve()}"


@pytest.mark.parametrize("body", ["", "  \n\n\t\n"], ids=["empty", "whitespace"])
def test_empty_document_is_refused(tmp_path: Path, body: str) -> None:
    path = write_proposal(tmp_path, PROPOSAL, document=body)

    message = refusal(load_proposal_file, path)

    assert message == f"{path} (line 4): {tmp_path.resolve() / 'funding-model.md'}: document is empty"


def test_document_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, PROPOSAL, document=None)
    (tmp_path / "funding-model.md").write_bytes("Kế hoạch tài chính".encode("utf-16"))

    message = refusal(load_proposal_file, path)

    assert str(tmp_path / "funding-model.md") in message
    assert "UTF-8" in message


def test_drafting_stage_that_is_not_first_is_refused(tmp_path: Path) -> None:
    text = PROPOSAL.replace("    - type: drafting\n", "") + "    - type: drafting\n"
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    assert str(path) in message
    assert "drafting stage may only be the first stage" in problem(message, "process")


def test_process_without_a_member_review_is_refused(tmp_path: Path) -> None:
    text = PROPOSAL.split("    - type: member_review")[0]
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    assert "at least one stage where states decide" in message


@pytest.mark.parametrize(
    ("extra", "field"),
    [("budget_usd: 250000\n", "budget_usd"), ("      quorum: 6\n", "quorum")],
    ids=["top-level", "in-a-stage"],
)
def test_unknown_key_is_named_not_silently_ignored(tmp_path: Path, extra: str, field: str) -> None:
    text = PROPOSAL + extra
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    assert str(path) in message
    bullet = problem(message, field)
    assert "Extra inputs are not permitted" in bullet
    assert f"(line {line_of(text, field + ':')})" in bullet


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = PROPOSAL.replace("lead_state: MY", "lead_state: XX").replace("rule: consensus", "rule: majority")
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    assert "2 problem(s)" in message
    problem(message, "lead_state")
    problem(message, "rule")


# --- bad roster files -------------------------------------------------------------------------------------


def test_unknown_timezone_is_named_with_its_line_and_an_example(tmp_path: Path) -> None:
    text = ROSTER.replace("Asia/Yangon", "Asia/Rangoon_Standard")
    path = write_roster(tmp_path, text)

    message = refusal(load_roster_file, path)

    assert str(path) in message
    bullet = problem(message, "timezone")
    assert "delegates.0.timezone" in bullet
    assert f"(line {line_of(text, 'Asia/Rangoon_Standard')})" in bullet
    assert "'Asia/Rangoon_Standard'" in bullet and "Asia/Kuala_Lumpur" in bullet


@pytest.mark.parametrize("email", ["aye.thida.win", "aye thida@mm.example.org", "aye@localhost", "a@@mm.example.org"])
def test_bad_email_is_named(tmp_path: Path, email: str) -> None:
    text = ROSTER.replace("aye.thida.win@mm.example.org", f'"{email}"')
    path = write_roster(tmp_path, text)

    message = refusal(load_roster_file, path)

    assert str(path) in message
    assert "delegates.0.email" in problem(message, "email")


def test_unknown_state_and_role_in_roster_are_named(tmp_path: Path) -> None:
    path = write_roster(tmp_path, ROSTER.replace("state: TL", "state: TP").replace("role: alternate", "role: minister"))

    message = refusal(load_roster_file, path)

    assert "delegates.1.state" in problem(message, "state")
    assert "focal_point" in problem(message, "role")


def test_empty_roster_is_refused(tmp_path: Path) -> None:
    message = refusal(load_roster_file, write_roster(tmp_path, "delegates: []\n"))

    assert "at least 1 item" in problem(message, "delegates")


def test_unknown_key_in_roster_entry_is_named(tmp_path: Path) -> None:
    text = ROSTER + "    phone: '+670 123 4567'\n"
    path = write_roster(tmp_path, text)

    message = refusal(load_roster_file, path)

    assert "Extra inputs are not permitted" in problem(message, "phone")


def test_roster_with_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    text = ROSTER.replace('name: "Joaquim da Silva Pereira"', 'name: "Joaquim da Silva Pereira')
    path = write_roster(tmp_path, text)

    message = refusal(load_roster_file, path)

    assert message.startswith(str(path))
    assert "not valid YAML" in message
    assert re.search(r"line \d+, column \d+", message)


def test_line_number_points_at_the_invalid_entry_not_the_first_entry_with_that_key(tmp_path: Path) -> None:
    text = (EXAMPLES / "roster.yaml").read_text(encoding="utf-8")
    # Myanmar's alternate is the 12th delegate; the first delegate is Brunei's.
    text = text.replace(
        'name: "Kyaw Zin Htet"\n    email: kyaw.zin.htet@mm.example.org\n    timezone: Asia/Yangon',
        'name: "Kyaw Zin Htet"\n    email: kyaw.zin.htet@mm.example.org\n    timezone: Asia/Yangoon',
    )
    path = write_roster(tmp_path, text)

    message = refusal(load_roster_file, path)

    bullet = problem(message, "timezone")
    assert "delegates.11.timezone" in bullet
    assert f"(line {line_of(text, 'Asia/Yangoon')})" in bullet


def test_a_bare_number_is_not_taken_for_a_duration(tmp_path: Path) -> None:
    path = write_proposal(tmp_path, PROPOSAL.replace("deadline: P14D", "deadline: 14"))

    message = refusal(load_proposal_file, path)

    assert "14 is not a duration" in message and "P14D" in message


# --- meeting records ------------------------------------------------------------------------------------------

MEETING = """\
held_on: 2031-01-15T09:00:00+08:00
venue: Kuala Lumpur
summary: The ministers endorsed the framework.
positions:
  MY: approve
  SG: object
  TL: abstain
reasons:
  SG: the funding model must come first
"""


def write_meeting(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "meeting.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_meeting_record_loads_with_each_states_position_and_reason(tmp_path: Path) -> None:
    record = load_meeting_record(write_meeting(tmp_path, MEETING))

    assert record.positions == {
        MemberState.MY: Position.APPROVE,
        MemberState.SG: Position.OBJECT,
        MemberState.TL: Position.ABSTAIN,
    }
    assert record.reasons == {MemberState.SG: "the funding model must come first"}
    assert record.venue == "Kuala Lumpur" and record.held_on is not None


@pytest.mark.parametrize(
    ("change", "bad_line", "says"),
    [
        (("  TL: abstain", "  XX: abstain"), "XX: abstain", "'TL'"),
        (("  MY: approve", "  MY: veto"), "MY: veto", "'approve_with_reservation'"),
        (("held_on: 2031-01-15T09:00:00+08:00", "held_on: next tuesday"), "held_on: next tuesday", "datetime"),
        (("venue: Kuala Lumpur", "venue: [Kuala Lumpur, Jakarta]"), "venue: [", "string"),
    ],
    ids=["unknown-state", "unknown-position", "bad-date", "venue-not-text"],
)
def test_a_bad_value_in_a_meeting_record_is_named_with_its_line(
    tmp_path: Path, change: tuple[str, str], bad_line: str, says: str
) -> None:
    text = MEETING.replace(*change)
    path = write_meeting(tmp_path, text)

    message = refusal(load_meeting_record, path)

    assert message.startswith(f"{path}: 1 problem(s):")
    field = change[0].split(":")[0].strip()
    bullet = problem(message, "positions" if field in {"TL", "MY"} else field)
    assert f"(line {line_of(text, bad_line)})" in bullet
    if field == "TL":
        assert "positions.XX (line" in bullet  # the unknown state is named, not just its mapping
    assert says in bullet


def test_a_meeting_record_without_positions_or_a_required_reason_is_refused(tmp_path: Path) -> None:
    neither = "record the Meeting's decision (and who was present), or a roll call of positions"
    assert neither in refusal(load_meeting_record, write_meeting(tmp_path, "venue: Kuala Lumpur\n"))
    assert neither in refusal(load_meeting_record, write_meeting(tmp_path, "positions: {}\n"))

    no_reason = refusal(load_meeting_record, write_meeting(tmp_path, MEETING.split("reasons:")[0]))
    assert "a reason is required for the position of SG" in no_reason


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("positions:\n  MY: [approve\n", "not valid YAML"),
        ("- MY: approve\n", "expected a mapping with positions"),
    ],
    ids=["invalid-yaml", "not-a-mapping"],
)
def test_a_meeting_record_that_is_not_a_record_is_named(tmp_path: Path, text: str, says: str) -> None:
    path = write_meeting(tmp_path, text)

    message = refusal(load_meeting_record, path)

    assert message.startswith(str(path)) and says in message


def test_a_missing_meeting_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    assert refusal(load_meeting_record, path) == f"{path}: no such file"


# --- the command line: a bad file is exit code 2, naming the file and the line, before anything is contacted --


RECORD_MEETING = ["record-meeting", "operational-framework-0a1b2c3d"]


def cli_env(tmp_path: Path) -> dict[str, str]:
    # Nothing listens at TEMPORAL_ADDRESS: a command that tried to connect would fail with 1, not 2.
    return {
        **os.environ,
        "AISAFE_DATA_DIR": str(tmp_path / "data"),
        "AISAFE_DEV": "1",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }


@pytest.mark.parametrize(
    ("command", "good", "change", "bad_line", "says"),
    [
        (["propose"], PROPOSAL, ("rule: consensus", "rule: majority"), "rule: majority", "rule"),
        (["propose"], PROPOSAL, ("lead_state: MY", "lead_state: MY: x"), "lead_state: MY: x", "not valid YAML"),
        (["roster", "import"], ROSTER, ("Asia/Dili", "Asia/Dilly"), "Asia/Dilly", "timezone"),
        (["roster", "import"], ROSTER, ("role: alternate", "role: alternate: x"), "alternate: x", "not valid YAML"),
        (RECORD_MEETING, MEETING, ("SG: object", "SG: veto"), "SG: veto", "positions"),
        (RECORD_MEETING, MEETING, ("MY: approve", "MY: approve: now"), "approve: now", "not valid YAML"),
    ],
    ids=["proposal-value", "proposal-yaml", "roster-value", "roster-yaml", "meeting-value", "meeting-yaml"],
)
def test_the_cli_refuses_a_bad_file_with_exit_code_2_naming_file_and_line(
    tmp_path: Path, command: list[str], good: str, change: tuple[str, str], bad_line: str, says: str
) -> None:
    text = good.replace(*change)
    assert text != good
    path = write_proposal(tmp_path, text) if command == ["propose"] else tmp_path / "input.yaml"
    path.write_text(text, encoding="utf-8")

    result = cli(*command, str(path), env=cli_env(tmp_path))

    assert result.code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"error: {path}")
    assert says in result.stderr
    assert re.search(rf"line {line_of(text, bad_line)}\b", result.stderr), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


# --- silence is not consent ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "policy"),
    [
        ("member_review", "abstain"),
        ("member_review", "object"),
        ("member_review", "concur"),
        ("funding\n      budget_target: 1000", "abstain"),
        ("funding\n      budget_target: 1000", "object"),
        ("senior_officials\n      mode: meeting\n      date: 2027-01-15T09:00:00+08:00\n      chair: MY", "concur"),
    ],
)
def test_a_silence_policy_outside_a_silence_procedure_is_refused_naming_file_line_and_remedy(
    tmp_path: Path, stage: str, policy: str
) -> None:
    text = PROPOSAL.replace("    - type: member_review\n", f"    - type: {stage}\n      silence: {policy}\n")
    path = write_proposal(tmp_path, text)

    message = refusal(load_proposal_file, path)

    kind = stage.split("\n")[0]
    assert message.startswith(f"{path} (line {line_of(text, f'silence: {policy}')}): process.stages.1.silence: ")
    assert f"`silence: {policy}` is not allowed in a {kind} stage (silence is not consent)" in message
    assert "Remove the line" in message
    assert ("mode: ad_referendum" in message) if policy == "concur" else ("overdue" in message)
    assert "\n" not in message


def test_silence_concur_stays_allowed_in_an_ad_referendum_stage(tmp_path: Path) -> None:
    text = PROPOSAL + "    - type: senior_officials\n      mode: ad_referendum\n      silence: concur\n"

    proposal, _ = load_proposal_file(write_proposal(tmp_path, text))

    assert proposal.process.stages[-1].silence is SilencePolicy.CONCUR


def test_a_running_proposals_definition_with_silence_abstain_still_loads_as_a_payload() -> None:
    # Recorded and running proposals carry `silence: abstain` in their member_review stages: the model takes it.
    stage = MemberReviewStage.model_validate({"type": "member_review", "silence": "abstain"})

    assert stage.silence is SilencePolicy.ABSTAIN
    assert stage.on_no_consensus.value == "revise"
