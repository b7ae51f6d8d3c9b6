"""Web sessions live on the server: sign-out and an operator's revocation end them at once, whatever copy of the
cookie is kept; sign-in takes only this site's own form (its Origin and a token bound to a pre-session cookie)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, update
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from models.settings import Settings
from models.tables import WebSession
from models.users import UserError, UserRole, add_user, revoke_user
from models.web_sessions import revoke_sessions
from tests.integration import acli
from tests.signin import sign_in, signin_form_token
from web.app import create_app
from web.auth import SESSION_COOKIE
from web.codec import own_origin
from web.site import allowed_origins, origin_allowed


@dataclass
class App:
    settings: Settings
    engine: Engine
    transport: httpx.ASGITransport

    def browser(self) -> httpx.AsyncClient:
        """A browser of its own: its own cookie jar."""
        return httpx.AsyncClient(transport=self.transport, base_url=self.settings.base_url)

    @property
    def origin(self) -> str:
        return own_origin(self.settings.base_url)


@pytest.fixture
async def app(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[App]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'aisafe.db'}",
        secret_key=f"test-signing-key-{uuid.uuid4().hex}",
        public_url="https://aisafe.example.org",
        codec=False,
    )
    web = create_app(settings, dev_env.client)
    async with web.router.lifespan_context(web):
        yield App(settings, web.state.engine, httpx.ASGITransport(app=web))


async def signed_in(app: App, token: str) -> tuple[httpx.AsyncClient, str]:
    """A new browser signed in with `token` (the caller closes it), and its session cookie as an attacker would
    copy it."""
    browser = await app.browser().__aenter__()
    response = await sign_in(browser, app.settings, token)
    assert response.status_code == 303, response.text[:300]
    cookie = browser.cookies.get(SESSION_COOKIE)
    assert cookie is not None
    return browser, cookie


async def audit_status(app: App, cookie: str) -> int:
    """What a request carrying only this session cookie gets on a signed-in page."""
    async with app.browser() as other:
        other.cookies.set(SESSION_COOKIE, cookie)
        return (await other.get("/audit")).status_code


async def test_a_cookie_copied_before_sign_out_does_not_work_after_it(app: App) -> None:
    token = add_user(app.engine, "Aminah", UserRole.COORDINATOR)
    browser, cookie = await signed_in(app, token)
    async with aclosing(browser):
        assert (await browser.get("/audit")).status_code == 200
        assert await audit_status(app, cookie) == 200  # the copy works while the session lives
        out = await browser.post("/signout")
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert (await browser.get("/audit")).status_code == 401
    assert await audit_status(app, cookie) == 401
    with Session(app.engine) as session:  # the database never held the cookie itself
        rows = session.exec(select(WebSession)).all()
    assert len(rows) == 1 and rows[0].revoked_at is not None and cookie not in rows[0].id_hash


async def test_an_operator_revokes_every_session_of_a_user_and_only_theirs(app: App) -> None:
    aminah = add_user(app.engine, "Aminah", UserRole.COORDINATOR)
    other = add_user(app.engine, "Audit Office", UserRole.AUDITOR)
    sessions = [await signed_in(app, aminah) for _ in range(3)]
    kept_browser, kept = await signed_in(app, other)
    async with aclosing(kept_browser):
        assert revoke_sessions(app.engine, "Aminah") == 3
        for browser, cookie in sessions:
            assert await audit_status(app, cookie) == 401
            await browser.aclose()
        assert await audit_status(app, kept) == 200
        # The account itself stays: its token still signs in and works as a bearer token.
        bearer = {"Authorization": f"Bearer {aminah}"}
        async with app.browser() as script:
            assert (await script.get("/audit", headers=bearer)).status_code == 200
        assert revoke_sessions(app.engine, "Aminah") == 0
        with pytest.raises(UserError, match="no user named"):
            revoke_sessions(app.engine, "Nobody")
        # Revoking the account ends its sessions too.
        revoke_user(app.engine, "Audit Office")
        assert await audit_status(app, kept) == 401


async def test_an_expired_session_is_refused(app: App) -> None:
    browser, cookie = await signed_in(app, add_user(app.engine, "Aminah", UserRole.COORDINATOR))
    async with aclosing(browser):
        with Session(app.engine) as session:
            session.exec(update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))  # type: ignore[call-overload]
            session.commit()
        assert (await browser.get("/audit")).status_code == 401
    assert await audit_status(app, cookie) == 401


@pytest.mark.parametrize(
    "origin",
    [None, "null", "https://evil.example", "http://aisafe.example.org", "https://aisafe.example.org.evil.example"],
)
async def test_a_sign_in_from_another_site_is_refused(app: App, origin: str | None) -> None:
    token = add_user(app.engine, "Aminah", UserRole.COORDINATOR)
    async with app.browser() as victim:
        # Even with a valid form token (the attacker's own, from their own visit) and a valid account token.
        csrf = await signin_form_token(victim)
        headers = {"Origin": origin} if origin is not None else {}
        refused = await victim.post("/signin", data={"token": token, "csrf": csrf, "next": "/"}, headers=headers)
        assert refused.status_code == 403 and "<h1>Sign-in refused</h1>" in refused.text
        assert "Traceback" not in refused.text
        assert SESSION_COOKIE not in victim.cookies
        assert (await victim.get("/audit")).status_code == 401
        with Session(app.engine) as session:
            assert session.exec(select(WebSession)).all() == []


async def test_a_sign_in_without_its_forms_token_is_refused_and_the_form_shown_again(app: App) -> None:
    token = add_user(app.engine, "Aminah", UserRole.COORDINATOR)
    origin = {"Origin": app.origin}
    async with app.browser() as attacker, app.browser() as victim:
        attackers_token = await signin_form_token(attacker)
        await signin_form_token(victim)  # the victim has a pre-session cookie of their own
        for csrf in ("", "0" * 64, attackers_token):
            refused = await victim.post("/signin", data={"token": token, "csrf": csrf, "next": "/"}, headers=origin)
            assert refused.status_code == 403, csrf
            assert "The sign-in form had expired" in refused.text and 'name="csrf"' in refused.text
            assert SESSION_COOKIE not in victim.cookies
        # A browser that never opened the form has no pre-session cookie, so no token can be right for it.
        async with app.browser() as fresh:
            refused = await fresh.post("/signin", data={"token": token, "csrf": attackers_token}, headers=origin)
            assert refused.status_code == 403 and SESSION_COOKIE not in fresh.cookies
        # The form the victim's browser shows does sign in.
        accepted = await sign_in(victim, app.settings, token, "/audit")
        assert accepted.status_code == 303 and accepted.headers["location"] == "/audit"
        assert (await victim.get("/audit")).status_code == 200


# --- the Origin check itself, over generated origins --------------------------------------------------------

DEV = Settings(dev=True, web_port=8000, public_url="https://aisafe.example.org")
PROD = Settings(public_url="https://aisafe.example.org/")
hosts = st.one_of(
    st.sampled_from(["aisafe.example.org", "localhost", "127.0.0.1", "[::1]", "evil.example", "aisafe.example.org."]),
    st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True),
)
ports = st.one_of(st.none(), st.sampled_from([80, 443, 8000, 8001]), st.integers(1, 65535))


@given(
    scheme=st.sampled_from(["http", "https", "HTTPS", "ftp", "javascript"]),
    host=hosts,
    port=ports,
    settings=st.sampled_from([DEV, PROD]),
)
def test_only_this_sites_own_origins_are_allowed(scheme: str, host: str, port: int | None, settings: Settings) -> None:
    origin = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
    default = {"http": 80, "https": 443}.get(scheme.lower())
    canonical = f"{scheme.lower()}://{host.lower()}" + (f":{port}" if port not in (None, default) else "")
    assert origin_allowed(settings, origin) == (canonical in allowed_origins(settings))
    assert origin_allowed(settings, origin.upper()) == origin_allowed(settings, origin)


@given(suffix=st.sampled_from(["/", "/signin", "?x=1", "#f", "@evil.example"]), settings=st.sampled_from([DEV, PROD]))
def test_an_origin_with_anything_after_the_host_is_not_an_origin(suffix: str, settings: Settings) -> None:
    assert not origin_allowed(settings, "https://aisafe.example.org" + suffix)


def test_the_allowed_origins_are_the_public_url_and_in_dev_the_loopback_port() -> None:
    assert allowed_origins(PROD) == {"https://aisafe.example.org"}
    assert allowed_origins(DEV) == {
        "https://aisafe.example.org",
        "http://127.0.0.1:8000",
        "http://localhost:8000",
        "http://[::1]:8000",
    }
    assert origin_allowed(DEV, "http://[::1]:8000") and not origin_allowed(DEV, "http://[::1]:8001")
    assert not origin_allowed(PROD, "http://localhost:8000")  # loopback is not this site outside dev mode
    assert not origin_allowed(PROD, "https://aisafe.example.org:99999")  # a bad port, no traceback


async def test_the_operator_ends_a_users_sessions_from_the_command_line(app: App, tmp_path: Path) -> None:
    token = add_user(app.engine, "Aminah", UserRole.COORDINATOR)
    browser, cookie = await signed_in(app, token)
    await browser.aclose()
    env = {
        "PATH": "/usr/bin:/bin",
        "AISAFE_DATA_DIR": str(tmp_path / "cli"),
        "AISAFE_DATABASE_URL": str(app.engine.url),
    }
    ended = await acli("users", "signout", "Aminah", env=env)
    assert ended.code == 0 and "1 session of 'Aminah' ended" in ended.stdout, ended.stderr
    assert await audit_status(app, cookie) == 401
    unknown = await acli("users", "signout", "Nobody", env=env)
    assert unknown.code == 2 and unknown.stderr.strip().count("\n") == 0 and "no user named 'Nobody'" in unknown.stderr
