"""Signed action links and form tokens: only an untouched link from us, before its round closes, is honoured."""

from __future__ import annotations

import json
import string
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from models.ledger import document_hash
from models.states import MemberState
from models.tokens import (
    _SALT,
    ActionClaims,
    TokenError,
    check_csrf,
    csrf_token,
    decision_id,
    sign_action,
    verify_action,
)

SECRET = "test-signing-key-6b1f0c3e9a7d4f2b8e5a1c7d3f9b0e2a"
DEADLINE = datetime(2030, 3, 16, 8, 0, tzinfo=UTC)
BEFORE_DEADLINE = DEADLINE - timedelta(days=3)
# base64url in value order: a character 32 places on flips the top bit of the 6 bits it carries.
B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def claims(**changes: object) -> ActionClaims:
    values: dict[str, object] = {
        "proposal_id": "operational-framework-1a2b3c4d",
        "round": 2,
        "state": MemberState.MM,
        "delegate_id": "MM-0123456789abcdef",
        "document_sha256": document_hash("# ASEAN AI SAFE Operational Framework\n"),
        "expires_at": DEADLINE,
    }
    values.update(changes)
    return ActionClaims.model_validate(values)


def rejected(token: str, *, secret: str = SECRET, now: datetime = BEFORE_DEADLINE) -> TokenError:
    with pytest.raises(TokenError) as caught:
        verify_action(secret, token, now=now)
    return caught.value


def decode_payload(token: str) -> dict[str, object]:
    payload, _, _ = token.rpartition(".")
    compressed = payload.startswith(".")
    raw = base64_decode(payload.lstrip("."))
    return json.loads(zlib.decompress(raw) if compressed else raw)  # type: ignore[no-any-return]


def test_round_trip_preserves_every_claim() -> None:
    original = claims()

    verified = verify_action(SECRET, sign_action(SECRET, original), now=BEFORE_DEADLINE)

    assert verified == original
    assert verified.round_workflow_id == "operational-framework-1a2b3c4d.round-2"


def test_tokens_differ_per_delegate_state_round_and_document() -> None:
    tokens = {
        sign_action(SECRET, claims()),
        sign_action(SECRET, claims(delegate_id="MM-fedcba9876543210")),
        sign_action(SECRET, claims(state=MemberState.TL)),
        sign_action(SECRET, claims(round=3)),
        sign_action(SECRET, claims(document_sha256=document_hash("version 2"))),
    }

    assert len(tokens) == 5


def test_a_changed_character_anywhere_is_rejected_as_invalid_not_expired() -> None:
    token = sign_action(SECRET, claims())

    for index, char in enumerate(token):
        changed = "A" if char == "." else B64URL[(B64URL.index(char) + 32) % 64]
        error = rejected(token[:index] + changed + token[index + 1 :])
        assert not error.expired, f"character {index} changed"
        assert "not valid" in error.reason


def test_every_possible_single_character_change_is_rejected() -> None:
    token = sign_action(SECRET, claims())
    accepted = []

    for index, char in enumerate(token):
        for changed in B64URL + ".":
            if changed == char:
                continue
            try:
                verify_action(SECRET, token[:index] + changed + token[index + 1 :], now=BEFORE_DEADLINE)
            except TokenError:
                continue
            accepted.append((index, char, changed))

    assert accepted == []


