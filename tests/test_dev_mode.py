"""Dev mode keeps what it holds to its owner: dev-only pages answer only under this app's own Host names (no DNS
rebinding), and `aisafe dev` writes every file of its data dir owner-only (0600; directories 0700)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from devstack.private import make_private
from devstack.services import free_port
from models.settings import Settings
from tests.integration import AISAFE
from web.app import create_app
from web.devmail import router as dev_router
from web.mailbox import read_mailbox
from web.site import allowed_hosts

EXAMPLES = Path(__file__).parent.parent / "examples"
PORT = 8123
DEV = Settings(dev=True, web_port=PORT, public_url="https://aisafe.example.org", secret_key="test-" + "k" * 40)
OWN_HOSTS = [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"LOCALHOST:{PORT}", f"[::1]:{PORT}", "aisafe.example.org"]


def get(app: FastAPI, path: str, host: str) -> httpx.Response:
    """One request with this Host header to the app's routing (the Host check needs no Temporal, no database)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{PORT}") as http:
            return await http.get(path, headers={"Host": host})

    return asyncio.run(send())


@pytest.fixture(scope="module")
def web() -> FastAPI:
    return create_app(DEV, client=object())  # type: ignore[arg-type]


def dev_paths() -> list[str]:
    """Every dev-only route (all on web.devmail's router, which checks the Host), a value in each parameter."""
    paths = [route.path for route in dev_router.routes if isinstance(route, Route)]
    assert paths and all(p.startswith("/dev/") for p in paths), paths
    return [p.replace("{key}", "no-such-message") for p in paths]


def test_dev_pages_answer_under_this_apps_own_addresses(web: FastAPI) -> None:
    for host in OWN_HOSTS:
        page = get(web, "/dev/mail", host)
        assert page.status_code == 200, (host, page.status_code)
        assert "<h1>" in page.text


@pytest.mark.parametrize("path", dev_paths())
@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        f"evil.example:{PORT}",  # a rebound name on the right port
        f"127.0.0.1.nip.io:{PORT}",
        "127.0.0.1",  # no port: not the dev port
        f"127.0.0.1:{PORT + 1}",
        "localhost",
        f"aisafe.example.org:{PORT}",
        "",
    ],
)
def test_every_dev_page_refuses_a_foreign_host(web: FastAPI, path: str, host: str) -> None:
    refused = get(web, path, host)
    assert refused.status_code == 403, (path, host, refused.status_code)
    assert "<h1>" in refused.text and "own addresses" in refused.text and "Traceback" not in refused.text


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    host=st.one_of(
        st.from_regex(r"[A-Za-z0-9.\-]{1,40}(:[0-9]{1,5})?", fullmatch=True),
        st.sampled_from(OWN_HOSTS).map(lambda h: h + "."),
        st.sampled_from(OWN_HOSTS).map(lambda h: "x" + h),
        st.sampled_from(OWN_HOSTS),
    )
)
def test_a_dev_page_answers_exactly_the_configured_hosts(web: FastAPI, host: str) -> None:
    response = get(web, "/dev/mail", host)
    expected = 200 if host.lower() in allowed_hosts(DEV) else 403
    assert response.status_code == expected, (host, response.status_code)


def test_dev_pages_do_not_exist_outside_dev_mode() -> None:
    production = Settings(public_url="https://aisafe.example.org", secret_key="test-" + "k" * 40)
    app = create_app(production, client=object())  # type: ignore[arg-type]
    assert get(app, "/dev/mail", "aisafe.example.org").status_code == 404


# --- file modes of the data dir -----------------------------------------------------------------------------


def loose_modes(data_dir: Path) -> list[str]:
    """Every path under `data_dir` that anyone but its owner may read, write or enter."""
    loose = []
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        wanted = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) != wanted:
            loose.append(f"{path.relative_to(data_dir)} {oct(stat.S_IMODE(mode))}")
    return loose


def test_making_the_data_dir_private_tightens_what_an_older_version_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "mail" / "new").mkdir(parents=True, mode=0o755)
    (data / "aisafe.db").write_text("x")
    (data / "aisafe.db").chmod(0o644)
    (data / "mail" / "new" / "1.eml").write_text("a link")
    (data / "mail" / "new" / "1.eml").chmod(0o666)
    (data / "elsewhere").symlink_to(tmp_path)
    outside = stat.S_IMODE(tmp_path.stat().st_mode)
    before = os.umask(0o022)
    try:
        previous = make_private(data)
        assert previous == 0o022
        (data / "new.log").write_text("made after")
        (data / "sub").mkdir()
    finally:
        os.umask(before)
    assert loose_modes(data) == []
    assert stat.S_IMODE(tmp_path.stat().st_mode) == outside  # a link's target is not the data dir's to change
    assert len(list(data.rglob("*"))) == 7


def _wait(check: object, what: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if process.poll() is not None:
            raise AssertionError(f"aisafe dev exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_aisafe_dev_writes_every_data_dir_file_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "left-by-an-older-version.log").write_text("the dev coordinator's token was here")
    (data / "left-by-an-older-version.log").chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISAFE_", "TEMPORAL_"))}
    env |= {"AISAFE_DATA_DIR": str(data), "AISAFE_LOG_FORMAT": "json"}
    ports = {"--web-port": free_port(), "--temporal-port": free_port(), "--ui-port": free_port()}
    args = [AISAFE, "dev", *(str(a) for pair in ports.items() for a in pair), "--smtp-port", str(free_port())]
    args += ["--sample", str(EXAMPLES / "review-round.yaml"), "--roster", str(EXAMPLES / "roster.yaml")]
    log = (tmp_path / "dev.out").open("wb")
    # A shell's usual umask: left alone, every file would be world-readable.
    process = subprocess.Popen(
        args,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        _wait(lambda: len(read_mailbox(data / "mail")) >= 3, "the sample's invitations", process)
        for name in ("aisafe.db", "temporal.db", "temporal.log", "secret.key", "codec.key", "dev-coordinator.token"):
            assert (data / name).exists(), name
        running = loose_modes(data)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    assert running == [], running
    assert loose_modes(data) == [], (tmp_path / "dev.out").read_text()[-2000:]
