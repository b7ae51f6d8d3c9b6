"""The web pages as delegates and stakeholders meet them: rendering helpers, the action page for each kind of
round and the comment page, against the real dev server with the real round and consultation workflows, the
real ledger and fake mail (mail is tested on its own)."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import operations
from activities.comments import CommentActivities
from activities.ledger import LedgerActivities
from devstack.demo import EXAMPLES, mails_matching
from devstack.services import free_port
from devstack.stack import EmbeddedStack, StackPorts
from models.db import make_engine
from models.labels import money as format_money
from models.ledger import document_hash
from models.messages import (
    Comment,
    ConsultationInput,
    ConsultationStatus,
    DispositionInput,
    DocumentRef,
    FundingStep,
    FundingTerms,
    ReviewRoundInput,
    RoundPurpose,
    RoundStatus,
    SilenceProcedureInput,
)
from models.positions import (
    AD_REFERENDUM_POSITIONS,
    FUNDING_INDICATION_POSITIONS,
    FUNDING_POSITIONS,
    MINUS_X_POSITIONS,
    REVIEW_POSITIONS,
    DecisionRule,
    Disposition,
    Position,
)
from models.process import FundingModel, StageType
from models.roster import Role, Sector, load_roster_file
from models.settings import Settings
from models.states import MemberState
from models.tables import CommentBlob, DelegateRecord, DocumentBlob, DocumentVersion, LedgerEntry, ProposalRecord
from models.tokens import (
    ActionClaims,
    CommentClaims,
    consultation_workflow_id,
    csrf_token,
    key_id_of,
    round_workflow_id,
    sign_action,
    sign_comment,
)
from models.users import UserRole, add_user
from tests.fakes import FakeBackend
from tests.integration import assert_chain_intact, ledger_entries
from web.app import create_app
from web.rendering import AmountError, document_diff, parse_amount
from workflows.consultation import ConsultationWorkflow
from workflows.review_round import ReviewRoundWorkflow

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_ENTRY_HASH = re.compile(r'id="entry-hash">([0-9a-f]{64})<')
_COMMENT_ID = re.compile(r'id="comment-id">([^<]+)<')
_CHOICE = re.compile(r'<input type="radio" id="position-[a-z_]+" name="position" value="([a-z_]+)" required>')

_HEAD = "# Operational Framework\n\n## 1. Purpose\n\nThe network coordinates AI safety work.\n\n## 2. Scope\n\n"
VERSION_1 = _HEAD + "All members.\n"
VERSION_2 = _HEAD + "All members, including Timor-Leste.\n<script>alert('x')</script>\n"


# --- rendering helpers ------------------------------------------------------------------------------------


def test_diff_escapes_markup_and_marks_added_and_removed_lines() -> None:
    diff = document_diff(
        "a\n<b>kept</b>\nold line\n-- a rule\nz", "a\n<b>kept</b>\n<script>x</script>\nz", old_name="v1", new_name="v2"
    )
    assert diff is not None
    html = str(diff.html)
    assert "<script>" not in html and "<b>" not in html
    assert '<span class="diff-add">+&lt;script&gt;x&lt;/script&gt;</span>' in html
    assert '<span class="diff-del">-old line</span>' in html
    # A removed line that itself starts with "--" is a removal, not a file header.
    assert '<span class="diff-del">--- a rule</span>' in html
    assert '<span class="diff-ctx"> &lt;b&gt;kept&lt;/b&gt;</span>' in html
    assert '<span class="diff-file">--- v1</span>' in html and '<span class="diff-hunk">@@' in html
    assert (diff.added, diff.removed) == (1, 2)


def test_diff_of_identical_texts_is_none() -> None:
    assert document_diff(VERSION_1, VERSION_1, old_name="v1", new_name="v2") is None


@pytest.mark.parametrize(
    ("typed", "amount"),
    [
        ("125000", Decimal("125000.00")),
        (" 2500.5 ", Decimal("2500.50")),
        ("1,234,567.89", Decimal("1234567.89")),
        (".75", Decimal("0.75")),
        ("0", Decimal("0.00")),
        ("", None),
        ("   ", None),
    ],
)
def test_amounts_people_type_are_read_exactly(typed: str, amount: Decimal | None) -> None:
    assert parse_amount(typed) == amount


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1,5", "point for decimals"),
        ("12,34.00", "point for decimals"),
        ("-10", "cannot be negative"),
        ("ten", "as a number"),
        ("1e6", "as a number"),
        ("NaN", "as a number"),
        ("Infinity", "as a number"),
        ("10.005", "two decimal places"),
        ("1" * 40, "too large"),
    ],
)
def test_amounts_that_cannot_be_taken_are_refused_with_a_reason(typed: str, message: str) -> None:
    with pytest.raises(AmountError, match=message):
        parse_amount(typed)


def test_money_has_currency_thousands_separators_and_two_decimals() -> None:
    assert format_money(Decimal("1234567.5"), "USD") == "USD 1,234,567.50"
    assert format_money(Decimal("0"), "MYR") == "MYR 0.00"


# --- the app against the real dev server --------------------------------------------------------------------


@dataclass
class Site:
    """The web app in-process (lifespan run, as uvicorn would), its database and its Temporal client."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    engine: Engine
    client: Client
    task_queue: str
    proposal_id: str
    v1: DocumentRef
    v2: DocumentRef
    delegate_id: str = "PH-0000000000000001"
    stakeholder_id: str = "SH-0000000000000001"
    started: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    def action_link(self, round_number: int, *, expires_in: timedelta = timedelta(days=1), **changes: Any) -> str:
        claims = ActionClaims(
            proposal_id=self.proposal_id,
            round=round_number,
            state=MemberState.PH,
            delegate_id=self.delegate_id,
            document_sha256=self.v2.sha256,
            expires_at=datetime.now(UTC) + expires_in,
        ).model_copy(update=changes)
        return f"/act/{sign_action(self.settings.signing_key, claims)}"

    def comment_token(
        self, *, expires_in: timedelta = timedelta(days=1), key: str | None = None, **changes: Any
    ) -> str:
        claims = CommentClaims(
            proposal_id=self.proposal_id,
            stage_index=1,
            stakeholder_id=self.stakeholder_id,
            document_sha256=self.v2.sha256,
            expires_at=datetime.now(UTC) + expires_in,
        ).model_copy(update=changes)
        return sign_comment(key or self.settings.signing_key, claims)

    def ledger_kinds(self) -> list[str]:
        with Session(self.engine) as session:
            return list(
                session.exec(
                    select(LedgerEntry.kind)
                    .where(LedgerEntry.proposal_id == self.proposal_id)
                    .order_by(LedgerEntry.seq)
                )
            )

    async def start_round(self, number: int, purpose: RoundPurpose, **fields: Any) -> WorkflowHandle[Any, Any]:
        defaults: dict[str, Any] = {
            RoundPurpose.REVIEW: {"allowed": REVIEW_POSITIONS, "previous_document": self.v1},
            RoundPurpose.AD_REFERENDUM: {"allowed": AD_REFERENDUM_POSITIONS, "stage_type": StageType.SENIOR_OFFICIALS},
            RoundPurpose.FUNDING: {"allowed": FUNDING_POSITIONS, "stage_type": StageType.FUNDING},
        }[purpose]
        handle = await self.client.start_workflow(
            ReviewRoundWorkflow.run,
            ReviewRoundInput(
                proposal_id=self.proposal_id,
                title="ASEAN AI SAFE Operational Framework",
                round=number,
                purpose=purpose,
                roles=[Role.FOCAL_POINT, Role.ALTERNATE],
                document=self.v2,
                participants=[MemberState.PH, MemberState.SG],
                **({"deadline": datetime.now(UTC) + timedelta(days=1)} | defaults | fields),
            ),
            id=round_workflow_id(self.proposal_id, number),
            task_queue=self.task_queue,
        )
        self.started.append(handle)
        await self.until_ledger(f"{handle.id}:opened")
        return handle

    async def start_consultation(self, deadline: timedelta) -> WorkflowHandle[Any, Any]:
        handle = await self.client.start_workflow(
            ConsultationWorkflow.run,
            ConsultationInput(
                proposal_id=self.proposal_id,
                title="ASEAN AI SAFE Operational Framework",
                stage_index=1,
                document=self.v2,
                sectors=[Sector.CIVIL_SOCIETY, Sector.ACADEMIA],
                deadline=datetime.now(UTC) + deadline,
            ),
            id=consultation_workflow_id(self.proposal_id, 1),
            task_queue=self.task_queue,
        )
        self.started.append(handle)
        await self.until_ledger(f"{handle.id}:opened")
        return handle

    async def until_ledger(self, key: str) -> None:
        for _ in range(200):
            with Session(self.engine) as session:
                if session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == key)).first():
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no ledger entry {key}")


