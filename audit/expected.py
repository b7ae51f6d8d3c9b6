"""What a workflow's history says its proposal's ledger must hold: one expected entry per completed Update and
per workflow step the history shows was taken.

Each expectation names the entry by its idempotency key where the key follows from the history alone (an Update
id, a step of the workflow), or else by its content (a revision by the version and hash the Update returned), so
that an entry the workflow reported as written but the ledger does not hold is named, kind and all.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from audit.history import AcceptedUpdate, WorkflowRecord

ROUND_MAIL = "send_round_mail"
# The mailings of a stage's steps (invitation, reminders, extensions), each recorded as `{workflow}:mail:{step}`.
STEP_MAILINGS = {ROUND_MAIL, "send_consultation_mail", "send_meeting_mail"}
REMINDERS_PATCH = "ledger-reminders"  # rounds record their reminders in the ledger from this patch on
MAIL_KINDS = ("mail_outcome", "not_invited")
# Runs that took these patches record a `mail_outcome` for each mailing of a step (rounds: from the round's
# invitation on, every mailing; meetings: their invitation). Older runs recorded none and stay valid.
# Consultations since this patch carry comment bodies as hashes, key each extension by its Update (holding only
# its input, `by`) and record their mail outcomes.
BY_HASH_PATCH = "consultation-comments-by-hash"
MAIL_OUTCOME_PATCHES = {"round-invited-only", "meeting-mail-outcome", BY_HASH_PATCH}
# Meetings since this patch record the Meeting's decision keyed by the Update (a deferred meeting is recorded again
# at its next date), and take reschedules and cancellations.
MEETINGS_DECIDE_PATCH = "meetings-decide"
DATE_PASSED_STEP = "date-passed"


@dataclass
class Expected:
    """One ledger entry a history vouches for; `fields` are payload values that must be equal (dotted paths)."""

    workflow_id: str
    kind: str
    event_id: int
    what: str  # how the history shows it, for messages: "revise 3f2a… (version 2, sha256 1a2b…)"
    key: str | None = None  # None: found by `signature` among the workflow's entries of `kind`
    key_prefix: str | None = None  # bulk dispositions: any number of entries under one Update
    signature: Callable[[dict[str, Any]], Hashable] | None = None
    wanted: Hashable = None  # what `signature` of the entry's payload must give
    fields: dict[str, Any] = field(default_factory=dict)
    strict: bool = True  # False: the workflow may not have written it yet if it is still running
    update: AcceptedUpdate | None = None
    normalise: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # the payload as `fields` spells it
    file: str = ""  # the history file that shows it (else the Update's, else the workflow's)


def short(text: Any) -> str:
    value = str(text)
    return value if len(value) <= 12 else f"{value[:8]}…"


def as_time(value: Any) -> datetime | None:
    """ISO text ("Z" or "+00:00") as an aware datetime, so both spellings compare equal."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def as_amount(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def dig(payload: Any, path: str) -> Any:
    if "." not in path:  # most paths are one name
        return payload.get(path) if isinstance(payload, dict) else None
    for part in path.split("."):
        payload = payload.get(part) if isinstance(payload, dict) else None
    return payload


def _arg(update: AcceptedUpdate) -> dict[str, Any]:
    return update.args[0] if update.args and isinstance(update.args[0], dict) else {}


def _pick(source: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: source.get(name) for name in names}


# --- Updates ------------------------------------------------------------------------------------------------

POSITION_FIELDS = ("proposal_id", "round", "state", "delegate_id", "document_sha256", "position", "reason")
COMMENT_FIELDS = ("proposal_id", "stage_index", "stakeholder_id", "sector", "document_sha256", "section")


def _keyed(kind: str, tag: str, names: tuple[str, ...]) -> Callable[[str, AcceptedUpdate], list[Expected]]:
    """An Update whose entry's key follows from the Update (`{id}` in `tag` is its id) and whose input's `names`
    the entry repeats."""

    def expect(wf: str, u: AcceptedUpdate) -> list[Expected]:
        key = f"{wf}:{tag.format(id=u.update_id)}"
        return [
            Expected(wf, kind, u.event_id, f"{u.name} {u.update_id}", key=key, fields=_pick(_arg(u), names), update=u)
        ]

    return expect


