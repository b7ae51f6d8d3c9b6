"""Ed25519 keys that seal audit bundles: made, written and read as short text.

A private key is `ed25519-private:` and the base64 of its 32-byte seed; a public key is `ed25519:` and the
base64 of its 32 raw bytes, short enough to publish on a web page or in a gazette beside the bundle.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PUBLIC_PREFIX = "ed25519:"
PRIVATE_PREFIX = "ed25519-private:"


class KeyFormatError(ValueError):
    """A key text that is not one of ours."""


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_text(key: Ed25519PrivateKey) -> str:
    seed = key.private_bytes_raw()
    return PRIVATE_PREFIX + base64.b64encode(seed).decode()


def public_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return PUBLIC_PREFIX + base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _raw(text: str, prefix: str, what: str) -> bytes:
    text = text.strip()
    if not text.startswith(prefix):
        raise KeyFormatError(f"{what} must start with {prefix!r}")
    try:
        raw = base64.b64decode(text[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not valid base64") from None
    if len(raw) != 32:
        raise KeyFormatError(f"{what} must be 32 bytes, not {len(raw)}")
    return raw


def load_private(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_raw(text, PRIVATE_PREFIX, "the audit signing key"))


def load_public(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw(text, PUBLIC_PREFIX, "the public key"))


def fingerprint(public: str) -> str:
    """A short, stable name for a public key, to compare by eye."""
    return hashlib.sha256(public.strip().encode()).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def signature_holds(public: str, message: bytes, signature: str) -> bool:
    try:
        load_public(public).verify(base64.b64decode(signature.strip(), validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
