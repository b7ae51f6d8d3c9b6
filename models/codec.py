"""Payload encryption: AES-256-GCM with key ids, so titles, comments and reasons are ciphertext in Temporal.

Every payload becomes one marked `encoding: binary/encrypted` and `encryption-key-id: KID` whose data is a 12-byte
random nonce followed by AES-GCM of the whole original Payload proto (the samples-python encryption format).
The current key encrypts; retired keys still decrypt, so a key is rotated by making a new one current and listing
the old one as retired for as long as histories written with it are read.

With encryption on, the worker and clients refuse a payload without the marking: anyone who can reach Temporal could
otherwise send a clear-text Update (`temporal workflow update execute --input '{...}'`) and have it taken for ours.
The refusal is not raised by the codec itself (an error there fails the whole workflow activation, with every
genuine Update delivered beside the forged one, and a non-retryable one fails the workflow), but delivered as a
payload that no value can be read from: the one Update that carried it is rejected, a Signal dropped, and nothing
else is touched. A payload marked encrypted that does not decrypt (a forged marking, a key id we do not hold) is
refused the same way. The error raised there is deliberately not an ApplicationError: where the payload is a
run's own input replayed from history (a key left out of the settings), the workflow task fails and is retried
until the settings are fixed, instead of the workflow failing for good.

Reading recorded histories (the audit export, the codec server behind the Temporal UI) still shows clear payloads
as they are: the core SDK writes its own bookkeeping (patch markers) in clear, and runs from before the codec have
nothing else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import DataConverter, EncodingPayloadConverter, PayloadCodec

if TYPE_CHECKING:
    from models.settings import Settings

ENCODING = b"binary/encrypted"
# What the refusing codec puts in place of a payload it did not encrypt (see the module docstring).
REFUSED = b"binary/aisafe-refused-unencrypted"
REFUSAL = (
    "refused: this input was not encrypted with the engine's payload key, so it did not come from aisafe "
    "(nothing was recorded)"
)
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CodecKeyError(ValueError):
    """A codec key setting that cannot be used; the message names the setting and what is wrong."""


class UnreadablePayload(ValueError):
    """Input the codec refused: not encrypted by the engine, or marked encrypted and not decrypting."""


class UnknownKeyError(ValueError):
    """A payload encrypted with a key this process does not hold (neither current nor retired)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"a payload is encrypted with key id {key_id!r}, which is neither AISAFE_CODEC_KEY nor listed in "
            "AISAFE_CODEC_RETIRED_KEYS; add that key as retired to read it"
        )
        self.key_id = key_id


