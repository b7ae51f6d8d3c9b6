"""The `aisafe` command line: coordinators, auditors, the embedded dev stack and the demo.

Exit codes: 0 success, 1 the thing checked is false or a service failed, 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from temporalio.service import RPCError

import operations
from models.positions import Disposition
from models.process import InputFileError
from models.settings import Settings
from models.states import MemberState

T = TypeVar("T")

app = typer.Typer(
    name="aisafe",
    help="Durable governance workflows for the ASEAN AI Safety Network, on Temporal.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
)
roster_app = typer.Typer(help="Member-state delegates: import and show the roster.", no_args_is_help=True)
app.add_typer(roster_app, name="roster")
audit_app = typer.Typer(
    help="Audit: export a proposal's sealed record, verify it offline, report on it.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
db_app = typer.Typer(help="The ledger database: apply schema migrations, show the revision.", no_args_is_help=True)
app.add_typer(db_app, name="db")
users_app = typer.Typer(help="Coordinator and auditor accounts of the web app.", no_args_is_help=True)
app.add_typer(users_app, name="users")

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
    return engine


def log_to_file(path: Path) -> None:
    import logging

    from models.logging import RedactEmails, quiet_noisy_loggers

    handler = logging.FileHandler(path)
    handler.addFilter(RedactEmails())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    quiet_noisy_loggers()


def emit_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


# --- roster -----------------------------------------------------------------------------------------


@roster_app.command("import")
def roster_import(
    file: Annotated[Path, typer.Argument(help="Roster YAML: delegates with state, role, name, email, timezone.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Import delegates; importing the same file twice changes nothing (keyed by state and email).

    Example: aisafe roster import examples/roster.yaml
    """
    from models.roster import load_roster_file

    try:
        roster = load_roster_file(file)
    except InputFileError as exc:
        raise Failure(str(exc), 2) from None
    added, updated, unchanged = operations.import_roster(engine_for(settings_for(data_dir)), roster)
    if as_json:
        emit_json({"added": added, "updated": updated, "unchanged": unchanged})
    else:
        out.print(f"{len(roster.delegates)} delegates: {added} added, {updated} updated, {unchanged} unchanged")


