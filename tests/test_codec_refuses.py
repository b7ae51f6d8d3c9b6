"""With encryption on, input the codec did not encrypt is refused: a clear-text Update or Signal sent straight to
Temporal (`temporal workflow update execute --input '{...}'`), or one with the codec's marking forged, records
nothing, fails no workflow task, and the round goes on; histories are still read in full (the audit export, the
codec endpoint)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import operations
from audit.export import fetch_histories
from devstack.demo import EXAMPLES, answer, mails_matching, wait_for
from devstack.services import temporal_binary
from devstack.stack import EmbeddedStack
from models.codec import (
    ENCODING,
    KEY_ID,
    REFUSAL,
    CodecKeys,
    EncryptionCodec,
    RefusingPayloadConverter,
    UnreadablePayload,
    data_converter,
    decode_history,
    new_key_text,
    payload_codec,
)
from models.db import make_engine
from models.messages import PositionSubmission
from models.positions import Position
from models.roster import load_roster_file
from models.settings import Settings
from models.states import MemberState
from models.tokens import round_workflow_id
from tests.integration import embedded_stack, ledger_entries

CLEAR = Payload(metadata={"encoding": b"json/plain"}, data=b'{"position": "approve"}')


def keys() -> CodecKeys:
    return CodecKeys.parse(new_key_text("k1"), None)


async def test_the_refusing_codec_turns_clear_payloads_into_a_refusal_and_still_decrypts_its_own() -> None:
    codec = EncryptionCodec(keys(), refuse_clear=True)
    sealed = await codec.encode([CLEAR])
    assert sealed[0].metadata["encoding"] == ENCODING
    assert await codec.decode(sealed) == [CLEAR]
    (refused,) = await codec.decode([CLEAR])
    assert refused.data != CLEAR.data and refused.metadata != CLEAR.metadata
    with pytest.raises(UnreadablePayload) as caught:
        RefusingPayloadConverter().from_payloads([refused], [PositionSubmission])
    # Not an ApplicationError: a run's own input that cannot be read fails its task (retried), not the run.
    assert not isinstance(caught.value, ApplicationError) and str(caught.value) == REFUSAL
    # A forged marking, or a key id the engine does not hold, is refused the same way, saying which.
    forged = [
        Payload(metadata={"encoding": ENCODING, KEY_ID: b"k1"}, data=b"\x00" * 40),
        Payload(metadata={"encoding": ENCODING, KEY_ID: b"stranger"}, data=sealed[0].data),
    ]
    for payload, said in zip(await codec.decode(forged), ("does not decrypt", "'stranger'"), strict=True):
        with pytest.raises(UnreadablePayload, match=said):
            RefusingPayloadConverter().from_payloads([payload])
    # Reading histories still raises on them: an auditor must see a payload that does not decrypt.
    with pytest.raises(ValueError, match="does not decrypt"):
        await codec.tolerant().decode(forged[:1])
    # The refusal reader never encodes a value: what we send is the pydantic converter's JSON, as before.
    assert RefusingPayloadConverter().to_payloads([{"a": 1}])[0].metadata["encoding"] == b"json/plain"
    # Reading histories passes clear payloads (the core SDK's markers) through; so does the codec without refusal.
    assert await codec.tolerant().decode([CLEAR]) == [CLEAR]
    assert await EncryptionCodec(keys()).decode([CLEAR]) == [CLEAR]


async def test_only_the_worker_and_client_path_refuses_and_only_while_encrypting(tmp_path: Path) -> None:
    key = new_key_text("k1")
    on = Settings(data_dir=tmp_path, codec_key=key)
    converter = data_converter(on)
    assert isinstance(converter.payload_codec, EncryptionCodec) and converter.payload_codec.refuse_clear
    with pytest.raises(UnreadablePayload, match="not encrypted"):
        converter.payload_converter.from_payloads(await converter.payload_codec.decode([CLEAR]))
    server = payload_codec(on)  # the codec endpoint behind the Temporal UI shows histories as they are
    assert server is not None and not server.refuse_clear
    # Encryption off with a key kept for reading old histories: nothing is encrypted, so nothing can be refused.
    off = Settings(data_dir=tmp_path, codec=False, codec_key=key)
    decrypt_only = data_converter(off).payload_codec
    assert isinstance(decrypt_only, EncryptionCodec) and not decrypt_only.refuse_clear
    # The deliberate escape for runs started before encryption was turned on.
    lifted = data_converter(Settings(data_dir=tmp_path, codec_key=key, codec_accept_clear=True)).payload_codec
    assert isinstance(lifted, EncryptionCodec) and not lifted.refuse_clear


@pytest.fixture
async def stack(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[EmbeddedStack]:
    async with embedded_stack(tmp_path / "data", dev_env.client.service_client.config.target_host) as running:
        yield running


def temporal(stack: EmbeddedStack, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `temporal` CLI, as anyone who can reach the frontend would use it (no codec, clear JSON)."""
    assert stack.settings and stack.settings.temporal_address
    command = [temporal_binary(), *args, "--address", stack.settings.temporal_address]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


