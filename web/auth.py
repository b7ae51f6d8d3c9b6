"""Sign-in for coordinators and auditors, and the roles every non-link route requires.

A person signs in with their API token (`aisafe users add NAME --role …` prints it once) and gets a session
cookie naming a server-side session (models.web_sessions), which sign-out ends; scripts and the Temporal CLI
send the token as `Authorization: Bearer …`. Delegates and stakeholders never sign in: their signed email links
are their identity.

The sign-in form is protected against login CSRF (another site signing a victim in to the attacker's account):
its POST must carry this site's Origin and a token bound to a pre-session cookie set with the form.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from models.tables import UserAccount
from models.users import find_user
from models.web_sessions import SESSION_MAX_AGE, end_session, open_session, session_user
from web.pages import error_page, templates
from web.site import origin_allowed

SESSION_COOKIE = "aisafe_session"
# The pre-session cookie the sign-in form's token is bound to: another site can neither read nor set it.
SIGNIN_COOKIE = "aisafe_signin"
_SIGNIN_MAX_AGE = 2 * 3600
_SIGNIN_CSRF = b"aisafe.signin-csrf.v1:"
# The sign-in page's URL holds no secret, so its form may send this site's Origin (under "no-referrer" a
# browser sends `Origin: null` even to the same site, and the Origin check could not tell us from an attacker).
SIGNIN_REFERRER_POLICY = "same-origin"

router = APIRouter()

# Who may read the dashboard and the audit pages. The ASEAN Secretariat reads and cannot act: no page of the app
# lets a signed-in account answer for a state (only a delegate's own link does), and any coordinator action added
# must require "coordinator" alone. Decrypting Temporal payloads (/codec) stays with coordinators and auditors.
READERS = ("coordinator", "auditor", "asean_secretariat")


class SignInRequired(Exception):
    """Raised by `require_role` for a request without a valid token or session (answered by the app)."""

    def __init__(self, path: str, wants_page: bool) -> None:
        self.path, self.wants_page = path, wants_page


class RoleForbidden(Exception):
    def __init__(self, user: UserAccount, roles: tuple[str, ...]) -> None:
        self.user, self.roles = user, roles


def current_user(request: Request) -> UserAccount | None:
    engine = request.app.state.engine
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return find_user(engine, header[7:].strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    # A revoked account ends its sessions too (session_user checks the account).
    return session_user(engine, cookie) if cookie else None


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
        response = error_page(
            request,
            401,
            "Sign-in required",
            "This page is for signed-in coordinators, auditors and the ASEAN Secretariat.",
        )
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


def _signin_token(request: Request, presession: str) -> str:
    key = request.app.state.settings.signing_key.encode()
    return hmac.new(key, _SIGNIN_CSRF + presession.encode(), hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.app.state.settings.base_url.startswith("https:")


def _signin_page(request: Request, next_path: str, problem: str | None, status_code: int = 200) -> Response:
    """The sign-in form with a token bound to this browser's pre-session cookie (set here when it has none)."""
    presession = request.cookies.get(SIGNIN_COOKIE, "")
    fresh = not (20 <= len(presession) <= 64 and presession.replace("-", "").replace("_", "").isalnum())
    if fresh:
        presession = secrets.token_urlsafe(32)
    context = {"next": _safe_next(next_path), "problem": problem, "csrf": _signin_token(request, presession)}
    response = templates.TemplateResponse(request, "signin.html", context, status_code=status_code)
    response.headers["Referrer-Policy"] = SIGNIN_REFERRER_POLICY
    if fresh:
        response.set_cookie(
            SIGNIN_COOKIE,
            presession,
            max_age=_SIGNIN_MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )
    return response


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request, next: str = "/") -> Response:  # noqa: A002  (the query's name)
    return _signin_page(request, next, None)


@router.post("/signin")
async def signin(
    request: Request,
    token: str = Form(""),
    next: str = Form("/"),  # noqa: A002
    csrf: str = Form(""),
) -> Response:
    settings = request.app.state.settings
    if not origin_allowed(settings, request.headers.get("origin")):
        return error_page(
            request,
            403,
            "Sign-in refused",
            "This sign-in was not sent from this site's own sign-in page, so it was refused.",
            f"Open {settings.base_url}/signin and sign in there.",
        )
    presession = request.cookies.get(SIGNIN_COOKIE, "")
    if not presession or not hmac.compare_digest(csrf, _signin_token(request, presession)):
        return _signin_page(
            request, next, "The sign-in form had expired or was not this site's; sign in again below.", 403
        )
    engine = request.app.state.engine
    user = await asyncio.to_thread(find_user, engine, token) if token else None
    if user is None:
        return _signin_page(request, next, "That token is not valid (or was revoked).", 401)
    session_id = await asyncio.to_thread(open_session, engine, user)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(SESSION_MAX_AGE.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(SIGNIN_COOKIE)  # one form, one sign-in
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await asyncio.to_thread(end_session, request.app.state.engine, cookie)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
