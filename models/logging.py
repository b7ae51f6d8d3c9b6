"""structlog set-up: JSON lines in production, the console renderer on a terminal; no email address in any line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# An address as people write it: enough to catch one inside any text, without trying to validate it.
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")


def redact_email(address: str) -> str:
    """`nurul.huda@bn.example.org` -> `n***@bn.example.org`: the domain stays, for telling systems apart."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def redact_text(text: str) -> str:
    return EMAIL.sub(lambda found: redact_email(found.group(0)), text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value) if "@" in value else value
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return type(value)(_redacted(item) for item in value)
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_emails(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: no email address leaves in a log line, whatever field or message carries it.

    Runs after the stdlib message is formatted (so `%s` arguments are covered) and before exceptions are
    rendered; `format_exc_info` is placed before it so tracebacks are redacted too.
    """
    for key, value in event_dict.items():
        event_dict[key] = _redacted(value)
    return event_dict


class RedactEmails(logging.Filter):
    """The same redaction for a plain stdlib handler (the demo's log file), on the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message:
            record.msg, record.args = redact_text(message), ()
        return True


def configure_logging(log_format: str = "auto", level: int = logging.INFO) -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.format_exc_info,
        redact_emails,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_noisy_loggers()


def quiet_noisy_loggers() -> None:
    logging.getLogger("temporalio").setLevel(logging.WARNING)
    # aiosmtpd logs every envelope at INFO, addresses included; httpx logs URLs, action tokens included.
    # Personal data and link secrets stay out of our logs.
    for name in ("mail.log", "httpx", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Alembic narrates every up-to-date check at INFO; `aisafe db upgrade` reports what it did itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
