"""A form submitted without a deliberate choice records nothing: the positions are one radio group with none
chosen, sent by one button, so a mail scanner that submits the form it finds (as Outlook Safe Links does)
gets the page back with a clear message and no answer is recorded. (In real Chromium: tests/test_browser.py.)
"""

from __future__ import annotations

import re

import pytest
from temporalio.worker import Worker

from models.messages import RoundPurpose, RoundStatus
from models.positions import Position
from models.states import MemberState
from tests import test_web
from tests.test_web import _CSRF, Site, assert_clear_page
from web.actions import NO_CHOICE

# test_web's app with a real round workflow and ledger, and its worker.
site, worker = test_web.site, test_web.worker

_RADIO = re.compile(r'<input type="radio"[^>]*>')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


async def nothing_recorded(site: Site) -> bool:
    """No position in the ledger, and none in the (last started) round's own status."""
    status = await site.started[-1].query("status", result_type=RoundStatus)
    return "position" not in site.ledger_kinds() and MemberState.PH not in status.positions


async def test_the_page_offers_one_choice_with_no_default_and_one_button(site: Site, worker: Worker) -> None:
    await site.start_round(1, RoundPurpose.REVIEW)
    page = await site.http.get(site.action_link(1))
    assert page.status_code == 200
    form = page.text[page.text.index('<form method="post"') : page.text.index("</form>")]
    assert form.count("<button") == 1 and 'type="submit"' in form and 'name="position"' not in form.split("<button")[1]
    radios = _RADIO.findall(form)
    assert len(radios) == len(form.split('name="position"')) - 1 > 1  # every position is a radio, nothing else
    assert all("checked" not in radio for radio in radios)
    assert "<fieldset" in form and "<legend>" in form
    for value in re.findall(r'id="(position-[a-z_]+)"', form):  # every choice has its own label
        assert f'<label for="{value}"' in form


async def test_a_scanner_that_submits_the_form_as_found_records_nothing(site: Site, worker: Worker) -> None:
    """What a scanner posts: the form's hidden fields (and its one button, which carries no value)."""
    await site.start_round(1, RoundPurpose.REVIEW)
    link = site.action_link(1)
    for _ in range(3):  # it may also submit more than once
        page = await site.http.get(link)
        found = dict(_HIDDEN.findall(page.text))
        assert set(found) == {"csrf"}
        refused = await site.http.post(link, data=found)
        assert_clear_page(refused, 400)
        assert NO_CHOICE in refused.text
        assert 'name="csrf"' in refused.text and "checked" not in "".join(_RADIO.findall(refused.text))
    assert await nothing_recorded(site)


@pytest.mark.parametrize(
    "value",
    ["", " ", "APPROVE", "approve ", "Approve", "approve,object", "1", "null", "on", "confirm", "decline", "é" * 300],
)
async def test_a_position_the_page_did_not_offer_records_nothing(site: Site, worker: Worker, value: str) -> None:
    await site.start_round(1, RoundPurpose.REVIEW)
    link = site.action_link(1)
    csrf = _CSRF.search((await site.http.get(link)).text).group(1)  # type: ignore[union-attr]
    refused = await site.http.post(link, data={"csrf": csrf, "position": value, "reason": "kept"})
    assert_clear_page(refused, 400)
    assert "Nothing was recorded" in refused.text or "is not an answer this round takes" in refused.text
    assert ">kept</textarea>" in refused.text  # what was typed is kept
    assert "checked" not in "".join(_RADIO.findall(refused.text))  # and no choice is made for the delegate
    assert await nothing_recorded(site)


async def test_a_deliberate_choice_is_kept_when_the_form_comes_back(site: Site, worker: Worker) -> None:
    await site.start_round(1, RoundPurpose.REVIEW)
    link = site.action_link(1)
    csrf = _CSRF.search((await site.http.get(link)).text).group(1)  # type: ignore[union-attr]
    # A reservation needs a reason: the page comes back with the reservation still chosen.
    again = await site.http.post(link, data={"csrf": csrf, "position": Position.APPROVE_WITH_RESERVATION.value})
    assert_clear_page(again, 400)
    [checked] = [r for r in _RADIO.findall(again.text) if "checked" in r]
    assert f'value="{Position.APPROVE_WITH_RESERVATION.value}"' in checked
    assert await nothing_recorded(site)
    done = await site.http.post(
        link, data={"csrf": csrf, "position": Position.APPROVE_WITH_RESERVATION.value, "reason": "Scope 4.1."}
    )
    assert done.status_code == 200 and site.ledger_kinds().count("position") == 1
