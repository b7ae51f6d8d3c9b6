"""Process definitions and proposal files: the YAML a coordinator writes, validated with clear messages."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.positions import DecisionRule, SilencePolicy
from models.states import MemberState


class StageType(StrEnum):
    DRAFTING = "drafting"
    MEMBER_REVIEW = "member_review"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DraftingStage(_Strict):
    """Versions may be uploaded until the coordinator submits."""

    type: Literal[StageType.DRAFTING] = StageType.DRAFTING


class MemberReviewStage(_Strict):
    """WG-AI review in rounds; each round asks every participating state for its position."""

    type: Literal[StageType.MEMBER_REVIEW] = StageType.MEMBER_REVIEW
    rule: DecisionRule = DecisionRule.CONSENSUS
    deadline: timedelta = Field(default=timedelta(days=14), description="from the start of each round")
    reminders: list[timedelta] = Field(default_factory=lambda: [timedelta(days=7), timedelta(days=1)])
    silence: SilencePolicy = SilencePolicy.ABSTAIN
    max_rounds: int = Field(default=3, ge=1, le=20)
    participants: list[MemberState] | None = Field(
        default=None, description="defaults to every state that is a member when the round opens"
    )

    @field_validator("deadline", mode="before")
    @classmethod
    def _iso_deadline(cls, value: object) -> object:
        return _require_iso(value)

    @field_validator("reminders", mode="before")
    @classmethod
    def _iso_reminders(cls, value: object) -> object:
        return [_require_iso(v) for v in value] if isinstance(value, list) else value

    @field_validator("deadline")
    @classmethod
    def _positive_deadline(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("deadline must be a positive duration such as P14D")
        return value

    @model_validator(mode="after")
    def _reminders_inside_deadline(self) -> MemberReviewStage:
        for offset in self.reminders:
            if offset <= timedelta(0) or offset >= self.deadline:
                raise ValueError(
                    f"reminder {iso_duration(offset)} must be a positive duration shorter than "
                    f"the deadline {iso_duration(self.deadline)}"
                )
        return self


Stage = Annotated[DraftingStage | MemberReviewStage, Field(discriminator="type")]


class ProcessDefinition(_Strict):
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _drafting_only_first(self) -> ProcessDefinition:
        for index, stage in enumerate(self.stages):
            if stage.type is StageType.DRAFTING and index != 0:
                raise ValueError("a drafting stage may only be the first stage")
        if not any(s.type is StageType.MEMBER_REVIEW for s in self.stages):
            raise ValueError("a process needs at least one member_review stage")
        return self


class ProposalFile(_Strict):
    """A proposal as written by the coordinating team (`aisafe propose FILE`)."""

    title: str = Field(min_length=3, max_length=200)
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$", description="e.g. operational_framework")
    lead_state: MemberState = MemberState.MY
    document: str = Field(min_length=1, description="Markdown file, relative to the proposal file")
    process: ProcessDefinition


class InputFileError(Exception):
    """A coordinator's file is unreadable or invalid; the message names the file, line and field."""


def format_validation_error(path: Path, error: ValidationError, source: str | None = None) -> str:
    lines = [f"{path}: {error.error_count()} problem(s):"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"] if not str(p).startswith(("DraftingStage", "MemberReview")))
        line_no = _line_of(source, item["loc"]) if source else None
        at = f" (line {line_no})" if line_no else ""
        lines.append(f"  - {where or '(top level)'}{at}: {item['msg']}")
    return "\n".join(lines)


def _line_of(source: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the YAML node that `loc` names (segments the file has no node for, such as a stage's
    type tag, are skipped); None when the source cannot be walked."""
    try:
        node = yaml.compose(source)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                continue
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def iso_duration(value: timedelta) -> str:
    """A duration as ISO 8601 (P14D, PT12H), the form coordinators write."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "") if (days or time) else "PT0S"


def _require_iso(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: write ISO 8601, such as P14D (14 days) or PT12H")
    return value


def load_yaml(path: Path) -> tuple[object, str]:
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(source), source
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputFileError(f"{path}:{at} not valid YAML: {getattr(exc, 'problem', exc)}") from None


def load_proposal_file(path: Path) -> tuple[ProposalFile, str]:
    """Read and validate a proposal file; returns it with its document's Markdown text."""
    data, source = load_yaml(path)
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a mapping with title, kind, document and process")
    try:
        proposal = ProposalFile.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(format_validation_error(path, exc, source)) from None
    document_path = path.parent / proposal.document
    return proposal, read_document(document_path)


def read_document(path: Path) -> str:
    """Read a Markdown document version; refuses empty or non-UTF-8 files."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"{path}: document not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read document as UTF-8 text: {exc}") from None
    if not text.strip():
        raise InputFileError(f"{path}: document is empty")
    return text
