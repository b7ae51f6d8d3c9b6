"""The command line as a user meets it: help with examples, completion, tables on a terminal, plain text in pipes."""

from __future__ import annotations

import io
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import operations
import starter
from audit.export import ExportResult
from devstack.demo import DemoResult
from models.messages import DocumentRef, ProposalState, ProposalStatus
from models.positions import Position
from models.states import MemberState
from tests.integration import AISAFE

ANSI = "\x1b["
TITLE = "ASEAN AI SAFE Operational Framework [draft 2]"  # brackets: not to be read as markup
RUNNING_ID = "operational-framework-0badc0de"
ADOPTED_ID = "operational-framework-1a2b3c4d"


def all_commands() -> list[list[str]]:
    """Every command and group, as the words that reach it (the root is [])."""

    def walk(command: Any, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(starter.app), [])


def proposal(proposal_id: str, state: ProposalState) -> ProposalStatus:
    document = DocumentRef(sha256="ab" * 32, version=2, filename="framework.md", size=120)
    return ProposalStatus(
        id=proposal_id,
        title=TITLE,
        kind="operational_framework",
        lead_state=MemberState.MY,
        stage="member_review",
        status=state,
        round=2,
        deadline=datetime(2026, 12, 1, tzinfo=UTC),
        positions={MemberState.MY: Position.APPROVE, MemberState.PH: Position.REQUEST_CHANGES, MemberState.VN: None},
        document=document,
        versions=[document],
        rounds=[],
    )


@pytest.fixture
def proposals(monkeypatch: pytest.MonkeyPatch) -> None:
    """`list` and `status` answered without a Temporal server."""

    async def client_for(settings: Any) -> None:
        return None

    async def list_proposals(client: Any, stage: str | None = None) -> list[ProposalStatus]:
        return [proposal(RUNNING_ID, ProposalState.RUNNING), proposal(ADOPTED_ID, ProposalState.ADOPTED)]

    async def status(client: Any, proposal_id: str) -> ProposalStatus:
        return proposal(proposal_id, ProposalState.RUNNING)

    monkeypatch.setattr(starter, "client_for", client_for)
    monkeypatch.setattr(operations, "list_proposals", list_proposals)
    monkeypatch.setattr(operations, "status", status)


def terminal(width: int = 100) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, soft_wrap=True)


# --- help and completion ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", all_commands(), ids=lambda path: " ".join(path) or "aisafe")
def test_every_command_explains_itself_with_examples(path: list[str]) -> None:
    shown = CliRunner().invoke(starter.app, [*path, "--help"])
    assert shown.exit_code == 0, shown.output
    assert "Usage: aisafe" in shown.output and "Examples" in shown.output
    examples = shown.output.split("Examples", 1)[1]
    assert f"aisafe {' '.join(path)}".strip() in examples  # the examples run this very command


def test_the_walk_reaches_every_command() -> None:
    reached = {" ".join(path) for path in all_commands()}
    assert {"status", "list", "demo", "roster show", "audit export", "users list", "db upgrade"} <= reached
    assert len(reached) > 30


def test_help_shows_the_completion_options() -> None:
    shown = CliRunner().invoke(starter.app, ["--help"])
    assert "--install-completion" in shown.output and "--show-completion" in shown.output


