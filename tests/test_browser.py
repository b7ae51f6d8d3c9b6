"""The web app for people, in real Chromium on the real stack: a delegate answers from the emailed link, a
coordinator watches the dashboard change, every page fits a 360-pixel phone, the form works from the keyboard
alone, and no page logs an error or loads anything from another site.

One stack and one browser serve the whole module (about half a minute). Screenshots of a failed test's pages
are saved under tests/screenshots/ (ignored by git).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

import operations
from devstack.demo import EXAMPLES, open_form
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.messages import RoundStatus
from models.positions import REVIEW_POSITIONS, Position
from models.roster import load_roster_file
from models.states import MemberState
from models.tokens import verify_action
from models.users import dev_coordinator_token
from tests.integration import ledger_entries
from web.actions import NO_CHOICE
from web.mailbox import read_mailbox

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
CSS = Path(__file__).parent.parent / "web" / "static" / "app.css"
_LINK = re.compile(r"https?://\S+/(?:act|comment)/[A-Za-z0-9_\-.]+")
PHONE = {"width": 360, "height": 740}

ROSTER = """\
delegates:
  - {state: PH, role: focal_point, name: "Maria Santos", email: maria.santos@ph.example.org, timezone: Asia/Manila}
  - {state: SG, role: focal_point, name: "Tan Wei Ling", email: tan.weiling@sg.example.org, timezone: Asia/Singapore}
  - {state: TH, role: focal_point, name: "Somchai Prasert", email: somchai.p@th.example.org, timezone: Asia/Bangkok}
  - {state: VN, role: focal_point, name: "Nguyen Thi Lan", email: nguyen.lan@vn.example.org, timezone: Asia/Ho_Chi_Minh}
  - role: stakeholder
    sector: civil_society
    organisation: "Mekong Responsible AI Network"
    name: "Pimchanok Rattanakul"
    email: pimchanok.r@mekong-rai.example.org
    timezone: Asia/Bangkok
"""
# Drafted in two versions, then reviewed: round 1's page shows the changes from version 1. Viet Nam never
# answers, so the round stays open whatever the other three do.
REVIEW = """\
title: ASEAN AI SAFE Operational Framework
kind: operational_framework
document: framework.md
process:
  stages:
    - {type: drafting}
    - {type: member_review, deadline: P14D, participants: [PH, SG, TH, VN]}
"""
CONSULTATION = """\
title: Guidelines on AI Incident Reporting
kind: operational_framework
document: framework.md
process:
  stages:
    - {type: consultation, deadline: P1D, sectors: [civil_society]}
    - {type: member_review, deadline: P14D, participants: [PH, SG]}
