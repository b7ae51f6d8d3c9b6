"""The `aisafe` command line: coordinators, auditors, the embedded dev stack and the demo.

Exit codes: 0 success, 1 the thing checked is false or a service failed, 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text
from temporalio.service import RPCError

import operations
from models.controlchars import json_visible, visible
from models.labels import status_text
from models.messages import ProposalState, ProposalStatus, RespondManyResult
from models.positions import Disposition, Position
from models.process import InputFileError
from models.settings import Settings
from models.states import MemberState, in_name_order

T = TypeVar("T")


def examples(*lines: str) -> str:
    """A help epilog listing example invocations, one a line; a trailing `  # …` becomes a comment above it."""
    shown: list[str] = []
    for line in lines:
        command, _, note = line.partition("  # ")
        if note:
            shown.append(f"  [dim]# {escape(note.strip())}[/dim]")
        if command.strip():
            shown.append(f"  {escape(command.strip())}")
    # The leading newline keeps the indent: click's cleandoc strips only what all lines after the first share.
    return "\n[bold]Examples[/bold]\n" + "\n".join(shown)


app = typer.Typer(
    name="aisafe",
    help="Durable governance workflows for the ASEAN AI Safety Network, on Temporal.",
    epilog=examples(
        "aisafe roster import examples/roster.yaml",
        "aisafe propose examples/operational-framework.yaml  # prints the new proposal's id",
        "aisafe status operational-framework-1a2b3c4d",
        "aisafe --install-completion  # tab completion for bash, zsh, fish or PowerShell",
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
)
roster_app = typer.Typer(
    help="Member-state delegates: import and show the roster.",
    epilog=examples("aisafe roster import examples/roster.yaml", "aisafe roster show"),
    no_args_is_help=True,
)
app.add_typer(roster_app, name="roster")
audit_app = typer.Typer(
    help="Audit: export a proposal's sealed record, verify it offline, report on it.",
    epilog=examples(
        "aisafe audit export operational-framework-1a2b3c4d --out bundle/",
        "aisafe audit verify bundle/ --public-key audit.pub",
    ),
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")
db_app = typer.Typer(
    help="The ledger database: apply schema migrations, show the revision.",
    epilog=examples("aisafe db current", "aisafe db upgrade --json"),
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
users_app = typer.Typer(
    help="Coordinator, auditor and ASEAN Secretariat accounts of the web app.",
    epilog=examples('aisafe users add "Audit Office" --role auditor', "aisafe users list"),
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")
members_app = typer.Typer(
    help="ASEAN membership as data: the member states and the day each one's membership took effect.",
    epilog=examples("aisafe members list", 'aisafe members admit TL --name "Timor-Leste" --since 2025-10-26'),
    no_args_is_help=True,
)
app.add_typer(members_app, name="members")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default: $AISAFE_DATA_DIR or .aisafe).")
]


class Failure(Exception):
    """Ends the command with a message on stderr and an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def settings_for(data_dir: Path | None = None, **overrides: Any) -> Settings:
    settings = Settings()
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return settings.model_copy(update=overrides) if overrides else settings


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run async work, turning the errors a user can meet into messages and exit codes."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except InputFileError as exc:
        raise Failure(str(exc), 2) from None
    except operations.LedgerRefused as exc:
        raise Failure(str(exc), 1) from None
    except operations.OperationError as exc:
        raise Failure(str(exc), 2) from None
    except TimeoutError as exc:
        raise Failure(str(exc)) from None
    except RPCError as exc:
        hint = (
            " (is a worker running? start one with `aisafe worker` or `aisafe dev`)" if "imeout" in exc.message else ""
        )
        raise Failure(f"Temporal refused or did not answer: {exc.message}{hint}") from None


def require_codec_keys(settings: Settings) -> None:
    """Refuse to go on without the payload key outside dev mode, or with a malformed one (exit 2)."""
    try:
        _ = settings.codec_keys
    except (RuntimeError, ValueError) as exc:
        raise Failure(str(exc), 2) from None


async def client_for(settings: Settings) -> Any:
    from models.temporal_client import connect, connect_config

    require_codec_keys(settings)
    try:
        return await connect(settings)
    except RuntimeError as exc:
        target = connect_config(settings)["target_host"]
        raise Failure(
            f"cannot reach Temporal at {target} ({exc}); start the stack with `aisafe dev` or set TEMPORAL_ADDRESS"
        ) from None


def engine_for(settings: Settings) -> Any:
    """The ledger database, migrated; a bad or unreachable AISAFE_DATABASE_URL is a one-line error (exit 2)."""
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import init_db

    engine, shown = _database(settings)
    try:
        init_db(engine)
    except SQLAlchemyError as exc:
        raise Failure(f"cannot prepare the database {shown}: {_database_error(exc)}") from None
    from models.membership import load_admitted

    load_admitted(engine)  # states admitted as data are member states in this command too
    return engine


def log_to_file(path: Path) -> None:
    """Every log line, stdlib and structlog, to `path` as JSON: the command's own output stays clean."""
    import logging

    from models.logging import RedactEmails, configure_logging

    # Without this, structlog's default logger prints the in-process web app's request lines to stdout.
    configure_logging("json")
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.addFilter(RedactEmails())
    handler.setFormatter(root.handlers[0].formatter)
    root.handlers[:] = [handler]


def emit_json(value: Any) -> None:
    """JSON on stdout, coloured on a terminal; names stay readable, acting characters are \\u escapes."""
    from rich.highlighter import JSONHighlighter

    text = Text(json_visible(json.dumps(value, default=str, ensure_ascii=False, indent=2)))
    out.print(JSONHighlighter()(text) if out.is_terminal else text, soft_wrap=True)


def key_column(header: str) -> Column:
    """A column of ids, emails or names: other columns wrap first; a terminal too narrow folds it, never cuts it."""
    return Column(header, no_wrap=True)


def print_table(columns: Sequence[str | Column], rows: Iterable[Sequence[str | Text]]) -> None:
    """A table on a terminal; piped, a header line and tab-separated rows, whole and uncoloured, for cut and awk."""
    if out.is_terminal:
        table = Table(*columns, header_style="bold")
        for row in rows:
            # Text, not markup: a title may hold brackets. Folded, not cut, when a column has to be squeezed.
            # Escaped: a comment's ESC or CR must not reach the terminal (a newline stays inside its cell).
            cells = [
                Text(visible(cell, keep_newlines=True))
                if isinstance(cell, str)
                else Text(visible(cell.plain, keep_newlines=True), style=cell.style)
                for cell in row
            ]
            for cell in cells:
                cell.no_wrap, cell.overflow = False, "fold"
            table.add_row(*cells)
        out.print(table)
        return
    headers = [column.header if isinstance(column, Column) else column for column in columns]
    for row in [headers, *rows]:
        cells = (cell.plain if isinstance(cell, Text) else str(cell) for cell in row)
        # Written as is: rich would expand the tabs into spaces. Whitespace (tabs, CR, separators) becomes one
        # space, so a cell cannot fake a column or a row; any other acting character is shown escaped.
        out.file.write("\t".join(visible(" ".join(cell.split())) for cell in cells) + "\n")


POSITION_STYLES = {
    Position.APPROVE: "green",
    Position.APPROVE_WITH_RESERVATION: "green",
    Position.CONFIRM: "green",
    Position.REQUEST_CHANGES: "yellow",
    Position.ABSTAIN: "cyan",
    Position.OBJECT: "bold red",
    Position.DECLINE: "red",
    Position.PARTICIPATE: "green",
    Position.OPT_OUT: "cyan",
    Position.INDICATE: "green",
}
STATUS_STYLES = {
    ProposalState.RUNNING: "cyan",
    ProposalState.ADOPTED: "bold green",
    ProposalState.NOT_ADOPTED: "bold red",
    ProposalState.WITHDRAWN: "dim",
    ProposalState.EXPIRED: "dim",
    ProposalState.AGREED: "bold green",
    ProposalState.ENDORSED: "bold green",
    ProposalState.APPROVED: "bold green",
    ProposalState.NOTED: "green",
    ProposalState.NOT_AGREED: "bold red",
    ProposalState.NOT_ENDORSED: "bold red",
    ProposalState.NOT_FUNDED: "bold red",
}