@pytest.fixture
async def site(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[Site]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'aisafe.db'}",
        dev=True,
        secret_key=f"test-signing-key-{uuid.uuid4().hex}",
    )
    app = create_app(settings, dev_env.client)
    async with app.router.lifespan_context(app):
        engine: Engine = app.state.engine
        proposal_id = f"p-{uuid.uuid4().hex[:10]}"
        v1, v2 = (
            DocumentRef(sha256=document_hash(body), version=n, filename=f"v{n}.md", size=len(body))
            for n, body in ((1, VERSION_1), (2, VERSION_2))
        )
        with Session(engine) as session:
            session.add(
                ProposalRecord(
                    id=proposal_id,
                    title="ASEAN AI SAFE Operational Framework",
                    kind="operational_framework",
                    lead_state="MY",
                )
            )
            for ref, body in ((v1, VERSION_1), (v2, VERSION_2)):
                session.add(DocumentBlob(sha256=ref.sha256, body=body, size=ref.size))
                session.add(
                    DocumentVersion(
                        proposal_id=proposal_id, version=ref.version, sha256=ref.sha256, filename=ref.filename
                    )
                )
            session.add_all(
                [
                    DelegateRecord(
                        id=Site.delegate_id,
                        state="PH",
                        role="focal_point",
                        name="Maria Santos",
                        email="m@ph.example.org",
                        timezone="Asia/Manila",
                    ),
                    DelegateRecord(
                        id=Site.stakeholder_id,
                        role="stakeholder",
                        name="Pimchanok Rattanakul",
                        email="p@mekong.example.org",
                        timezone="Asia/Bangkok",
                        sector="civil_society",
                        organisation="Mekong Responsible AI Network",
                    ),
                    DelegateRecord(
                        id="SH-0000000000000002",
                        role="stakeholder",
                        name="Former Stakeholder",
                        email="f@x.example.org",
                        timezone="Asia/Jakarta",
                        sector="industry",
                        active=False,
                    ),
                ]
            )
            session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aisafe.test", timeout=30) as http:
            site = Site(app, http, settings, engine, dev_env.client, f"tq-{uuid.uuid4()}", proposal_id, v1, v2)
            yield site
            for handle in site.started:
                try:
                    await handle.terminate("test finished")
                except RPCError:
                    pass  # it had already finished


