"""What operators see: the web app's request metrics and request ids, the worker's Temporal SDK metrics and health
endpoints, and the workflow and proposal ids on an activity's log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
import structlog
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.documents import store_document
from devstack.services import free_port
from models.db import init_db, make_engine
from models.logging import configure_logging
from models.messages import DocumentRef, ProposalInput
from models.observability import WorkerHealth
from models.process import MemberReviewStage, ProcessDefinition
from models.settings import Settings
from models.states import MemberState
from models.temporal_client import connect
from web.app import create_app
from worker import run_worker
from workflows.proposal import ProposalWorkflow

T = TypeVar("T")
# Shaped like a real action link's token; it must reach neither a metric nor a log line.
TOKEN = f"eyJzIjoiTVkiLCJyIjoxfQ.{uuid.uuid4().hex}.Zk9vYmFy"


@pytest.fixture
def json_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Logging as production configures it (JSON lines on stderr), into a buffer; put back afterwards."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("json")
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        structlog.reset_defaults()


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The JSON log lines written (anything else a library wrote straight to stderr is left out)."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@asynccontextmanager
async def web_app(tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The web app with its lifespan run, as uvicorn runs it. No request here reaches Temporal: each token is refused
    before any call to it, so the Temporal client is a stand-in."""
    app = create_app(Settings(dev=True, data_dir=tmp_path, **settings), cast(Client, object()))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aisafe.test") as client:
            yield client


