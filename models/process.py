"""Process definitions and proposal files: the YAML a coordinator writes, validated with clear messages."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from models.controlchars import one_line
from models.files import MAX_DOCUMENT_BYTES, InputFileError, format_validation_error, line_of, load_yaml, read_document
from models.localfile import LocalFileError, confined
from models.positions import DecisionRule, SilencePolicy
from models.roster import Role, Sector
from models.states import MemberState

__all__ = ["InputFileError", "read_document"]


class StageType(StrEnum):
    DRAFTING = "drafting"
    CONSULTATION = "consultation"
    MEMBER_REVIEW = "member_review"
    SENIOR_OFFICIALS = "senior_officials"
    MINISTERIAL = "ministerial"
    FUNDING = "funding"
    SUMMIT_REPORT = "summit_report"


# Who is written to in each stage (a state with nobody in these roles falls back to its review delegates).
STAGE_ROLES: dict[StageType, tuple[Role, ...]] = {
    StageType.MEMBER_REVIEW: (Role.FOCAL_POINT, Role.ALTERNATE),
    StageType.SENIOR_OFFICIALS: (Role.SENIOR_OFFICIAL,),
    StageType.MINISTERIAL: (Role.MINISTER_OFFICE,),
    StageType.FUNDING: (Role.FOCAL_POINT, Role.ALTERNATE),
}


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


class _Timed(_Strict):
    """A stage with a deadline counted from its start, and reminders that many days before it."""

    deadline: timedelta = Field(default=timedelta(days=14), description="ISO 8601 duration, e.g. P14D")
    reminders: list[timedelta] = Field(
        default_factory=lambda: [timedelta(days=7), timedelta(days=1)],
        description="default: P7D and P1D, those of them that fit inside the deadline",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_reminders_that_fit(cls, data: object) -> object:
        """A stage that lists no reminders gets only the default reminders shorter than its deadline: a
        `deadline: PT1H` must not be refused for a P7D reminder nobody wrote. Written reminders stay checked."""
        if not isinstance(data, dict) or "reminders" in data:
            return data
        factory = cls.model_fields["reminders"].default_factory
        raw = data.get("deadline", cls.model_fields["deadline"].default)
        if factory is None or not isinstance(raw, timedelta | str):
            return data  # the deadline's own validator says what is wrong with it
        try:
            deadline = _DURATION.validate_python(raw)
        except ValidationError:
            return data
        return {**data, "reminders": [r for r in factory() if timedelta(0) < r < deadline]}  # type: ignore[call-arg]

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
    def _reminders_inside_deadline(self) -> _Timed:
        for offset in self.reminders:
            if offset <= timedelta(0) or offset >= self.deadline:
                raise ValueError(
                    f"reminder {iso_duration(offset)} must be a positive duration shorter than "
                    f"the deadline {iso_duration(self.deadline)}"
                )
        return self


class _StatesDecide(_Timed):
    rule: DecisionRule = DecisionRule.CONSENSUS
    silence: SilencePolicy = SilencePolicy.ABSTAIN
    participants: list[MemberState] | None = Field(
        default=None, description="defaults to every state that is a member when the stage opens"
    )
    min_participants: int = Field(default=2, ge=1, le=11, description="asean_minus_x: states needed to proceed")


class DraftingStage(_Strict):
    """Versions may be uploaded until the coordinator submits."""

    type: Literal[StageType.DRAFTING] = StageType.DRAFTING


class ConsultationStage(_Timed):
    """Invited stakeholders comment (advisory); the stage closes once every comment has a disposition."""

    type: Literal[StageType.CONSULTATION] = StageType.CONSULTATION
    deadline: timedelta = Field(default=timedelta(days=21))
    reminders: list[timedelta] = Field(default_factory=list)
    sectors: list[Sector] | None = Field(default=None, description="invited sectors; default: all")


class NoConsensusPolicy(StrEnum):
    """Where a member-review round the coordinator closed without consensus leaves the proposal."""

    REVISE = "revise"  # a new version, then a new round (as after a change request)
    END = "end"


class MemberReviewStage(_StatesDecide):
    """WG-AI review in rounds; each round asks every participating state for its position."""

    type: Literal[StageType.MEMBER_REVIEW] = StageType.MEMBER_REVIEW
    max_rounds: int = Field(default=3, ge=1, le=20)
    on_no_consensus: NoConsensusPolicy = NoConsensusPolicy.REVISE


class EndorsementMode(StrEnum):
    AD_REFERENDUM = "ad_referendum"
    MEETING = "meeting"


class NoRecordPolicy(StrEnum):
    AD_REFERENDUM = "ad_referendum"
    EXPIRE = "expire"


class _Endorsement(_StatesDecide):
    """ADGSOM or ADGMIN endorsement: at a meeting on a date, or ad referendum (a silence procedure)."""

    mode: EndorsementMode = EndorsementMode.AD_REFERENDUM
    rule: DecisionRule | None = Field(
        default=None, description="default: silence ad referendum, consensus at a meeting"
    )
    date: datetime | None = Field(default=None, description="meeting date and time, with its UTC offset")
    venue: str | None = Field(default=None, max_length=200)
    chair: MemberState | None = None
    grace: timedelta = Field(default=timedelta(days=7), description="after the meeting, to record its outcome")
    on_no_record: NoRecordPolicy = NoRecordPolicy.AD_REFERENDUM
    absent_ad_referendum: timedelta = Field(
        default=timedelta(days=14), description="states absent from the meeting are consulted for this long (P14D)"
    )
    max_referrals: int = Field(default=2, ge=0, le=10, description="times a meeting may refer the text back to WG-AI")

    _one_line_venue = field_validator("venue")(one_line)  # the calendar invitation's LOCATION

    @field_validator("grace", mode="before")
    @classmethod
    def _iso_grace(cls, value: object) -> object:
        return _require_iso(value)

    @field_validator("absent_ad_referendum", mode="before")
    @classmethod
    def _iso_absent_ad_referendum(cls, value: object) -> object:
        return _require_iso(value)

    @field_validator("absent_ad_referendum")
    @classmethod
    def _positive_absent_ad_referendum(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("absent_ad_referendum must be a positive duration such as P14D")
        return value

    @field_validator("date")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the meeting date with its UTC offset, e.g. 2027-01-15T09:00:00+08:00")
        return value

    @field_validator("chair", mode="before")
    @classmethod
    def _chair_is_a_member_state(cls, value: object) -> object:
        if value is not None and value not in {s.value for s in MemberState}:
            codes = ", ".join(s.value for s in MemberState)
            raise ValueError(f"the chair must be a member state, by its code ({codes}); not {value!r}")
        return value

    @model_validator(mode="after")
    def _meeting_needs_date_and_chair(self) -> _Endorsement:
        if self.mode is EndorsementMode.MEETING and (self.date is None or self.chair is None):
            raise ValueError("a meeting needs a date (with UTC offset) and a chair (a member state)")
        return self

    @property
    def decision_rule(self) -> DecisionRule:
        if self.rule is not None:
            return self.rule
        return DecisionRule.SILENCE if self.mode is EndorsementMode.AD_REFERENDUM else DecisionRule.CONSENSUS


class SeniorOfficialsStage(_Endorsement):
    type: Literal[StageType.SENIOR_OFFICIALS] = StageType.SENIOR_OFFICIALS


class MinisterialStage(_Endorsement):
    type: Literal[StageType.MINISTERIAL] = StageType.MINISTERIAL


class FundingModel(StrEnum):
    EQUAL_SHARE = "equal_share"
    TIERED = "tiered"
    VOLUNTARY = "voluntary"


class FundingStage(_StatesDecide):
    """Focal points indicate each state's contribution (subject to domestic clearance), ministers' offices confirm
    it; approved when the rule holds and the confirmed contributions meet the budget target."""

    type: Literal[StageType.FUNDING] = StageType.FUNDING
    deadline: timedelta = Field(default=timedelta(days=30))
    model: FundingModel = FundingModel.EQUAL_SHARE
    budget_target: Decimal = Field(gt=0, max_digits=18, decimal_places=2)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    shares: dict[MemberState, Decimal] | None = Field(default=None, description="tiered: percent of the target")
    partner_pledges_count: bool = Field(
        default=False,
        description="whether dialogue partners' trust-fund pledges count toward budget_target (the core budget)",
    )

    @field_validator("budget_target", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        # YAML reads 150000.10 as a float; go through its text so no binary rounding creeps in.
        return str(value) if isinstance(value, float) else value

    @model_validator(mode="after")
    def _shares_fit_the_model(self) -> FundingStage:
        if self.model is FundingModel.TIERED:
            if not self.shares:
                raise ValueError("a tiered funding model needs shares: percent of the target per state")
            total = sum(self.shares.values(), Decimal(0))
            if total != Decimal(100):
                raise ValueError(f"tiered shares must add up to 100 (percent); they add up to {total}")
        elif self.shares:
            raise ValueError(f"shares apply only to the tiered model, not {self.model.value}")
        return self


class SummitReportStage(_Strict):
    """The last stage, optional: the contact for the Leaders is told, and the record says "reported to the ASEAN
    Summit"."""

    type: Literal[StageType.SUMMIT_REPORT] = StageType.SUMMIT_REPORT
    summit: str | None = Field(default=None, max_length=200, description="which Summit, e.g. the 48th ASEAN Summit")

    _one_line_summit = field_validator("summit")(one_line)


