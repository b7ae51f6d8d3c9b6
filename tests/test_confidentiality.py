"""Confidentiality: what Temporal holds is ciphertext (titles, comments, reasons) or never there at all (document
text, email addresses); people with a role read it in clear through the codec endpoint; keys rotate; logs carry
no email address."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.testing import WorkflowEnvironment

import operations
from audit.export import fetch_histories
from devstack.demo import EXAMPLES, comment, mails_matching
from devstack.services import free_port, temporal_binary
from devstack.stack import EmbeddedStack, StackPorts
from models.codec import ENCODING, KEY_ID, CodecKeyError, CodecKeys, EncryptionCodec, UnknownKeyError, new_key_text
from models.db import make_engine
from models.logging import configure_logging, redact_emails
from models.positions import Disposition
from models.roster import load_roster_file
from models.settings import Settings
from models.users import UserRole, add_user
from tests.integration import cli
from web.app import create_app

UI_ORIGIN = "http://127.0.0.1:8233"
ENCRYPTED = base64.b64encode(ENCODING).decode()  # metadata values are base64 in protobuf JSON


# Temporal's core SDK writes its own bookkeeping into markers, past the codec: a patch's name, and a local
# activity's id, type and times (its result is a payload of ours, and encrypted). None of it comes from a user;
# the test below still checks that no secret reads anywhere in the history.
CORE_BOOKKEEPING = {("core_patch", "patch-data"), ("core_local_activity", "data")}


def _payloads(node: Any, under: str = "", marker: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every payload in a history printed as protobuf JSON, with the name of the field it sits under."""
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            yield under, node
            return
        marker = str(node.get("markerName", marker))
        for key, value in node.items():
            if key in ("searchAttributes", "indexedFields"):
                yield from _payloads(value, key, marker)
            elif (marker, key) in CORE_BOOKKEEPING:
                yield from _payloads(value, "core", marker)
            else:
                yield from _payloads(value, under, marker)
    elif isinstance(node, list):
        for item in node:
            yield from _payloads(item, under, marker)


def readable(history: dict[str, Any]) -> str:
    """All the text a reader of the history sees: its fields and the decoded bytes of every payload."""
    parts = [json.dumps(history, ensure_ascii=False)]
    for _, payload in _payloads(history):
        parts.append(base64.b64decode(payload.get("data", "")).decode("utf-8", errors="replace"))
    return "\n".join(parts)


def encodings(history: dict[str, Any]) -> tuple[int, int]:
    """(encrypted payloads, clear payloads that are not search attributes)."""
    encrypted = clear = 0
    for under, payload in _payloads(history):
        if payload["metadata"]["encoding"] == ENCRYPTED:
            encrypted += 1
        elif under not in ("searchAttributes", "indexedFields", "core"):
            clear += 1
    return encrypted, clear


async def temporal_show(stack: EmbeddedStack, workflow_id: str, *extra: str) -> dict[str, Any]:
    assert stack.settings and stack.settings.temporal_address
    args = [temporal_binary(), "workflow", "show", "--workflow-id", workflow_id]
    args += ["--address", stack.settings.temporal_address, "--output", "json", *extra]
    done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def document_sentences() -> list[str]:
    """Distinctive sentences of the example document: its numbered paragraphs, as far as the line goes."""
    lines = (EXAMPLES / "operational-framework.md").read_text().splitlines()
    return [line.strip()[:70] for line in lines if re.match(r"^\d+\.\d+ \w", line.strip())][:6]


