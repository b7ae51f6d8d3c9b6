"""The embedded stack (`aisafe dev`, `aisafe demo`, integration tests): every part real, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from devstack.private import make_private
from devstack.services import QuietServer, SmtpSink, StackError, TemporalDevServer, port_open, serve_web, split_address
from models.db import init_db, make_engine
from models.settings import Settings
from models.temporal_client import connect
from web.app import create_app
from worker import build_worker


@dataclass
class StackPorts:
    web: int = 8000
    temporal: int = 7233
    ui: int | None = 8233
    smtp: int = 1025


class EmbeddedStack:
    """Starts (or reuses) Temporal, then the SMTP sink, the worker and the web app; stops them in reverse."""

    def __init__(
        self,
        data_dir: Path,
        ports: StackPorts,
        *,
        temporal_address: str | None = None,
        task_queue: str = "aisafe",
        run_worker: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.task_queue = task_queue
        self._run_worker = run_worker
        self.ports = ports
        self._requested_address = temporal_address
        self.temporal: TemporalDevServer | None = None
        self.sink = SmtpSink(data_dir / "mail", port=ports.smtp)
        self.settings: Settings | None = None
        self.client: Client | None = None
        self.worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._web: QuietServer | None = None
        self._web_task: asyncio.Task[None] | None = None
        self.reused_temporal = False
        self._umask: int | None = None

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.web}"

    @property
    def ui_url(self) -> str | None:
        return self.temporal.ui_url if self.temporal else None

    async def start(self) -> None:
        # Before anything is written: the data dir holds keys, tokens and every emailed link.
        self._umask = make_private(self.data_dir)
        address = self._requested_address
        if address and port_open(*split_address(address)):
            self.reused_temporal = True
        else:
            self.temporal = TemporalDevServer(
                port=self.ports.temporal,
                ui_port=self.ports.ui,
                db_file=self.data_dir / "temporal.db",
                log_file=self.data_dir / "temporal.log",
                codec_endpoint=f"{self.web_url}/codec",
            )
            await asyncio.to_thread(self.temporal.start)
            address = self.temporal.address
        try:
            self.sink.start()
            self.settings = Settings(
                data_dir=self.data_dir,
                dev=True,
                temporal_address=address,
                smtp_host="127.0.0.1",
                smtp_port=self.ports.smtp,
                web_host="127.0.0.1",
                web_port=self.ports.web,
                task_queue=self.task_queue,
                ui_origins=_ui_origins(self.ports.ui),
            )
            engine = make_engine(self.settings.sqlalchemy_url)
            init_db(engine)
            self.client = await self._connect(self.settings)
            if self._run_worker:
                self.worker = build_worker(self.client, self.settings, engine)
                self._worker_task = asyncio.create_task(self.worker.run())
            self._web, self._web_task = await serve_web(
                create_app(self.settings, self.client), "127.0.0.1", self.ports.web
            )
        except BaseException:
            await self.stop()
            raise

    async def _connect(self, settings: Settings, timeout: float = 30) -> Client:
        """The client. A dev server started here opens its port a moment before its frontend serves: until then a
        connection is refused as Unavailable ("Frontend is not healthy yet"), which is retried while it runs."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await connect(settings)
            except RuntimeError as exc:
                starting = self.temporal is not None and self.temporal.pid is not None
                if not starting or "Unavailable" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._web is not None and self._web_task is not None:
            self._web.should_exit = True
            await asyncio.gather(self._web_task, return_exceptions=True)
            self._web = None
        if self.worker is not None and self._worker_task is not None:
            await self.worker.shutdown()
            await asyncio.gather(self._worker_task, return_exceptions=True)
            self.worker = None
        self.sink.stop()
        if self.temporal is not None:
            await asyncio.to_thread(self.temporal.stop)
            self.temporal = None
        if self._umask is not None:  # an embedding process (a test run) gets its own umask back
            os.umask(self._umask)
            self._umask = None

    async def __aenter__(self) -> EmbeddedStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _ui_origins(ui_port: int | None) -> str | None:
    """The origins of the stack's own Temporal UI, whose pages call the web app's codec endpoint."""
    return f"http://127.0.0.1:{ui_port},http://localhost:{ui_port}" if ui_port else None


__all__ = ["EmbeddedStack", "StackError", "StackPorts"]