def test_truncated_or_extended_token_is_rejected() -> None:
    token = sign_action(SECRET, claims())

    for variant in (token[:-1], token[1:], token + "A", token[: len(token) // 2]):
        assert not rejected(variant).expired


def test_token_signed_with_another_secret_is_rejected() -> None:
    forged = sign_action("someone-elses-key-3a9f0d1c2b7e4f5a6b8c9d0e1f2a3b4c", claims())

    error = rejected(forged)

    assert not error.expired
    assert "altered" in error.reason


def test_expired_token_says_the_round_closed() -> None:
    token = sign_action(SECRET, claims())

    assert verify_action(SECRET, token, now=DEADLINE - timedelta(seconds=1)).state is MemberState.MM
    for after in (DEADLINE, DEADLINE + timedelta(days=30)):
        error = rejected(token, now=after)
        assert error.expired
        assert "expired" in error.reason


def test_expiry_is_checked_against_the_real_clock_by_default() -> None:
    token = sign_action(SECRET, claims(expires_at=datetime(2020, 1, 1, tzinfo=UTC)))

    with pytest.raises(TokenError) as caught:
        verify_action(SECRET, token)

    assert caught.value.expired


def test_claims_cannot_be_altered_without_the_key() -> None:
    token = sign_action(SECRET, claims())
    payload = decode_payload(token)
    assert payload["state"] == "MM"
    payload["state"] = "SG"
    signature = token.rpartition(".")[2]
    altered_payload = base64_encode(json.dumps(payload, separators=(",", ":")).encode()).decode()

    error = rejected(f"{altered_payload}.{signature}")

    assert not error.expired


def test_another_links_signature_does_not_vouch_for_this_payload() -> None:
    mine = sign_action(SECRET, claims())
    theirs = sign_action(SECRET, claims(state=MemberState.SG, delegate_id="SG-0123456789abcdef"))

    spliced = mine.rpartition(".")[0] + "." + theirs.rpartition(".")[2]

    assert not rejected(spliced).expired


@pytest.mark.parametrize(
    "token",
    ["", ".", "..", "abc", "a.b", "not a token at all", "é.ü", "\x00\x01", "A" * 2048, "A" * 100_000],
    ids=["empty", "dot", "dots", "word", "two-words", "spaces", "non-ascii", "control", "long", "very-long"],
)
def test_garbage_is_rejected_as_invalid(token: str) -> None:
    error = rejected(token)

    assert not error.expired
    assert error.reason.startswith("This link is not valid")


def test_valid_token_padded_past_the_length_limit_is_rejected() -> None:
    token = sign_action(SECRET, claims())

    assert not rejected(token + "A" * 2048).expired


@pytest.mark.parametrize(
    "payload",
    [
        ["operational-framework-1a2b3c4d", 2, "MM"],
        {"proposal_id": "operational-framework-1a2b3c4d", "round": 2},
        {**claims().model_dump(mode="json"), "state": "XX", "expires_at": int(DEADLINE.timestamp())},
        {**claims().model_dump(mode="json"), "expires_at": "tomorrow"},
        {**claims().model_dump(mode="json"), "expires_at": 10**20},
    ],
    ids=["not-a-mapping", "missing-claims", "unknown-state", "bad-expiry", "absurd-expiry"],
)
def test_correctly_signed_but_malformed_claims_are_rejected_not_crashing(payload: object) -> None:
    token = str(URLSafeSerializer(SECRET, salt=_SALT).dumps(payload))

    error = rejected(token)

    assert not error.expired
    assert error.reason == "This link is not valid."


# --- CSRF form tokens and decision ids --------------------------------------------------------------------


def test_csrf_round_trip_returns_the_nonce() -> None:
    action = sign_action(SECRET, claims())
    value = csrf_token(SECRET, action)

    nonce = check_csrf(SECRET, action, value)

    assert nonce is not None
    assert value.startswith(nonce + ".")


def test_each_form_gets_a_fresh_nonce() -> None:
    action = sign_action(SECRET, claims())

    nonces = {check_csrf(SECRET, action, csrf_token(SECRET, action)) for _ in range(20)}

    assert len(nonces) == 20
    assert None not in nonces


def test_csrf_for_another_action_link_is_rejected() -> None:
    mine = sign_action(SECRET, claims())
    theirs = sign_action(SECRET, claims(state=MemberState.SG, delegate_id="SG-0123456789abcdef"))

    assert check_csrf(SECRET, mine, csrf_token(SECRET, theirs)) is None


def test_csrf_made_with_another_secret_is_rejected() -> None:
    action = sign_action(SECRET, claims())

    assert check_csrf(SECRET, action, csrf_token("another-secret-0f9e8d7c6b5a4f3e2d1c", action)) is None


def test_tampered_csrf_is_rejected() -> None:
    action = sign_action(SECRET, claims())
    value = csrf_token(SECRET, action)
    nonce, _, mac = value.partition(".")
    flipped_mac = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    other_nonce = ("A" if nonce[0] != "A" else "B") + nonce[1:]

    assert check_csrf(SECRET, action, f"{nonce}.{flipped_mac}") is None
    assert check_csrf(SECRET, action, f"{other_nonce}.{mac}") is None
    assert check_csrf(SECRET, action, f"{nonce}.{mac.upper()}") is None


@pytest.mark.parametrize("value", ["", ".", "nonce.", ".mac", "no-dot-at-all"])
def test_empty_or_incomplete_csrf_is_rejected(value: str) -> None:
    action = sign_action(SECRET, claims())

    assert check_csrf(SECRET, action, value) is None


def test_decision_id_is_stable_for_one_form_and_distinct_across_forms_and_links() -> None:
    action = sign_action(SECRET, claims())
    other_action = sign_action(SECRET, claims(delegate_id="MM-fedcba9876543210"))

    first = decision_id(action, "nonce-1")

    assert decision_id(action, "nonce-1") == first
    assert decision_id(action, "nonce-2") != first
    assert decision_id(other_action, "nonce-1") != first
    assert first.startswith("d-") and len(first) == 34