Stage = Annotated[
    DraftingStage
    | ConsultationStage
    | MemberReviewStage
    | SeniorOfficialsStage
    | MinisterialStage
    | FundingStage
    | SummitReportStage,
    Field(discriminator="type"),
]
DECIDING = {StageType.MEMBER_REVIEW, StageType.SENIOR_OFFICIALS, StageType.MINISTERIAL, StageType.FUNDING}


class ProcessDefinition(_Strict):
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _drafting_only_first(self) -> ProcessDefinition:
        for index, stage in enumerate(self.stages):
            if stage.type is StageType.DRAFTING and index != 0:
                raise ValueError("a drafting stage may only be the first stage")
            if stage.type is StageType.SUMMIT_REPORT and index != len(self.stages) - 1:
                raise ValueError("a summit_report stage may only be the last stage")
        if not any(s.type in DECIDING for s in self.stages):
            raise ValueError(
                "a process needs at least one stage where states decide: "
                "member_review, senior_officials, ministerial or funding"
            )
        return self


class ProposalFile(_Strict):
    """A proposal as written by the coordinating team (`aisafe propose FILE`)."""

    title: str = Field(min_length=3, max_length=200)
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$", description="e.g. operational_framework")
    lead_state: MemberState = MemberState.MY
    document: str = Field(
        min_length=1, max_length=4096, description="Markdown file in the proposal file's folder (or below it)"
    )
    process: ProcessDefinition

    # The title is in every email's Subject: one line of visible characters, refused at import, not at mailing.
    _one_line_title = field_validator("title")(one_line)


