"""Record the Temporal histories of a finished demo run into tests/histories/ for the replay test.

Run after a change to workflow code that is meant to be compatible: `.venv/bin/python -m tests.record_histories`.
Old files are kept: every recorded history must keep replaying against the current code.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from audit.export import clear_history_json
from devstack.demo import run_demo
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine

HISTORIES = Path(__file__).resolve().parent / "histories"


async def record() -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="aisafe-histories-") as tmp:
        ports = StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port())
        async with EmbeddedStack(Path(tmp), ports) as stack:
            assert stack.client and stack.settings
            result = await run_demo(stack.client, make_engine(stack.settings.sqlalchemy_url), stack.settings, print)
            HISTORIES.mkdir(exist_ok=True)
            written = []
            query = f"WorkflowId STARTS_WITH '{result.proposal_id}'"
            async for execution in stack.client.list_workflows(query):
                history = await stack.client.get_workflow_handle(execution.id).fetch_history()
                path = HISTORIES / f"{execution.id}.json"
                # Decoded: the replay test runs without the stack's codec key, as an auditor would.
                path.write_text(await clear_history_json(stack.client, history))
                written.append(path)
            return written


if __name__ == "__main__":
    for path in asyncio.run(record()):
        print(f"wrote {path}")