def _by_content(
    kind: str,
    labels: tuple[str, ...],
    signature: Callable[[dict[str, Any]], tuple[Any, ...]],
    wanted: Callable[[AcceptedUpdate], tuple[Any, ...]],
    fields: Callable[[AcceptedUpdate], dict[str, Any]] = lambda _: {},
) -> Callable[[str, AcceptedUpdate], list[Expected]]:
    """An Update whose entry is found by what it holds (`signature` of the payload equals `wanted` of the Update,
    the values named `labels`): its key's number is the workflow's own count, which concurrent Updates may share."""

    def expect(wf: str, u: AcceptedUpdate) -> list[Expected]:
        value = wanted(u)
        what = f"{u.name} {u.update_id} ({', '.join(f'{n} {short(v)}' for n, v in zip(labels, value, strict=True))})"
        return [Expected(wf, kind, u.event_id, what, signature=signature, wanted=value, fields=fields(u), update=u)]

    return expect


def _comment(wf: str, u: AcceptedUpdate) -> list[Expected]:
    # Comment bodies may travel as their hash only; the entry then holds the same hash (or the text itself).
    submitted = _arg(u)
    names = (*COMMENT_FIELDS, *(n for n in ("text", "text_sha256", "text_length") if submitted.get(n) is not None))
    return _keyed("comment", "comment:{id}", names)(wf, u)


def _respond_many(wf: str, u: AcceptedUpdate) -> list[Expected]:
    """One entry per comment, keyed `{wf}:disposition:{update}:{comment}`; every open one when no ids are given."""
    request = _arg(u)
    fields = _pick(request, ("disposition", "reason"))
    prefix = f"{wf}:disposition:{u.update_id}:"
    what = f"respond_many {u.update_id}"
    if not request.get("comment_ids"):
        return [Expected(wf, "disposition", u.event_id, what, key_prefix=prefix, fields=fields, update=u)]
    return [
        Expected(
            wf,
            "disposition",
            u.event_id,
            f"{what} for comment {comment_id}",
            key=f"{prefix}{comment_id}",
            fields={**fields, "comment_id": comment_id},
            update=u,
        )
        for comment_id in request["comment_ids"]
    ]


def _revision(u: AcceptedUpdate) -> tuple[Any, ...]:
    returned = u.result if isinstance(u.result, dict) else {}
    return returned.get("version"), returned.get("sha256", _arg(u).get("sha256"))


def _pledged(u: AcceptedUpdate) -> tuple[Any, ...]:
    pledge = u.result if isinstance(u.result, dict) else _arg(u)
    return pledge.get("partner"), as_amount(pledge.get("amount"))


UPDATES: dict[str, Callable[[str, AcceptedUpdate], list[Expected]]] = {
    "submit_position": _keyed("position", "position:{id}", POSITION_FIELDS),
    "submit_comment": _comment,
    "respond": _keyed("disposition", "disposition:{id}", ("comment_id", "disposition", "reason")),
    "respond_many": _respond_many,
    "record_meeting": _keyed("meeting_recorded", "recorded", ("positions", "reasons", "summary")),
    "resend": _keyed("invitation_resent", "resent:{id}", ("state",)),
    "roster_changed": _keyed("delegates_replaced", "replaced:{id}", ("state",)),
    "revise": _by_content(
        "version_uploaded",
        ("version", "sha256"),
        lambda p: (dig(p, "document.version"), dig(p, "document.sha256")),
        _revision,
        lambda u: {"document.filename": _arg(u).get("filename"), "document.size": _arg(u).get("size")},
    ),
    "submit": _by_content("submitted", ("sha256",), lambda p: (p.get("sha256"),), lambda u: (u.result,)),
    "withdraw": _by_content("withdrawn", ("reason",), lambda p: (p.get("reason"),), lambda u: (_arg(u).get("reason"),)),
    "pledge": _by_content(
        "partner_pledge",
        ("partner", "amount"),
        lambda p: (p.get("partner"), as_amount(p.get("amount"))),
        _pledged,
        lambda u: _pick(_arg(u), ("currency",)) if _arg(u).get("currency") else {},
    ),
    "extend": _by_content(
        "consultation_extended", ("to",), lambda p: (as_time(p.get("to")),), lambda u: (as_time(u.result),)
    ),
    "reschedule": _keyed("meeting_rescheduled", "rescheduled:{id}", ("date", "venue")),
    "cancel_meeting": _keyed("meeting_cancelled", "cancelled:{id}", ("reason",)),
}
_extension_by_update = _keyed("consultation_extended", "extended:{id}", ("by",))
# The coordinator's controls of an overdue round (workflows/review_round.py, SILENCE_NOT_CONSENT).
UPDATES["extend_round"] = _keyed("round_extended", "extended:{id}", ())
UPDATES["silence_procedure"] = _keyed("silence_procedure", "silence-procedure:{id}", ())
UPDATES["close_round"] = _keyed("round_closed_no_consensus", "no-consensus:{id}", ("reason",))
_decision_by_update = _keyed(
    "meeting_recorded", "recorded:{id}", ("present", "decision", "paragraph", "reservations", "summary")
)

