"""Signed action links and form tokens: only an untouched link from us, before its round closes, signed with a
key that is still configured, is honoured."""

from __future__ import annotations

import hashlib
import json
import string
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode
from pydantic import ValidationError

from models.ledger import document_hash
from models.settings import Settings
from models.states import MemberState
from models.tokens import (
    _COMMENT_SALT,
    _SALT,
    RETIRED_KEY,
    ActionClaims,
    CommentClaims,
    SigningKeys,
    TokenError,
    check_csrf,
    csrf_token,
    decision_id,
    key_id_of,
    parse_previous_keys,
    sign_action,
    sign_comment,
    verify_action,
    verify_comment,
)

SECRET = "test-signing-key-6b1f0c3e9a7d4f2b8e5a1c7d3f9b0e2a"
NEW_SECRET = "test-signing-key-2027-5e0a9c8b7d6f4e3a2b1c0d9e8f7a"
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
    payload = token.rpartition(".")[0].partition(".")[2]  # KID.payload.signature (payload may start with ".")
    compressed = payload.startswith(".")
    raw = base64_decode(payload.lstrip("."))
    return json.loads(zlib.decompress(raw) if compressed else raw)  # type: ignore[no-any-return]


def legacy_action(secret: str, values: ActionClaims) -> str:
    """A link as issued before links named their key: itsdangerous over the claims, no key id."""
    payload = values.model_dump(mode="json") | {"expires_at": int(values.expires_at.timestamp())}
    return str(URLSafeSerializer(secret, salt=_SALT).dumps(payload))


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
    kid_length = len(key_id_of(SECRET))

    for index, char in enumerate(token):
        changed = "A" if char == "." else B64URL[(B64URL.index(char) + 32) % 64]
        error = rejected(token[:index] + changed + token[index + 1 :])
        assert not error.expired, f"character {index} changed"
        # Another key id names a key we do not hold: from outside, a forgery and a retired key look the same.
        if index < kid_length:
            assert error.retired, f"character {index} changed"
        elif index > kid_length:
            assert "not valid" in error.reason, f"character {index} changed"


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
    assert error.retired and error.reason == RETIRED_KEY


def test_token_signed_with_another_secret_under_our_key_id_is_rejected_as_altered() -> None:
    forged = sign_action(SigningKeys(key_id_of(SECRET), "someone-elses-key-3a9f0d1c2b7e4f5a6b8c9d0e1f2a3b4c"), claims())

    error = rejected(forged)

    assert not error.expired and not error.retired
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

    error = rejected(f"{key_id_of(SECRET)}.{altered_payload}.{signature}")

    assert not error.expired and not error.retired
    assert "altered" in error.reason


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


@pytest.mark.parametrize("value", ["", ".", "nonce.", ".mac", "no-dot", "nonce.é", "é.mac", "n.\udcff", "n.\x00"])
def test_empty_incomplete_or_non_ascii_csrf_is_rejected(value: str) -> None:
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


# --- key ids and rotation -----------------------------------------------------------------------------------


def test_a_new_link_names_its_key_by_id() -> None:
    assert sign_action(SECRET, claims()).startswith(key_id_of(SECRET) + ".")
    assert key_id_of(SECRET) == hashlib.sha256(SECRET.encode()).hexdigest()[:8]
    named = sign_action(SigningKeys("2026-11", SECRET), claims())

    assert named.startswith("2026-11.")
    assert verify_action(SigningKeys("2026-11", SECRET), named, now=BEFORE_DEADLINE) == claims()


def test_after_rotation_old_links_verify_until_their_key_is_retired() -> None:
    before = SigningKeys("2026", SECRET)
    rotated = SigningKeys("2027", NEW_SECRET, {"2026": SECRET})
    retired = SigningKeys("2027", NEW_SECRET)
    old_link = sign_action(before, claims())
    new_link = sign_action(rotated, claims())

    assert new_link.startswith("2027.")
    assert verify_action(rotated, old_link, now=BEFORE_DEADLINE) == claims()
    assert verify_action(rotated, new_link, now=BEFORE_DEADLINE) == claims()
    assert verify_action(retired, new_link, now=BEFORE_DEADLINE) == claims()
    error = rejected(old_link, secret=retired)  # type: ignore[arg-type]
    assert error.retired and not error.expired
    assert error.reason == RETIRED_KEY
    assert "retired" in error.reason and "most recent email" in error.reason
    # The link signed with the new key does not verify with the old one (not the other way round either).
    assert rejected(new_link, secret=before).retired  # type: ignore[arg-type]


def test_comment_links_rotate_the_same_way() -> None:
    comment = CommentClaims(
        proposal_id="operational-framework-1a2b3c4d",
        stage_index=1,
        stakeholder_id="SH-0123456789abcdef",
        document_sha256=document_hash("v1"),
        expires_at=DEADLINE,
    )
    old_link = sign_comment(SigningKeys("2026", SECRET), comment)
    payload = comment.model_dump(mode="json") | {"expires_at": int(DEADLINE.timestamp())}
    legacy = str(URLSafeSerializer(SECRET, salt=_COMMENT_SALT).dumps(payload))

    for link in (old_link, legacy):
        assert verify_comment(SigningKeys("2027", NEW_SECRET, {"2026": SECRET}), link, now=BEFORE_DEADLINE) == comment
    with pytest.raises(TokenError) as caught:
        verify_comment(SigningKeys("2027", NEW_SECRET), old_link, now=BEFORE_DEADLINE)
    assert caught.value.retired