def _status_words(current: ProposalStatus) -> str:
    """The status as people read it: "endorsed by the ADGMIN; reported to the ASEAN Summit"."""
    return status_text(current.status, current.decided_by, current.summit_reported)


def _in_name_order(states: dict[str, Any]) -> dict[str, Any]:
    """A `--json` mapping keyed by state code, in ASEAN's order (by English name), not by code."""
    ordered = [s.value for s in in_name_order(MemberState(k) for k in states if k in MemberState.__members__)]
    return {k: states[k] for k in ordered} | {k: v for k, v in states.items() if k not in ordered}


@contextmanager
def milestones(caption: str, names: Sequence[str]) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr over `names`, shown only on a terminal so --json and pipes stay clean.

    Yields `reached(line)`: a line starting with one of `names` moves the bar past the ones before it, and
    every line becomes its caption.
    """
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    with bar:
        task = bar.add_task(caption, total=len(names))

        def reached(line: str) -> None:
            passed = next((i for i, name in enumerate(names) if line.startswith(name)), None)
            if passed is not None:
                bar.update(task, completed=max(passed, bar.tasks[0].completed))
            bar.update(task, description=visible(line.strip()), refresh=True)

        yield reached
        bar.update(task, completed=len(names))


# --- roster -----------------------------------------------------------------------------------------


@roster_app.command(
    "import",
    epilog=examples(
        "aisafe roster import examples/roster.yaml",
        "aisafe roster import examples/roster.yaml --json  # counts added, updated, unchanged",
        "aisafe roster import singapore.yaml --replace  # SG's delegation as listed: the open rounds are told",
    ),
)
def roster_import(
    file: Annotated[Path, typer.Argument(help="Roster YAML: delegates with state, role, name, email, timezone.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="The file lists the whole delegation of each state in it: that state's delegates not in the file are "
            "taken off the roster, and every open round is told (the new delegates get their link at once, the old "
            "links stop working).",
        ),
    ] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Import delegates; importing the same file twice changes nothing (keyed by state and email)."""
    from models.roster import load_roster_file

    settings = settings_for(data_dir)
    engine = engine_for(settings)  # first: a roster may name a state admitted as data
    try:
        roster = load_roster_file(file)
    except InputFileError as exc:
        raise Failure(str(exc), 2) from None
    if replace:
        _roster_replace(settings, engine, roster, as_json)
        return
    added, updated, unchanged = operations.import_roster(engine, roster)
    if as_json:
        emit_json({"added": added, "updated": updated, "unchanged": unchanged})
    else:
        out.print(f"{len(roster.delegates)} delegates: {added} added, {updated} updated, {unchanged} unchanged")


def _roster_replace(settings: Settings, engine: Any, roster: Any, as_json: bool) -> None:
    """`roster import --replace`: import, take off the delegates the file no longer lists, tell the open rounds."""
    (added, updated, unchanged), changes = operations.replace_roster(engine, roster)
    removed = sum(len(c.removed) for c in changes)
    told: list[tuple[str, Any]] = []
    unreachable: str | None = None
    if changes:
        try:
            told = run(lambda: _tell_rounds(settings, changes))
        except Failure as failure:
            unreachable = str(failure)
    if as_json:
        emit_json(
            {
                "added": added,
                "updated": updated,
                "unchanged": unchanged,
                "removed": removed,
                "rounds": [
                    {
                        "round_workflow_id": wf,
                        **(r.model_dump(mode="json") if not isinstance(r, str) else {"refused": r}),
                    }
                    for wf, r in told
                ],
                "rounds_not_told": unreachable,
            }
        )
    else:
        out.print(
            f"{len(roster.delegates)} delegates: {added} added, {updated} updated, {unchanged} unchanged, "
            f"{removed} taken off the roster",
            highlight=False,
        )
        for wf, receipt in told:
            if isinstance(receipt, str):
                out.print(visible(f"{wf}: not told ({receipt})"), highlight=False, markup=False)
            else:
                out.print(
                    f"{wf}: {receipt.state.value}: links of {len(receipt.withdrawn)} delegate(s) withdrawn, "
                    f"{len(receipt.invited)} new delegate(s) written to (ledger #{receipt.ledger_seq})",
                    highlight=False,
                    markup=False,
                )
    if unreachable is not None:
        raise Failure(
            f"the roster was imported, but the open rounds were not told: {unreachable}. The removed delegates' links "
            "already stop working; once Temporal answers, give the new delegates their links with "
            "aisafe resend ID --delegate DELEGATE_ID",
            1,
        )


async def _tell_rounds(settings: Settings, changes: Any) -> Any:
    return await operations.tell_rounds(await client_for(settings), changes, settings.task_queue)


