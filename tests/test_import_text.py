"""Text that reaches an email header (roster names and addresses, proposal titles, meeting venues) is checked when
the file is imported: a control, separator or bidi character is refused with the file, the line and the field,
instead of stopping every mailing later. What the check lets through makes a valid header."""

from __future__ import annotations

import email
import os
import unicodedata
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.email import addressed_only_to, flatten_for, recipient
from activities.mime import MESSAGE_POLICY, wire_policy
from devstack.demo import EXAMPLES
from models.controlchars import acts, escaped, one_line
from models.files import InputFileError
from models.process import load_proposal_file
from models.roster import load_roster_file
from tests.integration import cli

ROSTER = """\
delegates:
  - state: SG
    role: focal_point
    name: {name}
    email: {email}
    timezone: Asia/Singapore
    organisation: {organisation}
"""
GOOD = {"name": "Tan Wei Ling", "email": "tan.weiling@example.gov.sg", "organisation": "IMDA"}
FIELD_LINES = {"name": 4, "email": 5, "organisation": 7}

# The characters the issue names and their kin: CR/LF, NUL, ESC, DEL, C1 (NEL, CSI), the Unicode line and
# paragraph separators, bidi overrides and isolates, a BOM.
ACTING = ["\r", "\n", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u202e", "\u2066", "\ufeff"]
# Kept: the scripts of the region need these (Thai, Khmer, Myanmar, Vietnamese), as do emoji sequences.
KEPT = ["สมชาย ใจดี", "សុខ សុភា", "အောင်​ကျော်", "Nguyễn Thị Hương", "👩‍💼 Officer", "Siti Nur'aini bt. Ahmad"]


def quoted(text: str) -> str:
    """`text` as a YAML double-quoted scalar: what a file can hold only as an escape (`\\x1b`) is escaped."""
    inner = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() and c not in "\ufffe\uffff" else escaped(c) for c in inner) + '"'


def write(tmp_path: Path, **fields: str) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(ROSTER.format(**{k: quoted(v) for k, v in (GOOD | fields).items()}), encoding="utf-8")
    return path


def refusal(loader, path: Path) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(InputFileError) as caught:
        loader(path)
    return str(caught.value)


@pytest.mark.parametrize("field", sorted(FIELD_LINES))
@pytest.mark.parametrize("character", ACTING, ids=lambda c: f"U+{ord(c):04X}")
def test_a_roster_field_with_an_acting_character_is_refused_with_file_line_and_field(
    tmp_path: Path, field: str, character: str
) -> None:
    value = GOOD[field].replace(".", character, 1) if field == "email" else f"{GOOD[field]}{character}x"
    path = write(tmp_path, **{field: value})
    message = refusal(load_roster_file, path)
    assert message.startswith(f"{path}: 1 problem(s):")
    assert f"delegates.0.{field} (line {FIELD_LINES[field]})" in message
    assert f"U+{ord(character):04X}" in message and "email headers" in message


@pytest.mark.parametrize("name", KEPT)
def test_names_in_the_regions_scripts_are_accepted(tmp_path: Path, name: str) -> None:
    assert load_roster_file(write(tmp_path, name=name)).delegates[0].name == name


def proposal(tmp_path: Path, title: str, venue: str = "Kuala Lumpur") -> Path:
    (tmp_path / "doc.md").write_text("# Framework\n")
    path = tmp_path / "proposal.yaml"
    path.write_text(
        f"title: {quoted(title)}\nkind: operational_framework\ndocument: doc.md\nprocess:\n  stages:\n"
        f"    - type: senior_officials\n      mode: meeting\n      venue: {quoted(venue)}\n"
        "      date: 2027-01-15T09:00:00+08:00\n      chair: MY\n",
        encoding="utf-8",
    )
    return path


