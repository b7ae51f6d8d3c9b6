"""The ledger–history cross-check covers every kind of entry: each kind removed from a genuine bundle (the chain
rebuilt and the bundle re-sealed with the real key) is named; so is an Update without its entry, an entry without
its Update, an entry whose content differs, and the revisions 54c12b0 accepted but never recorded."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from audit.bundle import LEDGER, LedgerLine
from tests.integration import cli
from tests.test_audit import Audited, audited, findings, ledger_of, rechain, reseal, write_ledger

__all__ = ["audited"]  # the module's fixture: the whole default process on the real stack, exported

BUNDLES = Path(__file__).resolve().parent / "bundles"
# Every kind a whole demo run writes; the first test checks the demo still writes exactly these.
DEMO_KINDS = [
    "proposal_started",
    "stage_started",
    "stage_ended",
    "submitted",
    "consultation_opened",
    "comment",
    "consultation_extended",
    "disposition",
    "consultation_closed",
    "round_opened",
    "position",
    "round_closed",
    "version_uploaded",
    "meeting_scheduled",
    "meeting_recorded",
    "meeting_rescheduled",  # the demo brings the ADGMIN meeting forward once the rounds before it are done
    "partner_pledge",
    "summit_reported",
    "proposal_closed",
    "mail_outcome",  # from the merge of the mail outcomes on (rounds and meetings record whom they reached)
    "round_overdue",  # the first review's deadline passes with Viet Nam silent
    "reminder_sent",  # an overdue round reminds its silent states at once
    "silence_procedure",  # the coordinator's answer to the overdue round
]


# --- the case of issue 17, as 54c12b0 wrote it ---------------------------------------------------------------


def _events(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["events"]


def _payload(holder: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(holder["payloads"][0]["data"]))


def test_the_revisions_54c12b0_accepted_but_did_not_record_are_each_named() -> None:
    bundle = BUNDLES / "concurrent-revisions"
    manifest = json.loads((bundle / "manifest.json").read_text())
    (history,) = (bundle / "history").glob("*.json")
    # What the workflow told the coordinators, read from the history with json alone.
    names = {}
    for event in _events(history):
        accepted = event.get("workflowExecutionUpdateAcceptedEventAttributes")
        if accepted:
            names[accepted["acceptedRequest"]["meta"]["updateId"]] = accepted["acceptedRequest"]["input"]["name"]
    returned = {
        attrs["meta"]["updateId"]: _payload(attrs["outcome"]["success"])
        for event in _events(history)
        if (attrs := event.get("workflowExecutionUpdateCompletedEventAttributes"))
        and names[attrs["meta"]["updateId"]] == "revise"
    }
    assert len(returned) == 8
    recorded = {
        (line.payload["document"]["version"], line.payload["document"]["sha256"])
        for line in ledger_of(bundle)
        if line.kind == "version_uploaded"
    }
    lost = {u for u, document in returned.items() if (document["version"], document["sha256"]) not in recorded}
    assert len(recorded) < 8 and len(lost) == 8 - len(recorded)  # the loss the issue reports

    result = cli("audit", "verify", str(bundle), "--public-key", manifest["public_key"])
    assert result.code == 1, result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(lines) == len(lost), result.stdout
    for update_id in lost:
        (line,) = [line for line in lines if update_id in line]
        assert "version_uploaded: revise" in line and "was accepted and completed but is not in the ledger" in line
        assert f"version {returned[update_id]['version']}, sha256 {returned[update_id]['sha256'][:8]}" in line
    assert not any(u in result.stdout for u in returned.keys() - lost)
    assert "signature" not in result.stdout  # the seal holds: only the cross-check finds the loss


# --- each kind removed from a genuine bundle ----------------------------------------------------------------


@pytest.fixture
def copy(audited: Audited, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(audited.bundle, target)
    return target


def _signing_key(audited: Audited) -> str:
    assert audited.stack.settings is not None
    return audited.stack.settings.audit_signing_key


def test_the_demo_bundle_verifies_and_holds_every_kind_the_removals_cover(audited: Audited) -> None:
    assert findings(audited.bundle, audited.public_key) == []
    kinds = {line.kind for line in ledger_of(audited.bundle)}
    assert kinds <= set(DEMO_KINDS) and set(DEMO_KINDS) - kinds <= {"mail_outcome"}, sorted(kinds)


def _written(bundle: Path, kind: str) -> None:
    if not any(line.kind == kind for line in ledger_of(bundle)):
        pytest.skip(f"this code's demo writes no {kind} entry (mail outcomes are recorded from their merge on)")


def _remove(bundle: Path, kind: str, private: str, *, rewrite_receipts: bool) -> LedgerLine:
    """Drop the first entry of `kind`, rebuild the chain and re-seal; optionally also make every receipt in the
    histories name the rebuilt entries, as a forger who also edits histories would."""
    lines = ledger_of(bundle)
    dropped = next(line for line in lines if line.kind == kind)
    rebuilt = rechain([line for line in lines if line is not dropped])
    write_ledger(bundle, rebuilt)
    if rewrite_receipts:
        survivors = [line for line in lines if line is not dropped]
        moved = {old.entry_hash: new for old, new in zip(survivors, rebuilt, strict=True)}
        for path in (bundle / "history").glob("*.json"):
            path.write_text(json.dumps(_rewrite_receipts(json.loads(path.read_text()), moved)))
    reseal(bundle, private)
    return dropped


def _rewrite_receipts(value: Any, moved: dict[str, LedgerLine]) -> Any:
    """Every payload in a history, with each receipt (seq and entry hash) pointing at the rebuilt entry."""
    if isinstance(value, dict):
        if "payloads" in value and isinstance(value["payloads"], list):
            for payload in value["payloads"]:
                data = json.loads(base64.b64decode(payload["data"]))
                payload["data"] = base64.b64encode(json.dumps(_moved(data, moved)).encode()).decode()
            return value
        return {k: _rewrite_receipts(v, moved) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_receipts(v, moved) for v in value]
    return value


def _moved(data: Any, moved: dict[str, LedgerLine]) -> Any:
    if isinstance(data, dict):
        data = {k: _moved(v, moved) for k, v in data.items()}
        for seq, digest in (("seq", "entry_hash"), ("ledger_seq", "ledger_entry_hash")):
            if data.get(digest) in moved:
                new = moved[data[digest]]
                data[seq], data[digest] = new.seq, new.entry_hash
        return data
    if isinstance(data, list):
        return [_moved(v, moved) for v in data]
    return data


def _names_kind(found: list[str], kind: str) -> list[str]:
    return [f for f in found if f"] update: {kind}: " in f or f"] step: {kind}: " in f]


@pytest.mark.parametrize("kind", DEMO_KINDS)
def test_an_entry_removed_and_the_chain_rebuilt_is_named_by_kind(copy: Path, audited: Audited, kind: str) -> None:
    _written(copy, kind)
    dropped = _remove(copy, kind, _signing_key(audited), rewrite_receipts=False)
    found = findings(copy, audited.public_key)
    named = _names_kind(found, kind)
    assert len(named) == 1, found
    assert dropped.idempotency_key.split(":", 1)[0] in named[0]  # the history of the workflow that wrote it
    # The histories' receipts no longer match the rebuilt chain from the dropped entry on.
    assert any("ledger_write: " in f and "the entry was removed or the chain rebuilt" in f for f in found)


@pytest.mark.parametrize("kind", DEMO_KINDS)
def test_an_entry_removed_with_every_receipt_rewritten_is_still_named_by_kind(
    copy: Path, audited: Audited, kind: str
) -> None:
    """Only what the histories say was done (the Update, the step) can tell: the receipts were made to agree."""
    _written(copy, kind)
    dropped = _remove(copy, kind, _signing_key(audited), rewrite_receipts=True)
    found = findings(copy, audited.public_key)
    named = _names_kind(found, kind)
    assert len(named) == 1, found
    # Besides, only the dropped entry's own receipt (and for a position, the receipt its delegate was given).
    (receipts,) = [f for f in found if "ledger_write: " in f]
    assert f"seq {dropped.seq}, entry_hash {dropped.entry_hash[:8]}" in receipts
    assert len(found) == 2, found


# --- the converse, and content that differs -----------------------------------------------------------------


def test_an_entry_no_update_made_is_named(copy: Path, audited: Audited) -> None:
    lines = ledger_of(copy)
    comment = next(line for line in lines if line.kind == "comment")
    workflow_id = comment.idempotency_key.split(":", 1)[0]
    forged_payload = {**comment.payload, "comment_id": "forged-1", "text": "A comment nobody sent."}
    forged = dataclasses.replace(
        comment,
        idempotency_key=f"{workflow_id}:comment:forged-1",
        payload_json=json.dumps(forged_payload, sort_keys=True, separators=(",", ":")),
    )
    at = lines.index(comment) + 1
    write_ledger(copy, rechain([*lines[:at], forged, *lines[at:]]))
    reseal(copy, _signing_key(audited))
    found = findings(copy, audited.public_key)
    assert any(
        f"comment {workflow_id}:comment:forged-1 is in the ledger but history/{workflow_id}.json shows no "
        "completed update with that content" in f
        for f in found
    ), found


def test_an_update_in_the_history_without_its_entry_is_named(copy: Path, audited: Audited) -> None:
    """A completed Update added to a round's history (as if the ledger had lost its write) is named."""
    path = copy / "history" / f"{audited.proposal_id}.round-1.json"
    history = json.loads(path.read_text())
    events = history["events"]
    accepted = next(e for e in events if e.get("workflowExecutionUpdateAcceptedEventAttributes"))
    update_id = accepted["workflowExecutionUpdateAcceptedEventAttributes"]["acceptedRequest"]["meta"]["updateId"]
    completed = next(
        e
        for e in events
        if e.get("workflowExecutionUpdateCompletedEventAttributes", {}).get("meta", {}).get("updateId") == update_id
    )
    extra = json.loads(json.dumps([accepted, completed]).replace(update_id, "lost-update-1"))
    for number, event in enumerate(extra, start=len(events) + 1):
        event["eventId"] = str(number)
    events[-1:-1] = extra  # before the close, as a handler finishing in time would be
    path.write_text(json.dumps(history))
    reseal(copy, _signing_key(audited))
    found = findings(copy, audited.public_key)
    assert found == [
        f"history/{path.name} [event {extra[0]['eventId']}] update: position: submit_position lost-update-1 was "
        "accepted and completed but is not in the ledger"
    ]


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("position", "reason", "A reason the delegate never gave."),
        ("disposition", "reason", "Not what the coordinator answered."),
        ("meeting_recorded", "summary", "ADGMIN rejected it."),
        ("round_closed", "verdict", "not_passed"),
        ("stage_ended", "status", "failed"),
        ("proposal_started", "title", "Another title"),
        ("consultation_extended", "by", "P99D"),  # keyed by its Update since consultation-comments-by-hash
    ],
)
def test_an_entry_whose_content_differs_from_the_history_is_named(
    copy: Path, audited: Audited, kind: str, field: str, value: str
) -> None:
    lines = ledger_of(copy)
    target = next(line for line in lines if line.kind == kind)
    payload = {**target.payload, field: value}
    changed = dataclasses.replace(target, payload_json=json.dumps(payload, separators=(",", ":")))
    write_ledger(copy, rechain([changed if line is target else line for line in lines]))
    reseal(copy, _signing_key(audited))
    found = findings(copy, audited.public_key)
    assert any(
        f.startswith(f"{LEDGER} [seq {target.seq}] payload.{field}: the ledger says {value!r}") for f in found
    ), found


