"""Signed links: a delegate's action link (bound to proposal, round, state, delegate and document hash, expiring
with the round) and a stakeholder's comment link (bound to proposal, consultation, stakeholder and document).

Every link names the key that signed it (`KID.payload.signature`, the id also in the signing salt), so keys can
be rotated: a new key signs new links while the keys it replaced still verify theirs until they are retired.
Links issued before key ids existed (`payload.signature`, or `.payload.signature` when compressed) verify with
any configured key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ValidationError

from models.states import MemberState

_SALT = "aisafe.action.v1"
_COMMENT_SALT = "aisafe.comment.v1"
_CSRF_SALT = b"aisafe.csrf.v1"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
# What itsdangerous issues: a (possibly compressed) base64url payload and a 27-character HMAC-SHA1 signature.
_SIGNED = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{27}")
MAX_TOKEN_LENGTH = 2048

RETIRED_KEY = "This link was signed with a key that has been retired; use the link in the most recent email."


class ActionClaims(BaseModel):
    proposal_id: str
    round: int
    state: MemberState
    delegate_id: str
    document_sha256: str
    expires_at: datetime

    @property
    def round_workflow_id(self) -> str:
        return round_workflow_id(self.proposal_id, self.round)


class CommentClaims(BaseModel):
    proposal_id: str
    stage_index: int
    stakeholder_id: str
    document_sha256: str
    expires_at: datetime

    @property
    def consultation_workflow_id(self) -> str:
        return consultation_workflow_id(self.proposal_id, self.stage_index)


_C = TypeVar("_C", ActionClaims, CommentClaims)


class TokenError(Exception):
    """A link that cannot be honoured; `reason` is safe to show to the person holding it."""

    def __init__(self, reason: str, *, expired: bool = False, retired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired
        self.retired = retired


def key_id_of(secret: str) -> str:
    """The default id of a signing key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def check_key_id(kid: str) -> str:
    """A key id as it can stand at the head of a link; ValueError otherwise."""
    if not _KEY_ID.fullmatch(kid):
        raise ValueError(f"key id {kid!r} must be 1-32 letters, digits, '-' or '_'")
    return kid


def parse_previous_keys(text: str | None) -> dict[str, str]:
    """`kid:secret,kid:secret` (AISAFE_PREVIOUS_SECRET_KEYS) as {kid: secret}; ValueError names a bad entry."""
    keys: dict[str, str] = {}
    for number, entry in enumerate((text or "").split(","), start=1):
        if not entry.strip():
            continue
        kid, sep, secret = entry.strip().partition(":")
        if not sep or not secret.strip():
            raise ValueError(f"entry {number} is not kid:secret")
        if check_key_id(kid.strip()) in keys:
            raise ValueError(f"key id {kid.strip()!r} is listed twice")
        keys[kid.strip()] = secret.strip()
    return keys


@dataclass(frozen=True)
class SigningKeys:
    """The key that signs new links (with its id) and the previous keys whose links still verify."""

    current_id: str
    current: str
    previous: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_key_id(self.current_id)
        for kid in self.previous:
            check_key_id(kid)
        if self.current_id in self.previous:
            raise ValueError(f"key id {self.current_id!r} is both the current key and a previous one")

    @classmethod
    def of(cls, keys: SigningKeys | str) -> SigningKeys:
        """A plain secret is a key ring of one, with the default id."""
        return keys if isinstance(keys, SigningKeys) else cls(key_id_of(keys), keys)

    def secret(self, kid: str) -> str | None:
        return self.current if kid == self.current_id else self.previous.get(kid)

    @property
    def secrets(self) -> list[str]:
        """Every configured secret, the current one first."""
        return [self.current, *self.previous.values()]


def round_workflow_id(proposal_id: str, round_number: int) -> str:
    return f"{proposal_id}.round-{round_number}"


def consultation_workflow_id(proposal_id: str, stage_index: int) -> str:
    return f"{proposal_id}.consultation-{stage_index}"


def meeting_workflow_id(proposal_id: str, stage_index: int) -> str:
    return f"{proposal_id}.meeting-{stage_index}"


def meeting_sitting_workflow_id(proposal_id: str, stage_index: int, sitting: int) -> str:
    """A stage's meeting; a text referred back meets again at a later sitting, another workflow."""
    first = meeting_workflow_id(proposal_id, stage_index)
    return first if sitting == 1 else f"{first}.sitting-{sitting}"


def sign_action(keys: SigningKeys | str, claims: ActionClaims) -> str:
    return _sign(SigningKeys.of(keys), _SALT, claims)