async def test_a_clear_text_position_sent_through_temporal_is_refused_and_nothing_is_recorded(
    stack: EmbeddedStack,
) -> None:
    assert stack.settings and stack.client
    engine = make_engine(stack.settings.sqlalchemy_url)
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    operations.import_roster(engine, roster)
    proposal_id = await operations.propose(stack.client, engine, stack.settings, EXAMPLES / "review-round.yaml")
    round_id = round_workflow_id(proposal_id, 1)
    try:
        mails = await mails_matching(
            stack.settings.mail_dir,
            proposal_id,
            lambda m: m.round == 1 and m.step == "invitation" and m.state == "SG" and "/act/" in m.link,
            1,
            "Singapore's invitation",
        )
        status = await operations.status(stack.client, proposal_id)
        singapore = next(d for d in roster.delegates if d.state is MemberState.SG)
        # Everything right but the encryption: the same submission through the web link would be recorded.
        forged = PositionSubmission(
            proposal_id=proposal_id,
            round=1,
            state=MemberState.SG,
            delegate_id=singapore.delegate_id,
            document_sha256=status.document.sha256,
            position=Position.OBJECT,
            reason="forged through Temporal",
        ).model_dump(mode="json")

        def update(*payload: str) -> Awaitable[subprocess.CompletedProcess[str]]:
            args = ("workflow", "update", "execute", "--workflow-id", round_id, "--name", "submit_position")
            return asyncio.to_thread(temporal, stack, *args, *payload)

        clear = await update("--input", json.dumps(forged))
        assert clear.returncode != 0 and REFUSAL in clear.stderr, clear.stderr
        # The same with the codec's marking forged: our key id (readable in any history) and bytes that are not
        # AES-GCM under it, then a key id the engine does not hold.
        assert stack.settings.codec_keys is not None
        garbage = base64.b64encode(b"\x00" * 64).decode()
        for kid, said in (
            (str(stack.settings.codec_keys.current_id), "does not decrypt"),
            ("k-stranger", "k-stranger"),
        ):
            marked = await update(
                "--input", garbage, "--input-base64", "--input-meta", f"encoding={ENCODING.decode()}",
                "--input-meta", f"{KEY_ID}={kid}",
            )  # fmt: skip
            assert marked.returncode != 0 and said in marked.stderr and "refused" in marked.stderr, marked.stderr

        signal = await asyncio.to_thread(
            temporal,
            stack,
            "workflow",
            "signal",
            "--workflow-id",
            round_id,
            "--name",
            "submit_position_signal",
            "--input",
            json.dumps({"decision_id": str(uuid.uuid4()), "submission": forged}),
        )
        assert signal.returncode == 0, signal.stderr  # Temporal takes any Signal; the worker drops this one

        # The round goes on: a genuine answer through the emailed link is recorded after the forgeries.
        async with httpx.AsyncClient(timeout=30) as http:
            await answer(http, mails[0].link, "approve")

        async def genuine_recorded() -> bool:
            return any(e.kind == "position" for e in ledger_entries(stack, proposal_id))

        await wait_for(genuine_recorded, "the genuine position in the ledger")
        handle = stack.client.get_workflow_handle(round_id)
        # The signal was delivered before the genuine answer, so the round has handled it by now.
        history = [event async for event in handle.fetch_history_events()]
        assert any(e.HasField("workflow_execution_signaled_event_attributes") for e in history)
        assert not any(e.HasField("workflow_task_failed_event_attributes") for e in history)
        assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING

        entries = ledger_entries(stack, proposal_id)
        recorded = [e for e in entries if e.kind in ("position", "position_refused")]
        assert [(e.kind, json.loads(e.payload_json)["position"]) for e in recorded] == [("position", "approve")]
        assert all("forged" not in e.payload_json for e in entries)
        current = await operations.status(stack.client, proposal_id)
        assert current.positions.get(MemberState.SG) is Position.APPROVE

        # Reading the record still works: the export decodes the round's history, clear markers included.
        exported = await fetch_histories(stack.client, proposal_id)
        assert round_id in exported and "forged" not in exported[round_id]
    finally:
        await stack.client.get_workflow_handle(proposal_id).terminate("test finished")
        engine.dispose()


async def test_decode_history_reads_clear_payloads_with_the_refusing_codec() -> None:
    from temporalio.api.history.v1 import History, HistoryEvent

    codec = EncryptionCodec(keys(), refuse_clear=True)
    (sealed,) = await codec.encode([CLEAR])
    history = History(events=[HistoryEvent(event_id=1), HistoryEvent(event_id=2)])
    history.events[0].workflow_execution_started_event_attributes.input.payloads.append(sealed)
    history.events[1].marker_recorded_event_attributes.details["patch-data"].payloads.append(CLEAR)
    decoded = await decode_history(history, codec)
    assert decoded.events[0].workflow_execution_started_event_attributes.input.payloads[0] == CLEAR
    assert decoded.events[1].marker_recorded_event_attributes.details["patch-data"].payloads[0] == CLEAR