"""


# --- contrast, from the stylesheet itself (no browser needed) ---------------------------------------------


def _rules(css: str) -> dict[str, dict[str, str]]:
    """Selector to declarations, for the flat rules of app.css (later rules win, as in the cascade)."""
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", re.sub(r"/\*.*?\*/", "", css, flags=re.S)):
        declarations = {
            name.strip(): value.strip() for name, value in (d.split(":", 1) for d in body.split(";") if ":" in d)
        }
        for selector in selectors.split(","):
            rules.setdefault(" ".join(selector.split()), {}).update(declarations)
    return rules


def _colour(rules: dict[str, dict[str, str]], selector: str, prop: str) -> str:
    value = next(t for t in rules[selector][prop].split() if t.startswith(("#", "var(")))  # "3px solid #…"
    while value.startswith("var("):
        value = rules[":root"][value[4:-1]]
    assert re.fullmatch(r"#[0-9a-fA-F]{6}|#fff", value), f"{selector} {prop}: {value}"
    return "#ffffff" if value == "#fff" else value


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_helper_agrees_with_wcag_examples() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48  # the classic just-failing grey


def test_text_and_buttons_meet_wcag_aa_contrast() -> None:
    rules = _rules(CSS.read_text())
    white = "#ffffff"
    page = _colour(rules, "main", "background")
    text_pairs = {
        "body text on the page": (_colour(rules, "body", "color"), page),
        "body text on the margins": (_colour(rules, "body", "color"), _colour(rules, "body", "background")),
        "muted text": (_colour(rules, ".muted", "color"), page),
        "small print": (_colour(rules, ".small", "color"), page),
        "links": (_colour(rules, "a", "color"), page),
        "header": (_colour(rules, "header.top", "color"), _colour(rules, "header.top", "background")),
        "header muted": (_colour(rules, "header.top .muted", "color"), _colour(rules, "header.top", "background")),
        "buttons": (_colour(rules, ".buttons button", "color"), _colour(rules, ".buttons button", "background")),
        "primary buttons": (
            _colour(rules, ".buttons button.primary", "color"),
            _colour(rules, ".buttons button.primary", "background"),
        ),
        "errors": (_colour(rules, ".error", "color"), page),
        "notices": (_colour(rules, "body", "color"), _colour(rules, ".notice", "background")),
        "receipts": (_colour(rules, "body", "color"), _colour(rules, ".notice.ok", "background")),
        "added lines": (_colour(rules, ".diff-add", "color"), _colour(rules, ".diff-add", "background")),
        "removed lines": (_colour(rules, ".diff-del", "color"), _colour(rules, ".diff-del", "background")),
        "diff hunks": (_colour(rules, ".diff-hunk", "color"), _colour(rules, ".diff-hunk", "background")),
        "badges": (_colour(rules, ".badge", "color"), _colour(rules, ".badge", "background")),
        "adopted badge": (
            _colour(rules, ".badge.status-adopted", "color"),
            _colour(rules, ".badge.status-adopted", "background"),
        ),
        "closed badge": (
            _colour(rules, ".badge.status-not_adopted", "color"),
            _colour(rules, ".badge.status-not_adopted", "background"),
        ),
        "deemed cells": (_colour(rules, "body", "color"), _colour(rules, "table.matrix td.cell-deemed", "background")),
        "silent cells": (_colour(rules, "body", "color"), _colour(rules, "table.matrix td.cell-silent", "background")),
        "awaiting cells": (_colour(rules, "table.matrix td.cell-awaiting", "color"), page),
    }
    low = {name: round(contrast(*pair), 2) for name, pair in text_pairs.items() if contrast(*pair) < 4.5}
    assert low == {}, f"below 4.5:1 (WCAG 2.1 AA): {low}"
    # The focus ring is not text: 3:1 against what it is drawn on (WCAG 2.1 1.4.11).
    ring = _colour(rules, ":focus-visible", "outline")
    assert contrast(ring, page) >= 3 and contrast(ring, _colour(rules, "body", "background")) >= 3
    header_ring = _colour(rules, "header.top a:focus-visible", "outline-color")
    assert contrast(header_ring, _colour(rules, "header.top", "background")) >= 3
    assert white == _colour(rules, "header.top", "color")


# --- the stack, the mail and the browser ----------------------------------------------------------------


@dataclass
class World:
    stack: EmbeddedStack
    engine: Engine
    review_id: str
    consultation_id: str
    action_links: dict[str, str]  # by state
    comment_link: str
    coordinator_token: str


def _links(mail_dir: Path, proposal_id: str, path: str) -> dict[str, str]:
    """The personal link of each invitation the SMTP sink holds for a proposal, by state (or "stakeholder")."""
    found = {}
    for item in read_mailbox(mail_dir):
        link = _LINK.search(item.text)
        if item.aisafe.get("proposal") == proposal_id and link and f"/{path}/" in link.group(0):
            found[item.aisafe.get("state") or "stakeholder"] = link.group(0)
    return found


async def _until(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return result


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, dev_env: WorkflowEnvironment) -> AsyncIterator[World]:
    """One stack with a review round open on version 2 of a document and a consultation open on another."""
    require_chromium()  # before starting anything
    root = tmp_path_factory.mktemp("browser")
    stack = EmbeddedStack(
        root / "data",
        StackPorts(web=free_port(), temporal=0, ui=None, smtp=free_port()),
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"aisafe-{uuid.uuid4().hex[:8]}",
    )
    await stack.start()
    assert stack.client and stack.settings
    client, settings = stack.client, stack.settings
    engine = make_engine(settings.sqlalchemy_url)
    shutil.copy(EXAMPLES / "operational-framework.md", root / "framework.md")
    shutil.copy(EXAMPLES / "operational-framework-v2.md", root / "framework-v2.md")
    (root / "roster.yaml").write_text(ROSTER)
    (root / "review.yaml").write_text(REVIEW)
    (root / "consultation.yaml").write_text(CONSULTATION)
    operations.import_roster(engine, load_roster_file(root / "roster.yaml"))
    review_id = await operations.propose(client, engine, settings, root / "review.yaml")
    consultation_id = await operations.propose(client, engine, settings, root / "consultation.yaml")
    try:
        await _until(lambda: _drafting(client, review_id), "the review proposal to enter drafting", timeout=20)
        await operations.revise(client, engine, review_id, root / "framework-v2.md")
        await operations.submit(client, review_id)
        mail_dir = settings.mail_dir

        async def invited() -> dict[str, str] | None:
            links = await asyncio.to_thread(_links, mail_dir, review_id, "act")
            return links if {"PH", "SG", "TH", "VN"} <= links.keys() else None

        async def commenting() -> dict[str, str] | None:
            return await asyncio.to_thread(_links, mail_dir, consultation_id, "comment") or None

        action_links = await _until(invited, "the round 1 invitations")
        comment_link = (await _until(commenting, "the consultation invitation"))["stakeholder"]
        yield World(
            stack,
            engine,
            review_id,
            consultation_id,
            action_links,
            comment_link,
            dev_coordinator_token(engine, settings.data_dir),
        )
    finally:
        for proposal_id in (review_id, consultation_id):
            await client.get_workflow_handle(proposal_id).terminate("test finished")
        engine.dispose()
        await stack.stop()


async def _drafting(client: Any, proposal_id: str) -> bool:
    return (await operations.status(client, proposal_id)).stage == "drafting"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("AISAFE_REQUIRE_BROWSER"):
            pytest.fail("/usr/bin/chromium is missing; .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed here (`apt-get install chromium`; .ci/run does it)")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        await launched.close()


# Run in each page: the focused element and how its focus is drawn.
FOCUSED = """() => {
  const e = document.activeElement, s = getComputedStyle(e);
  return {tag: e.tagName, id: e.id, value: e.value || "", text: (e.textContent || "").trim().slice(0, 40),
          outline: s.outlineStyle, width: parseFloat(s.outlineWidth) || 0, shadow: s.boxShadow};
}"""
# Assets from elsewhere: a page must load everything from the app itself.
FOREIGN_ASSETS = """(origin) => [...document.querySelectorAll(
    'script[src], link[href], img[src], iframe[src], source[src], audio[src], video[src], object[data]')]
  .map(e => e.src || e.href || e.data).filter(u => !u.startsWith(origin + '/') && !u.startsWith('data:'))"""
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')
                 || (e.tagName === 'BUTTON' && e.textContent.trim())))
  .map(e => e.outerHTML)"""