# Kinds only an Update (or a position Signal) writes: an entry of one of these that no Update claims is a finding.
UPDATE_KINDS = {
    "position",
    "comment",
    "disposition",
    "meeting_recorded",
    "version_uploaded",
    "submitted",
    "withdrawn",
    "partner_pledge",
    "consultation_extended",
    "invitation_resent",
    "round_extended",
    "silence_procedure",
    "round_closed_no_consensus",
    "delegates_replaced",
    "meeting_rescheduled",
    "meeting_cancelled",
}
OVERDUE_ALERT = "send_coordinator_alert"  # an overdue round's alert (step overdue-N) follows its `round_overdue`


# --- workflow steps -----------------------------------------------------------------------------------------


def _step(
    record: WorkflowRecord, kind: str, tag: str, what: str, fields: dict[str, Any], *, done: bool, event: int = 0
) -> Expected:
    """A step the workflow takes once: `done` says the history shows it was taken (else it may be in progress);
    `event` is the event that shows it (else the workflow's close, or its start)."""
    return Expected(
        record.workflow_id,
        kind,
        event or (record.closed_event if done and record.closed_event else 1),
        what,
        key=f"{record.workflow_id}:{tag}",
        fields=fields,
        strict=done or record.closed,
        file=record.file,
    )


def _first(record: WorkflowRecord) -> dict[str, Any]:
    return record.input[0] if record.input and isinstance(record.input[0], dict) else {}


def _result(record: WorkflowRecord) -> dict[str, Any]:
    return record.result if isinstance(record.result, dict) else {}


def _proposal_steps(record: WorkflowRecord) -> list[Expected]:
    started = _first(record)
    steps: list[Expected] = []
    registered = [w.event_id for w in record.writes if w.activity == "register_proposal"]
    if not record.continued and registered:
        steps.append(
            _step(
                record,
                "proposal_started",
                "started",
                "the proposal's start",
                _pick(started, ("title", "kind", "lead_state", "document")),
                done=True,
                event=registered[0],
            )
        )
    if record.completed:
        status = _result(record)
        for index, stage in enumerate(status.get("stages") or []):
            if not isinstance(stage, dict) or stage.get("status") in (None, "pending"):
                continue
            # A stage run again after a referral keys its entries by its pass: `stage-4:pass-2`.
            passes = stage.get("passes") or 1
            tag = f"stage-{index}" if passes == 1 else f"stage-{index}:pass-{passes}"
            steps.append(
                _step(
                    record,
                    "stage_started",
                    tag,
                    f"stage {index} ({stage.get('type')}) started",
                    {"index": index, "stage": stage.get("type")},
                    done=True,
                )
            )
            if stage.get("type") == "summit_report" and stage.get("status") == "passed":
                steps.append(
                    _step(
                        record,
                        "summit_reported",
                        f"stage-{index}:summit-reported",
                        f"stage {index} reported to the ASEAN Summit",
                        {"index": index},
                        done=True,
                    )
                )
            if stage.get("ended_at"):
                steps.append(
                    _step(
                        record,
                        "stage_ended",
                        f"{tag}:ended",
                        f"stage {index} ({stage.get('type')}) ended {stage.get('status')}",
                        {"index": index, "status": stage.get("status")},
                        done=True,
                    )
                )
        steps.append(
            _step(
                record,
                "proposal_closed",
                "closed",
                f"the proposal ended {status.get('status')}",
                {"status": status.get("status")},
                done=True,
            )
        )
    return steps