def load_proposal_file(path: Path, max_document_bytes: int = MAX_DOCUMENT_BYTES) -> tuple[ProposalFile, str]:
    """Read and validate a proposal file; returns it with its document's Markdown text.

    The document must be a regular file inside the proposal file's folder, of at most `max_document_bytes`."""
    data, source = load_yaml(path)
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a mapping with title, kind, document and process")
    _refuse_silence_as_consent(path, data, source)
    try:
        proposal = ProposalFile.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(format_validation_error(path, exc, source)) from None
    _check_chairs(path, proposal.process, source)
    line = line_of(source, ("document",))
    where = f"{path} (line {line})" if line else str(path)
    try:
        return proposal, read_document(confined(path.parent, proposal.document, "document"), max_document_bytes)
    except (LocalFileError, InputFileError) as exc:
        raise InputFileError(f"{where}: {exc}") from None


# Silence is not consent (ASEAN Charter Art. 20): only a silence procedure, announced as such, counts a silent state.
_SILENCE_INSTEAD = {
    "abstain": "a state that does not answer is not counted; the round becomes overdue at its deadline and the "
    "coordinator extends it, runs a silence procedure or closes it without consensus",
    "object": "a state that does not answer is not counted as objecting; the round becomes overdue at its deadline "
    "and the coordinator extends it, runs a silence procedure or closes it without consensus",
    "concur": "silence counts as concurrence only in a silence procedure: a senior_officials or ministerial stage "
    "with mode: ad_referendum (announced in every invitation), or `aisafe silence-procedure ID DURATION` on an "
    "overdue round",
}


def _refuse_silence_as_consent(path: Path, data: dict[object, object], source: str) -> None:
    """Refuse a `silence:` the process file may no longer say, naming the line and what to write instead.

    Checked on the file, not on the model: running proposals' definitions hold `silence: abstain` and must load."""
    process = data.get("process")
    stages = process.get("stages") if isinstance(process, dict) else None
    if not isinstance(stages, list):
        return
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict) or "silence" not in stage:
            continue
        kind, policy = str(stage.get("type", "")), str(stage.get("silence"))
        ad_referendum = kind in ("senior_officials", "ministerial") and stage.get("mode", "ad_referendum") == (
            "ad_referendum"
        )
        if kind in ("member_review", "funding") and policy in ("abstain", "object", "concur"):
            pass
        elif not ad_referendum and kind in ("senior_officials", "ministerial") and policy == "concur":
            pass
        else:
            continue
        line = line_of(source, ("process", "stages", index, "silence"))
        where = f"{path} (line {line})" if line else str(path)
        raise InputFileError(
            f"{where}: process.stages.{index}.silence: `silence: {policy}` is not allowed in a {kind} stage "
            f"(silence is not consent). Remove the line: {_SILENCE_INSTEAD[policy]}"
        )


def _check_chairs(path: Path, process: ProcessDefinition, source: str) -> None:
    """A meeting's chair must be a member state on the meeting's date (checked here, not in the model, so that
    payloads of running proposals still load)."""
    for index, stage in enumerate(process.stages):
        if not isinstance(stage, _Endorsement) or stage.chair is None or stage.date is None:
            continue
        if stage.chair.member_since > stage.date.date():
            line = line_of(source, ("process", "stages", index, "chair"))
            at = f" (line {line})" if line else ""
            raise InputFileError(
                f"{path}{at}: process.stages.{index}.chair: {stage.chair.official_name} ({stage.chair.value}) is "
                f"not a member state on the meeting date {stage.date.date().isoformat()} (a member since "
                f"{stage.chair.member_since.isoformat()})"
            )
