"""Reading coordinators' files: YAML and Markdown, with errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from models.localfile import LocalFileError, read_text
from models.yamlfile import YamlFileError, compose, read_yaml

# The default of AISAFE_MAX_DOCUMENT_BYTES (models.settings).
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024


class InputFileError(Exception):
    """A coordinator's file is unreadable or invalid; the message names the file, line and field."""


def format_validation_error(path: Path, error: ValidationError, source: str | None = None) -> str:
    lines = [f"{path}: {error.error_count()} problem(s):"]
    for item in error.errors():
        where = _location(item["loc"])
        line_no = line_of(source, item["loc"]) if source else None
        at = f" (line {line_no})" if line_no else ""
        lines.append(f"  - {where or '(top level)'}{at}: {item['msg']}")
    return "\n".join(lines)


def _location(loc: tuple[int | str, ...]) -> str:
    """`positions.XX` for a bad key of a mapping (pydantic says `positions, XX, [key]`); tags left out."""
    parts = []
    for index, part in enumerate(loc):
        is_key = index + 1 < len(loc) and loc[index + 1] == "[key]"
        if part == "[key]" or (_is_tag(part) and not is_key):
            continue
        parts.append(str(part))
    return ".".join(parts)


def _is_tag(part: int | str) -> bool:
    """Pydantic names the chosen member of a tagged union in error locations; the file has no such key."""
    return isinstance(part, str) and (part[:1].isupper() or part in _STAGE_TAGS)


_STAGE_TAGS = {"drafting", "consultation", "member_review", "senior_officials", "ministerial", "funding"}
_STAGE_TAGS.add("summit_report")  # the optional last stage (issue 18)


def line_of(source: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the YAML node that `loc` names (segments the file has no node for, such as a stage's
    type tag, are skipped); None when the source cannot be walked."""
    try:
        node = compose(source)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                continue
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def load_yaml(path: Path) -> tuple[object, str]:
    """A coordinator's YAML file through the one bounded, alias-free loader (models.yamlfile)."""
    try:
        return read_yaml(path)
    except YamlFileError as exc:
        raise InputFileError(str(exc)) from None


def read_document(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> str:
    """Read a Markdown document version: a regular file of at most `limit` bytes; refuses empty or non-UTF-8."""
    try:
        text = read_text(path, limit, "document")
    except LocalFileError as exc:
        raise InputFileError(str(exc)) from None
    if not text.strip():
        raise InputFileError(f"{path}: document is empty")
    return text