def test_a_title_or_venue_with_a_line_separator_is_refused_with_its_line(tmp_path: Path) -> None:
    path = proposal(tmp_path, "Operational Framework\u2028Bcc: all")
    assert "title (line 1): Value error, contains U+2028 LINE SEPARATOR at character 22" in refusal(
        load_proposal_file, path
    )
    path = proposal(tmp_path, "Operational Framework", venue="KL\r\nLOCATION:elsewhere")
    assert "process.stages.0.venue (line 8)" in refusal(load_proposal_file, path)
    assert load_proposal_file(proposal(tmp_path, "Khung vận hành ASEAN AI SAFE"))[0].title


def test_the_cli_refuses_the_roster_with_exit_2_and_imports_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "AISAFE_DATA_DIR": str(tmp_path / "data")}
    path = write(tmp_path, name="Evil\r\nBcc: everyone@example.org")
    done = cli("roster", "import", str(path), env=env)
    assert done.code == 2 and "delegates.0.name (line 4)" in done.stderr and "U+000D" in done.stderr
    shown = cli("roster", "show", "--json", env=env)
    assert shown.code == 0 and shown.json() == []


def test_the_shipped_roster_passes() -> None:
    assert len(load_roster_file(EXAMPLES / "roster.yaml").delegates) == 53


def headers_of(title: str, name: str) -> tuple[str, str, bytes]:
    """Subject, To's name and the sent bytes, as the mail code builds and checks them (through a relay that takes
    SMTPUTF8), read back by a mail client that decodes UTF-8."""
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["Subject"] = f"[ASEAN AI SAFE] Review requested: {title} (round 1)"
    message["To"] = recipient(name, ADDRESS)
    message.set_content("body")
    wire = flatten_for(message, name, ADDRESS, wire_policy(utf8=True, eight_bit=True))
    parsed = email.message_from_string(wire.decode("utf-8"), policy=MESSAGE_POLICY)
    return str(parsed["Subject"]), parsed["To"].addresses[0].display_name, wire


_HEADER_TEXT = st.text(min_size=3, max_size=200)
ADDRESS = "delegate@example.org"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_HEADER_TEXT)
def test_header_text_is_refused_exactly_when_it_holds_an_acting_character(text: str) -> None:
    bad = [c for c in text if acts(c)]
    try:
        one_line(text)
    except ValueError as refusal:
        assert bad and f"U+{ord(bad[0]):04X}" in str(refusal)
        return
    assert not bad
    # What passes the check makes one-line headers that read back as written.
    subject, name, wire = headers_of(text, text)
    assert subject == f"[ASEAN AI SAFE] Review requested: {text} (round 1)"
    assert "\n" not in subject and "\r" not in subject
    # The message reaches the delegate alone, under their name as written (blanks may be refolded) or, where
    # the standard library could not keep it, under the bare address.
    assert addressed_only_to(wire, ADDRESS)
    assert name.split() in (text.split(), [])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.text(max_size=20).filter(lambda t: not any(acts(c) for c in t)),
    character=st.characters().filter(acts),
)
def test_any_acting_character_in_a_roster_name_is_refused_at_import(
    tmp_path: Path, prefix: str, character: str
) -> None:
    path = write(tmp_path, name=f"Name {prefix}{character}")
    message = refusal(load_roster_file, path)
    assert "delegates.0.name (line 4)" in message and f"U+{ord(character):04X}" in message
    assert unicodedata.category(character) in {"Cc", "Cf", "Zl", "Zp", "Cs"}


@pytest.mark.parametrize("name", [".0\u00a0 ", 'Ñoño "Q"', "x\\y é", "Đặng, Thị <x@y.z>", "Lê (Hà Nội)"])
def test_a_non_ascii_name_with_specials_keeps_its_quotes_under_smtputf8(name: str) -> None:
    # Written with formataddr these lost their quotes on the wire: read back, a name turned into the address.
    _, read, wire = headers_of("Title", name)
    assert read.split() == name.split() and addressed_only_to(wire, ADDRESS)
