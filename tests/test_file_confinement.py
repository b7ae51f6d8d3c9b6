"""A proposal's `document:` is read only from the proposal file's folder, only as a regular file, and only up to
the size limit; every refusal is one line naming the proposal file and the path as written."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.demo import EXAMPLES
from models.files import read_document
from models.localfile import LocalFileError, confined, read_bounded
from models.process import InputFileError, load_proposal_file
from models.settings import Settings

PROPOSAL = (EXAMPLES / "review-round.yaml").read_text()
BODY = "# Framework\n\n1.1 Scope of the framework.\n"


def proposal_naming(folder: Path, document: str) -> Path:
    """A proposal file in `folder` whose document is `document`, written as a quoted YAML string."""
    folder.mkdir(parents=True, exist_ok=True)
    quoted = document.replace("\\", "\\\\").replace('"', '\\"')
    path = folder / "proposal.yaml"
    path.write_text(PROPOSAL.replace("document: operational-framework.md", f'document: "{quoted}"'))
    return path


def refusal(path: Path, **limits: int) -> str:
    with pytest.raises(InputFileError) as caught:
        load_proposal_file(path, **limits)
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(path) in message or "proposal.yaml" in message, message
    return message


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    inside = tmp_path / "proposals" / "framework"
    inside.mkdir(parents=True)
    (inside / "framework.md").write_text(BODY)
    (inside / "annex").mkdir()
    (inside / "annex" / "part-2.md").write_text(BODY)
    (tmp_path / "secret.txt").write_text("not for delegates\n")
    return inside


def test_a_document_in_the_folder_or_below_is_read(folder: Path) -> None:
    for named in (
        "framework.md",
        "./framework.md",
        "annex/part-2.md",
        "annex/../framework.md",
        str(folder / "framework.md"),
    ):
        proposal, body = load_proposal_file(proposal_naming(folder, named))
        assert body == BODY and proposal.document == named


@pytest.mark.parametrize(
    "named",
    [
        "../secret.txt",
        "../../secret.txt",
        "annex/../../../secret.txt",
        "/etc/passwd",
        "/proc/self/environ",
        "/dev/zero",
    ],
)
def test_a_path_leading_out_of_the_folder_is_refused(folder: Path, named: str) -> None:
    message = refusal(proposal_naming(folder, named))
    assert f"document {named!r}" in message and ("outside" in message or "no such file" in message), message


def test_a_symlink_out_of_the_folder_is_refused_and_one_inside_is_followed(folder: Path) -> None:
    (folder / "innocent.md").symlink_to(folder.parent.parent / "secret.txt")
    (folder / "environ.md").symlink_to("/proc/self/environ")
    (folder / "alias.md").symlink_to(folder / "framework.md")
    (folder / "loop.md").symlink_to(folder / "loop.md")
    assert "outside" in refusal(proposal_naming(folder, "innocent.md"))
    assert "outside" in refusal(proposal_naming(folder, "environ.md"))
    assert "cannot be followed" in refusal(proposal_naming(folder, "loop.md"))
    assert load_proposal_file(proposal_naming(folder, "alias.md"))[1] == BODY


def test_directories_fifos_sockets_and_the_folder_itself_are_refused(folder: Path) -> None:
    os.mkfifo(folder / "pipe.md")  # reading it would block the command forever
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "socket.md"))
    try:
        assert "a directory, not a regular file" in refusal(proposal_naming(folder, "annex"))
        assert "a FIFO, not a regular file" in refusal(proposal_naming(folder, "pipe.md"))
        assert "not a regular file" in refusal(proposal_naming(folder, "socket.md"))
        assert "outside" in refusal(proposal_naming(folder, "."))
    finally:
        listener.close()


def test_a_document_over_the_limit_is_refused_before_it_is_read(folder: Path) -> None:
    big = folder / "big.md"
    with big.open("wb") as handle:
        handle.truncate(5 * 1024 * 1024 + 1)  # sparse: nothing is written
    message = refusal(proposal_naming(folder, "big.md"))
    assert "5,242,881 bytes (5.2 MB); the limit is 5,242,880 bytes (5.2 MB)" in message and str(big) in message
    (folder / "small.md").write_text(BODY * 10)
    assert "the limit is 100 bytes" in refusal(proposal_naming(folder, "small.md"), max_document_bytes=100)
    assert load_proposal_file(proposal_naming(folder, "small.md"), max_document_bytes=len(BODY) * 10)[1]


def test_the_limit_is_a_setting_with_a_default_of_5_mb(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_document_bytes == 5 * 1024 * 1024
    monkeypatch.setenv("AISAFE_MAX_DOCUMENT_BYTES", "1000")
    assert Settings().max_document_bytes == 1000


def test_a_revision_named_on_the_command_line_must_be_a_regular_file_within_the_limit(folder: Path) -> None:
    assert read_document(folder / "framework.md") == BODY
    for special, said in (
        (Path("/proc/self/environ"), "in /proc"),
        (Path("/dev/zero"), "in /dev"),
        (folder, "directory"),
    ):
        with pytest.raises(InputFileError, match=said):
            read_document(special)
    with pytest.raises(InputFileError, match="limit is 10 bytes"):
        read_document(folder / "framework.md", 10)


# Path strings as a hostile proposal file could write them: separators, dots, names of the folder's files and of
# files outside it, absolute roots, NUL and other control bytes, very long names.
_PARTS = st.sampled_from(["..", ".", "", "framework.md", "annex", "part-2.md", "secret.txt", "proc", "self", "etc"])
_PATHS = st.one_of(
    st.lists(_PARTS, min_size=1, max_size=8).map("/".join),
    st.lists(_PARTS, min_size=1, max_size=8).map(lambda parts: "/" + "/".join(parts)),
    st.text(min_size=1, max_size=300),
    st.text(alphabet="./\\\x00\n~", min_size=1, max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(named=_PATHS)
def test_any_path_string_yields_a_file_inside_the_folder_or_a_one_line_refusal(folder: Path, named: str) -> None:
    try:
        real = confined(folder, named, "document")
    except LocalFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("document ")
        return
    assert real.is_relative_to(folder.resolve()) and real != folder.resolve()
    try:
        data = read_bounded(real, 1_000_000, "document")
    except LocalFileError as exc:
        assert "directory" in str(exc)  # the only non-file inside the folder
        return
    assert data == BODY.encode()
    assert "secret" not in data.decode()
