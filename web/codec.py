"""The codec server, so people allowed to read proposals see clear text in the Temporal UI and CLI.

`POST /codec/encode` and `POST /codec/decode` speak Temporal's remote codec protocol (a JSON body
`{"payloads": [...]}` in protobuf JSON, answered in the same shape) with the web app's own payload codec.
Only signed-in coordinators and auditors may call them (`Authorization: Bearer TOKEN`, as
`temporal workflow show --codec-auth` sends it, or the session cookie); browsers may call them only from the
Temporal UI's origins (AISAFE_UI_ORIGINS).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payloads

from models.codec import EncryptionCodec, payload_codec
from web.auth import require_role

PREFIX = "/codec"
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-Namespace"]

router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_role("coordinator", "auditor"))])
log = logging.getLogger("aisafe.codec")


@router.post("/encode")
async def encode(request: Request) -> Response:
    return await _apply(request, "encode")


@router.post("/decode")
async def decode(request: Request) -> Response:
    return await _apply(request, "decode")


def _codec(request: Request) -> EncryptionCodec | None:
    """The app's payload codec, built from its settings on first use (keys are read once)."""
    state = request.app.state
    if not hasattr(state, "payload_codec"):
        state.payload_codec = payload_codec(state.settings)
    codec: EncryptionCodec | None = state.payload_codec
    return codec


async def _apply(request: Request, operation: str) -> Response:
    try:
        payloads = json_format.Parse(await request.body(), Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError):
        return JSONResponse({"error": 'expected {"payloads": [...]} in protobuf JSON'}, status_code=400)
    codec = _codec(request)
    if codec is not None:  # AISAFE_CODEC=off without keys: nothing is encrypted, so nothing changes
        try:
            changed = await (codec.encode if operation == "encode" else codec.decode)(payloads.payloads)
        except ValueError as exc:  # an unknown key id, or data that does not decrypt: the message says which
            return JSONResponse({"error": str(exc)}, status_code=400)
        payloads = Payloads(payloads=changed)
    user = getattr(request.state, "user", None)
    log.info("codec %s: %d payloads for user %s", operation, len(payloads.payloads), getattr(user, "id", "?"))
    return Response(json_format.MessageToJson(payloads), media_type="application/json")


class CodecCors:
    """CORS for /codec/* only: the Temporal UI's origins may call it with credentials; any other origin is refused.

    A preflight from another origin gets 400 (Starlette's CORS answer); an actual request carrying another
    `Origin` gets 403 before it reaches authentication, so a page elsewhere cannot use a signed-in browser.
    """

    def __init__(self, app: ASGIApp, origins: Sequence[str], own_origin: str | None = None) -> None:
        self.app = app
        self.allowed = {*origins, *([own_origin] if own_origin else [])}
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["POST"],
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is not None and origin not in self.allowed and scope["method"] != "OPTIONS":
            refusal = JSONResponse({"error": f"origin {origin} may not call the codec endpoint"}, status_code=403)
            await refusal(scope, receive, send)
            return
        await self.cors(scope, receive, send)


def own_origin(base_url: str) -> str:
    """scheme://host[:port] of the web app's base URL."""
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
