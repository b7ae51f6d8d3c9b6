"""What stakeholders and delegates typed reaches the coordinator's terminal escaped: an ANSI or OSC sequence, a
CR, a backspace or a bidi override shows as `\\x1b`, `\\r`, `\\u202e`, never acts (no faked rows, hidden text or
planted links), in tables, piped rows, single lines and `--json`."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text
from temporalio.testing import WorkflowEnvironment

import operations
import starter
from devstack.demo import EXAMPLES, comment, mails_matching
from devstack.stack import EmbeddedStack
from models.controlchars import acts, visible
from models.db import make_engine
from models.roster import load_roster_file
from tests.integration import acli, embedded_stack, stack_env

# Colour, clear screen, cursor up (fakes a row), an OSC 8 hyperlink (plants a link), a title change, CR and
# backspace (overwrite text), an 8-bit CSI, a right-to-left override (reverses what follows).
HOSTILE = (
    "Fine\x1b[31m red \x1b[2J\x1b[1A| fake row |\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07"
    "\x1b]0;title\x07 text\rhidden\x08\x08 \x9b31m \u202eelbisivni"
)


def raw_controls(output: str) -> list[str]:
    """Acting characters in `output` other than line ends and the piped rows' tab separators (the consoles
    below emit no styling of their own)."""
    return [c for c in output if acts(c) and c not in "\n\t"]


def render(columns: list[str], rows: list[list[str | Text]], *, terminal: bool, monkeypatch: pytest.MonkeyPatch) -> str:
    """starter's table on a "terminal" that takes no colour codes (so every ESC would be the input's), or piped."""
    buffer = io.StringIO()
    monkeypatch.setattr(starter, "out", Console(file=buffer, force_terminal=terminal, color_system=None, width=100))
    starter.print_table(columns, rows)
    return buffer.getvalue()


def test_a_hostile_comment_is_shown_escaped_in_the_table_and_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    for terminal in (True, False):
        shown = render(["Id", "Comment"], [["c1", HOSTILE]], terminal=terminal, monkeypatch=monkeypatch)
        assert raw_controls(shown) == [], (terminal, shown)
        flat = "".join(shown.split())  # the table folds long cells; the escapes are there, whole or folded
        for escape in ("\\x1b[31m", "\\x1b]8;;https://evil.example/\\x07", "\\x9b", "\\u202e", "\\x08"):
            assert escape in flat, (terminal, escape)
    piped = render(["Id", "Comment"], [["c1", HOSTILE]], terminal=False, monkeypatch=monkeypatch)
    assert len(piped.splitlines()) == 2 and piped.splitlines()[1].count("\t") == 1  # no faked row or column


_ANY = st.text(st.characters(), max_size=120)


@settings(max_examples=200, deadline=None)
@given(cells=st.lists(_ANY, min_size=1, max_size=4), styled=_ANY)
def test_no_cell_text_reaches_the_terminal_raw(cells: list[str], styled: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for terminal in (True, False):
            columns = [f"c{i}" for i in range(len(cells) + 1)]
            shown = render(columns, [[*cells, Text(styled, "bold")]], terminal=terminal, monkeypatch=monkeypatch)
            assert raw_controls(shown) == []
            if not terminal:
                assert len(shown.splitlines()) == 2  # one header, one row, whatever the cells hold


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(_ANY, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ANY, inner, max_size=3)))
def test_json_output_escapes_every_acting_character_and_reads_back_the_same(value: object) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for terminal in (True, False):
            buffer = io.StringIO()
            monkeypatch.setattr(starter, "out", Console(file=buffer, force_terminal=terminal, color_system=None))
            starter.emit_json(value)
            assert raw_controls(buffer.getvalue()) == []
            assert json.loads(buffer.getvalue()) == value


@settings(max_examples=300, deadline=None)
@given(text=_ANY)
def test_visible_text_holds_no_acting_character_and_keeps_the_rest(text: str) -> None:
    shown = visible(text)
    assert raw_controls(shown) == [] and "\n" not in shown
    acting = [c for c in text if acts(c)]
    assert shown == text if not acting else len(shown) > len(text)


# --- the real flow: a stakeholder's comment with escape sequences, then `aisafe comments` -------------------


@pytest.fixture
async def stack(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[EmbeddedStack]:
    async with embedded_stack(tmp_path / "data", dev_env.client.service_client.config.target_host) as running:
        yield running


async def test_aisafe_comments_shows_a_typed_escape_sequence_escaped(tmp_path: Path, stack: EmbeddedStack) -> None:
    assert stack.settings and stack.client
    shutil.copy(EXAMPLES / "operational-framework.md", tmp_path / "framework.md")
    (tmp_path / "proposal.yaml").write_text(
        "title: Framework\nkind: operational_framework\nlead_state: MY\ndocument: framework.md\n"
        "process:\n  stages:\n    - {type: consultation, deadline: P1D}\n    - {type: member_review}\n"
    )
    engine = make_engine(stack.settings.sqlalchemy_url)
    operations.import_roster(engine, load_roster_file(EXAMPLES / "roster.yaml"))
    proposal_id = await operations.propose(stack.client, engine, stack.settings, tmp_path / "proposal.yaml")
    try:
        invited = await mails_matching(
            stack.settings.mail_dir, proposal_id, lambda m: "/comment/" in m.link, 1, "a consultation invitation"
        )
        async with httpx.AsyncClient(timeout=30) as http:
            await comment(http, invited[0].link, HOSTILE, "4.1\x1b[8m")
        env = stack_env(stack)
        text = await acli("comments", proposal_id, env=env)
        as_json = await acli("comments", proposal_id, "--json", env=env)
    finally:
        await stack.client.get_workflow_handle(proposal_id).terminate("test finished")
        engine.dispose()
    assert text.code == 0 and as_json.code == 0, text.stderr + as_json.stderr
    assert raw_controls(text.stdout) == [] and raw_controls(as_json.stdout) == []
    row = next(line for line in text.stdout.splitlines() if "fake row" in line)
    assert "\\x1b[31m" in row and "\\x1b]8;;https://evil.example/\\x07" in row and "\\u202e" in row
    (stored,) = as_json.json()["comments"]
    assert "\x1b]8;;https://evil.example/" in stored["text"]  # the record keeps what was typed; only output escapes