@roster_app.command("show")
def roster_show(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Show the delegates on the roster (revoked ones are not on it)."""
    delegates = operations.roster(engine_for(settings_for(data_dir)))
    if as_json:
        emit_json(
            [
                {"state": d.state, "role": d.role, "name": d.name, "email": d.email, "timezone": d.timezone}
                | ({"sector": d.sector, "organisation": d.organisation} if d.sector else {})
                for d in delegates
            ]
        )
        return
    table = Table("State / sector", "Role", "Name", "Email", "Time zone")
    for d in delegates:
        table.add_row(d.state or d.sector or "", d.role, d.name, d.email, d.timezone)
    out.print(table)


@roster_app.command("revoke")
def roster_revoke(
    email: Annotated[str, typer.Argument(help="The delegate's email address.")],
    state: Annotated[str | None, typer.Option(help="Only the entry for this state (two-letter code).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Take a delegate off the roster: every link emailed to them stops working at once (a clear 403 page).

    Example: aisafe roster revoke focal.point@example.org --state SG
    """
    try:
        revoked = operations.revoke_delegate(engine_for(settings_for(data_dir)), email, state)
    except operations.OperationError as exc:
        raise Failure(str(exc), 2) from None
    for record in revoked:
        out.print(f"revoked {record.name} ({record.state or record.sector}, {record.role})", highlight=False)


# --- proposals --------------------------------------------------------------------------------------


@app.command()
def propose(
    file: Annotated[Path, typer.Argument(help="Proposal YAML: title, kind, lead_state, document, process.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Start a proposal and print its id.

    Example: aisafe propose examples/operational-framework.yaml
    """
    settings = settings_for(data_dir)

    async def work() -> str:
        from models.process import load_proposal_file

        load_proposal_file(file)  # refuse a bad file before connecting anywhere
        return await operations.propose(await client_for(settings), engine_for(settings), settings, file)

    proposal_id = run(work)
    if as_json:
        emit_json({"id": proposal_id})
    else:
        out.print(proposal_id)


@app.command()
def status(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False, data_dir: DataDirOpt = None
) -> None:
    """Stage, round, each state's position and the deadline of one proposal."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.status(await client_for(settings), proposal_id)

    current = run(work)
    if as_json:
        emit_json(current.model_dump(mode="json"))
        return
    out.print(f"[bold]{current.title}[/bold]  ({current.id})")
    out.print(f"stage: {current.stage}   status: {current.status.value}   round: {current.round}")
    out.print(f"document: version {current.document.version}, sha256 {current.document.sha256}")
    if current.deadline:
        out.print(f"deadline: {current.deadline.isoformat()}")
    if current.closed_reason:
        out.print(f"outcome: {current.closed_reason}")
    table = Table("State", "Position")
    for state in MemberState:
        if state in current.positions:
            position = current.positions[state]
            table.add_row(f"{state.value} {state.official_name}", position.label if position else "awaited")
    if current.positions:
        out.print(table)
    for outcome in current.rounds:
        out.print(
            f"round {outcome.round}: {outcome.verdict.value} — {outcome.reason} (closed: {outcome.closed_because})"
        )


@app.command("list")
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
    table = Table("Id", "Title", "Stage", "Status", "Round")
    for s in found:
        table.add_row(s.id, s.title, s.stage, s.status.value, str(s.round))
    out.print(table)


@app.command()
def revise(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help="The new version (Markdown).")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Upload a new version (in drafting, or after changes were requested: starts the next round)."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.revise(await client_for(settings), engine_for(settings), proposal_id, file)

    document = run(work)
    if as_json:
        emit_json(document.model_dump(mode="json"))
    else:
        out.print(f"version {document.version} uploaded (sha256 {document.sha256})")


@app.command()
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
        out.print(f"submitted (sha256 {sha256})")


@app.command()
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
        out.print(f"{proposal_id} withdrawn")


@app.command()
def extend(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    duration: Annotated[str, typer.Argument(help="ISO 8601 duration to add, e.g. P7D.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Extend the open consultation's deadline (stakeholders are told the new date).

    Example: aisafe extend ID P7D
    """
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.extend(await client_for(settings), proposal_id, duration)

    deadline = run(work)
    if as_json:
        emit_json({"id": proposal_id, "deadline": deadline.isoformat()})
    else:
        out.print(f"consultation extended to {deadline.isoformat()}")


@app.command()
def respond(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    comment_id: Annotated[str, typer.Argument(metavar="COMMENT_ID")],
    disposition: Annotated[Disposition, typer.Argument(help="accepted | partly | noted | not_accepted")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the response-to-comments matrix).")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Record the disposition of a consultation comment.

    Example: aisafe respond ID COMMENT_ID partly --reason "Section 4 now covers data protection"
    """
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.respond(await client_for(settings), proposal_id, comment_id, disposition, reason)

    comment = run(work)
    if as_json:
        emit_json(comment.model_dump(mode="json"))
    else:
        out.print(f"comment {comment.comment_id}: {comment.disposition}")


@app.command("comments")
def comments_command(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False, data_dir: DataDirOpt = None
) -> None:
    """List the open consultation's comments and their dispositions (the response-to-comments matrix)."""
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.consultation(await client_for(settings), proposal_id)

    matrix = run(work)
    if as_json:
        emit_json(matrix.model_dump(mode="json"))
        return
    out.print(f"deadline {matrix.deadline.isoformat()} ({'open' if matrix.is_open else 'closed to comments'})")
    table = Table("Comment id", "Sector", "Section", "Comment", "Disposition", "Reason")
    for c in matrix.comments:
        table.add_row(
            c.comment_id, c.sector.value, c.section or "", c.text[:80], str(c.disposition or "—"), c.reason or ""
        )
    out.print(table)


@app.command("record-meeting")
def record_meeting(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help="YAML: positions {STATE: position}, reasons, summary, held_on.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Record an ADGSOM/ADGMIN meeting's outcome and each state's position (after the meeting).

    Example: aisafe record-meeting ID examples/adgmin-record.yaml
    """
    settings = settings_for(data_dir)

    async def work() -> Any:
        operations.load_meeting_record(file)  # refuse a bad file before connecting anywhere
        return await operations.record_meeting(await client_for(settings), proposal_id, file)

    record = run(work)
    if as_json:
        emit_json(record.model_dump(mode="json"))
    else:
        out.print(f"meeting recorded: {len(record.positions)} state position(s)")


@app.command()
def pledge(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    partner: Annotated[str, typer.Option(help="The dialogue partner making the contribution.")],
    amount: Annotated[str, typer.Option(help="Amount, e.g. 150000.00 (in the funding stage's currency).")],
    currency: Annotated[str | None, typer.Option(help="ISO 4217 code; must match the funding stage.")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Record a dialogue partner's contribution to the funding stage.

    Example: aisafe pledge ID --partner "Dialogue Partner A" --amount 150000.00
    """
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise Failure(f"{amount!r} is not an amount", 2) from None
    settings = settings_for(data_dir)

    async def work() -> Any:
        return await operations.pledge(await client_for(settings), proposal_id, partner, value, currency)

    recorded = run(work)
    if as_json:
        emit_json(recorded.model_dump(mode="json"))
    else:
        out.print(f"pledge recorded: {recorded.partner} {recorded.amount:,.2f}")


# --- processes --------------------------------------------------------------------------------------


@app.command()
def worker(data_dir: DataDirOpt = None) -> None:
    """Run a worker (production): polls Temporal for proposal and round work."""
    from models.logging import configure_logging
    from worker import run_worker

    settings = settings_for(data_dir)
    configure_logging(settings.log_format)
    _ = settings.signing_key  # refuse to start without a real key outside dev mode
    require_codec_keys(settings)
    asyncio.run(_until_signal(run_worker(settings)))


@app.command()
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


@app.command()
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


@app.command()
def demo(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Run the whole default process end to end: delegates and stakeholders simulated over HTTP.

    Uses the stack running at $TEMPORAL_ADDRESS / $AISAFE_DATA_DIR, or starts the embedded stack.
    Exits 0 when the proposal is adopted.
    """
    from devstack.demo import run_demo
    from devstack.services import free_port, port_open, split_address
    from devstack.stack import EmbeddedStack, StackPorts

    settings = settings_for(data_dir)
    say = (lambda _: None) if as_json else (lambda line: out.print(line))
    # The demo's own lines are its output; the stack's logs go to a file beside its data.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_to_file(settings.data_dir / "demo.log")

    async def work() -> Any:
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

    result = run(work)
    adopted = result.status.status.value == "adopted"
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
    if not adopted:
        raise Failure(f"the demo proposal ended {result.status.status.value}: {result.status.closed_reason}")


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


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Who the account is for, e.g. 'Aminah (MY secretariat)'.")],
    role: Annotated[str, typer.Option("--role", help="coordinator or auditor.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a web-app account and print its API token once (only its hash is kept).

    Example: aisafe users add "Audit Office" --role auditor
    """
    from models.users import UserError, UserRole, add_user

    try:
        chosen = UserRole(role)
    except ValueError:
        raise Failure(f"--role must be coordinator or auditor, not {role!r}", 2) from None
    try:
        token = add_user(engine_for(settings_for(data_dir)), name, chosen)
    except UserError as exc:
        raise Failure(str(exc), 2) from None
    if as_json:
        emit_json({"name": name, "role": chosen.value, "token": token})
        return
    out.print(f"user {name!r} ({chosen.value}) added. Their API token, shown only now:", highlight=False)
    out.print(token, highlight=False, markup=False)
    out.print("Sign in at /signin with it, or send it as 'Authorization: Bearer <token>'.", highlight=False)


@users_app.command("list")
def users_list(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """List accounts: name, role, created, revoked (never tokens)."""
    from models.users import list_users

    users = list_users(engine_for(settings_for(data_dir)))
    rows = [{"name": u.name, "role": u.role, "created_at": u.created_at, "revoked_at": u.revoked_at} for u in users]
    if as_json:
        emit_json(rows)
        return
    table = Table("Name", "Role", "Created", "Revoked")
    for row in rows:
        table.add_row(row["name"], row["role"], str(row["created_at"])[:19], str(row["revoked_at"] or "")[:19])
    out.print(table)


@users_app.command("revoke")
def users_revoke(name: Annotated[str, typer.Argument()], data_dir: DataDirOpt = None) -> None:
    """Revoke an account: its token and its sessions stop working at once."""
    from models.users import UserError, revoke_user

    try:
        revoke_user(engine_for(settings_for(data_dir)), name)
    except UserError as exc:
        raise Failure(str(exc), 2) from None
    out.print(f"user {name!r} revoked", highlight=False)


# --- audit ------------------------------------------------------------------------------------------


@audit_app.command("keygen")
def audit_keygen(
    key_out: Annotated[
        Path | None, typer.Option("--out", help="Write the private key to this file (mode 600) instead of printing it.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an Ed25519 key that signs audit bundles; prints the public key to publish.

    Example: aisafe audit keygen --out /etc/aisafe/audit.key, then set AISAFE_AUDIT_KEY_FILE=/etc/aisafe/audit.key.
    """
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
        out.print(f"private key written to {key_out}; set AISAFE_AUDIT_KEY_FILE={key_out}", highlight=False)
    out.print(f"public key (publish it beside your bundles): {public}", highlight=False)
    out.print(f"fingerprint: {keys.fingerprint(public)}", highlight=False)


def _audit_key(settings: Settings) -> str:
    try:
        return settings.audit_signing_key
    except RuntimeError as exc:
        raise Failure(str(exc), 2) from None


async def _export(settings: Settings, proposal_id: str, target: Path, progress: Callable[[str], None]) -> Any:
    from audit.export import ExportError, export_bundle

    key = _audit_key(settings)
    client = await client_for(settings)
    try:
        return await export_bundle(client, engine_for(settings), proposal_id, target, key, progress)
    except ExportError as exc:
        raise Failure(str(exc), 2) from None


@audit_app.command("export")
def audit_export(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")],
    target: Annotated[Path, typer.Option("--out", help="A new (or empty) directory for the bundle.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Write a proposal's sealed bundle: ledger, Temporal histories, documents, process, signed manifest.

    Example: aisafe audit export operational-framework-1a2b3c4d --out bundle/
    """
    settings = settings_for(data_dir)
    with err.status("exporting") as spinner:
        result = run(lambda: _export(settings, proposal_id, target, lambda step: spinner.update(step)))
    if as_json:
        emit_json({**result.__dict__, "path": str(result.path)})
        return
    out.print(
        f"bundle written to {result.path}: {result.ledger_entries} ledger entries, {result.histories} histories, "
        f"{result.documents} document versions, {result.files} files",
        highlight=False,
    )
    out.print(f"signed with public key {result.public_key}", highlight=False)


def _public_key_option(value: str | None) -> str | None:
    if value is None:
        return None
    candidate = Path(value)
    if not value.startswith("ed25519:") and candidate.is_file():
        return candidate.read_text().strip()
    return value


@audit_app.command("verify")
def audit_verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle directory.")],
    public_key: Annotated[
        str | None, typer.Option("--public-key", help="The published public key (ed25519:…) or a file holding it.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle offline: signature, file hashes, hash chain, documents, ledger against history.

    Exit 0 when all hold, 1 with the list of what does not, 2 when the path is not a bundle.
    Example: aisafe audit verify bundle/ --public-key ed25519:Qm9…
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
            out.print(f"OK: {bundle} verifies ({counts})", highlight=False)
        else:
            out.print(f"FAILED: {len(result.findings)} finding(s) in {bundle}", highlight=False)
            for finding in result.findings:
                out.print(f"  {finding}", highlight=False, markup=False)
        for note in result.notes:
            out.print(f"note: {note}", highlight=False, markup=False)
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command("report")
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

    Example: aisafe audit report operational-framework-1a2b3c4d --out report.html
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
        with tempfile.TemporaryDirectory() as scratch, err.status("exporting") as spinner:
            run(lambda: _export(settings, proposal_id, Path(scratch) / "bundle", lambda s: spinner.update(s)))
            verification = write(Path(scratch) / "bundle")
    verdict = "verified" if verification.ok else f"verification FAILED ({len(verification.findings)} findings)"
    out.print(f"report written to {target} ({verdict})", highlight=False)


@audit_app.command("ledger")
def audit_ledger(
    proposal_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False, data_dir: DataDirOpt = None
) -> None:
    """Print a proposal's ledger entries in order, with their hashes.

    Example: aisafe audit ledger operational-framework-1a2b3c4d
    """
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
            f"{line.seq:>5}  {line.recorded_at}  {line.kind:<22} {line.entry_hash}  prev {line.prev_hash}  "
            f"{line.idempotency_key}",
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


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Apply the schema migrations up to the newest; a database made before migrations is adopted, rows kept.

    The worker, web app and CLI also do this when they start; run it as a deployment step to migrate first.
    Example: AISAFE_DATABASE_URL=postgresql://aisafe@db.internal/aisafe aisafe db upgrade
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


@db_app.command("current")
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
        err.print(f"error: {exc}", highlight=False, markup=False)
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