@pytest.mark.parametrize("kind", ["version_uploaded", "partner_pledge", "submitted"])
def test_an_entry_found_by_content_whose_content_differs_is_named_twice(
    copy: Path, audited: Audited, kind: str
) -> None:
    """A revision, pledge or submission is found by its content: changed, its Update has no entry and the entry
    has no Update, and both are named."""
    lines = ledger_of(copy)
    target = next(line for line in lines if line.kind == kind)
    payload = json.loads(target.payload_json)
    if kind == "version_uploaded":
        payload["document"]["sha256"] = "0" * 64
    elif kind == "partner_pledge":
        payload["amount"] = "1.00"
    else:
        payload["sha256"] = "0" * 64
    changed = dataclasses.replace(target, payload_json=json.dumps(payload, separators=(",", ":")))
    write_ledger(copy, rechain([changed if line is target else line for line in lines]))
    reseal(copy, _signing_key(audited))
    found = findings(copy, audited.public_key)
    assert len(_names_kind(found, kind)) == 1, found
    assert any(
        f"{kind} {target.idempotency_key} is in the ledger but" in f and "no completed update" in f for f in found
    ), found


# --- mail outcomes, against a constructed history (the mailing's result as the mail helper reports it) ---------

PROPOSAL = "p-mail"
ROUND = f"{PROPOSAL}.round-1"
DOCUMENT = {"sha256": "a" * 64, "version": 1, "filename": "framework.md", "size": 10}
RECIPIENTS = [
    {"state": "MY", "delegate_id": "d-my-1", "outcome": "sent", "code": 250, "reply": "OK"},
    {"state": "SG", "delegate_id": "d-sg-1", "outcome": "refused", "code": 550, "reply": "5.1.1 no such user"},
    {"state": "TH", "delegate_id": "d-th-1", "outcome": "bounced", "code": 554, "reply": "5.7.1 rejected"},
]
NOT_INVITED = [
    {"state": "TL", "reason": "no delegate in role focal_point"},
    {"state": "SG", "reason": "every recipient was refused or bounced"},
]