@roster_app.command(
    "show",
    epilog=examples(
        "aisafe roster show",
        "aisafe roster show | awk -F'\\t' '$1 == \"SG\"'  # piped: tab-separated, one delegate a line",
        "aisafe roster show --json  # each delegate's id too, for aisafe resend ID --delegate DELEGATE_ID",
    ),
)
def roster_show(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Show the delegates on the roster (revoked ones are not on it), states in ASEAN's order."""
    delegates = operations.roster(engine_for(settings_for(data_dir)))
    # By English name, not code (the sort is stable: each state's roles keep their order; stakeholders stay first).
    delegates.sort(key=lambda d: MemberState(d.state).official_name if d.state else "")
    if as_json:
        emit_json(
            [
                {"state": d.state, "role": d.role, "name": d.name, "email": d.email, "timezone": d.timezone}
                | ({"sector": d.sector, "organisation": d.organisation} if d.sector else {})
                | {"id": d.id}
                for d in delegates
            ]
        )
        return
    print_table(
        ["State / sector", "Role", "Name", key_column("Email"), "Time zone", key_column("Id")],
        ([d.state or d.sector or _no_state(d.role), d.role, d.name, d.email, d.timezone, d.id] for d in delegates),
    )


def _no_state(role: str) -> str:
    return "ASEAN Secretariat" if role == "asean_secretariat" else ""


@roster_app.command(
    "revoke",
    epilog=examples(
        "aisafe roster revoke focal.point@example.org --state SG  # only Singapore's entry",
        "aisafe roster revoke focal.point@example.org  # every entry with this email",
    ),
)
def roster_revoke(
    email: Annotated[str, typer.Argument(help="The delegate's email address.")],
    state: Annotated[str | None, typer.Option(help="Only the entry for this state (two-letter code).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Take a delegate off the roster: every link emailed to them stops working at once (a clear 403 page)."""
    try:
        revoked = operations.revoke_delegate(engine_for(settings_for(data_dir)), email, state)
    except operations.OperationError as exc:
        raise Failure(str(exc), 2) from None
    for record in revoked:
        shown = visible(f"revoked {record.name} ({record.state or record.sector}, {record.role})")
        out.print(shown, highlight=False, markup=False)


# --- proposals --------------------------------------------------------------------------------------


@app.command(
    epilog=examples(
        "aisafe propose examples/operational-framework.yaml",
        'aisafe propose examples/funding-model.yaml --json  # {"id": "…"}',
    )
)
def propose(
    file: Annotated[Path, typer.Argument(help="Proposal YAML: title, kind, lead_state, document, process.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Start a proposal and print its id."""
    settings = settings_for(data_dir)

    async def work() -> str:
        from models.process import load_proposal_file

        load_proposal_file(file, settings.max_document_bytes)  # refuse a bad file before connecting anywhere
        return await operations.propose(await client_for(settings), engine_for(settings), settings, file)

    proposal_id = run(work)
    if as_json:
        emit_json({"id": proposal_id})
    else:
        out.print(visible(proposal_id), highlight=False, markup=False)


@app.command(
    epilog=examples(
        "aisafe status operational-framework-1a2b3c4d",
        "aisafe status operational-framework-1a2b3c4d --json | jq .positions",
    )
)
def status(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False, data_dir: DataDirOpt = None
) -> None:
    """Stage, round, each state's position and the deadline of one proposal."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.status(await client_for(settings), proposal_id)

    current = run(work)
    if as_json:
        data = current.model_dump(mode="json")
        for key in ("positions", "not_invited"):
            data[key] = _in_name_order(data[key])
        for outcome in data["rounds"]:
            outcome["positions"] = _in_name_order(outcome["positions"])
        emit_json(data)
        return
    out.print(Text.assemble((visible(current.title), "bold"), visible(f"  ({current.id})")), highlight=False)
    out.print(
        Text.assemble(
            visible(f"stage: {current.stage}   status: "),
            (visible(_status_words(current)), STATUS_STYLES.get(current.status, "")),
            f"   round: {current.round}",
        ),
        highlight=False,
    )
    out.print(
        visible(f"document: version {current.document.version}, sha256 {current.document.sha256}"),
        highlight=False,
        markup=False,
    )
    if current.deadline:
        out.print(f"deadline: {current.deadline.isoformat()}", highlight=False)
    if current.closed_reason:
        out.print(visible(f"outcome: {current.closed_reason}"), highlight=False, markup=False)
    if current.positions:
        answered = [(state, current.positions[state]) for state in in_name_order(current.positions)]
        print_table(
            ["State", "Position"],
            (
                [
                    f"{state.value} {state.official_name}",
                    _position_cell(p, current.not_invited.get(state)),
                ]
                for state, p in answered
            ),
        )
    if current.overdue_since:
        out.print(
            Text.assemble(("OVERDUE", "bold red"), f" since {current.overdue_since.isoformat()}"), highlight=False
        )
    if current.waiting:
        out.print(Text.assemble(("waiting: ", "bold red"), current.waiting), highlight=False)
    for outcome in current.rounds:
        out.print(
            visible(
                f"round {outcome.round}: {outcome.verdict.value} — {outcome.reason} (closed: {outcome.closed_because})"
            ),
            highlight=False,
            markup=False,
        )
    for line in [*_contribution_lines(current), *_trust_fund_lines(current)]:
        out.print(visible(line), highlight=False, markup=False)


def _contribution_lines(current: Any) -> list[str]:
    """The states' contributions to the core budget in `status`: indicated by focal points, confirmed by offices."""
    lines = []
    for position, what in (
        (Position.INDICATE, "indicated by focal points (subject to domestic clearance)"),
        (Position.CONFIRM, "confirmed by ministers' offices"),
    ):
        given = {
            state: answer.amount
            for outcome in current.rounds
            for state, answer in outcome.positions.items()
            if answer.position is position and answer.amount is not None
        }
        if given:
            from decimal import Decimal

            states = ", ".join(s.value for s in in_name_order(given))
            total = sum(given.values(), Decimal(0))
            lines.append(f"contributions {what}: {total:,.2f} from {len(given)} state(s): {states}")
    return lines


def _trust_fund_lines(current: Any) -> list[str]:
    """Partners' pledges in `status`, apart from the states' contributions to the core budget."""
    if not current.pledges:
        return []
    lines = ["trust fund (dialogue partners' pledges, apart from the core budget):"]
    for pledge in current.pledges:
        earmarked = f" — earmarked to {'; '.join(pledge.activities)}" if pledge.activities else " — not earmarked"
        lines.append(f"  {pledge.partner}: {pledge.amount:,.2f}{earmarked}")
    return lines


def _position_cell(position: Position | None, not_invited: str | None) -> Text:
    """A state's cell in `status`: its position, awaited, or (standing out) not invited and why."""
    if not_invited:
        return Text.assemble(("NOT INVITED", "bold red"), f" — {not_invited}")
    return Text(position.label, POSITION_STYLES[position]) if position else Text("awaited", "dim")


@app.command(
    epilog=examples(
        "aisafe resend operational-framework-1a2b3c4d --state TL  # after the roster lists TL's delegates",
        "aisafe resend operational-framework-1a2b3c4d --state TL --deadline P7D  # and a fresh deadline for TL",
        "aisafe resend operational-framework-1a2b3c4d --delegate TL-1a2b3c4d5e6f7a8b  # one delegate's link again",
    )
)
def resend(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    state: Annotated[str | None, typer.Option("--state", help="The member state to invite again, e.g. TL.")] = None,
    deadline: Annotated[
        str | None, typer.Option("--deadline", help="A fresh deadline for that state, from now (ISO 8601, e.g. P7D).")
    ] = None,
    delegate: Annotated[
        str | None,
        typer.Option(
            "--delegate",
            metavar="DELEGATE_ID",
            help="Write to this one delegate only (an id from `aisafe roster show --json`); the state follows from it.",
        ),
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Invite one state of the open round again (after fixing the roster), or one of its delegates; the ledger
    records it."""
    settings = settings_for(data_dir)
    if state is None and delegate is None:
        raise Failure("name the state with --state XX, or one delegate with --delegate DELEGATE_ID", 2)

    async def work() -> Any:
        return await operations.resend(await client_for(settings), proposal_id, state, deadline, delegate)

    try:
        receipt = run(work)
    except Failure as failure:
        raise Failure(str(failure), 1) from None
    if as_json:
        emit_json(receipt.model_dump(mode="json"))
        return
    out.print(
        f"{receipt.state.value} invited to round {receipt.round}: {len(receipt.delegate_ids)} delegate(s) written to,"
        f" deadline {receipt.deadline.isoformat()} (ledger #{receipt.ledger_seq})",
        highlight=False,
        markup=False,
    )


@app.command(
    "list",
    epilog=examples(
        "aisafe list",
        "aisafe list --stage member_review  # a stage, or a final status such as endorsed",
        "aisafe list --json | jq -r '.[].id'",
    ),
)
def list_command(
    stage: Annotated[str | None, typer.Option(help="Only proposals in this stage or status.")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """List proposals with their stage, status and round."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.list_proposals(await client_for(settings), stage)

    found = run(work)
    if as_json:
        emit_json(
            [
                {
                    "id": s.id,
                    "title": s.title,
                    "kind": s.kind,
                    "stage": s.stage,
                    "status": s.status.value,
                    "round": s.round,
                }
                for s in found
            ]
        )
        return
    if not found and out.is_terminal:
        err.print(visible(f"no proposals{f' in {stage}' if stage else ''}"), highlight=False, markup=False)
        return
    print_table(
        [
            key_column("Id"),
            Column("Title", min_width=12),
            Column("Stage", no_wrap=True),
            Column("Status", no_wrap=True),
            Column("Round", justify="right"),
        ],
        (
            [s.id, s.title, s.stage, Text(_status_words(s), STATUS_STYLES.get(s.status, "")), str(s.round)]
            for s in found
        ),
    )


@app.command(
    epilog=examples(
        "aisafe revise operational-framework-1a2b3c4d examples/operational-framework-v2.md",
        "aisafe revise operational-framework-1a2b3c4d v3.md --json  # the new version's number and sha256",
    )
)
def revise(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help="The new version (Markdown).")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Upload a new version (in drafting, or after changes were requested: starts the next round)."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.revise(
            await client_for(settings), engine_for(settings), proposal_id, file, settings.max_document_bytes
        )

    document = run(work)
    if as_json:
        emit_json(document.model_dump(mode="json"))
    else:
        out.print(visible(f"version {document.version} uploaded (sha256 {document.sha256})"), markup=False)


@app.command(epilog=examples("aisafe submit operational-framework-1a2b3c4d"))
def submit(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False, data_dir: DataDirOpt = None
) -> None:
    """End drafting: the current version goes to the next stage."""
    settings = settings_for(data_dir)

    async def work() -> str:
        return await operations.submit(await client_for(settings), proposal_id)

    sha256 = run(work)
    if as_json:
        emit_json({"id": proposal_id, "submitted_sha256": sha256})
    else:
        out.print(visible(f"submitted (sha256 {sha256})"), markup=False)


@app.command(epilog=examples('aisafe withdraw operational-framework-1a2b3c4d --reason "Superseded by v2"'))
def withdraw(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why the proposal is withdrawn (recorded in the ledger).")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Withdraw a running proposal."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.withdraw(await client_for(settings), proposal_id, reason)

    current = run(work)
    if as_json:
        emit_json(current.model_dump(mode="json"))
    else:
        out.print(visible(f"{proposal_id} withdrawn"), highlight=False, markup=False)


@app.command(
    epilog=examples(
        "aisafe extend operational-framework-1a2b3c4d P7D  # one more week",
        "aisafe extend operational-framework-1a2b3c4d PT48H --json",
    )
)
def extend(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    duration: Annotated[str, typer.Argument(help="ISO 8601 duration to add, e.g. P7D.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Extend the open consultation's deadline, or the open round's (overdue or not): whoever has not answered is
    told the new date. A round's new deadline is the later of its deadline and now, plus DURATION."""
    settings = settings_for(data_dir)
    _checked_duration(duration)

    async def work() -> Any:
        return await operations.extend_open(await client_for(settings), proposal_id, duration)

    try:
        what, deadline, receipt = run(work)
    except Failure as failure:
        raise Failure(str(failure), 1) from None
    if as_json:
        extra = {"round": receipt.round, "states": [s.value for s in receipt.states]} if receipt else {}
        emit_json({"id": proposal_id, "deadline": deadline.isoformat(), "extended": what, **extra})
    elif receipt is None:
        out.print(f"consultation extended to {deadline.isoformat()}")
    else:
        out.print(
            f"round {receipt.round} extended to {deadline.isoformat()}: {_states_told(receipt.states)}"
            f" (ledger #{receipt.ledger_seq})",
            highlight=False,
            markup=False,
        )


def _checked_duration(duration: str) -> None:
    """Refuse a malformed ISO 8601 duration before connecting anywhere (exit 2)."""
    try:
        positive = operations.parse_duration(duration).total_seconds() > 0
    except operations.OperationError as exc:
        raise Failure(str(exc), 2) from None
    if not positive:
        raise Failure(f"{duration!r}: give a positive duration such as P7D", 2)


def _states_told(states: list[MemberState]) -> str:
    return f"{len(states)} silent state(s) told ({', '.join(s.value for s in states)})" if states else "no state silent"


@app.command(
    "silence-procedure",
    epilog=examples(
        "aisafe silence-procedure operational-framework-1a2b3c4d P14D  # unless they object in 14 days they concur",
        "aisafe silence-procedure operational-framework-1a2b3c4d P7D --json",
    ),
)
def silence_procedure(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    duration: Annotated[str, typer.Argument(help="How long the silent states have to object (ISO 8601, e.g. P14D).")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Put an overdue round to its silent states ad referendum: each is written to that unless it objects by the end
    of DURATION it is deemed to concur; then the round decides."""
    settings = settings_for(data_dir)
    _checked_duration(duration)

    async def work() -> Any:
        return await operations.silence_procedure(await client_for(settings), proposal_id, duration)

    try:
        receipt = run(work)
    except Failure as failure:
        raise Failure(str(failure), 1) from None
    if as_json:
        emit_json({"id": proposal_id, **receipt.model_dump(mode="json")})
        return
    assert receipt.deadline is not None
    out.print(
        f"silence procedure in round {receipt.round} until {receipt.deadline.isoformat()}: "
        f"{_states_told(receipt.states)} (ledger #{receipt.ledger_seq})",
        highlight=False,
        markup=False,
    )


@app.command(
    "close-round",
    epilog=examples(
        'aisafe close-round operational-framework-1a2b3c4d --no-consensus --reason "no quorum of answers after P14D"',
        "aisafe close-round operational-framework-1a2b3c4d --no-consensus --json",
    ),
)
def close_round(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    no_consensus: Annotated[
        bool, typer.Option("--no-consensus", help="Required: the round ends without consensus.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the ledger and the record.")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """End an overdue round without consensus: the proposal goes to revision (a new version, then a new round) or
    ends, as its process says (on_no_consensus: revise | end)."""
    if not no_consensus:
        raise Failure("close-round needs --no-consensus: a round is closed early only without consensus", 2)
    if reason is not None and (len(reason) > 2000 or not reason.strip()):
        raise Failure("--reason must be 1 to 2000 characters", 2)
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.close_round(await client_for(settings), proposal_id, reason)

    try:
        receipt = run(work)
    except Failure as failure:
        raise Failure(str(failure), 1) from None
    if as_json:
        emit_json({"id": proposal_id, **receipt.model_dump(mode="json")})
        return
    out.print(
        f"round {receipt.round} closed without consensus (ledger #{receipt.ledger_seq}); "
        f"silent: {', '.join(s.value for s in receipt.states) or 'none'}",
        highlight=False,
        markup=False,
    )


@app.command(
    epilog=examples(
        "aisafe comments operational-framework-1a2b3c4d  # the comment ids",
        "aisafe respond operational-framework-1a2b3c4d 7c9e6679-7425-40de-944b-e07fc1f90ae7 partly"
        ' --reason "Section 4 now covers data protection"',
        "aisafe respond operational-framework-1a2b3c4d d-1f2e… d-9a8b… not_accepted"
        ' --reason "Outside the scope of the framework"  # one disposition for many comments',
        'aisafe respond operational-framework-1a2b3c4d noted --all-open --reason "Noted for the next review"',
    )
)
def respond(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    comments_and_disposition: Annotated[
        list[str],
        typer.Argument(
            metavar="[COMMENT_ID]... DISPOSITION",
            help="Comment ids (none with --all-open), then accepted | partly | noted | not_accepted.",
        ),
    ],
    reason: Annotated[str, typer.Option(help="Why (recorded in the response-to-comments matrix).")],
    all_open: Annotated[bool, typer.Option("--all-open", help="Answer every comment still unanswered.")] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Record the disposition of consultation comments, one or many at once (comment ids: `aisafe comments ID`)."""
    *comment_ids, word = comments_and_disposition
    try:
        disposition = Disposition(word)
    except ValueError:
        choices = " | ".join(d.value for d in Disposition)
        raise Failure(f"{word!r} is not a disposition (the last argument is one of {choices})", 2) from None
    if all_open and comment_ids:
        raise Failure("give comment ids or --all-open, not both", 2)
    if not all_open and not comment_ids:
        raise Failure("name the comments to answer (or --all-open for every unanswered one)", 2)
    settings = settings_for(data_dir)

    async def work() -> Any:
        client = await client_for(settings)
        if len(comment_ids) == 1:
            return await operations.respond(client, proposal_id, comment_ids[0], disposition, reason)
        return await operations.respond_many(client, proposal_id, comment_ids, disposition, reason, all_open=all_open)

    result = run(work)
    if as_json:
        emit_json(result.model_dump(mode="json"))
    elif isinstance(result, RespondManyResult):
        out.print(f"{result.answered} comment(s): {disposition}; {result.still_open} still unanswered")
    else:
        out.print(visible(f"comment {result.comment_id}: {result.disposition}"), highlight=False, markup=False)


@app.command(
    "comments",
    epilog=examples(
        "aisafe comments operational-framework-1a2b3c4d",
        "aisafe comments operational-framework-1a2b3c4d --json  # the full response-to-comments matrix",
    ),
)
def comments_command(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False, data_dir: DataDirOpt = None
) -> None:
    """List the open consultation's comments and their dispositions (the response-to-comments matrix)."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.consultation(await client_for(settings), proposal_id, engine_for(settings))

    matrix = run(work)
    if as_json:
        emit_json(matrix.model_dump(mode="json"))
        return
    out.print(
        f"deadline {matrix.deadline.isoformat()} ({'open' if matrix.is_open else 'closed to comments'})",
        highlight=False,
    )
    print_table(
        [key_column("Comment id"), "Sector", "Section", "Comment", "Disposition", "Reason"],
        (
            [c.comment_id, c.sector.value, c.section or "", c.text or "", str(c.disposition or "—"), c.reason or ""]
            for c in matrix.comments
        ),
    )


@app.command(
    "record-meeting",
    epilog=examples(
        "aisafe record-meeting operational-framework-1a2b3c4d --present BN,KH,ID,LA,MY,MM,PH,SG,TH,VN"
        ' --decision endorsed --paragraph "The Meeting endorsed the ASEAN AI SAFE Operational Framework."'
        ' --reservation SG="on the review clause in paragraph 4"',
        "aisafe record-meeting operational-framework-1a2b3c4d --present BN,KH,ID,LA,MY,MM,PH,SG,TH,TL,VN"
        " --decision referred_back --paragraph-file decision.md  # the text returns to WG-AI",
        "aisafe record-meeting operational-framework-1a2b3c4d adgmin-record.yaml"
        "  # a file: present, decision, paragraph, reservations (or, for meetings scheduled before"
        " decisions were recorded, positions: {MY: approve, …})",
    ),
)
def record_meeting(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[
        Path | None,
        typer.Argument(help="YAML record instead of the options: present, decision, paragraph, reservations."),
    ] = None,
    present: Annotated[
        str | None, typer.Option(help="States present, comma-separated codes (BN,KH,...); the others are absent.")
    ] = None,
    decision: Annotated[
        str | None,
        typer.Option(
            help="The Meeting's decision: endorsed | approved | noted | deferred | referred_back | not_endorsed."
        ),
    ] = None,
    paragraph: Annotated[
        str | None, typer.Option(help="The decision paragraph, as it will appear in the Joint Media Statement.")
    ] = None,
    paragraph_file: Annotated[
        Path | None, typer.Option(help="A UTF-8 file holding the decision paragraph (instead of --paragraph).")
    ] = None,
    reservation: Annotated[
        list[str] | None,
        typer.Option(help='A present state\'s reservation, STATE="text"; repeat for each state.', metavar="XX=TEXT"),
    ] = None,
    held_on: Annotated[
        str | None, typer.Option(help="When the meeting was held, e.g. 2027-01-15T09:00:00+08:00.")
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Record an ADGSOM/ADGMIN meeting: who was present, the Meeting's decision, its paragraph, any reservation.

    States not present are consulted ad referendum on the decision (a silence procedure); `deferred` waits for
    `aisafe reschedule`; `referred_back` returns the text to WG-AI for revision and a new review round."""
    options = [present, decision, paragraph, paragraph_file, held_on] + (reservation or [])
    if file is not None and any(o is not None for o in options):
        raise Failure("give a record FILE or the record's options (--present, --decision, ...), not both", 2)
    if file is None and (present is None or decision is None):
        raise Failure("record the meeting with --present STATES --decision WORD --paragraph TEXT (or a FILE)", 2)
    settings = settings_for(data_dir)

    async def work() -> Any:
        # Refuse a bad record before connecting anywhere.
        if file is not None:
            record: Any = operations.load_meeting_record(file)
        else:
            assert present is not None and decision is not None
            record = operations.meeting_record(
                present=present,
                decision=decision,
                paragraph=paragraph,
                paragraph_file=paragraph_file,
                reservations=reservation or [],
                held_on=held_on,
            )
        return await operations.record_meeting(await client_for(settings), proposal_id, record)

    record = run(work)
    if as_json:
        emit_json(record.model_dump(mode="json"))
    elif record.decision is not None:
        out.print(
            visible(f"meeting recorded: {record.decision.value}; {len(record.present or [])} state(s) present"),
            highlight=False,
            markup=False,
        )
    else:
        out.print(f"meeting recorded: {len(record.positions)} state position(s)")


@app.command(
    epilog=examples(
        "aisafe reschedule operational-framework-1a2b3c4d --date 2027-02-01T09:00:00+08:00",
        'aisafe reschedule operational-framework-1a2b3c4d --date 2027-02-01T09:00:00+08:00 --venue "Jakarta"',
    )
)
def reschedule(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    date: Annotated[
        str, typer.Option(help="The new date and time with its UTC offset, e.g. 2027-02-01T09:00:00+08:00.")
    ],
    venue: Annotated[str | None, typer.Option(help="The new venue (default: unchanged).")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Give the open ADGSOM/ADGMIN meeting a new date: invitations go again, updating the calendar entry.

    Also how a meeting that was cancelled, deferred, or whose date had passed when its stage opened is held."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.reschedule(await client_for(settings), proposal_id, date, venue)

    meeting = run(work)
    if as_json:
        emit_json(meeting.model_dump(mode="json"))
    else:
        where = f" at {meeting.venue}" if meeting.venue else ""
        out.print(visible(f"meeting rescheduled to {meeting.date.isoformat()}{where}"), highlight=False, markup=False)


@app.command(
    "cancel-meeting",
    epilog=examples('aisafe cancel-meeting operational-framework-1a2b3c4d --reason "Venue unavailable"'),
)
def cancel_meeting(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str | None, typer.Option(help="Why, told to the invitees.")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Cancel the open meeting's date (a calendar cancellation to every invitee).

    The proposal stays at the meeting stage and waits for `aisafe reschedule` to set a new date."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.cancel_meeting(await client_for(settings), proposal_id, reason)

    meeting = run(work)
    if as_json:
        emit_json(meeting.model_dump(mode="json"))
    else:
        out.print("meeting cancelled; it waits for a new date (aisafe reschedule)")


@app.command(
    epilog=examples(
        "aisafe pledge funding-model-5e6f7a8b --partner Japan --amount 150000.00",
        "aisafe pledge funding-model-5e6f7a8b --partner Australia --amount 50000 --currency USD",
        'aisafe pledge funding-model-5e6f7a8b --partner Korea --amount 80000 --activity "capacity building"'
        ' --activity "testing cooperation"',
    )
)
def pledge(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    partner: Annotated[str, typer.Option(help="The dialogue partner making the contribution.")],
    amount: Annotated[str, typer.Option(help="Amount, e.g. 150000.00 (in the funding stage's currency).")],
    currency: Annotated[str | None, typer.Option(help="ISO 4217 code; must match the funding stage.")] = None,
    activity: Annotated[
        list[str] | None,
        typer.Option(
            "--activity",
            metavar="NAME",
            help='An activity the pledge is earmarked to (repeatable), e.g. "capacity building".',
        ),
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Record a dialogue partner's trust-fund pledge, earmarked to named activities, apart from the core budget.

    It counts toward the funding stage's budget target only if the process says partner_pledges_count: true."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise Failure(f"{amount!r} is not an amount", 2) from None
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.pledge(await client_for(settings), proposal_id, partner, value, currency, activity)

    recorded = run(work)
    if as_json:
        emit_json(recorded.model_dump(mode="json"))
        return
    earmarked = f", earmarked to {'; '.join(recorded.activities)}" if recorded.activities else ""
    out.print(
        visible(f"pledge recorded: {recorded.partner} {recorded.amount:,.2f} to the trust fund{earmarked}"),
        highlight=False,
        markup=False,
    )


# --- processes --------------------------------------------------------------------------------------


@app.command(
    epilog=examples(
        "TEMPORAL_ADDRESS=temporal.internal:7233 aisafe worker  # keys from AISAFE_SECRET_KEY, AISAFE_CODEC_KEY",
        "aisafe worker --data-dir /var/lib/aisafe",
    )
)
def worker(data_dir: DataDirOpt = None) -> None:
    """Run a worker (production): polls Temporal for proposal and round work."""
    from models.logging import configure_logging
    from worker import run_worker

    settings = settings_for(data_dir)
    configure_logging(settings.log_format)
    _ = settings.signing_key  # refuse to start without a real key outside dev mode
    require_codec_keys(settings)
    asyncio.run(_until_signal(run_worker(settings)))


@app.command(
    epilog=examples(
        "aisafe web --host 0.0.0.0 --port 8000",
        "AISAFE_PUBLIC_URL=https://aisafe.example.org aisafe web  # the base of emailed links",
    )
)
def web(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run the web app (production): action links and dashboard."""
    import uvicorn

    from models.logging import configure_logging
    from web.app import KEEP_ALIVE_SECONDS, create_app

    settings = settings_for(data_dir)
    if host:
        settings = settings.model_copy(update={"web_host": host})
    if port:
        settings = settings.model_copy(update={"web_port": port})
    configure_logging(settings.log_format)
    _ = settings.signing_key
    require_codec_keys(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        log_level="info",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


@app.command(
    epilog=examples(
        "aisafe dev",
        "aisafe dev --sample examples/operational-framework.yaml --roster examples/roster.yaml",
        "aisafe dev --data-dir /tmp/two --web-port 8001 --temporal-port 7234  # a second stack beside the first",
    )
)
def dev(
    data_dir: DataDirOpt = None,
    web_port: Annotated[int, typer.Option(help="Web app port.")] = 8000,
    temporal_port: Annotated[int, typer.Option(help="Temporal dev server port (if one is started).")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal UI port.")] = 8233,
    smtp_port: Annotated[int, typer.Option(help="SMTP sink port.")] = 1025,
    sample: Annotated[Path | None, typer.Option(help="Also import the roster and launch this proposal.")] = None,
    roster_file: Annotated[Path | None, typer.Option("--roster", help="Roster to import with --sample.")] = None,
) -> None:
    """Run the embedded stack in the foreground: Temporal dev server, SMTP sink, worker and web app.

    Reuses a Temporal server already listening at $TEMPORAL_ADDRESS. Stop with Ctrl-C.
    """
    from devstack.services import StackError
    from devstack.stack import EmbeddedStack, StackPorts
    from models.logging import configure_logging
    from models.roster import load_roster_file

    settings = settings_for(data_dir)
    configure_logging(settings.log_format)

    async def work() -> None:
        stack = EmbeddedStack(
            settings.data_dir,
            StackPorts(web=web_port, temporal=temporal_port, ui=ui_port, smtp=smtp_port),
            temporal_address=settings.temporal_address or f"127.0.0.1:{temporal_port}",
        )
        try:
            await stack.start()
        except StackError as exc:
            raise Failure(str(exc)) from None
        try:
            assert stack.settings is not None and stack.client is not None
            address = stack.settings.temporal_address
            out.print("[bold]aisafe dev[/bold] — embedded stack running (Ctrl-C to stop)")
            from models.users import dev_coordinator_token

            token = dev_coordinator_token(engine_for(stack.settings), settings.data_dir)
            out.print(f"  dashboard      {stack.web_url}/  (sign in with the dev coordinator's token: {token})")
            out.print(f"  dev mailbox    {stack.web_url}/dev/mail")
            out.print(f"  Temporal UI    {stack.ui_url or '(the reused server' + chr(39) + 's own UI)'}")
            out.print(
                f"  clear payloads temporal workflow show -w ID --codec-endpoint {stack.web_url}/codec "
                f'--codec-auth "Bearer {token}"  (the UI decodes through the same endpoint)'
            )
            out.print(f"  Temporal       {address}{'  (reused)' if stack.reused_temporal else ''}")
            out.print(f"  SMTP sink      127.0.0.1:{smtp_port} -> {settings.data_dir / 'mail'}")
            out.print(f"  data           {settings.data_dir.resolve()}")
            # AISAFE_DEV=1: the CLI in other shells uses the dev keys in the data dir (payloads are encrypted).
            out.print(
                f"  other shells:  export TEMPORAL_ADDRESS={address} AISAFE_DATA_DIR={settings.data_dir} AISAFE_DEV=1"
            )
            if sample:
                if roster_file:
                    operations.import_roster(engine_for(stack.settings), load_roster_file(roster_file))
                proposal_id = await operations.propose(stack.client, engine_for(stack.settings), stack.settings, sample)
                out.print(f"  sample         proposal {proposal_id} launched: open the dev mailbox")
            sys.stdout.flush()
            await _until_signal(asyncio.Event().wait())
        finally:
            out.print("stopping…")
            await stack.stop()

    run(work)


# The lines devstack.demo.run_demo reports at each stage, in order (indented lines are its closing summary).
DEMO_MILESTONES = (
    "roster",
    "proposed",
    "drafting",
    "first review",
    "consultation",
    "final review",
    "ADGSOM",
    "ADGMIN",
    "funding",
)


@app.command(
    epilog=examples(
        "aisafe demo",
        "aisafe demo --json | jq .status  # progress stays on the terminal, JSON on stdout",
        "aisafe demo --data-dir /tmp/demo-stack",
    )
)
def demo(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Run the whole default process end to end: delegates and stakeholders simulated over HTTP.

    Uses the stack running at $TEMPORAL_ADDRESS / $AISAFE_DATA_DIR, or starts the embedded stack.
    Exits 0 when the proposal is carried (endorsed by the ADGMIN, in the default process).
    """
    from devstack.demo import run_demo
    from devstack.private import make_private
    from devstack.services import free_port, port_open, split_address
    from devstack.stack import EmbeddedStack, StackPorts

    settings = settings_for(data_dir)
    # The demo's own lines are its output; the stack's logs go to a file beside its data (owner-only, as all of it).
    make_private(settings.data_dir)
    log_to_file(settings.data_dir / "demo.log")

    async def work(say: Callable[[str], None]) -> Any:
        address = settings.temporal_address or "127.0.0.1:7233"
        web_up = port_open(settings.web_host, settings.web_port)
        if port_open(*split_address(address)) and web_up and settings.mail_dir.exists():
            say(f"using the running stack at {address} and {settings.base_url}")
            client = await client_for(settings.model_copy(update={"temporal_address": address}))
            return await run_demo(client, engine_for(settings), settings, say)
        say("starting the embedded stack")
        ports = StackPorts(web=free_port(), temporal=free_port(), ui=None, smtp=free_port())
        async with EmbeddedStack(settings.data_dir, ports) as stack:
            assert stack.client is not None and stack.settings is not None
            return await run_demo(stack.client, engine_for(stack.settings), stack.settings, say)

    with milestones("starting", DEMO_MILESTONES) as reached:

        def say(line: str) -> None:
            reached(line)
            if not as_json:
                # Beside a live bar on the same terminal, lines go through the bar's console so they stay above it.
                (err if err.is_terminal and out.is_terminal else out).print(visible(line), markup=False)

        result = run(lambda: work(say))
    from models.outcomes import CARRIED

    carried = result.status.status in CARRIED
    if as_json:
        emit_json(
            {
                "id": result.proposal_id,
                "status": result.status.status.value,
                "stages": [r.model_dump(mode="json") for r in result.status.stages],
                "rounds": [r.model_dump(mode="json") for r in result.status.rounds],
                "receipts": len(result.receipts),
                "comments": len(result.comments),
                "emails": result.emails,
            }
        )
    if not carried:
        raise Failure(f"the demo proposal ended {_status_words(result.status)}: {result.status.closed_reason}")


async def _until_signal(work: Awaitable[Any]) -> None:
    """Run `work` until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, waiter):
        pending.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)


# --- users ------------------------------------------------------------------------------------------


@users_app.command(
    "add",
    epilog=examples(
        'aisafe users add "Audit Office" --role auditor',
        'aisafe users add "Aminah (MY secretariat)" --role coordinator --json  # {"token": …} for scripts',
        'aisafe users add "ASEAN Secretariat" --role asean_secretariat  # reads the dashboard and audit, never acts',
    ),
)
def users_add(
    name: Annotated[str, typer.Argument(help="Who the account is for, e.g. 'Aminah (MY secretariat)'.")],
    role: Annotated[
        str, typer.Option("--role", help="coordinator, auditor, or asean_secretariat (reads the dashboard and audit).")
    ],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a web-app account and print its API token once (only its hash is kept)."""
    from models.users import UserError, UserRole, add_user

    try:
        chosen = UserRole(role)
    except ValueError:
        raise Failure(f"--role must be coordinator, auditor or asean_secretariat, not {role!r}", 2) from None
    try:
        token = add_user(engine_for(settings_for(data_dir)), name, chosen)
    except UserError as exc:
        raise Failure(str(exc), 2) from None
    if as_json:
        emit_json({"name": name, "role": chosen.value, "token": token})
        return
    out.print(visible(f"user {name!r} ({chosen.value}) added. Their API token, shown only now:"), markup=False)
    out.print(token, highlight=False, markup=False)
    out.print("Sign in at /signin with it, or send it as 'Authorization: Bearer <token>'.", highlight=False)


@users_app.command("list", epilog=examples("aisafe users list", "aisafe users list --json"))
def users_list(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """List accounts: name, role, created, revoked (never tokens)."""
    from models.users import list_users

    users = list_users(engine_for(settings_for(data_dir)))
    rows = [{"name": u.name, "role": u.role, "created_at": u.created_at, "revoked_at": u.revoked_at} for u in users]
    if as_json:
        emit_json(rows)
        return
    print_table(
        [key_column("Name"), "Role", "Created", "Revoked"],
        ([row["name"], row["role"], str(row["created_at"])[:19], str(row["revoked_at"] or "")[:19]] for row in rows),
    )


@users_app.command("revoke", epilog=examples('aisafe users revoke "Audit Office"'))
def users_revoke(name: Annotated[str, typer.Argument()], data_dir: DataDirOpt = None) -> None:
    """Revoke an account: its token and its sessions stop working at once."""
    from models.users import UserError, revoke_user

    try:
        revoke_user(engine_for(settings_for(data_dir)), name)
    except UserError as exc:
        raise Failure(str(exc), 2) from None
    out.print(visible(f"user {name!r} revoked"), highlight=False, markup=False)


@users_app.command("signout", epilog=examples('aisafe users signout "Audit Office"'))
def users_signout(name: Annotated[str, typer.Argument()], data_dir: DataDirOpt = None) -> None:
    """End every web session of an account at once (a lost laptop); its API token stays valid."""
    from models.users import UserError
    from models.web_sessions import revoke_sessions

    try:
        ended = revoke_sessions(engine_for(settings_for(data_dir)), name)
    except UserError as exc:
        raise Failure(str(exc), 2) from None
    out.print(f"{ended} session{'' if ended == 1 else 's'} of {name!r} ended", highlight=False)


# --- members ----------------------------------------------------------------------------------------


@members_app.command("list", epilog=examples("aisafe members list", "aisafe members list --json"))
def members_list(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """List the member states in ASEAN's order (by English name), with the day each membership took effect."""
    from datetime import UTC, datetime

    from models.membership import members

    found = members(engine_for(settings_for(data_dir)))
    today = datetime.now(UTC).date()
    if as_json:
        emit_json(
            [
                {
                    "code": m.code,
                    "name": m.name,
                    "member_since": m.member_since.isoformat(),
                    "member": m.member_since <= today,
                }
                for m in found
            ]
        )
        return
    print_table(
        ["Code", "State", "Member since"],
        (
            [m.code, m.name, m.member_since.isoformat() + ("" if m.member_since <= today else " (not yet)")]
            for m in found
        ),
    )


@members_app.command(
    "admit",
    epilog=examples(
        'aisafe members admit TL --name "Timor-Leste" --since 2025-10-26',
        "aisafe members admit TL --since 2025-10-26  # a member's effective date, its name as it is",
    ),
)
def members_admit(
    code: Annotated[str, typer.Argument(metavar="CODE", help="The state's ISO 3166-1 alpha-2 code, e.g. TL.")],
    since: Annotated[str, typer.Option("--since", help="The day membership takes effect (YYYY-MM-DD).")],
    name: Annotated[
        str | None, typer.Option("--name", help="The state's English name, as ASEAN lists it (needed for a new state).")
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Admit a state as a member from a day (or set a member's effective date): rounds and meetings opened on or
    after that day include it; those already open keep their participants."""
    from models.membership import MembershipError, admit

    try:
        member = admit(engine_for(settings_for(data_dir)), code, name, since)
    except MembershipError as exc:
        raise Failure(str(exc), 2) from None
    if as_json:
        emit_json({"code": member.code, "name": member.name, "member_since": member.member_since.isoformat()})
        return
    out.print(
        visible(f"{member.code} {member.name}: a member state from {member.member_since.isoformat()}"),
        highlight=False,
        markup=False,
    )


# --- audit ------------------------------------------------------------------------------------------


@audit_app.command(
    "keygen",
    epilog=examples(
        "aisafe audit keygen --out /etc/aisafe/audit.key  # then set AISAFE_AUDIT_KEY_FILE=/etc/aisafe/audit.key",
        "aisafe audit keygen --json  # the private key in the output: keep it secret",
    ),
)
def audit_keygen(
    key_out: Annotated[
        Path | None, typer.Option("--out", help="Write the private key to this file (mode 600) instead of printing it.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an Ed25519 key that signs audit bundles; prints the public key to publish."""
    from audit import keys

    key = keys.generate()
    private, public = keys.private_text(key), keys.public_text(key)
    if key_out is not None:
        if key_out.exists():
            raise Failure(f"{key_out} exists; refusing to overwrite a key", 2)
        key_out.parent.mkdir(parents=True, exist_ok=True)
        key_out.touch(mode=0o600)
        key_out.write_text(private + "\n")
    if as_json:
        emit_json(
            {"public_key": public, "fingerprint": keys.fingerprint(public), "private_key_file": str(key_out)}
            if key_out
            else {"public_key": public, "fingerprint": keys.fingerprint(public), "private_key": private}
        )
        return
    if key_out is None:
        out.print(f"private key (keep it secret; set it as AISAFE_AUDIT_KEY): {private}", highlight=False)
    else:
        out.print(visible(f"private key written to {key_out}; set AISAFE_AUDIT_KEY_FILE={key_out}"), markup=False)
    out.print(f"public key (publish it beside your bundles): {public}", highlight=False)
    out.print(f"fingerprint: {keys.fingerprint(public)}", highlight=False)


def _audit_key(settings: Settings) -> str:
    try:
        return settings.audit_signing_key
    except RuntimeError as exc:
        raise Failure(str(exc), 2) from None


# What audit.export_bundle reports as it goes, in order.
EXPORT_PHASES = ("reading the ledger", "fetching the Temporal histories", "writing the bundle")


async def _export(settings: Settings, proposal_id: str, target: Path, progress: Callable[[str], None]) -> Any:
    from audit.export import ExportError, export_bundle

    key = _audit_key(settings)
    client = await client_for(settings)
    try:
        return await export_bundle(client, engine_for(settings), proposal_id, target, key, progress)
    except ExportError as exc:
        raise Failure(str(exc), 2) from None


@audit_app.command(
    "export",
    epilog=examples(
        "aisafe audit export operational-framework-1a2b3c4d --out bundle/",
        "aisafe audit export operational-framework-1a2b3c4d --out bundle/ --json  # counts, path and public key",
    ),
)
def audit_export(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    target: Annotated[Path, typer.Option("--out", help="A new (or empty) directory for the bundle.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Write a proposal's sealed bundle: ledger, Temporal histories, documents, process, signed manifest."""
    settings = settings_for(data_dir)
    with milestones("exporting", EXPORT_PHASES) as reached:
        result = run(lambda: _export(settings, proposal_id, target, reached))
    if as_json:
        emit_json({**result.__dict__, "path": str(result.path)})
        return
    out.print(
        visible(
            f"bundle written to {result.path}: {result.ledger_entries} ledger entries, {result.histories} histories, "
            f"{result.documents} document versions, {result.files} files"
        ),
        highlight=False,
        markup=False,
    )
    out.print(f"signed with public key {result.public_key}", highlight=False)


def _public_key_option(value: str | None) -> str | None:
    if value is None:
        return None
    candidate = Path(value)
    if not value.startswith("ed25519:") and candidate.is_file():
        return candidate.read_text().strip()
    return value


@audit_app.command(
    "verify",
    epilog=examples(
        "aisafe audit verify bundle/ --public-key ed25519:Qm9…",
        "aisafe audit verify bundle/ --public-key audit.pub  # a file holding the published key",
        "aisafe audit verify bundle/ --json || echo tampered",
    ),
)
def audit_verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle directory.")],
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="The published public key (ed25519:…) or a file holding it.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle offline: signature, file hashes, hash chain, documents, ledger against history.

    Exit 0 when all hold, 1 with the list of what does not, 2 when the path is not a bundle.
    """
    from audit.bundle import NotABundle
    from audit.keys import KeyFormatError
    from audit.verify import verify_bundle

    try:
        result = verify_bundle(bundle, _public_key_option(public_key))
    except NotABundle as exc:
        raise Failure(str(exc), 2) from None
    except KeyFormatError as exc:
        raise Failure(f"--public-key: {exc}", 2) from None
    if as_json:
        emit_json(result.as_json())
    else:
        counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in result.counts.items())
        if result.ok:
            out.print(visible(f"OK: {bundle} verifies ({counts})"), highlight=False, markup=False)
        else:
            out.print(visible(f"FAILED: {len(result.findings)} finding(s) in {bundle}"), highlight=False, markup=False)
            for finding in result.findings:  # a finding may quote a bundle's text: the bundle is untrusted input
                out.print(visible(f"  {finding}"), highlight=False, markup=False)
        for note in result.notes:
            out.print(visible(f"note: {note}"), highlight=False, markup=False)
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command(
    "report",
    epilog=examples(
        "aisafe audit report operational-framework-1a2b3c4d --out report.html",
        "aisafe audit report operational-framework-1a2b3c4d --bundle bundle/ --out report.html  # offline, no server",
    ),
)
def audit_report(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    target: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Report on this exported bundle instead (no server needed).")
    ] = None,
    public_key: Annotated[str | None, typer.Option("--public-key", help="Verify the bundle against this key.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write one self-contained HTML page: timeline, positions matrix, documents, comments, meetings, pledges,
    and the verification result.
    """
    import tempfile

    from audit.bundle import NotABundle, read_ledger
    from audit.keys import KeyFormatError
    from audit.record import build_record
    from audit.report import render_report
    from audit.verify import verify_bundle

    def write(source: Path) -> Any:
        try:
            verification = verify_bundle(source, _public_key_option(public_key))
        except NotABundle as exc:
            raise Failure(str(exc), 2) from None
        except KeyFormatError as exc:
            raise Failure(f"--public-key: {exc}", 2) from None
        if verification.proposal_id != proposal_id:
            raise Failure(f"{source} is the bundle of {verification.proposal_id}, not {proposal_id}", 2)
        try:
            lines = read_ledger(source)
        except (OSError, ValueError):
            lines = []
        target.write_text(render_report(build_record(lines), verification), encoding="utf-8")
        return verification

    if bundle is not None:
        verification = write(bundle)
    else:
        settings = settings_for(data_dir)
        with tempfile.TemporaryDirectory() as scratch, milestones("exporting", EXPORT_PHASES) as reached:
            run(lambda: _export(settings, proposal_id, Path(scratch) / "bundle", reached))
            verification = write(Path(scratch) / "bundle")
    verdict = "verified" if verification.ok else f"verification FAILED ({len(verification.findings)} findings)"
    out.print(visible(f"report written to {target} ({verdict})"), highlight=False, markup=False)


@audit_app.command(
    "ledger",
    epilog=examples(
        "aisafe audit ledger operational-framework-1a2b3c4d",
        "aisafe audit ledger operational-framework-1a2b3c4d --json | jq -r '.[].entry_hash'",
    ),
)
def audit_ledger(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False, data_dir: DataDirOpt = None
) -> None:
    """Print a proposal's ledger entries in order, with their hashes."""
    from audit.export import ledger_lines

    lines = ledger_lines(engine_for(settings_for(data_dir)), proposal_id)
    if not lines:
        raise Failure(f"no proposal {proposal_id!r} in the ledger", 2)
    if as_json:
        emit_json([{**line.__dict__, "payload": line.payload} for line in lines])
        return
    # One plain line an entry, full hashes: auditors compare them with other copies, so nothing is cut short.
    for line in lines:
        out.print(
            visible(
                f"{line.seq:>5}  {line.recorded_at}  {line.kind:<22} {line.entry_hash}  prev {line.prev_hash}  "
                f"{line.idempotency_key}"
            ),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


# --- database ---------------------------------------------------------------------------------------


def _database_error(exc: BaseException) -> str:
    """The driver's own words on one line, without SQLAlchemy's SQL echo and links."""
    reason = str(getattr(exc, "orig", None) or exc)
    return " ".join(line.strip() for line in reason.splitlines() if line.strip()) or type(exc).__name__


def _database(settings: Settings) -> tuple[Any, str]:
    """The ledger's engine, connected once, and its URL without the password; a bad or unreachable URL is exit 2."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from models.db import make_engine

    try:
        shown = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    except ArgumentError:
        raise Failure(
            "AISAFE_DATABASE_URL is not a database URL (e.g. postgresql://user@host:5432/aisafe or sqlite:///path)", 2
        ) from None
    try:
        engine = make_engine(settings.sqlalchemy_url)
        with engine.connect():
            pass
    except ImportError as exc:
        raise Failure(f"cannot open the database {shown}: its driver is not installed ({exc})", 2) from None
    except (SQLAlchemyError, OSError) as exc:
        raise Failure(f"cannot open the database {shown}: {_database_error(exc)}", 2) from None
    return engine, shown


@db_app.command(
    "upgrade",
    epilog=examples(
        "AISAFE_DATABASE_URL=postgresql://aisafe@db.internal/aisafe aisafe db upgrade",
        "aisafe db upgrade --data-dir .aisafe --json",
    ),
)
def db_upgrade(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Apply the schema migrations up to the newest; a database made before migrations is adopted, rows kept.

    The worker, web app and CLI also do this when they start; run it as a deployment step to migrate first.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import upgrade_db

    engine, shown = _database(settings_for(data_dir))
    try:
        result = upgrade_db(engine)
    except SQLAlchemyError as exc:
        raise Failure(f"migrating {shown} failed: {_database_error(exc)}") from None
    finally:
        engine.dispose()
    if as_json:
        emit_json({"database": shown, "before": result.before, "after": result.after, "adopted": result.adopted})
        return
    if result.adopted:
        outcome = "adopted: its tables, made before migrations, were kept"
    elif result.before == result.after:
        outcome = "already the newest"
    else:
        outcome = "created" if result.before is None else "upgraded"
    out.print(f"{shown}: revision {result.before or 'none'} -> {result.after} ({outcome})", highlight=False)


@db_app.command("current", epilog=examples("aisafe db current", "aisafe db current --json | jq .up_to_date"))
def db_current(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Show the database's schema revision and the newest one this aisafe ships (changes nothing)."""
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import current_revision, head_revision

    engine, shown = _database(settings_for(data_dir))
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        raise Failure(f"reading the revision of {shown} failed: {_database_error(exc)}") from None
    finally:
        engine.dispose()
    head = head_revision()
    if as_json:
        emit_json({"database": shown, "current": current, "head": head, "up_to_date": current == head})
        return
    behind = "" if current == head else "; run `aisafe db upgrade`"
    out.print(f"{shown}: revision {current or 'none'} (newest {head}{behind})", highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; ends the process with os._exit so the exit code is always the one meant.

    (A process that used a Temporal client can abort at interpreter exit: temporalio/sdk-python#300.)
    """
    code = 0
    try:
        result = typer.main.get_command(app).main(args=argv, prog_name="aisafe", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except Failure as exc:
        err.print(f"error: {visible(str(exc), keep_newlines=True)}", highlight=False, markup=False)
        code = exc.code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("aborted")
        code = 1
    except typer.TyperException as exc:  # usage errors: missing argument, unknown option...
        show = getattr(exc, "show", None)
        if show:
            show()
        code = getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
