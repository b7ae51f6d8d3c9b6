"""Settings: one object, read from the environment (AISAFE_*, TEMPORAL_*)."""

from __future__ import annotations

import base64
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AISAFE_", extra="ignore")

    data_dir: Path = Path(".aisafe")
    database_url: str | None = None
    dev: bool = Field(default=False, description="dev mode: /dev/mail, generated secret key")
    secret_key: str | None = None

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
    mail_from: str = "ASEAN AI SAFE Secretariat <secretariat@aisafe.example.org>"

    web_host: str = "127.0.0.1"
    web_port: int = 8000
    public_url: str | None = Field(default=None, description="base URL in emailed links")

    log_format: str = Field(default="auto", description="auto | json | console")

    audit_key: str | None = Field(default=None, description="Ed25519 key that signs audit bundles (audit keygen)")
    audit_key_file: Path | None = Field(default=None, description="a file holding the audit signing key")

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
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        return key_file.read_text().strip()

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
        key_file = self.data_dir / "audit.key"
        if not key_file.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            seed = base64.b64encode(secrets.token_bytes(32)).decode()
            key_file.write_text(f"ed25519-private:{seed}\n")
            key_file.chmod(0o600)
        return key_file.read_text().strip()