def test_links_issued_before_key_ids_verify_with_the_current_key_and_after_rotation() -> None:
    legacy = legacy_action(SECRET, claims())
    assert not legacy.startswith(key_id_of(SECRET))

    assert verify_action(SECRET, legacy, now=BEFORE_DEADLINE) == claims()
    assert verify_action(SigningKeys("k1", SECRET), legacy, now=BEFORE_DEADLINE) == claims()
    assert verify_action(SigningKeys("k2", NEW_SECRET, {"k1": SECRET}), legacy, now=BEFORE_DEADLINE) == claims()
    error = rejected(legacy, secret=SigningKeys("k2", NEW_SECRET))  # type: ignore[arg-type]
    assert not error.expired and "altered" in error.reason
    assert rejected(legacy_action(SECRET, claims(expires_at=BEFORE_DEADLINE))).expired


def test_a_compressed_legacy_link_still_verifies() -> None:
    long_id = claims(proposal_id="operational-framework-" + "a" * 200)
    legacy = legacy_action(SECRET, long_id)
    assert legacy.startswith(".")  # itsdangerous compressed it

    assert verify_action(SigningKeys("k2", NEW_SECRET, {"k1": SECRET}), legacy, now=BEFORE_DEADLINE) == long_id


def test_a_link_cannot_be_moved_to_another_key_id_or_out_of_the_legacy_format() -> None:
    # Two ids for one secret (say, an id changed by mistake): the id is in the signing salt, so it still fails.
    keys = SigningKeys("new-id", SECRET, {"old-id": SECRET})
    link = sign_action(keys, claims())
    moved = "old-id" + link.removeprefix("new-id")

    assert "altered" in rejected(moved, secret=keys).reason  # type: ignore[arg-type]
    assert "altered" in rejected("new-id." + legacy_action(SECRET, claims()), secret=keys).reason  # type: ignore[arg-type]
    assert "altered" in rejected(link.removeprefix("new-id."), secret=keys).reason  # type: ignore[arg-type]


@pytest.mark.parametrize("kid", ["bad id", "ü", "a" * 33, "", "x.y", "a:b"])
def test_malformed_key_ids_are_refused(kid: str) -> None:
    with pytest.raises(ValueError, match="key id"):
        SigningKeys(kid, SECRET)


def test_previous_keys_are_read_from_kid_colon_secret_pairs() -> None:
    assert parse_previous_keys(None) == {} and parse_previous_keys(" ") == {}
    assert parse_previous_keys(" 2025:s3cret-one , 2026:s3cret:two,") == {"2025": "s3cret-one", "2026": "s3cret:two"}
    for text, problem in [
        ("2025", "entry 1 is not kid:secret"),
        ("2025:a,2026:", "entry 2 is not kid:secret"),
        ("bad id:secret", "key id"),
        ("2025:a,2025:b", "listed twice"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_previous_keys(text)
    with pytest.raises(ValueError, match="both the current key and a previous one"):
        SigningKeys("2025", SECRET, {"2025": NEW_SECRET})


def test_settings_name_the_current_key_and_the_previous_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISAFE_SECRET_KEY", NEW_SECRET)
    assert Settings().signing_keys == SigningKeys(key_id_of(NEW_SECRET), NEW_SECRET)

    monkeypatch.setenv("AISAFE_SECRET_KEY_ID", "2027-01")
    monkeypatch.setenv("AISAFE_PREVIOUS_SECRET_KEYS", f"2026-01:{SECRET}")
    keys = Settings().signing_keys

    assert keys == SigningKeys("2027-01", NEW_SECRET, {"2026-01": SECRET})
    assert Settings().signing_key == NEW_SECRET  # what else the key signs (sessions) is unchanged
    assert verify_action(keys, sign_action(SigningKeys("2026-01", SECRET), claims()), now=BEFORE_DEADLINE)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("AISAFE_PREVIOUS_SECRET_KEYS", f"2026-01{SECRET}", "entry 1 is not kid:secret"),
        ("AISAFE_PREVIOUS_SECRET_KEYS", f"{key_id_of(NEW_SECRET)}:{SECRET}", "both the current key and a previous"),
        ("AISAFE_SECRET_KEY_ID", "not an id", "must be 1-32 letters"),
    ],
)
def test_malformed_key_settings_are_refused_without_echoing_a_secret(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    monkeypatch.setenv("AISAFE_SECRET_KEY", NEW_SECRET)
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert problem in str(caught.value)
    assert SECRET not in str(caught.value) and NEW_SECRET not in str(caught.value)


def test_a_form_made_before_a_rotation_is_accepted_until_its_key_is_retired() -> None:
    before = SigningKeys("2026", SECRET)
    rotated = SigningKeys("2027", NEW_SECRET, {"2026": SECRET})
    action = sign_action(before, claims())
    old_form = csrf_token(before, action)
    new_form = csrf_token(rotated, action)

    assert check_csrf(rotated, action, old_form) == old_form.partition(".")[0]
    assert check_csrf(rotated, action, new_form) == new_form.partition(".")[0]
    assert check_csrf(SigningKeys("2027", NEW_SECRET), action, old_form) is None
    assert check_csrf(before, action, new_form) is None
