"""Delegates: who speaks for which member state, and where to reach them."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.controlchars import one_line
from models.files import InputFileError, format_validation_error, load_yaml
from models.states import MemberState


class Role(StrEnum):
    FOCAL_POINT = "focal_point"
    ALTERNATE = "alternate"
    SENIOR_OFFICIAL = "senior_official"
    MINISTER_OFFICE = "minister_office"
    STAKEHOLDER = "stakeholder"
    # Copied on every invitation and outcome, and reads the dashboard and the audit record (issue 18).
    ASEAN_SECRETARIAT = "asean_secretariat"
    # Whom a `summit_report` stage notifies: the contact for the Leaders (issue 18).
    LEADERS_CONTACT = "leaders_contact"


class Sector(StrEnum):
    """Where a stakeholder speaks from; stakeholders comment, they never hold a position."""

    CIVIL_SOCIETY = "civil_society"
    ACADEMIA = "academia"
    INDUSTRY = "industry"
    DIALOGUE_PARTNER = "dialogue_partner"


REVIEW_ROLES = (Role.FOCAL_POINT, Role.ALTERNATE)
# The ids of the ASEAN Secretariat's roster entries begin `ASEC-`: never a state's, never a stakeholder's.
SECRETARIAT_PREFIX = "ASEC"

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class DelegateIn(BaseModel):
    """One roster entry as written in the roster file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: MemberState | None = Field(default=None, description="required for every role but stakeholder")
    role: Role
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=_EMAIL, max_length=254)
    timezone: str
    sector: Sector | None = Field(default=None, description="stakeholders only")
    organisation: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _state_or_sector(self) -> DelegateIn:
        if self.role is Role.STAKEHOLDER:
            if self.sector is None:
                raise ValueError("a stakeholder needs a sector: civil_society, academia, industry or dialogue_partner")
        elif self.role is Role.ASEAN_SECRETARIAT:
            # The ASEAN Secretariat speaks for no state: it is copied and reads, it never answers.
            if self.state is not None or self.sector is not None:
                raise ValueError("the asean_secretariat speaks for no member state: leave out state and sector")
        elif self.state is None:
            raise ValueError(f"a {self.role.value} needs the member state they speak for")
        elif self.sector is not None:
            raise ValueError("only stakeholders have a sector")
        return self

    # Name and address make the To header, the organisation is shown beside them: one line of visible
    # characters, refused here with the file's line rather than failing every mailing later.
    _one_line = field_validator("name", "email", "organisation", "timezone", mode="before")(one_line)

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
        if self.role is Role.ASEAN_SECRETARIAT:
            return delegate_id(SECRETARIAT_PREFIX, self.email)
        return delegate_id(self.state, self.email)


class RosterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delegates: list[DelegateIn] = Field(min_length=1)


def delegate_id(state: MemberState | str | None, email: str) -> str:
    """A stable id for a delegate that does not reveal the address (it travels in links and histories).

    Stakeholders, who speak for no state, get ids beginning `SH-`; the ASEAN Secretariat `ASEC-`."""
    prefix = state or "SH"
    digest = hashlib.sha256(f"{prefix}:{email.strip().lower()}".encode()).hexdigest()[:16]
    return f"{prefix}-{digest}"


def load_roster_file(path: Path) -> RosterFile:
    data, source = load_yaml(path)
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a mapping with a 'delegates' list")
    try:
        return RosterFile.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(format_validation_error(path, exc, source)) from None
