"""Build tests/bundles/concurrent-revisions: eight revisions sent at once to a proposal in drafting, exported.

On 54c12b0 all eight were accepted (under versions 2,2,2,2,2,7,7,7 or the like) while the ledger kept only two
`version_uploaded` entries, and `aisafe audit verify` said OK. The bundle is kept as that code wrote it, so the
cross-check is tested against the real shape of the loss. Rebuild it on that commit:

    git worktree add /work/wt-oldcode 54c12b0
    cd /work/wt-oldcode && PYTHONPATH=$PWD /path/to/.venv/bin/python /path/to/tests/make_concurrent_revisions.py OUT

The stack's signing key is made for the run and thrown away; the bundle carries its public key only.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import operations
from audit.export import export_bundle
from devstack.demo import demo_proposal
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine

REVISIONS = 8


async def make(out: Path) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="aisafe-concurrent-") as scratch:
        root = Path(scratch)
        ports = StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port())
        async with EmbeddedStack(root / "data", ports) as stack:
            assert stack.client is not None and stack.settings is not None
            engine = make_engine(stack.settings.sqlalchemy_url)
            path = demo_proposal(root / "work", datetime.now(UTC) + timedelta(days=30))
            proposal_id = await operations.propose(stack.client, engine, stack.settings, path)
            for _ in range(200):
                if (await operations.status(stack.client, proposal_id)).stage == "drafting":
                    break
                await asyncio.sleep(0.05)
            texts = []
            for number in range(REVISIONS):
                text = root / "work" / f"revision-{number}.md"
                text.write_text(f"# Concurrent revision {number}\n\nRevision {number} of the draft.\n")
                texts.append(text)
            documents = await asyncio.gather(
                *(operations.revise(stack.client, engine, proposal_id, text) for text in texts)
            )
            await export_bundle(stack.client, engine, proposal_id, out, stack.settings.audit_signing_key)
    return [f"version {d.version} sha256 {d.sha256[:12]}" for d in documents]


if __name__ == "__main__":
    for line in asyncio.run(make(Path(sys.argv[1]))):
        print(line)