def parse_key(text: str, setting: str) -> tuple[str, bytes]:
    """`kid:base64-of-32-bytes` as (kid, key); CodecKeyError says what is wrong without echoing the key."""
    kid, sep, encoded = text.strip().partition(":")
    kid = kid.strip()
    if not sep or not encoded.strip():
        raise CodecKeyError(f"{setting}: expected KID:BASE64-OF-32-BYTES")
    if not _KEY_ID.fullmatch(kid):
        raise CodecKeyError(f"{setting}: key id {kid!r} must be 1-64 letters, digits, '.', '_' or '-'")
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CodecKeyError(f"{setting}: key {kid!r} is not base64") from None
    if len(key) != KEY_BYTES:
        raise CodecKeyError(f"{setting}: key {kid!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
    return kid, key


def new_key_text(kid: str) -> str:
    """A fresh key in the form AISAFE_CODEC_KEY takes."""
    return f"{kid}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


@dataclass(frozen=True)
class CodecKeys:
    """The key that encrypts (None: encryption off, decrypt only) and every key that decrypts, by id."""

    current_id: str | None
    keys: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def parse(cls, current: str | None, retired: str | None) -> CodecKeys:
        keys: dict[str, bytes] = {}
        current_id = None
        if current and current.strip():
            current_id, keys[current_id] = parse_key(current, "AISAFE_CODEC_KEY")
        for number, entry in enumerate((retired or "").split(","), start=1):
            if not entry.strip():
                continue
            kid, key = parse_key(entry, f"AISAFE_CODEC_RETIRED_KEYS entry {number}")
            if kid in keys:
                raise CodecKeyError(f"AISAFE_CODEC_RETIRED_KEYS: key id {kid!r} is listed twice, or is the current key")
            keys[kid] = key
        return cls(current_id, keys)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads, the key id in the metadata (see the module docstring).

    `refuse_clear`: a payload without the marking decodes to a refusal instead of passing through unchanged.
    """

    def __init__(self, keys: CodecKeys, *, refuse_clear: bool = False) -> None:
        super().__init__()
        self.current_id = keys.current_id
        self.refuse_clear = refuse_clear
        self._keys = keys
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.keys.items()}

    def tolerant(self) -> EncryptionCodec:
        """The same keys, passing clear payloads through: for reading recorded histories, never for taking input."""
        return self if not self.refuse_clear else EncryptionCodec(self._keys)

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        if self.current_id is None:
            return list(payloads)
        cipher = self._ciphers[self.current_id]
        kid = self.current_id.encode()
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            encrypted = nonce + cipher.encrypt(nonce, payload.SerializeToString(), None)
            encoded.append(Payload(metadata={"encoding": ENCODING, KEY_ID: kid}, data=encrypted))
        return encoded

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self._decrypt(payload) for payload in payloads]

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return _refusal(REFUSAL) if self.refuse_clear else payload
        try:
            return self._open(payload)
        except ValueError as exc:
            if self.refuse_clear:
                return _refusal(f"refused: {exc} (nothing was recorded)")
            raise

    def _open(self, payload: Payload) -> Payload:
        kid = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKeyError(kid)
        try:
            clear = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag:
            raise ValueError(
                f"a payload encrypted with key id {kid!r} does not decrypt: another key under that id, or altered data"
            ) from None
        return Payload.FromString(clear)


def _refusal(message: str) -> Payload:
    return Payload(metadata={"encoding": REFUSED}, data=message.encode())


class _RefusedPayload(EncodingPayloadConverter):
    """Reads the refusal the codec left in place of a payload: raises it, so the Update is rejected."""

    @property
    def encoding(self) -> str:
        return REFUSED.decode()

    def to_payload(self, value: object) -> Payload | None:
        return None  # never chosen to encode a value

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> object:
        raise UnreadablePayload(payload.data.decode(errors="replace") or REFUSAL)


class RefusingPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, plus the reader of the codec's refusals."""

    def __init__(self) -> None:
        super().__init__()
        self._set_converters(*self.converters.values(), _RefusedPayload())


def payload_codec(settings: Settings, *, refuse_clear: bool = False) -> EncryptionCodec | None:
    """The codec the settings ask for; None when AISAFE_CODEC=off and no retired key needs reading.

    `refuse_clear` takes effect only while encryption is on (AISAFE_CODEC_ACCEPT_CLEAR=on lifts it, for runs
    started before encryption was turned on)."""
    keys = settings.codec_keys
    if keys is None:
        return None
    return EncryptionCodec(
        keys, refuse_clear=refuse_clear and keys.current_id is not None and not settings.codec_accept_clear
    )


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic data converter, with the payload codec when it is on (every client and worker uses this).

    With encryption on, a payload the codec did not encrypt is refused (see the module docstring)."""
    codec = payload_codec(settings, refuse_clear=True)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter, payload_codec=codec, payload_converter_class=RefusingPayloadConverter
    )


async def decode_history(history: History, codec: PayloadCodec | None) -> History:
    """Decode every payload of a history in place, as `temporal workflow show --codec-endpoint` shows it."""
    if codec is None:
        return history
    if isinstance(codec, EncryptionCodec):
        codec = codec.tolerant()  # a history holds the core SDK's clear markers: shown as they are
    found: list[Payload] = []
    _collect_payloads(history, found)
    if found:
        for original, clear in zip(found, await codec.decode(found), strict=True):
            if clear is not original:
                original.CopyFrom(clear)
    return history


def _collect_payloads(message: Message, found: list[Payload]) -> None:
    """Every Payload inside `message`: in singular, repeated and map fields, failures and headers included."""
    if isinstance(message, Payload):
        found.append(message)
        return
    for descriptor, value in message.ListFields():
        if descriptor.type != descriptor.TYPE_MESSAGE:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            if descriptor.message_type.fields_by_name["value"].type == descriptor.TYPE_MESSAGE:
                for item in value.values():
                    _collect_payloads(item, found)
        elif descriptor.is_repeated:
            for item in value:
                _collect_payloads(item, found)
        else:
            _collect_payloads(value, found)
