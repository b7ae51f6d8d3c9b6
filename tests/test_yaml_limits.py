"""Every YAML file the CLI reads goes through one loader that refuses anchors and aliases ("billion laughs"),
deep nesting, huge files and non-files, quickly, in little memory, with one clear error naming the file."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import operations
from devstack.demo import EXAMPLES
from models.files import InputFileError
from models.process import load_proposal_file
from models.roster import load_roster_file
from models.yamlfile import MAX_BYTES, MAX_DEPTH, YamlFileError, parse, read_yaml
from tests.integration import cli

LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
)
LOADERS = [load_proposal_file, load_roster_file, operations.load_meeting_record]


def refused(path: Path, loader=read_yaml) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises((YamlFileError, InputFileError)) as caught:
        loader(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    return message


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
def test_billion_laughs_is_refused_at_the_first_alias(tmp_path: Path, loader) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    started = time.perf_counter()
    message = refused(path, loader)
    assert time.perf_counter() - started < 1
    assert "line 1" in message and "anchor &a is not accepted" in message


def test_billion_laughs_fails_fast_in_a_small_address_space_through_the_cli(tmp_path: Path) -> None:
    """The real command in a process capped at 1 GiB of address space: nine levels would need ~10^9 strings."""
    path = tmp_path / "laughs.yaml"
    path.write_text("title: x\n" + LAUGHS)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "aisafe"), "propose", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap,
        env={**os.environ, "AISAFE_DATA_DIR": str(tmp_path / "data"), "AISAFE_DEV": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {path}: line 2, column 4: not valid YAML: anchor &a is not accepted " + (
        "(aliases are refused)"
    )
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("a: *nowhere\n", "alias *nowhere is not accepted"),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "anchor &b is not accepted"),
        ("a: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested more than {MAX_DEPTH} levels deep"),
        ("[" * 100_000 + "]" * 100_000, f"nested more than {MAX_DEPTH} levels deep"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("n: " + "9" * 5000 + "\n", "not valid YAML"),
    ],
    ids=["alias", "merge-key", "python-tag", "deep", "very-deep", "two-documents", "huge-int"],
)
def test_refused_shapes_are_one_line_naming_the_file(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    assert said in refused(path)


def test_large_files_and_non_files_are_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("delegates:\n" + "  - {name: x}\n" * (MAX_BYTES // 14 + 1))
    assert f"the limit is {MAX_BYTES:,} bytes" in refused(big)
    os.mkfifo(tmp_path / "pipe.yaml")  # opening it for reading would wait for a writer forever
    assert "a FIFO, not a regular file" in refused(tmp_path / "pipe.yaml")
    assert "a directory" in refused(tmp_path)
    assert "in /proc" in refused(Path("/proc/self/environ"))
    (tmp_path / "latin1.yaml").write_bytes(b"title: caf\xe9\n")
    assert "UTF-8" in refused(tmp_path / "latin1.yaml")


def test_the_examples_still_load() -> None:
    assert load_roster_file(EXAMPLES / "roster.yaml").delegates
    for name in ("operational-framework.yaml", "funding-model.yaml", "review-round.yaml"):
        assert load_proposal_file(EXAMPLES / name)[0].title


def test_the_cli_refuses_an_aliased_roster_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(
        "delegates:\n  - &d {state: SG, role: focal_point, name: A, email: a@b.sg, timezone: Asia/Singapore}\n  - *d\n"
    )
    done = cli("roster", "import", str(path), env={**os.environ, "AISAFE_DATA_DIR": str(tmp_path / "d")})
    assert done.code == 2 and "anchor &d is not accepted" in done.stderr and str(path) in done.stderr


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20)
_SCALAR = st.one_of(st.integers(), _TEXT, st.booleans(), st.none())
_DATA = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(data=_DATA)
def test_what_a_person_would_write_loads_as_written(data: object) -> None:
    import yaml

    source = yaml.safe_dump(data, allow_unicode=True)
    assert parse(source, "generated.yaml") == yaml.safe_load(source) == data


@settings(max_examples=300, deadline=None)
@given(source=st.text(alphabet="&*!<>[]{}:-,'\"\n #|abc1", max_size=200))
def test_any_text_parses_or_is_refused_with_one_line_naming_the_file(source: str) -> None:
    try:
        parse(source, "hostile.yaml")
    except YamlFileError as exc:
        assert str(exc).startswith("hostile.yaml:") and "\n" not in str(exc)
