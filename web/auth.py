"""Sign-in for coordinators and auditors, and the roles every non-link route requires.

A person signs in with their API token (`aisafe users add NAME --role …` prints it once) and gets a session
cookie; scripts and the Temporal CLI send the token as `Authorization: Bearer …`. Delegates and stakeholders
never sign in: their signed email links are their identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from models.tables import UserAccount
from models.users import find_user, user_by_id
from web.pages import error_page, templates

SESSION_COOKIE = "aisafe_session"
SESSION_MAX_AGE = 12 * 3600
_SESSION_SALT = "aisafe.session.v1"

router = APIRouter()


class SignInRequired(Exception):
    """Raised by `require_role` for a request without a valid token or session (answered by the app)."""

    def __init__(self, path: str, wants_page: bool) -> None:
        self.path, self.wants_page = path, wants_page


class RoleForbidden(Exception):
    def __init__(self, user: UserAccount, roles: tuple[str, ...]) -> None:
        self.user, self.roles = user, roles


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.settings.signing_key, salt=_SESSION_SALT)


def current_user(request: Request) -> UserAccount | None:
    engine = request.app.state.engine
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return find_user(engine, header[7:].strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        claims = _serializer(request).loads(cookie, max_age=SESSION_MAX_AGE)
        user = user_by_id(engine, int(claims["u"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    # A revoked account, or one whose token was replaced, ends its sessions too.
    return user if user is not None and user.token_hash.startswith(str(claims.get("h"))) else None


def require_role(*roles: str) -> Callable[[Request], UserAccount]:
    """A FastAPI dependency: the signed-in user, who must hold one of `roles`."""

    def dependency(request: Request) -> UserAccount:
        user = current_user(request)
        if user is None:
            wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
            raise SignInRequired(request.url.path, wants_page)
        if user.role not in roles:
            raise RoleForbidden(user, roles)
        request.state.user = user
        return user

    return dependency


def install(app: Any) -> None:
    """Answer the auth exceptions: a person is sent to sign in, a script gets 401; the wrong role gets 403."""

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if exc.wants_page:
            return RedirectResponse(f"/signin?next={quote(exc.path)}", status_code=303)
        response = error_page(request, 401, "Sign-in required", "This page is for signed-in coordinators and auditors.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="aisafe"'
        return response

    @app.exception_handler(RoleForbidden)
    async def _forbidden(request: Request, exc: RoleForbidden) -> Response:
        return error_page(
            request,
            403,
            "Not allowed",
            f"You are signed in as {exc.user.name} ({exc.user.role}); this page is for: {', '.join(exc.roles)}.",
        )


def _safe_next(target: str) -> str:
    """Only a path on this site: never another host (`//evil`, `https://…`)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request, next: str = "/") -> Response:  # noqa: A002  (the query's name)
    return templates.TemplateResponse(request, "signin.html", {"next": _safe_next(next), "problem": None})


@router.post("/signin")
async def signin(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:  # noqa: A002
    user = find_user(request.app.state.engine, token) if token else None
    if user is None:
        return templates.TemplateResponse(
            request,
            "signin.html",
            {"next": _safe_next(next), "problem": "That token is not valid (or was revoked)."},
            status_code=401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        _serializer(request).dumps({"u": user.id, "h": user.token_hash[:16]}),
        max_age=SESSION_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or request.app.state.settings.base_url.startswith("https:"),
    )
    return response


@router.post("/signout")
async def signout() -> Response:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