def _json_payloads(value: Any) -> dict[str, Any]:
    encode = base64.b64encode
    return {
        "payloads": [
            {
                "metadata": {"encoding": encode(b"json/plain").decode()},
                "data": encode(json.dumps(value).encode()).decode(),
            }
        ]
    }


def _mail_ledger(
    *, outcomes: bool = True, drop: str | None = None, recipients: list[dict[str, Any]] | None = None
) -> list[LedgerLine]:
    opened = {"round": 1, "stage": "member_review", "purpose": "review", "document": DOCUMENT, "rule": "consensus"}
    entries = [("round_opened", f"{ROUND}:opened", opened)]
    if outcomes:
        mail = {
            "step": "invitation",
            "round": 1,
            "stage_index": None,
            "recipients": recipients or RECIPIENTS,
            "not_invited": NOT_INVITED,
        }
        entries.append(("mail_outcome", f"{ROUND}:mail:invitation", mail))
        for missing in NOT_INVITED:
            entries.append(
                (
                    "not_invited",
                    f"{ROUND}:not-invited:invitation:{missing['state']}",
                    {"round": 1, "step": "invitation", **missing},
                )
            )
    closed = {"round": 1, "verdict": "not_passed", "reason": "states were not invited", "closed_because": "deadline"}
    entries.append(("round_closed", f"{ROUND}:closed", closed))
    lines = [
        LedgerLine(PROPOSAL, 0, kind, key, json.dumps(payload, sort_keys=True), "2026-12-04T00:00:00.000000Z", "", "")
        for kind, key, payload in entries
        if key != drop
    ]
    return rechain(lines)


