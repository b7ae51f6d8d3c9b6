"""What a meeting of ADGSOM or ADGMIN decides, in ASEAN's words (DESIGN §2, issue 18)."""

from __future__ import annotations

from enum import StrEnum


class MeetingDecision(StrEnum):
    """The Meeting's decision on an agenda item, as the Joint Media Statement or the record words it."""

    ENDORSED = "endorsed"
    APPROVED = "approved"
    NOTED = "noted"
    DEFERRED = "deferred"  # the proposal waits for a later meeting
    REFERRED_BACK = "referred_back"  # the text returns to WG-AI: revision, then a new member-review round
    NOT_ENDORSED = "not_endorsed"
