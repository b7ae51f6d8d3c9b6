"""Signed links: a delegate's action link (bound to proposal, round, state, delegate and document hash, expiring
with the round) and a stakeholder's comment link (bound to proposal, consultation, stakeholder and document)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import TypeVar

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ValidationError

from models.states import MemberState

_SALT = "aisafe.action.v1"
_COMMENT_SALT = "aisafe.comment.v1"
_CSRF_SALT = b"aisafe.csrf.v1"


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

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired


def round_workflow_id(proposal_id: str, round_number: int) -> str:
    return f"{proposal_id}.round-{round_number}"


def consultation_workflow_id(proposal_id: str, stage_index: int) -> str:
    return f"{proposal_id}.consultation-{stage_index}"


def meeting_workflow_id(proposal_id: str, stage_index: int) -> str:
    return f"{proposal_id}.meeting-{stage_index}"


def sign_action(secret: str, claims: ActionClaims) -> str:
    return _sign(secret, _SALT, claims)


def sign_comment(secret: str, claims: CommentClaims) -> str:
    return _sign(secret, _COMMENT_SALT, claims)


def verify_action(secret: str, token: str, *, now: datetime | None = None) -> ActionClaims:
    """Check signature, shape and expiry; raises TokenError with a reason fit for the page."""
    return _verify(secret, _SALT, token, ActionClaims, now)


def verify_comment(secret: str, token: str, *, now: datetime | None = None) -> CommentClaims:
    return _verify(secret, _COMMENT_SALT, token, CommentClaims, now)


def _sign(secret: str, salt: str, claims: ActionClaims | CommentClaims) -> str:
    payload = claims.model_dump(mode="json")
    payload["expires_at"] = int(claims.expires_at.timestamp())
    return str(URLSafeSerializer(secret, salt=salt).dumps(payload))


def _verify(secret: str, salt: str, token: str, model: type[_C], now: datetime | None) -> _C:
    if not token or len(token) > 2048:
        raise TokenError("This link is not valid.")
    serializer = URLSafeSerializer(secret, salt=salt)
    try:
        payload = serializer.loads(token)
    except BadSignature:
        raise TokenError("This link is not valid: it is incomplete or has been altered.") from None
    # Base64 leaves slack in a signature's last character: only the exact text we issued is accepted.
    if not hmac.compare_digest(str(serializer.dumps(payload)), token):
        raise TokenError("This link is not valid: it is incomplete or has been altered.")
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


def csrf_token(secret: str, action_token: str) -> str:
    """A fresh form token tied to one action link: a random nonce and its MAC."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_csrf_mac(secret, action_token, nonce)}"


def check_csrf(secret: str, action_token: str, value: str) -> str | None:
    """The nonce of a valid form token, or None."""
    nonce, _, mac = (value or "").partition(".")
    if not nonce or not mac or len(value) > 200:
        return None
    return nonce if hmac.compare_digest(mac, _csrf_mac(secret, action_token, nonce)) else None


def _csrf_mac(secret: str, action_token: str, nonce: str) -> str:
    key = hashlib.sha256(_CSRF_SALT + secret.encode()).digest()
    return hmac.new(key, f"{action_token}\n{nonce}".encode(), hashlib.sha256).hexdigest()


def decision_id(action_token: str, form_nonce: str) -> str:
    """The id of one submitted form: a repeated POST of the same form gets the same id (and receipt)."""
    return "d-" + hashlib.sha256(f"{action_token}\n{form_nonce}".encode()).hexdigest()[:32]