def _opened_and_closed(
    record: WorkflowRecord, noun: str, label: str, opened: dict[str, Any], closed: dict[str, Any]
) -> list[Expected]:
    """A child's first entry (`{noun}_opened`, unless this run continues another) and, once it returned, its last."""
    steps: list[Expected] = []
    if not record.continued:
        steps.append(_step(record, f"{noun}_opened", "opened", f"{label} opened", opened, done=False))
    if record.completed:
        steps.append(_step(record, f"{noun}_closed", "closed", f"{label} closed", closed, done=True))
    return steps


def _round_steps(record: WorkflowRecord) -> list[Expected]:
    opened, outcome = _first(record), _result(record)
    steps = _opened_and_closed(
        record,
        "round",
        f"round {opened.get('round')}",
        {
            "round": opened.get("round"),
            "stage": opened.get("stage_type"),
            "purpose": opened.get("purpose"),
            "document": opened.get("document"),
        },
        _pick(outcome, ("round", "verdict", "reason", "closed_because")),
    )
    if REMINDERS_PATCH in record.patches:
        for mailing in record.activities:
            step = str(dig(mailing.input, "step") or "")
            states = dig(mailing.input, "states") or []
            if mailing.name == ROUND_MAIL and step.startswith("reminder-") and states:
                number = step.removeprefix("reminder-")
                steps.append(
                    Expected(
                        record.workflow_id,
                        "reminder_sent",
                        mailing.event_id,
                        f"{step} mailed to {len(states)} state(s)",
                        key=f"{record.workflow_id}:reminder-{number}",
                        fields={"states": sorted(states), "reminder": int(number) if number.isdigit() else number},
                        strict=record.closed,
                        file=mailing.file,
                    )
                )
    steps.extend(_overdue_steps(record))
    return steps


def _overdue_steps(record: WorkflowRecord) -> list[Expected]:
    """Each time the round went overdue it recorded `round_overdue` under the step, then alerted the coordinator."""
    steps: list[Expected] = []
    for alert in record.activities:
        step = str(dig(alert.input, "step") or "")
        overdue = dig(alert.input, "overdue") or []
        if alert.name == OVERDUE_ALERT and step.startswith("overdue-") and overdue:
            steps.append(
                Expected(
                    record.workflow_id,
                    "round_overdue",
                    alert.event_id,
                    f"the round went overdue ({step}) with {len(overdue)} state(s) silent",
                    key=f"{record.workflow_id}:{step}",
                    fields={"states": sorted(overdue)},
                    strict=record.closed,
                    file=alert.file,
                )
            )
    return steps


def _consultation_steps(record: WorkflowRecord) -> list[Expected]:
    opened = _pick(_first(record), ("stage_index", "document"))
    return _opened_and_closed(record, "consultation", "the consultation", opened, {})


def _meeting_steps(record: WorkflowRecord) -> list[Expected]:
    meeting = _first(record)
    steps = [
        _step(
            record,
            "meeting_scheduled",
            "scheduled",
            "the meeting was scheduled",
            _pick(meeting, ("venue", "chair")) | {"stage": meeting.get("stage_type")},
            done=False,
        )
    ]
    # A meeting whose stage opened after its date told the coordinator (the mailing shows it) and recorded it.
    for mailing in record.activities:
        if mailing.name == "send_meeting_mail" and dig(mailing.input, "step") == DATE_PASSED_STEP:
            steps.append(
                _step(
                    record,
                    "meeting_date_passed",
                    DATE_PASSED_STEP,
                    "the meeting's date had passed when its stage opened",
                    {"stage": meeting.get("stage_type")},
                    done=True,
                    event=mailing.event_id,
                )
            )
    return steps


STEPS: dict[str, Callable[[WorkflowRecord], list[Expected]]] = {
    "ProposalWorkflow": _proposal_steps,
    "ReviewRoundWorkflow": _round_steps,
    "ConsultationWorkflow": _consultation_steps,
    "MeetingWorkflow": _meeting_steps,
}