def _mail_history(
    ledger: list[LedgerLine], *, outcomes: bool = True, recipients: list[dict[str, Any]] | None = None
) -> bytes:
    """A round that mailed its invitation and wrote each entry of `ledger` with a local activity."""
    events: list[dict[str, Any]] = []

    def add(kind: str, attributes: str, value: dict[str, Any]) -> None:
        events.append({"eventId": str(len(events) + 1), "eventType": f"EVENT_TYPE_{kind}", attributes: value})

    def receipt(line: LedgerLine) -> None:
        data = {"seq": 1, "activity_id": str(line.seq), "activity_type": "append_ledger"}
        result = {"seq": line.seq, "entry_hash": line.entry_hash, "recorded_at": line.recorded_at}
        add(
            "MARKER_RECORDED",
            "markerRecordedEventAttributes",
            {
                "markerName": "core_local_activity",
                "details": {"data": _json_payloads(data), "result": _json_payloads(result)},
            },
        )

    round_input = {
        "proposal_id": PROPOSAL,
        "round": 1,
        "stage_type": "member_review",
        "purpose": "review",
        "document": DOCUMENT,
        "participants": ["MY", "SG", "TH", "TL"],
    }
    add(
        "WORKFLOW_EXECUTION_STARTED",
        "workflowExecutionStartedEventAttributes",
        {"workflowType": {"name": "ReviewRoundWorkflow"}, "input": _json_payloads(round_input)},
    )
    by_kind = {line.kind: line for line in ledger}
    if "round_opened" in by_kind:
        receipt(by_kind["round_opened"])
    mailing = {"proposal_id": PROPOSAL, "round": 1, "step": "invitation", "states": ["MY", "SG", "TH", "TL"]}
    add(
        "ACTIVITY_TASK_SCHEDULED",
        "activityTaskScheduledEventAttributes",
        {"activityId": "2", "activityType": {"name": "send_round_mail"}, "input": _json_payloads(mailing)},
    )
    result: dict[str, Any] = {"sent": 1, "already_sent": 0, "states_without_delegates": ["TL"]}
    if outcomes:
        result |= {"recipients": recipients or RECIPIENTS, "not_invited": NOT_INVITED[:1]}
    add(
        "ACTIVITY_TASK_COMPLETED",
        "activityTaskCompletedEventAttributes",
        {"scheduledEventId": str(len(events)), "result": _json_payloads(result)},
    )
    # A delegate's answer notice reports its recipients too, and is no step of the round: no entry of its own.
    notice = {"proposal_id": PROPOSAL, "round": 1, "state": "MY", "delegate_id": "d-my-1", "decision_id": "x"}
    add(
        "ACTIVITY_TASK_SCHEDULED",
        "activityTaskScheduledEventAttributes",
        {"activityId": "3", "activityType": {"name": "send_answer_notice"}, "input": _json_payloads(notice)},
    )
    add(
        "ACTIVITY_TASK_COMPLETED",
        "activityTaskCompletedEventAttributes",
        {"scheduledEventId": str(len(events)), "result": _json_payloads({**result, "recipients": RECIPIENTS[:1]})},
    )
    for line in ledger:
        if line.kind in ("mail_outcome", "not_invited", "round_closed"):
            receipt(line)
    outcome = {"round": 1, "verdict": "not_passed", "reason": "states were not invited", "closed_because": "deadline"}
    add(
        "WORKFLOW_EXECUTION_COMPLETED", "workflowExecutionCompletedEventAttributes", {"result": _json_payloads(outcome)}
    )
    return json.dumps({"events": events}).encode()


def _mail_findings(ledger: list[LedgerLine], history: bytes) -> list[str]:
    from audit.crosscheck import cross_check
    from audit.history import parse_history

    return [str(f) for f in cross_check(ledger, {ROUND: parse_history(ROUND, history)}).findings]


def test_mail_outcomes_that_agree_with_the_mailing_verify() -> None:
    ledger = _mail_ledger()
    assert _mail_findings(ledger, _mail_history(ledger)) == []


def test_a_round_from_before_mail_outcomes_were_recorded_still_verifies() -> None:
    ledger = _mail_ledger(outcomes=False)
    assert _mail_findings(ledger, _mail_history(ledger, outcomes=False)) == []


def test_a_mail_outcome_that_differs_from_the_mailing_result_is_named() -> None:
    claimed = [{**r, "outcome": "sent", "code": 250} if r["state"] == "TH" else r for r in RECIPIENTS]
    ledger = _mail_ledger(recipients=claimed)
    history = _mail_history(_mail_ledger())  # the mailing's result: TH's message bounced
    found = [f for f in _mail_findings(ledger, history) if "ledger_write" not in f]
    assert len(found) == 1 and found[0].startswith(f"{LEDGER} [seq 2] payload.recipients: the ledger says"), found
    assert "'bounced'" in found[0] and "554" in found[0]


