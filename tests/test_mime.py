"""Messages built with the shared header objects and a boundary of their own read back exactly as written."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from activities.mime import BOUNDARY, MESSAGE_POLICY, set_boundary, wire_policy

NAME = "Nguyễn Thị Minh Khai <minh.khai@example.org>"


def message(text: str, html: str = "<p>Hello</p>\n") -> EmailMessage:
    built = EmailMessage(policy=MESSAGE_POLICY)
    built["To"] = NAME
    built["Subject"] = "Position of Viet Nam requested"
    built.set_content(text)
    built.add_alternative(html, subtype="html")
    set_boundary(built, [text, html])
    return built


def read_back(raw: bytes) -> tuple[str, list[str]]:
    parsed = message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    # The wire ends lines with CRLF, as SMTP wants; the parts were written with \n.
    return str(parsed["To"]), [part.get_content().replace("\r\n", "\n") for part in parsed.iter_parts()]


def test_a_header_is_parsed_once_and_folded_for_each_wire_policy_on_its_own() -> None:
    first, second = message("a\n"), message("b\n")
    assert first["To"] is second["To"]  # the same parsed header, shared
    ascii_only = first.as_bytes(policy=wire_policy(utf8=False, eight_bit=False))
    raw_utf8 = second.as_bytes(policy=wire_policy(utf8=True, eight_bit=True))
    assert ascii_only.isascii() and b"=?utf-8?" in ascii_only
    assert "To: Nguyễn Thị Minh Khai <minh.khai@example.org>".encode() in raw_utf8
    # Folded in the other order, each policy still gets its own folding.
    assert message("c\n").as_bytes(policy=wire_policy(utf8=False, eight_bit=False)).isascii()
    assert read_back(ascii_only) == (NAME, ["a\n", "<p>Hello</p>\n"])
    assert read_back(raw_utf8) == (NAME, ["b\n", "<p>Hello</p>\n"])


def test_a_multipart_message_takes_the_shared_boundary() -> None:
    built = message("Your position is requested.\n")
    assert built.get_boundary() == BOUNDARY
    assert read_back(built.as_bytes(policy=wire_policy(utf8=True, eight_bit=True)))[1][0] == (
        "Your position is requested.\n"
    )


def test_a_part_that_holds_the_boundary_leaves_the_generator_to_choose_another() -> None:
    text = f"Quoted from an earlier message:\n--{BOUNDARY}\nend of quote\n"
    built = message(text)
    assert built.get_boundary() is None
    raw = built.as_bytes(policy=wire_policy(utf8=False, eight_bit=True))
    assert built.get_boundary() not in (None, BOUNDARY)
    assert read_back(raw)[1] == [text, "<p>Hello</p>\n"]


def test_a_policy_of_someone_elses_is_folded_afresh() -> None:
    built = message("d\n")
    narrow = wire_policy(utf8=False, eight_bit=False).clone(max_line_length=30)
    subject = "Subject: Position of Viet Nam requested"
    assert subject.encode() in built.as_bytes(policy=wire_policy(utf8=False, eight_bit=False))
    assert subject.encode() not in built.as_bytes(policy=narrow)  # folded at 30 columns, not as remembered