def fallbacks(workflows: dict[str, WorkflowRecord]) -> list[Expected]:
    """A meeting that ended unrecorded sends its stage to ad referendum, unless the stage lets the proposal expire."""
    found: list[Expected] = []
    for record in workflows.values():
        outcome = _result(record)
        if record.workflow_type != "MeetingWorkflow" or not record.completed or outcome.get("recorded") is not False:
            continue
        meeting = _first(record)
        proposal_id, index = meeting.get("proposal_id"), meeting.get("stage_index")
        proposal = workflows.get(str(proposal_id))
        stages = dig(_first(proposal), "process.stages") if proposal else None
        stage = stages[index] if isinstance(stages, list) and isinstance(index, int) and index < len(stages) else {}
        if proposal is None or (isinstance(stage, dict) and stage.get("on_no_record") == "expire"):
            continue
        found.append(
            Expected(
                proposal.workflow_id,
                "fallback_ad_referendum",
                1,
                f"the meeting of stage {index} ended unrecorded ({record.workflow_id})",
                key=f"{proposal.workflow_id}:stage-{index}:fallback",
                fields={"reason": outcome.get("reason")},
                strict=proposal.closed,
                file=record.file,
            )
        )
    return found


# --- mail outcomes ------------------------------------------------------------------------------------------


def mail_steps(record: WorkflowRecord, writes_mail_outcomes: bool) -> list[Expected]:
    """Each mailing of a stage's step has its `mail_outcome`, which says of each recipient what the mailing's result
    says (the states it lists as not invited are the round's own reckoning, checked in audit/crosscheck.py).

    Required of a workflow that records mail outcomes at all (older runs recorded none, and stay valid)."""
    if not writes_mail_outcomes:
        return []
    found: list[Expected] = []
    wf = record.workflow_id
    for mailing in record.activities:
        if mailing.name not in STEP_MAILINGS:
            continue  # a delegate's answer notice or the coordinator's alert: not an invitation to the stage
        result = mailing.result if isinstance(mailing.result, dict) else {}
        if "recipients" not in result:
            continue  # a mailing result from before outcomes were reported
        step = str(dig(mailing.input, "step") or "")
        found.append(
            Expected(
                wf,
                "mail_outcome",
                mailing.event_id,
                f"{mailing.name} {step!r} ended",
                key=f"{wf}:mail:{step}",
                fields=normalised_mail_outcome({**result, "step": step}),
                strict=record.closed,
                file=mailing.file,
                normalise=normalised_mail_outcome,
            )
        )
    return found


def _recipient_order(recipient: dict[str, Any]) -> tuple[str, str]:
    return str(recipient.get("state")), str(recipient.get("delegate_id"))


def normalised_mail_outcome(payload: dict[str, Any]) -> dict[str, Any]:
    """A `mail_outcome` payload (or a mailing's result) in one order and shape, so the two compare field by field.

    The relay's reply text is left out: a workflow may shorten it; the reply code is what says refused or not."""
    recipients = sorted(
        (
            _pick(r, ("state", "delegate_id", "outcome", "code"))
            for r in payload.get("recipients") or []
            if isinstance(r, dict)
        ),
        key=_recipient_order,
    )
    return {"step": payload.get("step"), "recipients": recipients}


def expectations(workflows: dict[str, WorkflowRecord], mail_recorders: set[str]) -> list[Expected]:
    """Every entry the histories vouch for; `mail_recorders` are the workflows whose entries hold mail outcomes."""
    found: list[Expected] = []
    for workflow_id, record in sorted(workflows.items()):
        for update in record.updates.values():
            make = UPDATES.get(update.name)
            if update.name == "extend" and BY_HASH_PATCH in record.patches:
                make = _extension_by_update
            if update.name == "record_meeting" and MEETINGS_DECIDE_PATCH in record.patches:
                make = _decision_by_update
            if make is not None and update.completed and not update.failed:
                found.extend(make(workflow_id, update))
        steps = STEPS.get(record.workflow_type)
        if steps is not None:
            found.extend(steps(record))
        found.extend(mail_steps(record, workflow_id in mail_recorders or bool(record.patches & MAIL_OUTCOME_PATCHES)))
    found.extend(fallbacks(workflows))
    return found
