"""Settings: one object, read from the environment (AISAFE_*, TEMPORAL_*)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.tokens import SigningKeys, check_key_id, key_id_of, parse_previous_keys

if TYPE_CHECKING:
    from models.codec import CodecKeys

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AISAFE_", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Path(".aisafe")
    database_url: str | None = None
    dev: bool = Field(default=False, description="dev mode: /dev/mail, generated secret key")
    secret_key: str | None = None
    secret_key_id: str | None = Field(default=None, description="id of the secret key in new links (default: from it)")
    previous_secret_keys: str | None = Field(default=None, description="kid:secret,… retired keys that still verify")

    rate_limit_per_token: int = Field(default=30, ge=0, description="requests a minute to one link; 0: no limit")
    rate_limit_per_address: int = Field(default=120, ge=0, description="link requests a minute per client; 0: none")
    rate_limit_exempt: str = Field(default="127.0.0.1,::1", description="client addresses not limited per address")
    trusted_proxies: int = Field(default=0, ge=0, description="proxies whose X-Forwarded-For entry is trusted")
    # One stakeholder cannot flood a consultation (and keep it from closing); a comment is a few pages at most.
    comments_per_link: int = Field(default=20, ge=1, description="comments one stakeholder link may send per stage")
    comment_max_chars: int = Field(default=10000, ge=100, le=100000, description="characters in one comment")
    consultation_events_per_run: int = Field(
        default=3000, ge=200, le=8000, description="history events after which a consultation continues as new"
    )

    temporal_address: str | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_ADDRESS", "AISAFE_TEMPORAL_ADDRESS")
    )
    temporal_namespace: str | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "AISAFE_TEMPORAL_NAMESPACE")
    )
    task_queue: str = "aisafe"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # The engine writes for the lead proponent, not for a secretariat of its own: ASEAN AI SAFE has none (the ASEAN
    # Secretariat is copied, below).
    mail_from: str = Field(
        default="Malaysia as lead proponent of ASEAN AI SAFE <aisafe@aisafe.example.org>",
        description="From of every email: the lead proponent's name and address",
    )
    mail_signature: str = Field(
        default="Ministry of Digital, Malaysia, lead proponent of ASEAN AI SAFE",
        min_length=1,
        max_length=200,
        description="the line that signs every email",
    )
    mail_copies: bool = Field(
        default=True,
        description="copy every invitation and outcome (without answering links) to the roster's asean_secretariat",
    )

    web_host: str = "127.0.0.1"
    web_port: int = 8000
    public_url: str | None = Field(default=None, description="base URL in emailed links")
    accept_timeout: float = Field(
        default=5.0, gt=0, description="seconds to wait for a position's receipt before also sending it as a Signal"
    )

    log_format: str = Field(default="auto", description="auto | json | console")
    web_metrics_address: str | None = Field(
        default=None, description="HOST:PORT of the web app's Prometheus /metrics (not its page port); unset: off"
    )
    worker_metrics_address: str | None = Field(
        default=None, description="HOST:PORT where the worker serves the Temporal SDK's Prometheus metrics; unset: off"
    )
    worker_health_address: str | None = Field(
        default=None, description="HOST:PORT where the worker answers GET /healthz and /readyz; unset: off"
    )

    audit_key: str | None = Field(default=None, description="Ed25519 key that signs audit bundles (audit keygen)")
    audit_key_file: Path | None = Field(default=None, description="a file holding the audit signing key")

    codec: bool = Field(default=True, description="encrypt payloads in Temporal; AISAFE_CODEC=off turns it off")
    codec_key: str | None = Field(default=None, description="KID:BASE64 (32 bytes): the key that encrypts payloads")
    codec_retired_keys: str | None = Field(default=None, description="KID:BASE64,... retired keys that still decrypt")
    codec_accept_clear: bool = Field(
        default=False,
        description="accept payloads the codec did not encrypt (only for runs started before encryption was on: "
        "anyone who can reach Temporal could then send input as if it came from aisafe)",
    )
    max_document_bytes: int = Field(
        default=5 * 1024 * 1024, gt=0, description="largest document a proposal file or a revision may name"
    )
    ui_origins: str | None = Field(default=None, description="Temporal UI origins allowed to call /codec (CORS)")

    @field_validator(
        "database_url",
        "secret_key",
        "secret_key_id",
        "previous_secret_keys",
        "temporal_address",
        "temporal_namespace",
        "smtp_username",
        "smtp_password",
        "public_url",
        "audit_key",
        "audit_key_file",
        "codec_key",
        "codec_retired_keys",
        "ui_origins",
        "web_metrics_address",
        "worker_metrics_address",
        "worker_health_address",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`AISAFE_SMTP_USERNAME=` in an env file means "not set": never an empty login, key or address."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_key_id", "previous_secret_keys")
    @classmethod
    def _well_formed_keys(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Refuse a malformed key id or key list at start-up, not at the first click."""
        if value and info.field_name == "secret_key_id":
            check_key_id(value)
        elif value:
            secret = info.data.get("secret_key")
            current = info.data.get("secret_key_id") or (key_id_of(secret) if secret else None)
            if current in parse_previous_keys(value):
                raise ValueError(f"key id {current!r} is both the current key and a previous one")
        return value

    @field_validator("web_metrics_address", "worker_metrics_address", "worker_health_address")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        """A listener address is HOST:PORT (`0.0.0.0:9000`, `[::]:9000`): refused at start-up, not at first bind."""
        if value is not None:
            host, _, port = value.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:9000)")
            value = value.strip()
        return value

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'aisafe.db'}"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @cached_property
    def signing_key(self) -> str:
        """The key that signs action links; generated once per data dir in dev mode only."""
        if self.secret_key and self.secret_key.strip().lower() not in PLACEHOLDER_SECRETS:
            return self.secret_key
        if not self.dev:
            raise RuntimeError(
                "AISAFE_SECRET_KEY is not set (or is a placeholder); set a long random value, "
                "or run in dev mode (AISAFE_DEV=1)"
            )
        return dev_secret(self.data_dir / "secret.key", lambda: secrets.token_urlsafe(48))

    @cached_property
    def signing_keys(self) -> SigningKeys:
        """The current key with its id (signs new links) and the previous keys whose links still verify."""
        key = self.signing_key
        return SigningKeys(self.secret_key_id or key_id_of(key), key, parse_previous_keys(self.previous_secret_keys))

    @cached_property
    def codec_keys(self) -> CodecKeys | None:
        """The payload codec's keys; generated per data dir in dev mode only.

        AISAFE_CODEC=off stops encrypting (any key still configured only decrypts); None when no key is left.
        """
        from models.codec import CodecKeys, new_key_text

        current = self.codec_key if self.codec else None
        retired = ",".join(filter(None, [None if self.codec else self.codec_key, self.codec_retired_keys]))
        if self.codec and not (current and current.strip()):
            if not self.dev:
                raise RuntimeError(
                    "AISAFE_CODEC_KEY is not set, so payloads would reach Temporal in clear text: set it to "
                    "KID:BASE64-OF-32-RANDOM-BYTES (e.g. k1:$(openssl rand -base64 32)), run in dev mode "
                    "(AISAFE_DEV=1), or turn payload encryption off deliberately with AISAFE_CODEC=off"
                )
            current = dev_secret(self.data_dir / "codec.key", lambda: new_key_text(f"dev-{secrets.token_hex(4)}"))
        keys = CodecKeys.parse(current, retired)
        return keys if keys.keys else None

    @property
    def ui_origin_list(self) -> list[str]:
        """Origins of the Temporal UI allowed to call the codec endpoint; in dev, the local UI's by default."""
        if self.ui_origins is not None:
            return [origin.strip().rstrip("/") for origin in self.ui_origins.split(",") if origin.strip()]
        return ["http://127.0.0.1:8233", "http://localhost:8233"] if self.dev else []

    @cached_property
    def audit_signing_key(self) -> str:
        """The Ed25519 key (`ed25519-private:…`) that signs audit bundles; generated per data dir in dev only."""
        if self.audit_key and self.audit_key.strip():
            return self.audit_key.strip()
        if self.audit_key_file is not None:
            if not self.audit_key_file.is_file():
                raise RuntimeError(f"AISAFE_AUDIT_KEY_FILE {self.audit_key_file} does not exist")
            return self.audit_key_file.read_text().strip()
        if not self.dev:
            raise RuntimeError(
                "no audit signing key: make one with `aisafe audit keygen --out FILE` and set "
                "AISAFE_AUDIT_KEY_FILE=FILE (or AISAFE_AUDIT_KEY), or run in dev mode (AISAFE_DEV=1)"
            )
        return dev_secret(
            self.data_dir / "audit.key",
            lambda: "ed25519-private:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        )


def write_secret(path: Path, text: str) -> None:
    """Write a secret to a file only its owner can read (the mode is set before anything is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text.strip() + "\n")


def dev_secret(path: Path, make: Callable[[], str]) -> str:
    """A dev-mode secret kept in the data dir: made on first use, then read back."""
    if not path.exists():
        write_secret(path, make())
    return path.read_text().strip()