def test_a_state_listed_as_not_invited_that_was_written_to_is_named() -> None:
    claimed = [{**r, "outcome": "sent", "code": 250} if r["state"] == "SG" else r for r in RECIPIENTS]
    ledger = _mail_ledger(recipients=claimed)
    found = _mail_findings(ledger, _mail_history(ledger, recipients=claimed))
    assert found == [f"{LEDGER} [seq 2] payload.not_invited: SG is listed as not invited, but a message to it was sent"]


def test_a_missing_mail_outcome_is_named_and_its_not_invited_entries_are_unlisted() -> None:
    dropped = f"{ROUND}:mail:invitation"
    ledger = _mail_ledger(drop=dropped)
    found = _mail_findings(ledger, _mail_history(ledger))
    assert found[0] == (
        f"history/{ROUND}.json [event 4] step: mail_outcome: the history shows send_round_mail 'invitation' "
        f"ended, but the ledger has no {dropped}"
    )
    assert sorted(found[1:]) == sorted(
        f"{LEDGER} [seq {line.seq}] idempotency_key: not_invited {line.idempotency_key} is in the ledger but "
        f"history/{ROUND}.json shows no mail outcome that lists the state as not invited at that step"
        for line in ledger
        if line.kind == "not_invited"
    )


def test_a_missing_not_invited_entry_is_named() -> None:
    dropped = f"{ROUND}:not-invited:invitation:TL"
    ledger = _mail_ledger(drop=dropped)
    found = _mail_findings(ledger, _mail_history(ledger))
    assert found == [
        f"{LEDGER} [seq 2] payload.not_invited: not_invited: TL is listed as not invited at 'invitation', but the "
        f"ledger has no {dropped}"
    ]


def test_a_mail_outcome_for_a_mailing_the_history_never_made_is_named() -> None:
    ledger = _mail_ledger()
    forged = dataclasses.replace(
        ledger[1],
        idempotency_key=f"{ROUND}:mail:reminder-1",
        payload_json=ledger[1].payload_json.replace('"invitation"', '"reminder-1"'),
    )
    ledger = rechain([*ledger[:2], forged, *ledger[2:]])
    found = _mail_findings(ledger, _mail_history(ledger))
    assert (
        f"{LEDGER} [seq 3] idempotency_key: mail_outcome {ROUND}:mail:reminder-1 is in the ledger but "
        f"history/{ROUND}.json shows no completed mailing whose result it records" in found
    ), found


def test_the_report_shows_who_was_written_to_and_who_was_not_invited() -> None:
    from audit.record import build_record
    from audit.report import render_report

    record = build_record(_mail_ledger())
    (column,) = record.rounds
    assert column.not_invited == {n["state"]: n["reason"] for n in NOT_INVITED}
    (mailing,) = column.mailings
    assert [(r.state, r.outcome, r.code) for r in mailing.recipients] == [
        ("MY", "sent", 250),
        ("SG", "refused", 550),
        ("TH", "bounced", 554),
    ]
    page = render_report(record, None)
    assert 'Not invited</strong><br><span class="small">no delegate in role focal_point' in page
    assert "<td>SG</td><td>d-sg-1</td><td>refused</td><td>550 5.1.1 no such user</td>" in page
    assert "<td>TH</td><td>d-th-1</td><td>bounced</td><td>554 5.7.1 rejected</td>" in page
    assert "1 sent, 1 refused, 1 bounced" in page


# --- a run from before local activities: its histories keep every entry it asked to write ----------------------

HISTORIES = Path(__file__).resolve().parent / "histories"
OLD_RUN = "operational-framework-776ca791"  # recorded when every ledger write was a regular activity


def _old_run() -> tuple[list[LedgerLine], dict[str, Any]]:
    """The old run's ledger, rebuilt from what its histories asked to write and the receipts they got back."""
    from audit.history import parse_history
    from models.ledger import GENESIS_HASH, canonical_json

    workflows = {p.stem: parse_history(p.stem, p.read_bytes()) for p in HISTORIES.glob(f"{OLD_RUN}*.json")}
    writes = sorted(((w, r) for r in workflows.values() for w in r.writes), key=lambda pair: pair[0].seq)
    ledger, previous = [], GENESIS_HASH
    for write, record in writes:
        asked = write.asked or {  # register_proposal's input is the proposal itself
            "proposal_id": record.workflow_id,
            "kind": "proposal_started",
            "idempotency_key": f"{record.workflow_id}:started",
            "payload": record.input[0],
        }
        line = LedgerLine(
            asked["proposal_id"],
            write.seq,
            asked["kind"],
            asked["idempotency_key"],
            canonical_json(asked["payload"]),
            write.recorded_at,
            previous,
            "",
        )
        ledger.append(dataclasses.replace(line, entry_hash=line.computed_hash()))
        previous = ledger[-1].entry_hash
    return ledger, workflows