@pytest.fixture
async def stack(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[EmbeddedStack]:
    running = EmbeddedStack(
        tmp_path / "data",
        StackPorts(web=free_port(), temporal=0, ui=None, smtp=free_port()),
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"aisafe-{uuid.uuid4().hex[:8]}",
    )
    await running.start()
    yield running
    await running.stop()


async def test_temporal_holds_ciphertext_and_the_codec_endpoint_shows_clear_text(
    tmp_path: Path, stack: EmbeddedStack
) -> None:
    assert stack.settings and stack.client
    marker = uuid.uuid4().hex[:8]
    title = f"Confidential framework {marker}"
    comment_text = f"Comment {marker}: incident reports must be anonymised before they leave the national CERT."
    reason = f"Disposition {marker}: section 4.1.2 now requires anonymised incident reports."
    shutil.copy(EXAMPLES / "operational-framework.md", tmp_path / "framework.md")
    (tmp_path / "proposal.yaml").write_text(
        f"title: {title}\n"
        "kind: operational_framework\n"
        "lead_state: MY\n"
        "document: framework.md\n"
        "process:\n"
        "  stages:\n"
        "    - {type: consultation, deadline: P1D, sectors: [civil_society]}\n"
        "    - {type: member_review, deadline: P14D}\n"
    )
    engine = make_engine(stack.settings.sqlalchemy_url)
    roster = load_roster_file(EXAMPLES / "roster.yaml")
    operations.import_roster(engine, roster)
    proposal_id = await operations.propose(stack.client, engine, stack.settings, tmp_path / "proposal.yaml")
    try:
        invited = await mails_matching(
            stack.settings.mail_dir,
            proposal_id,
            lambda m: m.kind == "consultation" and "/comment/" in m.link,
            1,
            "a consultation invitation",
        )
        async with httpx.AsyncClient(timeout=30) as http:
            comment_id = await comment(http, invited[0].link, comment_text, "4.1")
        await operations.respond(stack.client, proposal_id, comment_id, Disposition.ACCEPTED, reason)
        workflow_ids = [proposal_id, f"{proposal_id}.consultation-0"]

        in_payloads = [title, reason]  # ciphertext in Temporal, clear through the codec
        # Only hashes and delegate ids: documents and comment bodies are stored in the database under their hash.
        never_there = document_sentences() + [comment_text] + [d.email for d in roster.delegates]
        assert len(never_there) == 6 + 1 + 53

        raw = {wid: await temporal_show(stack, wid) for wid in workflow_ids}
        token = add_user(engine, "codec reader", UserRole.AUDITOR)
        codec_args = ("--codec-endpoint", f"{stack.web_url}/codec", "--codec-auth", f"Bearer {token}")
        clear = {wid: await temporal_show(stack, wid, *codec_args) for wid in workflow_ids}
    finally:
        await stack.client.get_workflow_handle(proposal_id).terminate("test finished")
        engine.dispose()

    checked = 0
    raw_text = "\n".join(readable(h) for h in raw.values())
    clear_text = "\n".join(readable(h) for h in clear.values())
    for secret in in_payloads:
        assert secret not in raw_text, f"{secret!r} is readable in Temporal without the codec"
        assert secret in clear_text, f"{secret!r} is not shown through the codec endpoint"
        checked += 1
    for private in never_there:
        assert private not in raw_text and private not in clear_text, f"{private!r} reached Temporal"
        checked += 1
    assert checked == len(in_payloads) + len(never_there) == 62

    for wid in workflow_ids:
        encrypted, plain = encodings(raw[wid])
        assert encrypted > 0 and plain == 0, (wid, encrypted, plain)
        assert encodings(clear[wid]) == (0, encrypted), wid  # every one of them decodes

    # The audit export writes the same clear histories, so an auditor verifies without the key.
    exported = await fetch_histories(stack.client, proposal_id)
    assert set(workflow_ids) <= set(exported)
    exported_text = "\n".join(readable(json.loads(h)) for h in exported.values())
    assert all(secret in exported_text for secret in in_payloads)
    assert all(encodings(json.loads(h))[0] == 0 for h in exported.values())


# --- the codec endpoint -------------------------------------------------------------------------------------


@pytest.fixture
async def codec_site(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = Settings(data_dir=tmp_path / "data", dev=True, secret_key=f"test-key-{uuid.uuid4().hex}")
    app = create_app(settings, dev_env.client)
    async with app.router.lifespan_context(app):
        token = add_user(app.state.engine, "Audit Office", UserRole.AUDITOR)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
            yield http, token


def as_body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def of_body(text: str) -> list[Payload]:
    return list(json_format.Parse(text, Payloads()).payloads)


CLEAR = Payload(metadata={"encoding": b"json/plain"}, data=b'{"text": "A comment."}')


async def test_the_codec_endpoint_needs_a_signed_in_role(codec_site: tuple[httpx.AsyncClient, str]) -> None:
    http, token = codec_site
    for path in ("/codec/encode", "/codec/decode"):
        anonymous = await http.post(path, content=as_body(CLEAR), headers={"Content-Type": "application/json"})
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        forged = await http.post(path, content=as_body(CLEAR), headers={"Authorization": "Bearer aisafe_forged"})
        assert forged.status_code == 401

    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Namespace": "default"}
    encoded = await http.post("/codec/encode", content=as_body(CLEAR), headers=bearer)
    assert encoded.status_code == 200
    [sealed] = of_body(encoded.text)
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID].startswith(b"dev-")
    assert b"A comment." not in sealed.data
    decoded = await http.post("/codec/decode", content=as_body(sealed, CLEAR), headers=bearer)
    assert decoded.status_code == 200 and of_body(decoded.text) == [CLEAR, CLEAR]  # clear payloads pass through

    bad = await http.post("/codec/decode", content="not json", headers=bearer)
    assert bad.status_code == 400
    stranger = Payload(metadata={"encoding": ENCODING, KEY_ID: b"k-gone"}, data=b"\0" * 40)
    unknown = await http.post("/codec/decode", content=as_body(stranger), headers=bearer)
    assert unknown.status_code == 400 and "'k-gone'" in unknown.json()["error"]


async def test_cors_lets_the_temporal_ui_call_the_codec_and_no_other_origin(
    codec_site: tuple[httpx.AsyncClient, str],
) -> None:
    http, token = codec_site
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,x-namespace"}
    allowed = await http.options("/codec/decode", headers={"Origin": UI_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert {"authorization", "content-type", "x-namespace"} <= {
        h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")
    }

    evil = "https://evil.example"
    refused = await http.options("/codec/decode", headers={"Origin": evil, **preflight})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    blocked = await http.post("/codec/decode", content=as_body(CLEAR), headers={"Origin": evil, **bearer})
    assert blocked.status_code == 403 and "access-control-allow-origin" not in blocked.headers

    answered = await http.post("/codec/decode", content=as_body(CLEAR), headers={"Origin": UI_ORIGIN, **bearer})
    assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == UI_ORIGIN
    unsigned = await http.post("/codec/decode", content=as_body(CLEAR), headers={"Origin": UI_ORIGIN})
    assert unsigned.status_code == 401 and unsigned.headers["access-control-allow-origin"] == UI_ORIGIN

    # Only /codec answers CORS: the rest of the app stays same-origin.
    elsewhere = await http.options("/audit", headers={"Origin": UI_ORIGIN, **preflight})
    assert "access-control-allow-origin" not in elsewhere.headers


# --- keys ---------------------------------------------------------------------------------------------------


def key(kid: str) -> str:
    return new_key_text(kid)


async def test_a_rotated_key_still_decodes_and_an_unknown_one_is_named() -> None:
    old, new = key("2026-01"), key("2026-11")
    before = EncryptionCodec(CodecKeys.parse(old, None))
    [sealed] = await before.encode([CLEAR])
    assert sealed.metadata[KEY_ID] == b"2026-01"
    assert (await before.encode([CLEAR]))[0].data != sealed.data  # a fresh nonce each time

    rotated = EncryptionCodec(CodecKeys.parse(new, old))
    assert await rotated.decode([sealed]) == [CLEAR]
    [resealed] = await rotated.encode([CLEAR])
    assert resealed.metadata[KEY_ID] == b"2026-11"

    forgotten = EncryptionCodec(CodecKeys.parse(new, None))
    with pytest.raises(UnknownKeyError, match="'2026-01'"):
        await forgotten.decode([sealed])
    tampered = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(ValueError, match="does not decrypt"):
        await rotated.decode([tampered])


def test_codec_settings_refuse_a_missing_or_malformed_key_outside_dev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AISAFE_CODEC", "AISAFE_CODEC_KEY", "AISAFE_CODEC_RETIRED_KEYS", "AISAFE_DEV"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="AISAFE_CODEC_KEY is not set"):
        _ = Settings(data_dir=tmp_path).codec_keys
    assert not (tmp_path / "codec.key").exists()

    dev = Settings(data_dir=tmp_path, dev=True).codec_keys
    assert dev is not None and dev.current_id and dev.current_id.startswith("dev-")
    assert Settings(data_dir=tmp_path, dev=True).codec_keys == dev  # one key per data dir
    assert (tmp_path / "codec.key").stat().st_mode & 0o077 == 0

    current, retired = key("k2"), key("k1")
    configured = Settings(data_dir=tmp_path, codec_key=current, codec_retired_keys=retired).codec_keys
    assert configured is not None and configured.current_id == "k2" and set(configured.keys) == {"k1", "k2"}

    secret = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(CodecKeyError, match="16 bytes") as short:
        _ = Settings(data_dir=tmp_path, codec_key=f"k3:{secret}").codec_keys
    assert secret not in str(short.value)
    with pytest.raises(CodecKeyError, match="listed twice"):
        _ = Settings(data_dir=tmp_path, codec_key=current, codec_retired_keys=key("k2")).codec_keys

    monkeypatch.setenv("AISAFE_CODEC", "off")
    assert Settings(data_dir=tmp_path).codec_keys is None  # deliberately off: no key needed, nothing encrypted
    read_only = Settings(data_dir=tmp_path, codec_key=current).codec_keys
    assert read_only is not None and read_only.current_id is None and set(read_only.keys) == {"k2"}


def test_the_cli_refuses_to_talk_to_temporal_without_a_payload_key_outside_dev(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISAFE_")}
    env |= {"AISAFE_DATA_DIR": str(tmp_path), "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    refused = cli("status", "p-1", env=env)
    assert (
        refused.code == 2 and "AISAFE_CODEC_KEY is not set" in refused.stderr and "AISAFE_CODEC=off" in refused.stderr
    )
    assert "Traceback" not in refused.stderr
    malformed = cli("status", "p-1", env=env | {"AISAFE_CODEC_KEY": "k1:not-base64!"})
    assert malformed.code == 2 and "not base64" in malformed.stderr and "not-base64!" not in malformed.stderr
    # Deliberately off: the command goes on to Temporal (nothing listens there, so that is what it reports).
    off = cli("status", "p-1", env=env | {"AISAFE_CODEC": "off"})
    assert off.code == 1 and "cannot reach Temporal" in off.stderr


# --- logs ---------------------------------------------------------------------------------------------------


def test_the_log_processor_redacts_email_addresses_wherever_they_are() -> None:
    event = {
        "event": "invitation sent to nurul.huda@bn.example.org",
        "recipients": ["a.b@sg.example.org", "not an address"],
        "detail": {"to": "Pimchanok <pimchanok.r@mekong-rai.example.org>"},
        "round": 1,
    }
    redacted = redact_emails(None, "info", event)
    assert redacted == {
        "event": "invitation sent to n***@bn.example.org",
        "recipients": ["a***@sg.example.org", "not an address"],
        "detail": {"to": "Pimchanok <p***@mekong-rai.example.org>"},
        "round": 1,
    }


def test_configured_logging_writes_no_email_address(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("json")
        logging.getLogger("aisafe.test").warning("mail to %s deferred", "nurul.huda@bn.example.org")
        structlog.get_logger("aisafe.test").info("sent", to="a.b@sg.example.org")
        try:
            raise RuntimeError("550 <x.y@vn.example.org> unknown")
        except RuntimeError:
            logging.getLogger("aisafe.test").exception("delivery failed")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        structlog.reset_defaults()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    assert "@bn.example.org" in lines[0]["event"] and "nurul.huda" not in stream.getvalue()
    assert lines[1]["to"] == "a***@sg.example.org" and "x.y@" not in lines[2]["exception"]
