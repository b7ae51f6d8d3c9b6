"""Decision rules, silence policies, positions and membership dates: what a closed round's positions add up to."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import date

import pytest

from models.positions import DecisionRule, Position, SilencePolicy
from models.rules import Decision, Verdict, decide
from models.states import MemberState, members_on

ALL = [s.value for s in MemberState]
EVERY_RULE = pytest.mark.parametrize("rule", list(DecisionRule))
BLOCKING_RULES = pytest.mark.parametrize("rule", [DecisionRule.CONSENSUS, DecisionRule.UNANIMITY, DecisionRule.SILENCE])


def positions(default: Position, **overrides: Position) -> dict[str, Position]:
    """Every member state at `default`, except the states named in `overrides`."""
    return {state: overrides.get(state, default) for state in ALL}


def test_decide_returns_a_frozen_decision() -> None:
    decision = decide(DecisionRule.CONSENSUS, positions(Position.APPROVE))

    assert isinstance(decision, Decision)
    assert decision == Decision(Verdict.PASSED, "consensus: no objection", None)
    with pytest.raises(FrozenInstanceError):
        decision.verdict = Verdict.NOT_PASSED  # type: ignore[misc]


@EVERY_RULE
def test_all_approve_passes(rule: DecisionRule) -> None:
    assert decide(rule, positions(Position.APPROVE)).verdict is Verdict.PASSED


@EVERY_RULE
def test_approve_with_reservation_counts_as_approval(rule: DecisionRule) -> None:
    decision = decide(rule, positions(Position.APPROVE, SG=Position.APPROVE_WITH_RESERVATION))

    assert decision.verdict is Verdict.PASSED


def test_every_state_approving_with_reservation_still_passes_unanimity() -> None:
    assert decide(DecisionRule.UNANIMITY, positions(Position.APPROVE_WITH_RESERVATION)).verdict is Verdict.PASSED


def test_consensus_allows_abstentions() -> None:
    decision = decide(DecisionRule.CONSENSUS, positions(Position.APPROVE, MM=Position.ABSTAIN, TL=Position.ABSTAIN))

    assert decision.verdict is Verdict.PASSED
    assert "consensus" in decision.reason
    assert decision.participating is None


def test_consensus_passes_with_a_single_approval_and_everyone_else_explicitly_abstaining() -> None:
    # An explicit abstention is an answer: every state took part and none objected.
    assert decide(DecisionRule.CONSENSUS, positions(Position.ABSTAIN, MY=Position.APPROVE)).verdict is Verdict.PASSED


@pytest.mark.parametrize("rule", [DecisionRule.CONSENSUS, DecisionRule.UNANIMITY])
def test_silence_is_not_consent_one_approval_and_ten_silent_states_is_no_consensus(rule: DecisionRule) -> None:
    silent = [s.value for s in MemberState if s is not MemberState.MY]

    decision = decide(rule, {"MY": Position.APPROVE}, silent=silent)

    assert decision.verdict is Verdict.NO_CONSENSUS
    named = ", ".join(s for s in ALL if s in silent)  # in ASEAN's order
    assert decision.reason == f"no consensus: {named} did not answer (silence is not consent)"


@pytest.mark.parametrize("rule", [DecisionRule.CONSENSUS, DecisionRule.UNANIMITY])
def test_one_silent_state_is_enough_to_leave_no_consensus(rule: DecisionRule) -> None:
    everyone_else = positions(Position.APPROVE)
    del everyone_else["LA"]

    decision = decide(rule, everyone_else, silent=["LA"])

    assert decision.verdict is Verdict.NO_CONSENSUS
    assert "LA did not answer" in decision.reason


def test_no_state_answering_at_all_is_no_consensus() -> None:
    everyone = [s.value for s in MemberState]

    assert decide(DecisionRule.CONSENSUS, {}, silent=everyone).verdict is Verdict.NO_CONSENSUS


def test_an_objection_still_sends_the_text_back_when_other_states_are_silent() -> None:
    decision = decide(DecisionRule.CONSENSUS, {"MY": Position.APPROVE, "VN": Position.OBJECT}, silent=["LA"])

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert decision.reason == "objection or change request from VN"


def test_every_state_answering_with_explicit_abstentions_and_approvals_is_consensus() -> None:
    decision = decide(DecisionRule.CONSENSUS, positions(Position.APPROVE, LA=Position.ABSTAIN), silent=[])

    assert decision.verdict is Verdict.PASSED


@pytest.mark.parametrize("rule", [DecisionRule.CONSENSUS, DecisionRule.UNANIMITY, DecisionRule.ASEAN_MINUS_X])
def test_all_abstain_does_not_pass(rule: DecisionRule) -> None:
    assert decide(rule, positions(Position.ABSTAIN)).verdict is Verdict.NOT_PASSED


def test_all_abstain_passes_the_silence_procedure_as_nobody_objected() -> None:
    decision = decide(DecisionRule.SILENCE, positions(Position.ABSTAIN))

    assert decision.verdict is Verdict.PASSED
    assert "silence" in decision.reason


@BLOCKING_RULES
@pytest.mark.parametrize("blocking", [Position.OBJECT, Position.REQUEST_CHANGES])
def test_any_objection_or_change_request_sends_the_text_back_naming_the_state(
    rule: DecisionRule, blocking: Position
) -> None:
    decision = decide(rule, positions(Position.APPROVE, PH=blocking))

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert "PH" in decision.reason
    assert not any(state in decision.reason for state in ALL if state != "PH")


def test_a_change_request_sends_the_text_back_under_asean_minus_x_too() -> None:
    decision = decide(DecisionRule.ASEAN_MINUS_X, positions(Position.APPROVE, PH=Position.REQUEST_CHANGES))

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert "PH" in decision.reason


def test_change_request_reason_names_every_blocking_state_in_code_order() -> None:
    decision = decide(
        DecisionRule.CONSENSUS,
        positions(Position.APPROVE, VN=Position.OBJECT, KH=Position.REQUEST_CHANGES, ID=Position.ABSTAIN),
    )

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert decision.reason.endswith("KH, VN")
    assert "ID" not in decision.reason


def test_a_blocking_position_outweighs_abstentions_and_reservations() -> None:
    decision = decide(
        DecisionRule.CONSENSUS,
        positions(Position.ABSTAIN, MY=Position.APPROVE_WITH_RESERVATION, TH=Position.REQUEST_CHANGES),
    )

    assert decision.verdict is Verdict.CHANGES_REQUESTED


def test_unanimity_with_an_abstention_does_not_pass_and_names_the_abstainer() -> None:
    decision = decide(DecisionRule.UNANIMITY, positions(Position.APPROVE, BN=Position.ABSTAIN))

    assert decision.verdict is Verdict.NOT_PASSED
    assert "BN" in decision.reason
    assert "MY" not in decision.reason


@EVERY_RULE
def test_no_participants_does_not_pass(rule: DecisionRule) -> None:
    decision = decide(rule, {})

    assert decision.verdict is Verdict.NOT_PASSED
    assert decision.reason


def test_positions_keyed_by_member_state_enum_decide_the_same_as_by_code() -> None:
    by_enum = {MemberState.MM: Position.OBJECT, MemberState.MY: Position.APPROVE}

    decision = decide(DecisionRule.CONSENSUS, by_enum)

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert "MM" in decision.reason


# --- ASEAN-minus-X ---------------------------------------------------------------------------------------


def test_asean_minus_x_objectors_opt_out_and_the_outcome_names_the_participants() -> None:
    decision = decide(
        DecisionRule.ASEAN_MINUS_X,
        {
            "VN": Position.OBJECT,
            "MY": Position.APPROVE,
            "SG": Position.APPROVE_WITH_RESERVATION,
            "TH": Position.APPROVE,
        },
        min_participants=3,
    )

    assert decision.verdict is Verdict.PASSED
    assert decision.participating == ["MY", "SG", "TH"]
    assert "MY, SG, TH" in decision.reason
    assert "VN opted out" in decision.reason


def test_asean_minus_x_passes_with_exactly_min_participants() -> None:
    decision = decide(
        DecisionRule.ASEAN_MINUS_X,
        positions(Position.OBJECT, MY=Position.APPROVE, ID=Position.APPROVE),
        min_participants=2,
    )

    assert decision.verdict is Verdict.PASSED
    assert decision.participating == ["ID", "MY"]


def test_asean_minus_x_with_too_few_participants_does_not_pass_and_says_how_many() -> None:
    decision = decide(
        DecisionRule.ASEAN_MINUS_X,
        {"MY": Position.APPROVE, "SG": Position.APPROVE, "LA": Position.OBJECT, "KH": Position.ABSTAIN},
        min_participants=3,
    )

    assert decision.verdict is Verdict.NOT_PASSED
    assert "needs 3" in decision.reason and "2 approved" in decision.reason
    assert "LA opted out" in decision.reason
    assert decision.participating == ["MY", "SG"]


def test_asean_minus_x_abstainers_neither_participate_nor_opt_out() -> None:
    decision = decide(DecisionRule.ASEAN_MINUS_X, positions(Position.ABSTAIN, MY=Position.APPROVE, PH=Position.APPROVE))

    assert decision.verdict is Verdict.PASSED  # the default needs two participants
    assert decision.participating == ["MY", "PH"]
    assert "opted out" not in decision.reason


@pytest.mark.parametrize("rule", [DecisionRule.CONSENSUS, DecisionRule.UNANIMITY, DecisionRule.SILENCE])
def test_only_asean_minus_x_names_participating_states(rule: DecisionRule) -> None:
    assert decide(rule, positions(Position.APPROVE)).participating is None


# ASEAN-minus-X as the Charter has it (Art. 21(2)): participate / opt_out / object, where an objection blocks.


def charter_minus_x(answers: dict[str, Position], min_participants: int = 2) -> Decision:
    return decide(DecisionRule.ASEAN_MINUS_X, answers, min_participants=min_participants, objection_blocks=True)


def test_charter_minus_x_passes_with_an_opt_out_and_names_the_participants() -> None:
    decision = charter_minus_x(positions(Position.PARTICIPATE, MM=Position.OPT_OUT), min_participants=10)

    assert decision.verdict is Verdict.PASSED
    assert decision.participating == [s for s in ALL if s != "MM"]
    assert decision.reason.startswith("ASEAN-minus-X: BN, KH, ID")
    assert decision.reason.endswith("participate; MM opted out")


def test_charter_minus_x_is_blocked_by_one_objection() -> None:
    decision = charter_minus_x(positions(Position.PARTICIPATE, LA=Position.OBJECT, MM=Position.OPT_OUT))

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert decision.reason.startswith("objection from LA:")
    assert "MM" not in decision.reason


def test_charter_minus_x_with_too_few_participants_does_not_pass() -> None:
    decision = charter_minus_x(
        {"MY": Position.PARTICIPATE, "SG": Position.PARTICIPATE, "TH": Position.OPT_OUT, "VN": Position.OPT_OUT},
        min_participants=3,
    )

    assert decision.verdict is Verdict.NOT_PASSED
    assert decision.reason == "ASEAN-minus-X needs 3 participating states, 2 participate; TH, VN opted out"
    assert decision.participating == ["MY", "SG"]


def test_charter_minus_x_does_not_count_the_silent_as_participants() -> None:
    decision = charter_minus_x({"MY": Position.PARTICIPATE, "SG": Position.ABSTAIN})

    assert decision.verdict is Verdict.NOT_PASSED
    assert decision.participating == ["MY"]


def test_without_the_charter_reading_an_objection_still_opts_out_as_in_old_rounds() -> None:
    answers = {"MY": Position.APPROVE, "SG": Position.APPROVE, "LA": Position.OBJECT}

    assert decide(DecisionRule.ASEAN_MINUS_X, answers).verdict is Verdict.PASSED
    assert charter_minus_x(answers).verdict is Verdict.CHANGES_REQUESTED


def test_an_indicated_contribution_joins_a_funding_arrangement() -> None:
    decision = decide(
        DecisionRule.ASEAN_MINUS_X, {"MY": Position.INDICATE, "SG": Position.INDICATE, "TH": Position.DECLINE}
    )

    assert decision.verdict is Verdict.PASSED
    assert decision.participating == ["MY", "SG"] and "TH opted out" in decision.reason


# --- the silence procedure -------------------------------------------------------------------------------


def test_silence_is_broken_by_an_objection_and_names_the_state() -> None:
    decision = decide(DecisionRule.SILENCE, positions(Position.APPROVE, LA=Position.OBJECT))

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert decision.reason == "silence broken by LA"


def test_silence_passes_with_reservations_and_abstentions() -> None:
    decision = decide(
        DecisionRule.SILENCE, positions(Position.APPROVE, SG=Position.APPROVE_WITH_RESERVATION, MM=Position.ABSTAIN)
    )

    assert decision.verdict is Verdict.PASSED


# --- funding answers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [DecisionRule.CONSENSUS, DecisionRule.UNANIMITY, DecisionRule.ASEAN_MINUS_X])
def test_a_confirmed_contribution_counts_as_approval(rule: DecisionRule) -> None:
    decision = decide(rule, positions(Position.CONFIRM))

    assert decision.verdict is Verdict.PASSED


def test_a_declined_contribution_blocks_consensus() -> None:
    decision = decide(DecisionRule.CONSENSUS, positions(Position.CONFIRM, KH=Position.DECLINE))

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert "KH" in decision.reason


def test_a_declined_contribution_opts_out_under_asean_minus_x() -> None:
    decision = decide(
        DecisionRule.ASEAN_MINUS_X,
        positions(Position.CONFIRM, KH=Position.DECLINE, LA=Position.DECLINE),
        min_participants=9,
    )

    assert decision.verdict is Verdict.PASSED
    assert decision.participating == [s for s in ALL if s not in ("KH", "LA")]
    assert "KH, LA opted out" in decision.reason


@pytest.mark.parametrize(
    ("position", "approval", "objection"),
    [
        (Position.APPROVE, True, False),
        (Position.APPROVE_WITH_RESERVATION, True, False),
        (Position.CONFIRM, True, False),
        (Position.ABSTAIN, False, False),
        (Position.REQUEST_CHANGES, False, False),
        (Position.OBJECT, False, True),
        (Position.DECLINE, False, True),
        (Position.INDICATE, True, False),
        (Position.PARTICIPATE, False, False),
        (Position.OPT_OUT, False, False),
    ],
)
def test_what_each_position_counts_as(position: Position, approval: bool, objection: bool) -> None:
    assert position.is_approval is approval
    assert position.is_objection is objection


# --- silence policy and positions (rounds from before silence stopped counting: their histories replay) ---------


@pytest.mark.parametrize(
    ("policy", "deemed"),
    [
        (SilencePolicy.ABSTAIN, Position.ABSTAIN),
        (SilencePolicy.CONCUR, Position.APPROVE),
        (SilencePolicy.OBJECT, Position.OBJECT),
    ],
)
def test_silence_policy_deems_a_silent_state_to_have_taken_a_position(policy: SilencePolicy, deemed: Position) -> None:
    assert policy.deemed_position is deemed


def test_silent_states_under_the_concur_policy_let_a_round_pass() -> None:
    silent = SilencePolicy.CONCUR.deemed_position
    decision = decide(DecisionRule.UNANIMITY, positions(silent, MY=Position.APPROVE))

    assert decision.verdict is Verdict.PASSED


def test_silent_states_under_the_object_policy_block_a_round() -> None:
    silent = SilencePolicy.OBJECT.deemed_position
    decision = decide(DecisionRule.CONSENSUS, {"MY": Position.APPROVE, "LA": silent})

    assert decision.verdict is Verdict.CHANGES_REQUESTED
    assert "LA" in decision.reason


@pytest.mark.parametrize(
    ("position", "needs_reason"),
    [
        (Position.APPROVE, False),
        (Position.ABSTAIN, False),
        (Position.APPROVE_WITH_RESERVATION, True),
        (Position.REQUEST_CHANGES, True),
        (Position.OBJECT, True),
        (Position.CONFIRM, False),
        (Position.DECLINE, False),
    ],
)
def test_which_positions_need_a_reason(position: Position, needs_reason: bool) -> None:
    assert position.needs_reason is needs_reason


# --- membership -------------------------------------------------------------------------------------------


def test_timor_leste_is_not_a_member_the_day_before_the_47th_summit() -> None:
    members = members_on(date(2025, 10, 25))

    assert MemberState.TL not in members
    assert len(members) == 10


def test_timor_leste_is_a_member_from_26_october_2025() -> None:
    members = members_on(date(2025, 10, 26))

    assert MemberState.TL in members
    assert [s.official_name for s in members][:3] == ["Brunei Darussalam", "Cambodia", "Indonesia"]
    assert members[-2:] == [MemberState.TL, MemberState.VN]
    assert len(members) == 11


def test_membership_follows_each_accession_date() -> None:
    assert members_on(date(1967, 8, 7)) == []
    founders = {MemberState.ID, MemberState.MY, MemberState.PH, MemberState.SG, MemberState.TH}
    assert set(members_on(date(1967, 8, 8))) == founders
    assert set(members_on(date(1999, 4, 29))) == set(MemberState) - {MemberState.KH, MemberState.TL}


@pytest.mark.parametrize("objection_blocks", [True, False])
def test_asean_minus_x_with_a_silent_state_is_no_consensus_to_apply_it(objection_blocks: bool) -> None:
    # Art. 21(2): flexible participation applies only where there is a consensus to do so; silence is not one.
    answer = Position.PARTICIPATE if objection_blocks else Position.APPROVE
    decision = decide(
        DecisionRule.ASEAN_MINUS_X,
        {"MY": answer, "SG": answer, "TH": answer},
        min_participants=2,
        objection_blocks=objection_blocks,
        silent=["VN"],
    )
    assert decision.verdict is Verdict.NO_CONSENSUS and "VN" in decision.reason
