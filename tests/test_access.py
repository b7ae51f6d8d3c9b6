"""Who reaches what: coordinators and auditors sign in with API tokens stored hashed; every non-link route
requires a role; every response carries the security headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from models.settings import Settings
from models.tables import UserAccount
from models.users import UserRole, add_user, revoke_user, token_hash
from tests.integration import cli
from tests.signin import signin_form_token
from web.app import create_app
from web.codec import own_origin

# Every route of the app that is not an emailed link, with the roles allowed on it.
# The ASEAN Secretariat reads the dashboard and the audit record (issue 18).
ROLE_ROUTES = {
    ("GET", "/"): {"coordinator", "auditor", "asean_secretariat"},
    ("GET", "/audit"): {"coordinator", "auditor", "asean_secretariat"},
    ("GET", "/audit/p-unknown"): {"coordinator", "auditor", "asean_secretariat"},
    ("GET", "/audit/p-unknown/bundle.zip"): {"coordinator", "auditor", "asean_secretariat"},
}


@pytest.fixture
async def app_client(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The app and its engine; the client sends this site's Origin, as a browser posting its own forms does."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'aisafe.db'}",
        dev=True,
        secret_key=f"test-signing-key-{uuid.uuid4().hex}",
    )
    app = create_app(settings, dev_env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        origin = {"Origin": own_origin(settings.base_url)}
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=origin) as http:
            yield http, app.state.engine


async def test_each_role_reaches_only_its_routes(app_client: tuple[httpx.AsyncClient, object]) -> None:
    http, engine = app_client
    tokens = {role.value: add_user(engine, f"a {role.value}", role) for role in UserRole}  # type: ignore[arg-type]
    checked = 0
    for (method, path), allowed in ROLE_ROUTES.items():
        anonymous = await http.request(method, path)
        assert anonymous.status_code == 401, (path, anonymous.status_code)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        checked += 1
        for role, token in tokens.items():
            response = await http.request(method, path, headers={"Authorization": f"Bearer {token}"})
            if role in allowed:
                assert response.status_code in (200, 404), (path, role, response.status_code)
            else:
                assert response.status_code == 403, (path, role, response.status_code)
            checked += 1
        forged = await http.request(method, path, headers={"Authorization": "Bearer aisafe_forged-token"})
        assert forged.status_code == 401
        checked += 1
    assert checked == len(ROLE_ROUTES) * (2 + len(tokens))


async def test_tokens_are_stored_only_as_hashes_and_revoking_ends_access(
    app_client: tuple[httpx.AsyncClient, object],
) -> None:
    http, engine = app_client
    token = add_user(engine, "Audit Office", UserRole.AUDITOR)  # type: ignore[arg-type]
    with Session(engine) as session:  # type: ignore[arg-type]
        [stored] = session.exec(select(UserAccount)).all()
    assert stored.token_hash == token_hash(token) and token not in stored.model_dump_json()
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/audit", headers=bearer)).status_code == 200
    revoke_user(engine, "Audit Office")  # type: ignore[arg-type]
    assert (await http.get("/audit", headers=bearer)).status_code == 401


async def test_a_person_signs_in_with_a_session_cookie_and_is_sent_back(
    app_client: tuple[httpx.AsyncClient, object],
) -> None:
    http, engine = app_client
    # A browser without a session is sent to sign in, remembering where it was going.
    page = await http.get("/audit", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=/audit"
    form = await http.get("/signin?next=/audit")
    assert form.status_code == 200 and '<label for="token">' in form.text
    csrf = await signin_form_token(http, "/audit")

    wrong = await http.post("/signin", data={"token": "aisafe_nope", "next": "/audit", "csrf": csrf})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    token = add_user(engine, "Aminah", UserRole.COORDINATOR)  # type: ignore[arg-type]
    signed_in = await http.post("/signin", data={"token": token, "next": "/audit", "csrf": csrf})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/audit"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and token not in cookie
    assert (await http.get("/audit")).status_code == 200  # the client keeps the cookie

    # Never a redirect to another site.
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        away = await http.post(
            "/signin", data={"token": token, "next": target, "csrf": await signin_form_token(http, target)}
        )
        assert away.headers["location"] == "/", target

    revoke_user(engine, "Aminah")  # type: ignore[arg-type]
    assert (await http.get("/audit")).status_code == 401  # the session ends with the account
    await http.post("/signout")


async def test_security_headers_on_every_page(app_client: tuple[httpx.AsyncClient, object]) -> None:
    http, _ = app_client
    checked = 0
    for path in ("/signin", "/", "/act/not-a-token", "/comment/not-a-token", "/healthz", "/static/app.css"):
        response = await http.get(path)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        # The sign-in page alone lets its form send this site's Origin (web/auth.py); its URL holds no secret.
        assert response.headers["referrer-policy"] == ("same-origin" if path == "/signin" else "no-referrer")
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        checked += 1
    assert checked == 6
    link_page = await http.get("/act/not-a-token")
    assert link_page.headers["cache-control"] == "no-store"
    assert not re.search(r"<script(?![^>]*\bsrc=)", link_page.text)  # no inline script anywhere


def test_users_command_prints_the_token_once_and_checks_its_input(tmp_path: Path) -> None:
    env = {"AISAFE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    added = cli("users", "add", "Audit Office", "--role", "auditor", "--json", env=env)
    assert added.code == 0, added.stderr
    token = added.json()["token"]
    assert token.startswith("aisafe_")
    listed = cli("users", "list", "--json", env=env)
    assert listed.code == 0 and token not in listed.stdout
    assert [u["name"] for u in listed.json()] == ["Audit Office"]
    assert cli("users", "add", "Audit Office", "--role", "auditor", env=env).code == 2  # the name is taken
    bad_role = cli("users", "add", "Someone", "--role", "admin", env=env)
    assert bad_role.code == 2 and "coordinator, auditor or asean_secretariat" in bad_role.stderr
    assert cli("users", "revoke", "Audit Office", env=env).code == 0
    assert cli("users", "revoke", "Nobody", env=env).code == 2