@dataclass
class Browsing:
    """Pages of one test: every console error, page error and request to another origin is collected."""

    browser: Any
    origin: str
    pages: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def page(self, viewport: dict[str, int] | None = None) -> Any:
        context = await self.browser.new_context(viewport=viewport or {"width": 1200, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on(
            "request",
            lambda r: None if r.url.startswith((self.origin + "/", "data:")) else self.problems.append(r.url),
        )
        self.pages.append(page)
        return page

    async def open(self, page: Any, url: str) -> None:
        response = await page.goto(url)
        assert response is not None and response.ok, (url, response and response.status)
        await self.check(page)

    async def check(self, page: Any) -> None:
        """What every page must do: load nothing from elsewhere and label every control."""
        assert await page.evaluate(FOREIGN_ASSETS, self.origin) == [], page.url
        assert await page.evaluate(UNLABELLED) == [], page.url

    async def fits(self, page: Any) -> None:
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{page.url} is {width}px wide on a {PHONE['width']}px screen"

    async def screenshots(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        for number, page in enumerate(self.pages):
            if not page.is_closed():
                await page.screenshot(path=SCREENSHOTS / f"{name}-{number}.png", full_page=True)


@pytest.fixture
async def browse(browser: Any, world: World, request: pytest.FixtureRequest) -> AsyncIterator[Browsing]:
    browsing = Browsing(browser, world.stack.web_url)
    yield browsing
    call = getattr(request.node, "rep_call", None)
    if call is not None and call.failed:
        await browsing.screenshots(re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name))
    for page in browsing.pages:
        await page.context.close()
    if call is not None and call.passed:
        assert browsing.problems == [], "errors or foreign requests in the browser"


async def _sign_in(browsing: Browsing, page: Any, token: str) -> None:
    await page.goto(browsing.origin + "/")  # sends a person to sign in first
    assert "/signin" in page.url
    await browsing.check(page)
    await page.fill("#token", token)
    async with page.expect_navigation():
        await page.press("#token", "Enter")
    assert page.url.rstrip("/") == browsing.origin, page.url
    await browsing.check(page)


def _row(page: Any, proposal_id: str, state: str) -> Any:
    rows = page.locator(f"#proposal-{proposal_id} table.matrix tbody tr")
    return rows.filter(has=page.locator("th", has_text=re.compile(f"^{state}$")))


# --- the tests ------------------------------------------------------------------------------------------


async def test_a_delegate_answers_from_the_emailed_link(world: World, browse: Browsing) -> None:
    page = await browse.page()
    await browse.open(page, world.action_links["PH"])
    assert await page.locator("main > h1").inner_text() == "ASEAN AI SAFE Operational Framework"
    deadline = await page.locator("dl.facts dt:text-is('Deadline') + dd").inner_text()
    assert "Asia/Manila" in deadline and "UTC+08:00" in deadline
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", deadline)  # and in UTC
    # The changes from version 1 are open above the document, each line marked in words as well as colour.
    changes = page.locator("details.changes")
    assert await changes.get_attribute("open") is not None
    assert "Changes from version 1 to version 2" in await changes.locator("summary").inner_text()
    added = changes.locator("pre.diff .diff-add")
    assert await added.count() > 0 and await added.first.is_visible()
    assert (await added.first.inner_text()).startswith("+")
    assert await page.locator("article.document").is_visible()

    # The answers: one group named by its legend, nothing chosen, every choice a target of at least 24px.
    group = page.get_by_role("group", name=re.compile("^Position of Philippines"))
    choices = group.get_by_role("radio")
    assert await choices.count() == len(REVIEW_POSITIONS) and await group.locator(":checked").count() == 0
    for number in range(await choices.count()):
        for target in (choices.nth(number), group.locator("label").nth(number)):
            box = await target.bounding_box()
            assert box is not None and box["width"] >= 24 and box["height"] >= 24, (number, box)
    await page.get_by_label(Position.REQUEST_CHANGES.label, exact=True).check()
    await page.fill("#reason", "Add a data-protection safeguard for sharing incident information.")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Record this position").click()
    await browse.check(page)
    assert await page.locator("main > h1").inner_text() == "Position recorded"
    assert await page.locator("strong.position").inner_text() == Position.REQUEST_CHANGES.label
    entry_hash = await page.locator("#entry-hash").inner_text()
    recorded = [e for e in ledger_entries(world.stack, world.review_id) if e.kind == "position"]
    assert entry_hash in [e.entry_hash for e in recorded]


async def test_the_coordinators_dashboard_shows_a_new_answer(world: World, browse: Browsing) -> None:
    page = await browse.page()
    await _sign_in(browse, page, world.coordinator_token)
    proposal = page.locator(f"#proposal-{world.review_id}")
    assert await proposal.locator("h2").inner_text() == "ASEAN AI SAFE Operational Framework"
    stages = await proposal.locator("ol.timeline li").all_inner_texts()
    assert "Drafting" in stages[0] and "passed" in stages[0]
    assert "WG-AI member review" in stages[1] and "running" in stages[1] and "round 1" in stages[1]
    # The timeline is drawn inline: one bar a started stage, named in the SVG's own text.
    timeline = proposal.locator("svg.timeline")
    assert await timeline.locator("rect[rx]").count() == 2
    assert await timeline.get_attribute("aria-labelledby") != await page.locator(
        f"#proposal-{world.consultation_id} svg.timeline"
    ).get_attribute("aria-labelledby")
    headers = await proposal.locator("table.matrix thead th").all_inner_texts()
    assert headers[0] == "State" and headers[1].startswith("Round 1")
    assert [t.strip() for t in await proposal.locator("table.matrix tbody th").all_inner_texts()] == [
        "PH",
        "SG",
        "TH",
        "VN",
    ]
    assert "Awaiting" in await _row(page, world.review_id, "TH").inner_text()

    # Thailand answers (by its own link, outside this browser); the dashboard shows it on the next load.
    async with httpx.AsyncClient(timeout=30) as http:
        csrf = await open_form(http, world.action_links["TH"])
        answer = {"csrf": csrf, "position": "approve_with_reservation", "reason": "Keep the sandbox voluntary."}
        assert (await http.post(world.action_links["TH"], data=answer)).status_code == 200
    await page.reload()
    await browse.check(page)
    thailand = await _row(page, world.review_id, "TH").inner_text()
    assert Position.APPROVE_WITH_RESERVATION.label in thailand and "Keep the sandbox voluntary." in thailand
    assert "Awaiting" in await _row(page, world.review_id, "VN").inner_text()
    consultation = await page.locator(f"#proposal-{world.consultation_id}").inner_text()
    assert "Consultation open:" in consultation


async def test_every_page_fits_a_360_pixel_phone(world: World, browse: Browsing) -> None:
    page = await browse.page(PHONE)
    await browse.open(page, world.action_links["PH"])
    await browse.fits(page)
    await page.get_by_label(Position.REQUEST_CHANGES.label, exact=True).check()
    await page.fill("#reason", "Add a data-protection safeguard for sharing incident information.")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Record this position").click()
    assert await page.locator("main > h1").inner_text() == "Position recorded"
    await browse.check(page)
    await browse.fits(page)

    await browse.open(page, world.comment_link)
    await browse.fits(page)
    deadline = await page.locator("dl.facts dt:text-is('Comments close') + dd").inner_text()
    assert "Asia/Bangkok" in deadline and "UTC" in deadline
    await page.fill("#section", "4.1")
    await page.fill("#text", "Incident reports should never identify affected individuals.")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Send comment").click()
    assert await page.locator("main > h1").inner_text() == "Comment recorded"
    await browse.check(page)
    await browse.fits(page)

    await _sign_in(browse, page, world.coordinator_token)
    await browse.fits(page)


async def test_the_form_can_be_completed_with_the_keyboard_alone(world: World, browse: Browsing) -> None:
    page = await browse.page()
    await browse.open(page, world.action_links["SG"])

    async def tab_to(wanted: Any, what: str) -> dict[str, Any]:
        for _ in range(60):
            await page.keyboard.press("Tab")
            focused = await page.evaluate(FOCUSED)
            visible = (focused["outline"] != "none" and focused["width"] >= 2) or focused["shadow"] != "none"
            assert visible, f"no visible focus on {focused}"
            if wanted(focused):
                return focused  # type: ignore[no-any-return]
        raise AssertionError(f"Tab never reached {what}")

    # The positions are one radio group: Tab reaches it, the arrow keys choose within it.
    await tab_to(lambda f: f["id"].startswith("position-"), "the positions")
    for _ in range(len(Position)):
        focused = await page.evaluate(FOCUSED)
        if focused["value"] == Position.APPROVE_WITH_RESERVATION.value:
            break
        await page.keyboard.press("ArrowDown")
    assert focused["value"] == Position.APPROVE_WITH_RESERVATION.value, focused
    assert await page.get_by_label(Position.APPROVE_WITH_RESERVATION.label, exact=True).is_checked()
    await tab_to(lambda f: f["id"] == "reason", "the reason box")
    await page.keyboard.type("Testing approaches should stay interoperable with national schemes.")
    await tab_to(lambda f: f["tag"] == "BUTTON", "the button that sends the answer")
    async with page.expect_navigation():
        await page.keyboard.press("Space")
    await browse.check(page)
    assert await page.locator("main > h1").inner_text() == "Position recorded"
    assert await page.locator("strong.position").inner_text() == Position.APPROVE_WITH_RESERVATION.label
    recorded = [e for e in ledger_entries(world.stack, world.review_id) if e.kind == "position"]
    answers = [json.loads(e.payload_json) for e in recorded]
    assert any(a["state"] == "SG" and "interoperable" in a["reason"] for a in answers)


async def test_a_mail_scanner_pressing_the_first_button_records_nothing(world: World, browse: Browsing) -> None:
    """Link scanners (Outlook Safe Links among them) open the link and submit the form they find. Viet Nam's
    link is opened as a scanner would; Viet Nam never answers in this module, so anything recorded is the
    scanner's."""
    link = world.action_links["VN"]

    def viet_nam_positions() -> list[Any]:
        entries = ledger_entries(world.stack, world.review_id)
        return [e for e in entries if e.kind == "position" and json.loads(e.payload_json)["state"] == "VN"]

    page = await browse.page()
    await browse.open(page, link)
    # Pressing the first button: the browser will not send a form with no answer chosen.
    await page.locator("button, input[type=submit]").first.click()
    assert page.url == link and await page.locator("form.position-form").count() == 1
    # Submitting it anyway, as a scanner that calls form.submit() does: the page comes back, nothing recorded.
    async with page.expect_navigation():
        await page.evaluate("document.querySelector('form.position-form').submit()")
    assert await page.locator("p.error[role=alert]").inner_text() == NO_CHOICE
    assert await page.locator("input[type=radio]:checked").count() == 0
    await browse.check(page)
    # And again from the page it was given back.
    await page.locator("button, input[type=submit]").first.click()
    async with page.expect_navigation():
        await page.evaluate("document.querySelector('form.position-form').submit()")
    assert await page.locator("p.error[role=alert]").inner_text() == NO_CHOICE

    # The browser reports each refused submission's 400 on its console: those two are expected, nothing else.
    refusals = [p for p in browse.problems if "status of 400 (Bad Request)" in p]
    assert len(refusals) == 2, browse.problems
    browse.problems[:] = [p for p in browse.problems if p not in refusals]

    assert viet_nam_positions() == []
    assert world.stack.client is not None and world.stack.settings is not None
    claims = verify_action(world.stack.settings.signing_keys, link.rsplit("/", 1)[1])
    live = await world.stack.client.get_workflow_handle(claims.round_workflow_id).query(
        "status", result_type=RoundStatus
    )
    assert live.is_open and MemberState.VN not in live.positions


async def test_another_site_cannot_sign_a_browser_in(world: World, browse: Browsing) -> None:
    """Login CSRF: a page elsewhere posts the sign-in form with the attacker's own token; the browser stays
    signed out (the Origin is another site's, and the form carries no token bound to this browser)."""
    attacker = "http://attacker.example"
    page = await browse.page()
    form = f"""<!doctype html><title>Win a prize</title>
      <form method="post" action="{browse.origin}/signin">
      <input type="hidden" name="token" value="{world.coordinator_token}">
      <input type="hidden" name="next" value="/"><button type="submit">Claim</button></form>"""
    await page.route(f"{attacker}/**", lambda route: route.fulfill(status=200, content_type="text/html", body=form))
    await page.goto(f"{attacker}/prize")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Claim").click()
    assert await page.locator("main > h1").inner_text() == "Sign-in refused"
    await page.goto(browse.origin + "/")
    assert "/signin" in page.url  # still signed out: sent to sign in
    assert [c["name"] for c in await page.context.cookies(browse.origin) if c["name"] == "aisafe_session"] == []
    # What the browser logged on the way: the attacker's page and the refusal, nothing else.
    expected = [p for p in browse.problems if p.startswith(attacker) or "status of 403 (Forbidden)" in p]
    assert len([p for p in expected if "403" in p]) == 1, browse.problems
    browse.problems[:] = [p for p in browse.problems if p not in expected]
