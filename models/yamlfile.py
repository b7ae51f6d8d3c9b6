"""The one YAML loader for every file the CLI reads: safe types only, no anchors or aliases, bounded in size,
depth and node count, with errors that name the file and line.

Aliases are refused rather than capped: a "billion laughs" file is a few hundred bytes whose aliases expand to
gigabytes, and no process, roster or proposal file needs them (write the value out). Refusing them at the
composer stops such a file before anything is built, in constant memory.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.composer import ComposerError
from yaml.nodes import Node

from models.localfile import LocalFileError, read_text

MAX_BYTES = 1_000_000  # a roster of thousands of delegates is a few hundred kB
MAX_DEPTH = 32  # our deepest file (a process: stages, a stage, its shares) nests 4 deep
MAX_NODES = 200_000


class YamlFileError(ValueError):
    """A YAML file that cannot be read or parsed; the message is one line naming the file (and the line)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors and aliases and documents too deep or with too many nodes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: object) -> Node | None:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(
                None, None, f"alias *{event.anchor} is not accepted: write the value out in full", event.start_mark
            )
        if getattr(event, "anchor", None):
            raise ComposerError(
                None, None, f"anchor &{event.anchor} is not accepted (aliases are refused)", event.start_mark
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES:,} values", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def parse(source: str, shown: str) -> object:
    """The data of one YAML document; YamlFileError names `shown` and the line of the problem."""
    loader = _BoundedLoader(source)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        said = ", ".join(filter(None, [getattr(exc, "context", None), getattr(exc, "problem", None)])) or str(exc)
        raise YamlFileError(f"{shown}:{at} not valid YAML: {' '.join(said.split())}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise YamlFileError(f"{shown}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def compose(source: str) -> Node | None:
    """The node tree of a document already parsed by `parse` (for finding the line of a field)."""
    loader = _BoundedLoader(source)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    finally:
        loader.dispose()


def read_yaml(path: Path, limit: int = MAX_BYTES) -> tuple[object, str]:
    """A YAML file's data and its text: a regular UTF-8 file of at most `limit` bytes."""
    try:
        source = read_text(path, limit, "YAML file")
    except LocalFileError as exc:
        raise YamlFileError(str(exc)) from None
    return parse(source, str(path)), source