@pytest.fixture
async def worker(site: Site) -> AsyncIterator[Worker]:
    """The real round and consultation workflows and the real ledger; mail is faked under its real names."""
    mail = [
        a
        for a in FakeBackend().activities()
        if getattr(a, "__name__", "").startswith(("send_", "find_round_recipients"))
    ]
    with ThreadPoolExecutor(max_workers=4) as executor:
        running = Worker(
            site.client,
            task_queue=site.task_queue,
            workflows=[ReviewRoundWorkflow, ConsultationWorkflow],
            activities=[
                LedgerActivities(site.engine).append_ledger,
                *CommentActivities(site.settings, site.engine).activities(),
                *mail,
            ],
            activity_executor=executor,
        )
        async with running:
            yield running


def assert_clear_page(response: httpx.Response, status_code: int) -> None:
    assert response.status_code == status_code, (response.status_code, response.text[:500])
    assert "<h1>" in response.text and "Traceback" not in response.text


async def form_of(site: Site, link: str) -> str:
    page = await site.http.get(link)
    assert page.status_code == 200, page.text[:500]
    found = _CSRF.search(page.text)
    assert found is not None
    return found.group(1)


# --- comment links: errors that need no running workflow ----------------------------------------------------


async def test_bad_expired_and_forged_comment_links_get_clear_4xx_pages(site: Site) -> None:
    good = site.comment_token()
    tampered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    action_token = site.action_link(1).rsplit("/", 1)[1]  # signed by us, but for another purpose
    cases = {
        "garbage": 400,
        tampered: 400,
        site.comment_token(key="not-the-key"): 400,
        action_token: 400,
        site.comment_token(expires_in=timedelta(seconds=-1)): 410,
        site.comment_token(stakeholder_id="SH-ffffffffffffffff"): 403,  # not on the roster
        site.comment_token(stakeholder_id=Site.delegate_id): 403,  # a state delegate, not a stakeholder
        site.comment_token(stakeholder_id="SH-0000000000000002"): 403,  # no longer active
        site.comment_token(document_sha256="f" * 64): 404,
        site.comment_token(proposal_id="p-unknown"): 404,
        good: 410,  # no consultation is running for this proposal
    }
    for token, expected in cases.items():
        for method in ("GET", "POST"):
            form = {"csrf": csrf_token(site.settings.signing_key, token), "text": "A comment."}
            response = await site.http.request(method, f"/comment/{token}", data=form)
            assert_clear_page(response, expected)
    closed = await site.http.get(f"/comment/{good}")
    assert "consultation is closed" in closed.text
    assert site.ledger_kinds() == []