def test_an_old_run_whose_writes_were_regular_activities_still_verifies() -> None:
    from audit.crosscheck import cross_check

    ledger, workflows = _old_run()
    # The rebuilt entries hash to the receipts the workflows were given: the ledger is that run's own.
    receipts = {w.seq: w.entry_hash for r in workflows.values() for w in r.writes}
    assert [line.entry_hash for line in ledger] == [receipts[seq] for seq in range(1, len(ledger) + 1)]
    assert {line.kind for line in ledger} >= {"proposal_started", "version_uploaded", "position", "round_closed"}
    checked = cross_check(ledger, workflows)
    assert checked.findings == []
    assert checked.entries_vouched == len(ledger)


def test_a_write_answered_with_another_entry_s_receipt_is_named() -> None:
    """What 54c12b0's ledger did with a repeated key, seen in an old run's history: asked one thing, given another."""
    from audit.crosscheck import cross_check

    ledger, workflows = _old_run()
    record = workflows[f"{OLD_RUN}.round-1"]
    at, write = next((i, w) for i, w in enumerate(record.writes) if w.asked and w.asked["kind"] == "position")
    assert write.asked is not None
    asked = {**write.asked, "payload": {**write.asked["payload"], "position": "object"}}
    record.writes[at] = dataclasses.replace(write, asked=asked)
    found = [str(f) for f in cross_check(ledger, workflows).findings]
    assert found == [
        f"history/{OLD_RUN}.round-1.json [event {write.event_id}] ledger_write: the workflow wrote position "
        f"{write.asked['idempotency_key']} but the ledger answered with seq {write.seq}, which holds another "
        "payload: the write was answered with an earlier entry's receipt"
    ]


def test_an_entry_of_an_update_still_in_progress_at_export_is_a_note_not_a_finding() -> None:
    """A running workflow's Update writes its entry before it completes: an export in between sees both halves."""
    from audit.crosscheck import cross_check
    from audit.history import parse_history

    bundle = BUNDLES / "concurrent-revisions"
    (path,) = (bundle / "history").glob("*.json")
    history = json.loads(path.read_text())
    recorded = {line.payload["document"]["sha256"] for line in ledger_of(bundle) if line.kind == "version_uploaded"}
    revisions = {
        e["workflowExecutionUpdateCompletedEventAttributes"]["meta"]["updateId"]: e
        for e in history["events"]
        if "workflowExecutionUpdateCompletedEventAttributes" in e
    }
    # Take away the completion of a revision the ledger did record: as if exported before it completed.
    (kept,) = [
        u
        for u, e in revisions.items()
        if _payload(e["workflowExecutionUpdateCompletedEventAttributes"]["outcome"]["success"])["sha256"]
        == sorted(recorded)[0]
    ]
    history["events"].remove(revisions[kept])
    checked = cross_check(ledger_of(bundle), {path.stem: parse_history(path.stem, json.dumps(history).encode())})
    assert not any(kept in str(f) for f in checked.findings)
    assert any("update was still in progress at export" in note for note in checked.notes)
    assert any(f"revise {kept}" in note and "still in progress" in note for note in checked.notes)


# --- a workflow that continued as new: its runs are read as one ------------------------------------------------


def _split_consultation() -> tuple[list[LedgerLine], dict[str, bytes], str]:
    """The old run's consultation, cut into two runs after its first comments, as continue-as-new would leave it."""
    from audit.verify import RUN_SEPARATOR

    ledger, _ = _old_run()
    events = _events(HISTORIES / f"{OLD_RUN}.consultation-1.json")
    pending, comments, cut = set(), 0, 0
    for at, event in enumerate(events):
        kind = event["eventType"]
        if kind.endswith("ACTIVITY_TASK_SCHEDULED"):
            pending.add(event["eventId"])
        elif kind.endswith("ACTIVITY_TASK_COMPLETED"):
            pending.discard(event["activityTaskCompletedEventAttributes"]["scheduledEventId"])
        elif kind.endswith("UPDATE_COMPLETED"):
            comments += 1
        if comments == 2 and not pending and kind.endswith("WORKFLOW_TASK_COMPLETED"):
            cut = at + 1
            break
    assert cut
    first_run = "11111111-2222-3333-4444-555555555555"
    ended = {"eventId": str(cut + 1), "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"}
    started = json.loads(json.dumps(events[0]))
    started["workflowExecutionStartedEventAttributes"]["continuedExecutionRunId"] = first_run
    workflow_id = f"{OLD_RUN}.consultation-1"
    files = {
        f"history/{workflow_id}{RUN_SEPARATOR}{first_run}.json": json.dumps(
            {"events": [*events[:cut], ended]}
        ).encode(),
        f"history/{workflow_id}.json": json.dumps({"events": [started, *events[cut:]]}).encode(),
    }
    others = {f"history/{p.name}": p.read_bytes() for p in HISTORIES.glob(f"{OLD_RUN}*.json") if p.stem != workflow_id}
    return ledger, {**others, **files}, workflow_id


def _read(files: dict[str, bytes]) -> tuple[dict[str, Any], list[str]]:
    from pathlib import PurePosixPath

    from audit.verify import _read_histories

    problems: list[Any] = []
    workflows = _read_histories([PurePosixPath(name) for name in files], files, problems.append)
    return workflows, [str(p) for p in problems]


