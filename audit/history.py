"""Reading a Temporal history as `temporal workflow show --output json` prints it: the decisions it accepted.

Only the history file is needed: no server, no worker. Payloads are read as the pydantic JSON converter
wrote them (`json/plain`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History

CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


class HistoryFormatError(ValueError):
    """A history file that is not a Temporal history."""


@dataclass
class AcceptedUpdate:
    """An Update the workflow accepted (its validator passed), and how it ended if it has."""

    update_id: str
    name: str
    args: list[Any]
    event_id: int
    completed: bool = False
    failed: bool = False


@dataclass
class WorkflowRecord:
    workflow_id: str
    workflow_type: str = ""
    closed: bool = False
    updates: dict[str, AcceptedUpdate] = field(default_factory=dict)
    signals: list[tuple[str, list[Any], int]] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    event_count: int = 0


def payload_value(payload: Payload) -> Any:
    encoding = payload.metadata.get("encoding", b"").decode()
    if encoding == "binary/null":
        return None
    if encoding.startswith("json/"):
        return json.loads(payload.data)
    return {"encoding": encoding, "data": base64.b64encode(payload.data).decode()}


def parse_history(workflow_id: str, raw: str | bytes) -> WorkflowRecord:
    try:
        document = json.loads(raw)
        history = json_format.ParseDict(document, History(), ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError) as exc:
        raise HistoryFormatError(f"not a Temporal history: {exc}") from None
    if not history.events:
        raise HistoryFormatError("the history has no events")
    record = WorkflowRecord(workflow_id=workflow_id, event_count=len(history.events))
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            record.workflow_type = event.workflow_execution_started_event_attributes.workflow_type.name
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            record.updates[request.meta.update_id] = AcceptedUpdate(
                update_id=request.meta.update_id,
                name=request.input.name,
                args=[payload_value(p) for p in request.input.args.payloads],
                event_id=event.event_id,
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            attributes = event.workflow_execution_update_completed_event_attributes
            update = record.updates.get(attributes.meta.update_id)
            if update is not None:
                update.completed = True
                update.failed = attributes.outcome.HasField("failure")
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attributes = event.workflow_execution_signaled_event_attributes
            record.signals.append(
                (attributes.signal_name, [payload_value(p) for p in attributes.input.payloads], event.event_id)
            )
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            record.children.append(event.start_child_workflow_execution_initiated_event_attributes.workflow_id)
        elif kind in CLOSED:
            record.closed = True
    return record
