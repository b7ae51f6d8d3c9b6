"""Settings read from the environment as an operator's env file writes them."""

from __future__ import annotations

import pytest

from models.settings import Settings
from models.temporal_client import connect_config


def test_blank_variables_mean_unset_never_an_empty_login_or_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AISAFE_SMTP_USERNAME", "AISAFE_SMTP_PASSWORD", "AISAFE_SECRET_KEY_ID", "TEMPORAL_ADDRESS"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("TEMPORAL_API_KEY", "")
    settings = Settings()
    assert (settings.smtp_username, settings.smtp_password, settings.secret_key_id) == (None, None, None)
    config = connect_config(settings)
    assert config["target_host"] == "localhost:7233"
    assert "api_key" not in config and "tls" not in config  # a blank API key must not switch TLS on