async def eventually(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], seconds: float = 15.0) -> T:
    """`fetch()` until `done` holds of what it returns (or the time is up: the last result, for the assertion)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            result = await fetch()
            if done(result) or asyncio.get_running_loop().time() > deadline:
                return result
        except httpx.TransportError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.2)


def samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples called `name` in a Prometheus text exposition; the parser names every counter's samples `*_total`,
    also the Temporal SDK's, which it exposes without the suffix."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    ]


def total(exposition: str, name: str, **labels: str) -> float:
    return sum(value for found, value in samples(exposition, name) if labels.items() <= found.items())


def activity_total(exposition: str, metric: str, **labels: str) -> float:
    """An activity metric, whether the workflow runs the activity as a local one or not."""
    prefixes = ("temporal_activity", "temporal_local_activity")
    return sum(total(exposition, f"{prefix}_{metric}", **labels) for prefix in prefixes)


# --- the web app ------------------------------------------------------------------------------------------------------


async def test_web_metrics_count_requests_by_route_template_and_never_hold_a_token(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with web_app(tmp_path, web_metrics_address=address) as client:
        refused = [await client.get(f"/act/{TOKEN}?via={TOKEN}") for _ in range(2)]
        comment = await client.post(f"/comment/{TOKEN}", data={"csrf": TOKEN, "text": "hello"})
        on_page_port = await client.get("/metrics")
        async with httpx.AsyncClient() as prometheus:
            scrape = await prometheus.get(f"http://{address}/metrics")
    assert {response.status_code for response in refused} == {400}
    assert on_page_port.status_code == 404, "the port behind the proxy must not serve the metrics"
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    exposition = scrape.text
    assert TOKEN not in exposition and TOKEN.split(".")[1] not in exposition
    assert total(exposition, "aisafe_http_requests_total", method="GET", route="/act/{token}", status="400") == 2
    assert total(exposition, "aisafe_http_requests_total", method="POST", route="/comment/{token}") == 1
    assert total(exposition, "aisafe_http_requests_total", route="/comment/{token}", status=str(comment.status_code))
    assert total(exposition, "aisafe_http_requests_total", route="unmatched", status="404") == 1
    assert total(exposition, "aisafe_http_request_duration_seconds_count", route="/act/{token}") == 2
    assert total(exposition, "process_resident_memory_bytes") > 0
    # the listener lives as long as the app
    async with httpx.AsyncClient() as prometheus:
        with pytest.raises(httpx.ConnectError):
            await prometheus.get(f"http://{address}/metrics")


async def test_request_ids_are_returned_and_on_every_json_log_line_of_the_request(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    async with web_app(tmp_path) as client:
        from_proxy = await client.get(f"/act/{TOKEN}", headers={"X-Request-ID": "edge-7f3a9c21-0001"})
        malformed = await client.get(f"/act/{TOKEN}", headers={"X-Request-ID": 'x" injected="1'})
        probe = await client.get("/healthz")
    assert from_proxy.headers["x-request-id"] == "edge-7f3a9c21-0001"
    made = malformed.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made) and re.fullmatch(r"[0-9a-f]{32}", probe.headers["x-request-id"])
    assert made != probe.headers["x-request-id"]

    written = json_log.getvalue()
    assert TOKEN not in written and "injected" not in written
    requests = [line for line in log_lines(json_log) if line["event"] == "request"]
    assert [line["request_id"] for line in requests] == ["edge-7f3a9c21-0001", made], "one line each; none for probes"
    assert {"method": "GET", "route": "/act/{token}", "status": 400, "level": "info"}.items() <= requests[0].items()


async def test_an_unhandled_error_is_logged_with_its_request_id_and_counted(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    app = create_app(Settings(dev=True, data_dir=tmp_path), cast(Client, object()))

    async def broken(token: str) -> None:
        raise RuntimeError("the ledger went away")

    app.add_api_route("/broken/{token}", broken)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://aisafe.test") as client:
            response = await client.get(f"/broken/{TOKEN}", headers={"X-Request-ID": "edge-7f3a9c21-0002"})
    assert response.status_code == 500
    (line,) = [line for line in log_lines(json_log) if line["event"] == "request"]
    assert {
        "request_id": "edge-7f3a9c21-0002",
        "route": "/broken/{token}",
        "status": 500,
        "level": "error",
    }.items() <= (line.items())
    assert "the ledger went away" in line["exception"] and TOKEN not in json_log.getvalue()
    exposition = generate_latest(app.state.request_metrics.registry).decode()
    assert total(exposition, "aisafe_http_requests_total", route="/broken/{token}", status="500") == 1


# --- the worker -------------------------------------------------------------------------------------------------------


def proposal(proposal_id: str, document: DocumentRef) -> ProposalInput:
    return ProposalInput(
        proposal_id=proposal_id,
        title="ASEAN AI SAFE Operational Framework",
        kind="operational_framework",
        lead_state=MemberState.MY,
        process=ProcessDefinition(stages=[MemberReviewStage()]),
        document=document,
    )


async def test_worker_serves_temporal_metrics_health_and_activity_ids_in_its_logs(
    dev_env: WorkflowEnvironment, tmp_path: Path, task_queue: str, json_log: io.StringIO
) -> None:
    metrics, health = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    settings = Settings(
        dev=True,
        data_dir=tmp_path,
        temporal_address=dev_env.client.service_client.config.target_host,
        temporal_namespace=dev_env.client.namespace,
        task_queue=task_queue,
        smtp_port=free_port(),
        worker_metrics_address=metrics,
        worker_health_address=health,
    )
    engine = make_engine(settings.sqlalchemy_url)
    init_db(engine)
    body = "# Operational Framework\n\nAll members.\n"
    stored = DocumentRef(sha256=store_document(engine, body), version=1, filename="of.md", size=len(body))
    # never stored: registering this proposal fails, and the worker logs each failed attempt
    missing = DocumentRef(sha256="f" * 64, version=1, filename="gone.md", size=1)
    good_id, bad_id = f"p-{uuid.uuid4().hex[:10]}", f"p-{uuid.uuid4().hex[:10]}"
    handles: list[WorkflowHandle[Any, Any]] = []
    worker = asyncio.create_task(run_worker(settings))
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await eventually(lambda: http.get(f"http://{health}/readyz"), lambda r: r.status_code == 200)
            assert ready.json() == {"status": "ok"}, ready.text
            alive = await http.get(f"http://{health}/healthz")
            assert alive.status_code == 200 and alive.json() == {"status": "ok"}
            assert (await http.get(f"http://{health}/metrics")).status_code == 404

            client = await connect(settings)
            for proposal_id, document in ((good_id, stored), (bad_id, missing)):
                handles.append(
                    await client.start_workflow(
                        ProposalWorkflow.run, proposal(proposal_id, document), id=proposal_id, task_queue=task_queue
                    )
                )

            # one proposal's registration succeeds and its round mails; the other's registration fails
            def ran_both(exposition: str) -> bool:
                return bool(
                    activity_total(exposition, "execution_failed_total", activity_type="register_proposal")
                    and total(exposition, "temporal_activity_execution_latency_count", activity_type="send_round_mail")
                )

            scrape = await eventually(lambda: http.get(f"http://{metrics}/metrics"), lambda r: ran_both(r.text))
    finally:
        for handle in handles:
            with suppress(Exception):
                await handle.terminate("test over")
        worker.cancel()
        with suppress(asyncio.CancelledError):
            await worker
        engine.dispose()

    exposition = scrape.text
    assert ran_both(exposition), exposition[-3000:]
    register = {"activity_type": "register_proposal", "task_queue": task_queue}
    assert activity_total(exposition, "succeed_endtoend_latency_count", **register) == 1
    assert total(exposition, "temporal_workflow_task_execution_latency_count", workflow_type="ProposalWorkflow")
    assert total(exposition, "temporal_num_pollers", task_queue=task_queue)

    lines = log_lines(json_log)
    # The worker's line about each failed attempt names the workflow, the run, the activity and the proposal,
    failed = [line for line in lines if line.get("activity_type") == "register_proposal" and "failed" in line["event"]]
    assert failed, json_log.getvalue()[-3000:]
    assert {(line["proposal_id"], line["workflow_id"]) for line in failed} == {(bad_id, bad_id)}
    assert {line["run_id"] for line in failed} == {handles[1].first_execution_run_id}
    assert all(line["level"] == "warning" and line["attempt"] >= 1 for line in failed)
    # and so does a line the activity writes itself (the round's mail finds no delegate on the empty roster).
    mail = [line for line in lines if line.get("activity_type") == "send_round_mail"]
    assert mail and {(line["proposal_id"], line["workflow_id"]) for line in mail} == {(good_id, f"{good_id}.round-1")}


async def test_worker_health_tells_a_stopped_worker_and_a_temporal_outage_apart(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    class Worker:
        is_running = True

        def config(self) -> dict[str, Any]:
            return {"identity": "4242@nowhere"}

    worker = Worker()
    # Temporal answers but never saw this worker poll: neither alive nor ready
    seen = WorkerHealth(worker, dev_env.client, task_queue)  # type: ignore[arg-type]
    for ready in (False, True):
        answer = await seen.answer(ready=ready)
        assert answer.status == 503 and json.loads(answer.body)["status"] == "not polling"
    # Temporal cannot be reached: not the worker's fault, so alive, but not ready
    unreachable = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    outage = WorkerHealth(worker, unreachable, task_queue, timeout=2)  # type: ignore[arg-type]
    alive, ready_answer = await outage.answer(ready=False), await outage.answer(ready=True)
    assert (alive.status, ready_answer.status) == (200, 503)
    assert json.loads(alive.body)["status"] == "temporal unreachable"
    worker.is_running = False
    assert json.loads((await outage.answer(ready=False)).body) == {"status": "stopped"}


@pytest.mark.parametrize("address", ["9464", ":9464", "0.0.0.0:http", "0.0.0.0:70000"])
def test_listener_addresses_are_host_and_port(address: str) -> None:
    with pytest.raises(ValidationError):
        Settings(worker_health_address=address)
    assert Settings(worker_health_address=" [::]:8001 ").worker_health_address == "[::]:8001"
