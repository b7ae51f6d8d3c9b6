"""Delegates: who speaks for which member state, and where to reach them."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.process import InputFileError, format_validation_error, load_yaml
from models.states import MemberState


class Role(StrEnum):
    FOCAL_POINT = "focal_point"
    ALTERNATE = "alternate"


REVIEW_ROLES = (Role.FOCAL_POINT, Role.ALTERNATE)

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class DelegateIn(BaseModel):
    """One roster entry as written in the roster file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: MemberState
    role: Role
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=_EMAIL, max_length=254)
    timezone: str

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Asia/Kuala_Lumpur)") from None
        return value

    @property
    def delegate_id(self) -> str:
        return delegate_id(self.state, self.email)


class RosterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delegates: list[DelegateIn] = Field(min_length=1)


def delegate_id(state: MemberState | str, email: str) -> str:
    """A stable id for a delegate that does not reveal the address (it travels in links and histories)."""
    digest = hashlib.sha256(f"{state}:{email.strip().lower()}".encode()).hexdigest()[:16]
    return f"{state}-{digest}"


def load_roster_file(path: Path) -> RosterFile:
    data, source = load_yaml(path)
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a mapping with a 'delegates' list")
    try:
        return RosterFile.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(format_validation_error(path, exc, source)) from None
