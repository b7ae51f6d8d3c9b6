"""The one Temporal client factory (worker, web, CLI, tests): pydantic converter with the payload codec,
envconfig connection."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError, RPCStatusCode

from models.codec import data_converter
from models.messages import ConsultationStatus, MeetingStatus, ProposalStatus, RoundStatus
from models.settings import Settings

QUERY_TIMEOUT = timedelta(seconds=10)
ChildStatus = TypeVar("ChildStatus", ConsultationStatus, RoundStatus)


def connect_config(settings: Settings) -> dict[str, Any]:
    """Connection settings from the SDK's environment configuration (TEMPORAL_*, temporal.toml profiles)."""
    config: dict[str, Any] = dict(ClientConfigProfile.load().to_client_connect_config())
    if not config.get("api_key"):
        # An empty TEMPORAL_API_KEY (a blank line in an env file) would still switch TLS on.
        config.pop("api_key", None)
        if os.environ.get("TEMPORAL_API_KEY") == "" and config.get("tls") is True:
            config.pop("tls")
    if settings.temporal_address:
        config["target_host"] = settings.temporal_address
    if settings.temporal_namespace:
        config["namespace"] = settings.temporal_namespace
    config.setdefault("target_host", "localhost:7233")
    config.setdefault("namespace", "default")
    return config


def runtime(metrics_address: str | None = None) -> Runtime:
    """A Temporal runtime whose core logs go to Python logging (stderr or a file), never to stdout.

    With `metrics_address` (HOST:PORT) the runtime also serves the SDK's metrics for Prometheus there (the worker's
    polls, task latencies, slots); one runtime per address, made on first use and kept for the process's life.
    """
    if metrics_address not in _runtimes:
        _runtimes[metrics_address] = Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                    forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                ),
                metrics=PrometheusConfig(bind_address=metrics_address) if metrics_address else None,
            )
        )
    return _runtimes[metrics_address]


_runtimes: dict[str | None, Runtime] = {}


async def connect(settings: Settings, *, metrics_address: str | None = None) -> Client:
    """A client for `settings`; the worker passes its metrics address so the SDK's metrics reach Prometheus."""
    return await Client.connect(
        **connect_config(settings), data_converter=data_converter(settings), runtime=runtime(metrics_address)
    )


async def proposal_status(client: Client, proposal_id: str) -> ProposalStatus:
    """A proposal's status with the positions of its open round filled in from the round itself."""
    status = await client.get_workflow_handle(proposal_id).query(
        "status", result_type=ProposalStatus, rpc_timeout=QUERY_TIMEOUT
    )
    if status.stage_workflow_id and ".consultation-" in status.stage_workflow_id:
        status.consultation = await _child_status(client, status.stage_workflow_id, ConsultationStatus)
    if status.stage_workflow_id and ".meeting-" in status.stage_workflow_id:
        status.meeting = await _meeting_status(client, status.stage_workflow_id)
        if status.meeting is not None and status.meeting.waiting_for_date:
            status.waiting = status.meeting.waiting_for_date
    if status.round_workflow_id:
        live = await _child_status(client, status.round_workflow_id, RoundStatus)
        if live is not None:
            status.positions = {state: None for state in live.participants}
            status.positions.update({state: p.position for state, p in live.positions.items()})
            status.not_invited, status.waiting = live.not_invited, live.waiting
            status.overdue_since = live.overdue_since
            status.deadline = live.deadline if live.is_open else status.deadline  # moved by `aisafe extend`
    return status


async def _meeting_status(client: Client, workflow_id: str) -> MeetingStatus | None:
    """The open meeting's date and whether it waits for a new one; None for meetings from before reschedules."""
    try:
        return await client.get_workflow_handle(workflow_id).query(
            "meeting_status", result_type=MeetingStatus, rpc_timeout=QUERY_TIMEOUT
        )
    except WorkflowQueryFailedError:
        return None  # a meeting scheduled before the query existed
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _child_status(client: Client, workflow_id: str, result_type: type[ChildStatus]) -> ChildStatus | None:
    """A child workflow's status, or None in the moment between the parent starting it and the server having it."""
    try:
        return await client.get_workflow_handle(workflow_id).query(
            "status", result_type=result_type, rpc_timeout=QUERY_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