def sign_comment(keys: SigningKeys | str, claims: CommentClaims) -> str:
    return _sign(SigningKeys.of(keys), _COMMENT_SALT, claims)


def verify_action(keys: SigningKeys | str, token: str, *, now: datetime | None = None) -> ActionClaims:
    """Check key, signature, shape and expiry; raises TokenError with a reason fit for the page."""
    return _verify(SigningKeys.of(keys), _SALT, token, ActionClaims, now)


def verify_comment(keys: SigningKeys | str, token: str, *, now: datetime | None = None) -> CommentClaims:
    return _verify(SigningKeys.of(keys), _COMMENT_SALT, token, CommentClaims, now)


def _sign(keys: SigningKeys, salt: str, claims: ActionClaims | CommentClaims) -> str:
    payload = claims.model_dump(mode="json")
    payload["expires_at"] = int(claims.expires_at.timestamp())
    signed = URLSafeSerializer(keys.current, salt=f"{salt}:{keys.current_id}").dumps(payload)
    return f"{keys.current_id}.{signed}"


def _verify(keys: SigningKeys, salt: str, token: str, model: type[_C], now: datetime | None) -> _C:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("This link is not valid.")
    kid, _, signed = token.partition(".")
    if kid and "." in signed:  # a link that names its key
        if not _KEY_ID.fullmatch(kid) or not _SIGNED.fullmatch(signed):
            raise TokenError("This link is not valid: it is incomplete or has been altered.")
        secret = keys.secret(kid)
        if secret is None:
            raise TokenError(RETIRED_KEY, retired=True)
        payload = _loads(URLSafeSerializer(secret, salt=f"{salt}:{kid}"), signed)
    else:  # issued before links named their key
        payload = _loads_any([URLSafeSerializer(s, salt=salt) for s in keys.secrets], token)
    if not isinstance(payload, dict):
        raise TokenError("This link is not valid.")
    try:
        payload["expires_at"] = datetime.fromtimestamp(int(payload["expires_at"]), UTC)
        claims = model.model_validate(payload)
    except (KeyError, TypeError, ValueError, OverflowError, ValidationError):
        raise TokenError("This link is not valid.") from None
    if (now or datetime.now(UTC)) >= claims.expires_at:
        raise TokenError("The deadline for this link has passed; the link has expired.", expired=True)
    return claims


def _loads(serializer: URLSafeSerializer, signed: str) -> object:
    try:
        payload = serializer.loads(signed)
    except BadSignature:
        raise TokenError("This link is not valid: it is incomplete or has been altered.") from None
    # Base64 leaves slack in a signature's last character: only the exact text we issued is accepted.
    if not hmac.compare_digest(str(serializer.dumps(payload)).encode(), signed.encode(errors="replace")):
        raise TokenError("This link is not valid: it is incomplete or has been altered.")
    return payload


def _loads_any(serializers: list[URLSafeSerializer], signed: str) -> object:
    for serializer in serializers[:-1]:
        try:
            return _loads(serializer, signed)
        except TokenError:
            continue
    return _loads(serializers[-1], signed)


def csrf_token(keys: SigningKeys | str, action_token: str) -> str:
    """A fresh form token tied to one action link: a random nonce and its MAC (with the current key)."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_csrf_mac(SigningKeys.of(keys).current, action_token, nonce)}"


def check_csrf(keys: SigningKeys | str, action_token: str, value: str) -> str | None:
    """The nonce of a valid form token, or None; a form made before a key rotation stays valid until that key
    is retired."""
    nonce, _, mac = (value or "").partition(".")
    if not nonce or not mac or len(value) > 200:
        return None
    # As bytes: compare_digest refuses str with non-ASCII characters, and a form may hold anything.
    expected = [_csrf_mac(s, action_token, nonce).encode() for s in SigningKeys.of(keys).secrets]
    valid = [hmac.compare_digest(mac.encode(errors="replace"), e) for e in expected]
    return nonce if any(valid) else None


def _csrf_mac(secret: str, action_token: str, nonce: str) -> str:
    key = hashlib.sha256(_CSRF_SALT + secret.encode()).digest()
    return hmac.new(key, f"{action_token}\n{nonce}".encode(), hashlib.sha256).hexdigest()


def decision_id(action_token: str, form_nonce: str) -> str:
    """The id of one submitted form: a repeated POST of the same form gets the same id (and receipt)."""
    return "d-" + hashlib.sha256(f"{action_token}\n{form_nonce}".encode()).hexdigest()[:32]
