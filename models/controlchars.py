"""Characters that act instead of showing: control codes, line and paragraph separators, bidi and other format
characters. Refused in text that reaches an email header; shown escaped (`\\x1b`, `\\u202e`) on a terminal.

One definition serves both, so what the import lets through is exactly what a terminal would show as is.
"""

from __future__ import annotations

import unicodedata
from typing import TypeVar

T = TypeVar("T")

# Format characters that scripts of the region need inside words (Thai, Khmer and Myanmar break lines at the
# zero-width space; Indic and emoji sequences join with ZWJ/ZWNJ). They neither move the cursor nor reorder text.
_JOINERS = frozenset("\u200b\u200c\u200d")
# Cc: C0, DEL, C1 (ESC starts ANSI CSI/OSC; 0x9b is a one-byte CSI); Cf: bidi embeddings, overrides, isolates,
# marks and the other invisible format characters; Zl, Zp: U+2028, U+2029; Cs: lone surrogates (no valid UTF-8).
_ACTING_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def acts(character: str) -> bool:
    """True for a character that does something to a terminal or header instead of showing a glyph."""
    return unicodedata.category(character) in _ACTING_CATEGORIES and character not in _JOINERS


def escaped(character: str) -> str:
    """`\\x1b`, `\\u202e`, `\\U000e0001`: the character's code, as Python writes it."""
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def describe(character: str) -> str:
    """`U+2028 LINE SEPARATOR`; control codes, which have no Unicode name, as `U+001B (a control character)`."""
    name = unicodedata.name(character, "")
    return f"U+{ord(character):04X} {name}" if name else f"U+{ord(character):04X} (a control character)"


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every acting character escaped; `keep_newlines` leaves LF for output that stays in its cell."""
    if text.isprintable():  # the common case, checked in C: no Cc, Cf, Zl, Zp or Cs at all
        return text
    return "".join(escaped(c) if acts(c) and not (keep_newlines and c == "\n") else c for c in text)


def first_acting(text: str) -> tuple[int, str] | None:
    """The position and character of the first acting character in `text`, if any."""
    if text.isprintable():
        return None
    return next(((at, c) for at, c in enumerate(text) if acts(c)), None)


def one_line(value: T) -> T:
    """A pydantic validator for text that reaches an email header: refuses any acting character, saying which."""
    found = first_acting(value) if isinstance(value, str) else None
    if found is not None:
        at, character = found
        raise ValueError(
            f"contains {describe(character)} at character {at + 1}: this text goes into email headers, "
            "which must be one line of visible characters"
        )
    return value


def json_visible(text: str) -> str:
    """JSON text with every acting character inside its strings as a `\\uXXXX` escape (surrogate pairs beyond
    the BMP). `json.dumps` escapes only C0 unless it escapes all non-ASCII, which would make names unreadable;
    raw newlines are left, since in `json.dumps` output they are only ever indentation."""
    if text.isprintable():
        return text
    return "".join(_json_escape(c) if acts(c) and c != "\n" else c for c in text)


def _json_escape(character: str) -> str:
    code = ord(character)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