def test_the_runs_of_a_workflow_that_continued_as_new_verify_as_one() -> None:
    from audit.crosscheck import cross_check
    from audit.history import parse_history

    ledger, files, workflow_id = _split_consultation()
    workflows, problems = _read(files)
    assert problems == []
    whole = parse_history(workflow_id, (HISTORIES / f"{workflow_id}.json").read_bytes())
    merged = workflows[workflow_id]
    assert merged.updates.keys() == whole.updates.keys() and len(merged.writes) == len(whole.writes)
    assert not merged.continued and merged.completed
    assert [str(f) for f in cross_check(ledger, workflows).findings] == []


def test_a_run_missing_from_a_continued_workflow_is_said_to_be_missing() -> None:
    from audit.crosscheck import cross_check

    ledger, files, workflow_id = _split_consultation()
    latest_only = {name: data for name, data in files.items() if "@" not in name}
    workflows, problems = _read(latest_only)
    assert problems == [] and workflows[workflow_id].continued
    found = [str(f) for f in cross_check(ledger, workflows).findings]
    earlier = [f for f in found if "a run continued from an earlier run" in f]
    assert earlier and all(f" comment {workflow_id}:comment:" in f for f in earlier), found
    # And an earlier run whose latest run is missing is named as such.
    _, problems = _read({name: data for name, data in files.items() if "@" in name})
    assert len(problems) == 1 and "whose latest run's history is missing" in problems[0]


@pytest.mark.parametrize("body_in_entry", [True, False], ids=["entry holds the body", "entry holds its hash"])
@pytest.mark.parametrize("body_in_update", [True, False], ids=["update carries the body", "update carries its hash"])
def test_a_comment_body_may_travel_as_its_hash_on_either_side(body_in_entry: bool, body_in_update: bool) -> None:
    """Comment bodies are stored once by hash: the Update or the entry may hold the hash instead of the text."""
    import hashlib

    from audit.crosscheck import _differences
    from audit.expected import UPDATES
    from audit.history import AcceptedUpdate

    def body(text: str, whole: bool) -> dict[str, Any]:
        return (
            {"text": text}
            if whole
            else {"text_sha256": hashlib.sha256(text.encode()).hexdigest(), "text_length": len(text)}
        )

    text = "Section 4 should name the incident reporting body."
    common = {
        "proposal_id": "p",
        "stage_index": 1,
        "stakeholder_id": "s-1",
        "sector": "academia",
        "document_sha256": "a" * 64,
        "section": None,
    }
    payload = json.dumps({"comment_id": "c-1", **common, **body(text, body_in_entry)})
    line = LedgerLine("p", 1, "comment", "p.consultation-1:comment:c-1", payload, "2026-12-04T00:00:00.000000Z", "", "")

    def differences(sent: str) -> list[str]:
        update = AcceptedUpdate("c-1", "submit_comment", [{**common, **body(sent, body_in_update)}], 5, completed=True)
        (expected,) = UPDATES["submit_comment"]("p.consultation-1", update)
        return [name for name, _, _ in _differences(expected, line)]

    assert differences(text) == []
    assert differences(text.replace("incident", "accident")) != []


# --- the kinds a demo run does not write, each from a constructed history -----------------------------------------


def _update_history(
    workflow_type: str,
    name: str,
    update_id: str,
    args: Any,
    result: Any,
    lines: list[LedgerLine],
    patches: tuple[str, ...] = (),
    mailings: tuple[dict[str, Any], ...] = (),
) -> bytes:
    """A running workflow that completed one Update (or none) and wrote `lines`, each by a local activity."""
    events: list[dict[str, Any]] = []

    def add(kind: str, attributes: str, value: dict[str, Any]) -> None:
        events.append({"eventId": str(len(events) + 1), "eventType": f"EVENT_TYPE_{kind}", attributes: value})

    add(
        "WORKFLOW_EXECUTION_STARTED",
        "workflowExecutionStartedEventAttributes",
        {"workflowType": {"name": workflow_type}, "input": _json_payloads({"round": 1})},
    )
    for patch in patches:
        add(
            "MARKER_RECORDED",
            "markerRecordedEventAttributes",
            {"markerName": "core_patch", "details": {"patch-data": _json_payloads({"id": patch, "deprecated": False})}},
        )
    for mailing in mailings:
        add(
            "ACTIVITY_TASK_SCHEDULED",
            "activityTaskScheduledEventAttributes",
            {
                "activityId": str(len(events)),
                "activityType": {"name": "send_round_mail"},
                "input": _json_payloads(mailing),
            },
        )
        add(
            "ACTIVITY_TASK_COMPLETED",
            "activityTaskCompletedEventAttributes",
            {"scheduledEventId": str(len(events)), "result": _json_payloads({"sent": 1, "already_sent": 0})},
        )
    if name:
        request = {"meta": {"updateId": update_id}, "input": {"name": name, "args": _json_payloads(args)}}
        add(
            "WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
            "workflowExecutionUpdateAcceptedEventAttributes",
            {"acceptedRequest": request},
        )
    for line in lines:
        data = {"seq": 1, "activity_id": str(line.seq), "activity_type": "append_ledger"}
        receipt = {"seq": line.seq, "entry_hash": line.entry_hash, "recorded_at": line.recorded_at}
        add(
            "MARKER_RECORDED",
            "markerRecordedEventAttributes",
            {
                "markerName": "core_local_activity",
                "details": {"data": _json_payloads(data), "result": _json_payloads(receipt)},
            },
        )
    if name:
        add(
            "WORKFLOW_EXECUTION_UPDATE_COMPLETED",
            "workflowExecutionUpdateCompletedEventAttributes",
            {"meta": {"updateId": update_id}, "outcome": {"success": _json_payloads(result)}},
        )
    return json.dumps({"events": events}).encode()