async def test_temporal_not_answering_gives_a_503_page(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unavailable(*_: object) -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    monkeypatch.setattr("web.comments.live_status", unavailable)
    monkeypatch.setattr("web.actions.live_status", unavailable)
    for link in (f"/comment/{site.comment_token()}", site.action_link(1)):
        response = await site.http.get(link)
        assert_clear_page(response, 503)
        assert "try again" in response.text


# --- action pages for each kind of round ---------------------------------------------------------------------


async def test_review_page_shows_the_changes_from_the_previous_version(site: Site, worker: Worker) -> None:
    await site.start_round(1, RoundPurpose.REVIEW)
    link = site.action_link(1)
    page = await site.http.get(link)
    assert page.status_code == 200
    assert "<details" in page.text and "Changes from version 1" in page.text
    assert '<span class="diff-add">+All members, including Timor-Leste.</span>' in page.text
    assert '<span class="diff-del">-All members.</span>' in page.text
    assert "&lt;script&gt;alert" in page.text and "<script" not in page.text  # no inline script, ever
    assert _CHOICE.findall(page.text) == [p.value for p in REVIEW_POSITIONS]
    assert page.text.count('<form method="post"') == 1
    assert "position" not in site.ledger_kinds()


async def test_ad_referendum_page_words_the_silence_procedure(site: Site, worker: Worker) -> None:
    await site.start_round(3, RoundPurpose.AD_REFERENDUM)
    link = site.action_link(3)
    page = await site.http.get(link)
    assert page.status_code == 200
    text = " ".join(page.text.split())
    assert "deemed endorsed at the deadline unless Philippines objects" in text
    assert "ASEAN Digital Senior Officials' Meeting (ADGSOM)" in text.replace("&#39;", "'")
    assert _CHOICE.findall(page.text) == [p.value for p in AD_REFERENDUM_POSITIONS]
    # An answer this round does not take is refused with the form shown again; nothing is recorded.
    refused = await site.http.post(
        link, data={"csrf": await form_of(site, link), "position": "request_changes", "reason": "x"}
    )
    assert refused.status_code == 400 and "is not an answer this round takes" in refused.text
    assert 'name="csrf"' in refused.text
    receipt = await site.http.post(link, data={"csrf": await form_of(site, link), "position": "approve"})
    assert receipt.status_code == 200 and _ENTRY_HASH.search(receipt.text)
    assert "ADGSOM endorsement ad referendum" in receipt.text
    assert site.ledger_kinds().count("position") == 1


async def test_funding_page_shows_the_expected_share_and_confirms_it(site: Site, worker: Worker) -> None:
    terms = FundingTerms(
        model=FundingModel.TIERED,
        currency="USD",
        budget_target=Decimal("1500000"),
        expected={MemberState.PH: Decimal("123456.5"), MemberState.SG: Decimal("200000")},
    )
    await site.start_round(6, RoundPurpose.FUNDING, funding=terms)
    link = site.action_link(6)
    page = await site.http.get(link)
    assert page.status_code == 200
    assert 'id="expected-amount">USD 123,456.50<' in page.text and "USD 1,500,000.00" in page.text
    assert _CHOICE.findall(page.text) == ["confirm", "decline"]
    assert 'name="amount"' not in page.text  # the share is set; nothing to type

    form = {"csrf": await form_of(site, link), "position": "confirm", "reason": ""}
    first = await site.http.post(link, data=form)
    again = await site.http.post(link, data=form)
    assert first.status_code == again.status_code == 200
    assert 'id="amount-confirmed">USD 123,456.50<' in first.text
    assert _ENTRY_HASH.search(first.text).group(1) == _ENTRY_HASH.search(again.text).group(1)  # type: ignore[union-attr]
    assert 'id="amount-confirmed">USD 123,456.50<' in again.text
    assert site.ledger_kinds().count("position") == 1


async def test_funding_indication_page_says_subject_to_domestic_clearance(site: Site, worker: Worker) -> None:
    terms = FundingTerms(
        model=FundingModel.EQUAL_SHARE,
        currency="USD",
        budget_target=Decimal("200000"),
        expected={MemberState.PH: Decimal("100000"), MemberState.SG: Decimal("100000")},
        step=FundingStep.INDICATION,
    )
    await site.start_round(6, RoundPurpose.FUNDING, funding=terms, allowed=FUNDING_INDICATION_POSITIONS)
    link = site.action_link(6)
    page = await site.http.get(link)
    assert page.status_code == 200
    assert _CHOICE.findall(page.text) == ["indicate", "decline"]
    assert 'id="domestic-clearance"' in page.text and "subject to domestic clearance" in page.text
    assert 'id="expected-amount">USD 100,000.00<' in page.text

    form = {"csrf": await form_of(site, link), "position": "indicate", "reason": ""}
    receipt = await site.http.post(link, data=form)
    assert receipt.status_code == 200
    assert "Contribution indicated, subject to domestic clearance" in receipt.text
    assert 'id="amount-confirmed">USD 100,000.00<' in receipt.text and "Amount indicated" in receipt.text


async def test_minus_x_page_offers_participate_opt_out_and_object(site: Site, worker: Worker) -> None:
    await site.start_round(6, RoundPurpose.REVIEW, allowed=MINUS_X_POSITIONS, rule=DecisionRule.ASEAN_MINUS_X)
    link = site.action_link(6)
    page = await site.http.get(link)
    assert page.status_code == 200
    assert _CHOICE.findall(page.text) == ["participate", "opt_out", "object"]
    assert "Opt out (not join, not block)" in page.text
    assert "does not join, and does not block the others" in page.text

    opted_out = await site.http.post(link, data={"csrf": await form_of(site, link), "position": "opt_out"})
    assert opted_out.status_code == 200 and "Opt out (not join, not block)" in opted_out.text


async def test_voluntary_pledge_needs_a_valid_amount(site: Site, worker: Worker) -> None:
    terms = FundingTerms(model=FundingModel.VOLUNTARY, currency="USD", budget_target=Decimal("500000"))
    handle = await site.start_round(6, RoundPurpose.FUNDING, funding=terms)
    link = site.action_link(6)
    page = await site.http.get(link)
    assert page.status_code == 200
    assert '<label for="amount">' in page.text
    amount_input = re.search(r"<input id=\"amount\"[^>]*>", page.text)
    assert amount_input and 'step="0.01"' in amount_input.group(0) and 'min="0"' in amount_input.group(0)

    not_a_number = await site.http.post(
        link, data={"csrf": await form_of(site, link), "position": "confirm", "amount": "lots"}
    )
    assert not_a_number.status_code == 400 and "as a number" in not_a_number.text
    assert 'value="lots"' in not_a_number.text and 'name="csrf"' in not_a_number.text
    missing = await site.http.post(link, data={"csrf": await form_of(site, link), "position": "confirm", "amount": ""})
    assert missing.status_code == 400 and "Enter the amount Philippines pledges" in missing.text
    assert "position" not in site.ledger_kinds()

    pledged = await site.http.post(
        link, data={"csrf": await form_of(site, link), "position": "confirm", "amount": "2,500.5"}
    )
    assert pledged.status_code == 200 and 'id="amount-confirmed">USD 2,500.50<' in pledged.text
    live = await handle.query("status", result_type=RoundStatus)
    assert live.positions[MemberState.PH].amount == Decimal("2500.50")
    # Declining needs no amount; the latest answer stands.
    declined = await site.http.post(link, data={"csrf": await form_of(site, link), "position": "decline"})
    assert declined.status_code == 200 and "amount-confirmed" not in declined.text
    live = await handle.query("status", result_type=RoundStatus)
    assert live.positions[MemberState.PH].position is Position.DECLINE
    reopened = await site.http.get(link)
    assert "current answer" in reopened.text and "Decline" in reopened.text


async def test_links_and_forms_outlive_a_key_rotation_until_the_key_is_retired(site: Site, worker: Worker) -> None:
    await site.start_round(1, RoundPurpose.REVIEW)
    old_key = site.settings.signing_key
    link = site.action_link(1)  # as emailed before the rotation
    old_form = {"csrf": await form_of(site, link), "position": "approve"}

    def settings_with(**keys: str) -> Settings:
        return Settings(data_dir=site.settings.data_dir, database_url=site.settings.database_url, dev=True, **keys)

    new_key = f"rotated-signing-key-{uuid.uuid4().hex}"
    site.app.state.settings = settings_with(
        secret_key=new_key, secret_key_id="2027-01", previous_secret_keys=f"{key_id_of(old_key)}:{old_key}"
    )
    assert (await site.http.get(link)).status_code == 200
    receipt = await site.http.post(link, data=old_form)  # the form shown before the rotation is still good
    assert receipt.status_code == 200 and _ENTRY_HASH.search(receipt.text)
    claims = ActionClaims(
        proposal_id=site.proposal_id,
        round=1,
        state=MemberState.PH,
        delegate_id=site.delegate_id,
        document_sha256=site.v2.sha256,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    new_link = f"/act/{sign_action(site.app.state.settings.signing_keys, claims)}"
    assert new_link.startswith("/act/2027-01.")
    new_form = {"csrf": await form_of(site, new_link), "position": "abstain"}

    site.app.state.settings = settings_with(secret_key=new_key, secret_key_id="2027-01")  # the old key retired
    for method in ("GET", "POST"):
        retired = await site.http.request(method, link, data=old_form)
        assert_clear_page(retired, 400)
        text = " ".join(retired.text.split())
        assert "signed with a key that has been retired; use the link in the most recent email" in text
    answered = await site.http.post(new_link, data=new_form)
    assert answered.status_code == 200 and _ENTRY_HASH.search(answered.text)
    assert site.ledger_kinds().count("position") == 2


async def test_a_link_to_a_superseded_version_shows_no_form(site: Site, worker: Worker) -> None:
    await site.start_round(1, RoundPurpose.REVIEW)  # reviews version 2
    link = site.action_link(1, document_sha256=site.v1.sha256)

    page = await site.http.get(link)
    assert_clear_page(page, 409)
    assert "The document has changed" in page.text and "use the link in the most recent email" in page.text
    assert '<form method="post"' not in page.text
    form = {"csrf": csrf_token(site.settings.signing_key, link.removeprefix("/act/")), "position": "approve"}
    refused = await site.http.post(link, data=form)
    assert_clear_page(refused, 409)
    assert "position" not in site.ledger_kinds()


# --- the comment page ----------------------------------------------------------------------------------------


async def test_a_stakeholder_comments_and_sees_the_response(site: Site, worker: Worker) -> None:
    handle = await site.start_consultation(timedelta(days=1))
    link = f"/comment/{site.comment_token()}"
    for _ in range(2):  # mail scanners prefetch links: opening the page records nothing
        page = await site.http.get(link)
        assert page.status_code == 200
    text = " ".join(page.text.split())
    assert "Operational Framework" in text and "All members, including Timor-Leste." in text
    assert "&lt;script&gt;" in page.text and "<script" not in page.text
    assert "advisory" in text and "never a vote" in text
    assert "Asia/Bangkok" in text and "UTC" in text and site.v2.sha256 in text
    assert page.text.count('<form method="post"') == 1 and page.text.count("<button") == 1
    assert '<label for="text">' in page.text and '<label for="section">' in page.text
    assert re.search(r'<textarea id="text" name="text"[^>]*required', page.text)
    assert "comment" not in site.ledger_kinds()

    assert_clear_page(await site.http.post(link, data={"text": "No form token."}), 403)
    empty = await site.http.post(link, data={"csrf": await form_of(site, link), "text": "   ", "section": "4.1"})
    assert empty.status_code == 400 and "Write your comment" in empty.text and 'value="4.1"' in empty.text
    assert "comment" not in site.ledger_kinds()

    form = {
        "csrf": await form_of(site, link),
        "text": "Incident reports should never identify people.",
        "section": "4.1",
    }
    first = await site.http.post(link, data=form)
    again = await site.http.post(link, data=form)
    assert first.status_code == again.status_code == 200
    comment_id = _COMMENT_ID.search(first.text).group(1)  # type: ignore[union-attr]
    assert comment_id == _COMMENT_ID.search(again.text).group(1)  # type: ignore[union-attr]
    assert _ENTRY_HASH.search(first.text).group(1) == _ENTRY_HASH.search(again.text).group(1)  # type: ignore[union-attr]
    assert site.ledger_kinds().count("comment") == 1

    status = await handle.query("status", result_type=ConsultationStatus)
    [comment] = status.comments
    assert (comment.comment_id, comment.stakeholder_id, comment.sector) == (
        comment_id,
        Site.stakeholder_id,
        Sector.CIVIL_SOCIETY,
    )
    # The workflow holds the body's hash; the body is stored once under it.
    assert comment.text is None and comment.section == "4.1"
    with Session(site.engine) as session:
        blob = session.get(CommentBlob, comment.text_sha256)
    assert blob is not None and blob.body == form["text"]

    page = await site.http.get(link)
    assert "Your comments" in page.text and form["text"] in page.text and "Awaiting" in page.text
    await handle.execute_update(
        "respond",
        DispositionInput(
            comment_id=comment_id, disposition=Disposition.PARTLY, reason="Section 4.1.2 now anonymises reports."
        ),
        result_type=Comment,
    )
    page = await site.http.get(link)
    assert "Partly accepted" in page.text and "Section 4.1.2 now anonymises reports." in page.text


async def test_a_closed_consultation_takes_no_comment_but_keeps_receipts(site: Site, worker: Worker) -> None:
    handle = await site.start_consultation(timedelta(seconds=4))
    link = f"/comment/{site.comment_token()}"
    sent = {"csrf": await form_of(site, link), "text": "Please add a research-access track."}
    receipt = await site.http.post(link, data=sent)
    assert receipt.status_code == 200
    late = {"csrf": await form_of(site, link), "text": "Too late."}

    for _ in range(200):
        if not (await handle.query("status", result_type=ConsultationStatus)).is_open:
            break
        await asyncio.sleep(0.1)
    closed = await site.http.get(link)
    assert_clear_page(closed, 410)
    assert "consultation is closed" in closed.text and "research-access track" in closed.text
    refused = await site.http.post(link, data=late)
    assert_clear_page(refused, 410)
    assert "consultation is closed" in refused.text and "research-access track" in refused.text
    replay = await site.http.post(link, data=sent)  # the form sent in time still gets its receipt
    assert replay.status_code == 200 and _ENTRY_HASH.search(replay.text).group(1) == _ENTRY_HASH.search(
        receipt.text
    ).group(1)  # type: ignore[union-attr]
    assert site.ledger_kinds().count("comment") == 1

    # Once answered, the consultation completes; the page still shows the sealed response.
    comment_id = _COMMENT_ID.search(receipt.text).group(1)  # type: ignore[union-attr]
    await handle.execute_update(
        "respond",
        DispositionInput(comment_id=comment_id, disposition=Disposition.NOTED, reason="Deferred to 2027."),
        result_type=Comment,
    )
    await handle.result()
    after = await site.http.get(link)
    assert_clear_page(after, 410)
    assert "Noted" in after.text and "Deferred to 2027." in after.text


# --- end to end: the consultation email's link, through the whole embedded stack -----------------------------

ROSTER = """\
delegates:
  - state: PH
    role: focal_point
    name: "Maria Santos"
    email: maria.santos@ph.example.org
    timezone: Asia/Manila
  - role: stakeholder
    sector: civil_society
    organisation: "Mekong Responsible AI Network"
    name: "Pimchanok Rattanakul"
    email: pimchanok.r@mekong-rai.example.org
    timezone: Asia/Bangkok
"""


@pytest.fixture
async def stack(tmp_path: Path, dev_env: WorkflowEnvironment) -> AsyncIterator[EmbeddedStack]:
    running = EmbeddedStack(
        tmp_path / "stack",
        StackPorts(web=free_port(), temporal=0, ui=None, smtp=free_port()),
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"aisafe-{uuid.uuid4().hex[:8]}",
    )
    await running.start()
    yield running
    await running.stop()


async def test_a_stakeholder_comments_through_the_emailed_link(tmp_path: Path, stack: EmbeddedStack) -> None:
    assert stack.settings and stack.client
    shutil.copy(EXAMPLES / "operational-framework.md", tmp_path / "framework.md")
    (tmp_path / "roster.yaml").write_text(ROSTER)
    (tmp_path / "proposal.yaml").write_text(
        "title: ASEAN AI SAFE Operational Framework\n"
        "kind: operational_framework\n"
        "document: framework.md\n"
        "process:\n"
        "  stages:\n"
        "    - {type: consultation, deadline: P1D, sectors: [civil_society]}\n"
        "    - {type: member_review, deadline: P14D}\n"
    )
    engine = make_engine(stack.settings.sqlalchemy_url)
    operations.import_roster(engine, load_roster_file(tmp_path / "roster.yaml"))
    proposal_id = await operations.propose(stack.client, engine, stack.settings, tmp_path / "proposal.yaml")
    try:
        [mail] = await mails_matching(
            stack.settings.mail_dir,
            proposal_id,
            lambda m: m.kind == "consultation" and "/comment/" in m.link,
            1,
            "the consultation invitation",
        )
        async with httpx.AsyncClient(timeout=30) as http:
            page = await http.get(mail.link)
            assert page.status_code == 200 and "advisory" in page.text and "Pimchanok Rattanakul" in page.text
            assert "comment" not in [e.kind for e in ledger_entries(stack, proposal_id)]
            csrf = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
            form = {
                "csrf": csrf,
                "text": "Incident reports should never identify affected individuals.",
                "section": "4.1",
            }
            receipt = await http.post(mail.link, data=form)
            assert receipt.status_code == 200, receipt.text[:500]
            comment_id = _COMMENT_ID.search(receipt.text).group(1)  # type: ignore[union-attr]
            entry_hash = _ENTRY_HASH.search(receipt.text).group(1)  # type: ignore[union-attr]

            # The dashboard (for a signed-in coordinator) shows where the proposal stands, stage by stage.
            coordinator = add_user(engine, "coordinator", UserRole.COORDINATOR)
            dashboard = await http.get(stack.web_url + "/", headers={"Authorization": f"Bearer {coordinator}"})
            assert dashboard.status_code == 200
            timeline = re.findall(
                r'<li class="stage stage-(\w+)"[^>]*>\s*<span class="stage-name">([^<]+)</span>', dashboard.text
            )
            assert ("running", "Stakeholder consultation") in timeline and (
                "pending",
                "WG-AI member review",
            ) in timeline
            assert "1 comment, 0 answered" in dashboard.text

        consultation = await operations.consultation(stack.client, proposal_id, engine)
        [comment] = consultation.comments
        assert (comment.comment_id, comment.text, comment.section) == (comment_id, form["text"], "4.1")
        assert comment.sector is Sector.CIVIL_SOCIETY and comment.ledger_entry_hash == entry_hash
        entries = ledger_entries(stack, proposal_id)
        assert [e.entry_hash for e in entries if e.kind == "comment"] == [entry_hash]
        assert_chain_intact(entries)
    finally:
        engine.dispose()
        await stack.client.get_workflow_handle(proposal_id).terminate("test finished")


async def test_a_state_under_a_silence_procedure_is_offered_concur_or_object(site: Site, worker: Worker) -> None:
    handle = await site.start_round(7, RoundPurpose.REVIEW, deadline=datetime.now(UTC) + timedelta(seconds=2))
    for _ in range(200):  # the deadline passes with both states silent: the round is overdue
        if (await handle.query(ReviewRoundWorkflow.status)).overdue:
            break
        await asyncio.sleep(0.05)
    await handle.execute_update(
        ReviewRoundWorkflow.silence_procedure, SilenceProcedureInput(duration=timedelta(days=7))
    )
    link = site.action_link(7)

    page = await site.http.get(link)

    assert page.status_code == 200
    text = " ".join(page.text.split())
    assert "unless Philippines objects by" in text and "Philippines is deemed to concur" in text
    assert _CHOICE.findall(page.text) == [p.value for p in AD_REFERENDUM_POSITIONS]
    refused = await site.http.post(
        link, data={"csrf": await form_of(site, link), "position": "request_changes", "reason": "x"}
    )
    assert refused.status_code == 400 and "is not an answer this round takes" in refused.text
    receipt = await site.http.post(
        link, data={"csrf": await form_of(site, link), "position": "object", "reason": "not in this form"}
    )
    assert receipt.status_code == 200 and _ENTRY_HASH.search(receipt.text)
    assert site.ledger_kinds().count("position") == 1
