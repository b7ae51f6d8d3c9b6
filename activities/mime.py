"""How the email activities build and flatten messages with the standard library, without redoing work.

A fan-out builds the same headers again and again (the sender, the proposal, the kind, each delegate's To),
and the standard library parses each header on setting it and folds it again on flattening: that, and
compiling a regular expression per message to pick a MIME boundary, was most of the time it took to build a
message. Header objects are immutable, so a header made once can be set on, and folded for, every message.
"""

from __future__ import annotations

import functools
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8, EmailPolicy, default
from typing import Any


class _Header(BaseHeader):
    """A header that remembers how it folds under each of this module's policies (made once, never freed)."""

    def fold(self, *, policy: Any) -> str:
        if id(policy) not in _REMEMBERED:  # another policy may be freed, and its id reused by yet another
            return super().fold(policy=policy)
        folds: dict[int, str] = self.__dict__.setdefault("_folds", {})
        folded = folds.get(id(policy))
        if folded is None:
            folded = folds[id(policy)] = super().fold(policy=policy)
        return folded


class _Headers(HeaderRegistry):
    """The standard header registry, making each header class once and each (name, value) header once.

    The stock registry calls type() on every lookup, and parses every value again.
    """

    def __init__(self) -> None:
        super().__init__(base_class=_Header)
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            made = self._classes[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if not isinstance(value, str):
            return super().__call__(name, value)
        return self._parsed(name, value)

    @functools.lru_cache(maxsize=4096)  # noqa: B019  (one registry for the process: nothing to free)
    def _parsed(self, name: str, value: str) -> BaseHeader:
        return super().__call__(name, value)


# How messages are built; the policy they are sent with is one of `_WIRE`'s (see `wire_policy`).
MESSAGE_POLICY = default.clone(header_factory=_Headers())


def _wire(utf8: bool, eight_bit: bool) -> EmailPolicy:
    # Long lines are left to the body's transfer encoding: folding at 78 columns moves a subject that just fits
    # on a line of its own onto a continuation line, and readers then see it with a leading space.
    return (SMTPUTF8 if utf8 else SMTP).clone(max_line_length=998, cte_type="8bit" if eight_bit else "7bit")


# Made once, so that each header's folding under them is remembered (`_Header.fold`).
_WIRE = {(utf8, eight_bit): _wire(utf8, eight_bit) for utf8 in (False, True) for eight_bit in (False, True)}
_REMEMBERED = {id(policy) for policy in (MESSAGE_POLICY, *_WIRE.values())}


def wire_policy(*, utf8: bool, eight_bit: bool) -> EmailPolicy:
    """The policy to flatten a message with for a relay that takes SMTPUTF8 (`utf8`) and 8BITMIME (`eight_bit`)."""
    return _WIRE[utf8, eight_bit]


# One boundary for every message: it has to be absent from the parts it separates, not unique (RFC 2046).
BOUNDARY = "=_aisafe_alternative_0c4f1e7a9b2d"


def set_boundary(message: EmailMessage, parts: list[str]) -> None:
    """Give a multipart message the boundary `BOUNDARY` if none of its `parts` (as written) contains it.

    Left to itself the generator draws a random boundary and compiles a regular expression per message to search
    the encoded parts for it. `=_` cannot occur in quoted-printable or base64 text, and plain text is searched
    here; should a part contain it anyway, the generator's own search is left to find another.
    """
    if not any(BOUNDARY in part for part in parts):
        message.set_boundary(BOUNDARY)