def _lines(*entries: tuple[str, str, dict[str, Any]]) -> list[LedgerLine]:
    return rechain(
        [
            LedgerLine("p", 0, kind, key, json.dumps(payload, sort_keys=True), "2026-12-04T00:00:00.000000Z", "", "")
            for kind, key, payload in entries
        ]
    )


WF = "p.round-1"
CONSTRUCTED = {
    "withdrawn": (
        "ProposalWorkflow",
        "p",
        "withdraw",
        {"reason": "Superseded by the 2027 framework."},
        {"status": "withdrawn"},
        [
            (
                "withdrawn",
                "p:withdrawn",
                {"reason": "Superseded by the 2027 framework.", "stage": "drafting", "round": 0},
            )
        ],
        (),
    ),
    "invitation_resent": (
        "ReviewRoundWorkflow",
        WF,
        "resend",
        {"state": "TL", "deadline": None},
        {"round": 1, "state": "TL", "delegate_ids": ["d-tl-1"], "deadline": "2026-12-11T00:00:00Z"},
        [
            (
                "invitation_resent",
                f"{WF}:resent:u-1",
                {"round": 1, "state": "TL", "delegate_ids": ["d-tl-1"], "deadline": "2026-12-11T00:00:00Z"},
            )
        ],
        (),
    ),
    "delegates_replaced": (
        "ReviewRoundWorkflow",
        WF,
        "roster_changed",
        {"state": "SG", "removed": ["d-sg-old"], "added": ["d-sg-new"]},
        {"round": 1, "state": "SG", "withdrawn": ["d-sg-old"], "invited": ["d-sg-new"]},
        [
            (
                "delegates_replaced",
                f"{WF}:replaced:u-1",
                {"round": 1, "state": "SG", "withdrawn": ["d-sg-old"], "invited": ["d-sg-new"]},
            )
        ],
        (),
    ),
    "disposition (bulk)": (
        "ConsultationWorkflow",
        "p.consultation-1",
        "respond_many",
        {"comment_ids": ["c-1", "c-2"], "all_open": False, "disposition": "noted", "reason": "Out of scope."},
        {"answered": 2, "still_open": 0},
        [
            (
                "disposition",
                f"p.consultation-1:disposition:u-1:{c}",
                {"comment_id": c, "disposition": "noted", "reason": "Out of scope."},
            )
            for c in ("c-1", "c-2")
        ],
        (),
    ),
    "disposition (every open one)": (
        "ConsultationWorkflow",
        "p.consultation-1",
        "respond_many",
        {"comment_ids": [], "all_open": True, "disposition": "noted", "reason": "Out of scope."},
        {"answered": 1, "still_open": 0},
        [
            (
                "disposition",
                "p.consultation-1:disposition:u-1:c-9",
                {"comment_id": "c-9", "disposition": "noted", "reason": "Out of scope."},
            )
        ],
        (),
    ),
    "reminder_sent": (
        "ReviewRoundWorkflow",
        WF,
        "",
        None,
        None,
        [
            (
                "reminder_sent",
                f"{WF}:reminder-1",
                {"round": 1, "reminder": 1, "states": ["LA", "MM"], "stage": "member_review"},
            )
        ],
        ({"step": "reminder-1", "states": ["MM", "LA"]},),
    ),
}


@pytest.mark.parametrize("case", sorted(CONSTRUCTED))
def test_a_kind_no_demo_writes_verifies_and_is_named_when_missing(case: str) -> None:
    from audit.crosscheck import cross_check
    from audit.history import parse_history

    workflow_type, workflow_id, name, args, result, entries, mailings = CONSTRUCTED[case]
    patches = ("ledger-reminders",) if mailings else ()
    lines = _lines(*entries)

    def check(ledger: list[LedgerLine]) -> tuple[list[str], list[str]]:
        raw = _update_history(workflow_type, name, "u-1", args, result, lines, patches, mailings)
        checked = cross_check(ledger, {workflow_id: parse_history(workflow_id, raw)})
        return [str(f) for f in checked.findings], checked.notes

    assert check(lines)[0] == []
    kind = entries[0][0]
    found, notes = check(rechain(lines[1:]))
    if name:  # an Update's entry is written before it completes: missing, it is a finding at once
        assert any(f"] update: {kind}: " in f for f in found), found
    else:  # a step of a round still running may be written yet: a note until the round has closed
        assert any(note.startswith(f"{kind}: the history shows") for note in notes), notes