def test_show_completion_prints_a_bash_script_for_the_installed_command() -> None:
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run([AISAFE, "--show-completion", "bash"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "_AISAFE_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _aisafe_completion aisafe" in done.stdout


def test_completion_completes_commands_through_the_console_script() -> None:
    env = {**os.environ, "_AISAFE_COMPLETE": "complete_bash", "COMP_WORDS": "aisafe au", "COMP_CWORD": "1"}
    done = subprocess.run([AISAFE], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["audit"]
    env |= {"COMP_WORDS": "aisafe audit ", "COMP_CWORD": "2"}
    done = subprocess.run([AISAFE], capture_output=True, text=True, env=env, timeout=60)
    assert {"export", "verify", "report", "ledger", "keygen"} <= set(done.stdout.split())


# --- tables: rich on a terminal, plain in a pipe -----------------------------------------------------


@pytest.mark.usefixtures("proposals")
def test_list_in_a_pipe_is_tab_separated_whole_and_uncoloured() -> None:
    listed = CliRunner().invoke(starter.app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert ANSI not in listed.output
    lines = listed.output.splitlines()
    assert lines[0].split("\t") == ["Id", "Title", "Stage", "Status", "Round"]
    assert [line.split("\t") for line in lines[1:]] == [
        [RUNNING_ID, TITLE, "member_review", "running", "2"],
        [ADOPTED_ID, TITLE, "member_review", "adopted", "2"],
    ]


@pytest.mark.usefixtures("proposals")
def test_list_json_keeps_its_shape() -> None:
    listed = CliRunner().invoke(starter.app, ["list", "--json"])
    assert json.loads(listed.output) == [
        {"id": RUNNING_ID, "title": TITLE, "kind": "operational_framework", "stage": "member_review"}
        | {"status": "running", "round": 2},
        {"id": ADOPTED_ID, "title": TITLE, "kind": "operational_framework", "stage": "member_review"}
        | {"status": "adopted", "round": 2},
    ]


@pytest.mark.parametrize("width", [120, 80])
@pytest.mark.usefixtures("proposals")
def test_list_on_a_terminal_is_a_table_that_keeps_ids_whole(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    screen = terminal(width)
    monkeypatch.setattr(starter, "out", screen)
    assert CliRunner().invoke(starter.app, ["list"]).exit_code == 0
    shown = screen.file.getvalue()  # type: ignore[attr-defined]
    assert "┃" in shown and ANSI in shown  # a table, coloured
    assert RUNNING_ID in shown and ADOPTED_ID in shown  # on one line each: not wrapped, not cut
    assert "[draft" in shown  # the title's brackets are text, not markup


@pytest.mark.usefixtures("proposals")
def test_status_in_a_pipe_is_plain() -> None:
    shown = CliRunner().invoke(starter.app, ["status", RUNNING_ID])
    assert shown.exit_code == 0, shown.output
    assert ANSI not in shown.output
    lines = shown.output.splitlines()
    assert lines[0] == f"{TITLE}  ({RUNNING_ID})"
    assert "stage: member_review   status: running   round: 2" in lines
    assert ["MY Malaysia", "Approve"] in [line.split("\t") for line in lines]
    assert ["VN Viet Nam", "awaited"] in [line.split("\t") for line in lines]


@pytest.mark.usefixtures("proposals")
def test_status_json_is_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = CliRunner().invoke(starter.app, ["status", RUNNING_ID, "--json"])
    assert json.loads(shown.output) == proposal(RUNNING_ID, ProposalState.RUNNING).model_dump(mode="json")


@pytest.mark.usefixtures("proposals")
def test_status_on_a_terminal_colours_the_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal()
    monkeypatch.setattr(starter, "out", screen)
    assert CliRunner().invoke(starter.app, ["status", RUNNING_ID]).exit_code == 0
    shown = screen.file.getvalue()  # type: ignore[attr-defined]
    assert "Request changes" in shown and "awaited" in shown and "Viet Nam" in shown and TITLE in shown
    assert "\x1b[33mRequest changes" in shown  # yellow


# --- progress: on a terminal's stderr only ---------------------------------------------------------


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def export(settings: Any, proposal_id: str, target: Path, progress: Any) -> ExportResult:
        for phase in starter.EXPORT_PHASES:
            progress(phase)
        return ExportResult(target, proposal_id, "ed25519:key", files=7, ledger_entries=12, histories=3, documents=2)

    monkeypatch.setattr(starter, "_export", export)


@pytest.mark.usefixtures("exported")
def test_export_progress_stays_off_pipes(tmp_path: Path) -> None:
    done = CliRunner().invoke(starter.app, ["audit", "export", ADOPTED_ID, "--out", str(tmp_path / "b"), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["histories"] == 3
    assert done.stderr == ""


@pytest.mark.usefixtures("exported")
def test_export_shows_its_phases_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    screen = terminal()
    monkeypatch.setattr(starter, "err", screen)
    done = CliRunner().invoke(starter.app, ["audit", "export", ADOPTED_ID, "--out", str(tmp_path / "b"), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["files"] == 7  # stdout stays JSON
    bar = screen.file.getvalue()  # type: ignore[attr-defined]
    assert all(phase in bar for phase in starter.EXPORT_PHASES)
    assert "2/3" in bar  # the bar counts the phases passed


DEMO_LINES = [
    "starting the embedded stack",
    "roster: 53 delegates and stakeholders (53 added, 0 updated)",
    "proposed operational-framework-1a2b3c4d",
    "drafting: version 1 submitted",
    "consultation: every comment answered (response-to-comments matrix complete)",
    "final review round 3: consensus; the WG-AI recommends the text for endorsement",
    "ADGSOM ad referendum: 4 concur, the others stay silent until the deadline",
    "ADGMIN meeting at 10:00:00 UTC: waiting for it, then recording the outcome",
    "funding: a dialogue partner pledges 1,000.00 to cover the share of MM",
    "  drafting          passed",
    "outcome: endorsed by the ADGMIN; reported to the ASEAN Summit",
]


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`aisafe demo` against a 'running stack' whose demo only reports its lines."""
    import devstack.demo
    import devstack.services

    async def run_demo(client: Any, engine: Any, settings: Any, say: Any) -> DemoResult:
        for line in DEMO_LINES[1:]:
            say(line)
        return DemoResult(ADOPTED_ID, proposal(ADOPTED_ID, ProposalState.ADOPTED), emails=90)

    async def client_for(settings: Any) -> None:
        return None

    (tmp_path / "mail").mkdir()
    monkeypatch.setenv("AISAFE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AISAFE_DEV", "1")
    monkeypatch.setattr(devstack.demo, "run_demo", run_demo)
    monkeypatch.setattr(devstack.services, "port_open", lambda *_: True)
    monkeypatch.setattr(starter, "client_for", client_for)
    monkeypatch.setattr(starter, "engine_for", lambda settings: None)
    monkeypatch.setattr(starter, "log_to_file", lambda path: None)


@pytest.mark.usefixtures("demo")
def test_demo_in_a_pipe_prints_its_lines_and_nothing_else() -> None:
    done = CliRunner().invoke(starter.app, ["demo"])
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[1:] == DEMO_LINES[1:] and ANSI not in done.stdout
    assert done.stderr == ""


@pytest.mark.usefixtures("demo")
def test_demo_json_on_a_terminal_keeps_the_bar_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal()
    monkeypatch.setattr(starter, "err", screen)
    done = CliRunner().invoke(starter.app, ["demo", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["status"] == "adopted"
    bar = screen.file.getvalue()  # type: ignore[attr-defined]
    adgmin = starter.DEMO_MILESTONES.index("ADGMIN")
    assert "ADGMIN meeting" in bar and f"{adgmin}/{len(starter.DEMO_MILESTONES)}" in bar
