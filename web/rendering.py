"""Safe rendering of coordinator-written Markdown and of plain-text mail bodies."""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_URL = re.compile(r"https?://[^\s<>\"']+")


def markdown_to_html(text: str) -> Markup:
    """Markdown with raw HTML disabled, then sanitised again: a document can never inject markup."""
    return Markup(nh3.clean(_markdown.render(text)))


def linkify_text(text: str) -> Markup:
    escaped = str(escape(text))
    return Markup(_URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped))
