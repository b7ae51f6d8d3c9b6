"""Decision rules, silence policies, positions and membership dates: what a closed round's positions add up to."""

from __future__ import annotations

from datetime import date

import pytest

from models.positions import DecisionRule, Position, SilencePolicy
from models.rules import Verdict, decide
from models.states import MemberState, members_on

ALL = [s.value for s in MemberState]
BOTH_RULES = pytest.mark.parametrize("rule", list(DecisionRule))


def positions(default: Position, **overrides: Position) -> dict[str, Position]:
    """Every member state at `default`, except the states named in `overrides`."""
    return {state: overrides.get(state, default) for state in ALL}


@BOTH_RULES
def test_all_approve_passes(rule: DecisionRule) -> None:
    verdict, _ = decide(rule, positions(Position.APPROVE))

    assert verdict is Verdict.PASSED


@BOTH_RULES
def test_approve_with_reservation_counts_as_approval(rule: DecisionRule) -> None:
    verdict, _ = decide(rule, positions(Position.APPROVE, SG=Position.APPROVE_WITH_RESERVATION))

    assert verdict is Verdict.PASSED


def test_every_state_approving_with_reservation_still_passes_unanimity() -> None:
    verdict, _ = decide(DecisionRule.UNANIMITY, positions(Position.APPROVE_WITH_RESERVATION))

    assert verdict is Verdict.PASSED


def test_consensus_allows_abstentions() -> None:
    verdict, reason = decide(
        DecisionRule.CONSENSUS, positions(Position.APPROVE, MM=Position.ABSTAIN, TL=Position.ABSTAIN)
    )

    assert verdict is Verdict.PASSED
    assert "consensus" in reason


def test_consensus_passes_with_a_single_approval_and_everyone_else_abstaining() -> None:
    verdict, _ = decide(DecisionRule.CONSENSUS, positions(Position.ABSTAIN, MY=Position.APPROVE))

    assert verdict is Verdict.PASSED


@BOTH_RULES
def test_all_abstain_does_not_pass(rule: DecisionRule) -> None:
    verdict, _ = decide(rule, positions(Position.ABSTAIN))

    assert verdict is Verdict.NOT_PASSED


@BOTH_RULES
@pytest.mark.parametrize("blocking", [Position.OBJECT, Position.REQUEST_CHANGES])
def test_any_objection_or_change_request_sends_the_text_back_naming_the_state(
    rule: DecisionRule, blocking: Position
) -> None:
    verdict, reason = decide(rule, positions(Position.APPROVE, PH=blocking))

    assert verdict is Verdict.CHANGES_REQUESTED
    assert "PH" in reason
    assert not any(state in reason for state in ALL if state != "PH")


def test_change_request_reason_names_every_blocking_state_in_code_order() -> None:
    verdict, reason = decide(
        DecisionRule.CONSENSUS,
        positions(Position.APPROVE, VN=Position.OBJECT, KH=Position.REQUEST_CHANGES, ID=Position.ABSTAIN),
    )

    assert verdict is Verdict.CHANGES_REQUESTED
    assert reason.endswith("KH, VN")
    assert "ID" not in reason


def test_a_blocking_position_outweighs_abstentions_and_reservations() -> None:
    verdict, _ = decide(
        DecisionRule.CONSENSUS,
        positions(Position.ABSTAIN, MY=Position.APPROVE_WITH_RESERVATION, TH=Position.REQUEST_CHANGES),
    )

    assert verdict is Verdict.CHANGES_REQUESTED


def test_unanimity_with_an_abstention_does_not_pass_and_names_the_abstainer() -> None:
    verdict, reason = decide(DecisionRule.UNANIMITY, positions(Position.APPROVE, BN=Position.ABSTAIN))

    assert verdict is Verdict.NOT_PASSED
    assert "BN" in reason
    assert "MY" not in reason


@BOTH_RULES
def test_no_participants_does_not_pass(rule: DecisionRule) -> None:
    verdict, reason = decide(rule, {})

    assert verdict is Verdict.NOT_PASSED
    assert reason


def test_positions_keyed_by_member_state_enum_decide_the_same_as_by_code() -> None:
    by_enum = {MemberState.MM: Position.OBJECT, MemberState.MY: Position.APPROVE}

    verdict, reason = decide(DecisionRule.CONSENSUS, by_enum)

    assert verdict is Verdict.CHANGES_REQUESTED
    assert "MM" in reason


# --- silence policy and positions ------------------------------------------------------------------------


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
    verdict, _ = decide(DecisionRule.UNANIMITY, positions(silent, MY=Position.APPROVE))

    assert verdict is Verdict.PASSED


def test_silent_states_under_the_object_policy_block_a_round() -> None:
    silent = SilencePolicy.OBJECT.deemed_position
    verdict, reason = decide(DecisionRule.CONSENSUS, {"MY": Position.APPROVE, "LA": silent})

    assert verdict is Verdict.CHANGES_REQUESTED
    assert "LA" in reason


@pytest.mark.parametrize(
    ("position", "needs_reason"),
    [
        (Position.APPROVE, False),
        (Position.ABSTAIN, False),
        (Position.APPROVE_WITH_RESERVATION, True),
        (Position.REQUEST_CHANGES, True),
        (Position.OBJECT, True),
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
    assert members == sorted(MemberState, key=lambda s: s.value)
    assert len(members) == 11


def test_membership_follows_each_accession_date() -> None:
    assert members_on(date(1967, 8, 7)) == []
    founders = {MemberState.ID, MemberState.MY, MemberState.PH, MemberState.SG, MemberState.TH}
    assert set(members_on(date(1967, 8, 8))) == founders
    assert set(members_on(date(1999, 4, 29))) == set(MemberState) - {MemberState.KH, MemberState.TL}
