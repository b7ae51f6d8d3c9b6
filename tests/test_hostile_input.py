"""Hostile input: random, truncated, altered, re-signed, expired, cross-state, revoked, superseded and closed-round
links, malformed forms and bodies, and every operation of the app's OpenAPI schema never get a 5xx and never
record anything; floods of requests get a 429 page with Retry-After.

Property-based (Hypothesis, and Schemathesis for the schema) on the web test setup of tests/test_web.py: the app
in process, the real dev server running the real round and consultation workflows, the real ledger.
"""

from __future__ import annotations

import asyncio
import string
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from sqlmodel import Session, col, func, select
from temporalio.worker import Worker

from models.messages import PositionSubmission, RoundPurpose, RoundStatus
from models.positions import REVIEW_POSITIONS, Position
from models.settings import Settings
from models.states import MemberState
from models.tables import DelegateRecord, LedgerEntry
from models.tokens import (
    _SALT,
    ActionClaims,
    CommentClaims,
    SigningKeys,
    TokenError,
    csrf_token,
    key_id_of,
    sign_action,
    sign_comment,
    verify_action,
    verify_comment,
)
from tests import test_web
from tests.test_web import Site, assert_clear_page
from web import ratelimit
from web.ratelimit import LinkLimiter, TokenBucket

# The web test setup of tests/test_web.py: the app in process on the real dev server, its database, a worker.
site = test_web.site
worker = test_web.worker

T = TypeVar("T")
OTHER_SECRET = "someone-elses-key-3a9f0d1c2b7e4f5a6b8c9d0e1f2a3b4c"
REVOKED_DELEGATE = "PH-0000000000000009"
B64URL = string.ascii_letters + string.digits + "-_"
RECORDING_KINDS = ("position", "comment")


async def fuzz(strategy: st.SearchStrategy[T], check: Callable[[T], Awaitable[None]], examples: int) -> int:
    """Run `check` on `examples` draws of `strategy` (plus the strategy's explicit examples); returns how many ran.

    Hypothesis is synchronous, so it runs in a worker thread; each case runs on the test's event loop, where the
    app, its Temporal client and the HTTP client live."""
    loop = asyncio.get_running_loop()
    ran = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one_case(value: T) -> None:
        nonlocal ran
        ran += 1
        asyncio.run_coroutine_threadsafe(check(value), loop).result(timeout=120)

    await asyncio.to_thread(one_case)
    return ran


def recorded(site: Site) -> Counter[str]:
    """Ledger entries that a link records (positions and comments), by kind, across every proposal."""
    with Session(site.engine) as session:
        rows = session.exec(
            select(LedgerEntry.kind, func.count())
            .where(col(LedgerEntry.kind).in_(RECORDING_KINDS))
            .group_by(LedgerEntry.kind)
        ).all()
    return Counter(dict(rows))


def legacy(secret: str, claims: ActionClaims) -> str:
    """An action link as issued before links named their key."""
    payload = claims.model_dump(mode="json") | {"expires_at": int(claims.expires_at.timestamp())}
    return str(URLSafeSerializer(secret, salt=_SALT).dumps(payload))


@dataclass
class Target:
    """A proposal with an open review round, a closed one and an open consultation, and every kind of link to it
    that a visitor can hold, by kind."""

    site: Site
    act: dict[str, str]
    comment: dict[str, str]
    open_action: ActionClaims
    open_comment: CommentClaims
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def token(self, route: str, kind: str) -> str:
        return (self.act if route == "act" else self.comment)[kind]

    def can_record(self, route: str, token: str) -> bool:
        """Whether `token` is a good link to what is open (so only the form stands between it and a record)."""
        keys = self.site.settings.signing_keys
        try:
            if route == "act":
                return verify_action(keys, token) == self.open_action
            return verify_comment(keys, token) == self.open_comment
        except TokenError:
            return False


@pytest.fixture
async def target(site: Site, worker: Worker) -> Target:
    # Floods are tested on their own below; here every case must reach the page.
    site.app.state.link_limiter = LinkLimiter(site.settings.model_copy(update={"rate_limit_per_token": 0}))
    with Session(site.engine) as session:
        session.add(
            DelegateRecord(
                id=REVOKED_DELEGATE,
                state="PH",
                role="alternate",
                name="Former Alternate",
                email="former@ph.example.org",
                timezone="Asia/Manila",
                active=False,
            )
        )
        session.commit()
    await site.start_round(1, RoundPurpose.REVIEW)
    await site.start_consultation(timedelta(days=1))
    closed = await site.start_round(2, RoundPurpose.REVIEW)
    for state, delegate in ((MemberState.PH, Site.delegate_id), (MemberState.SG, "SG-0000000000000001")):
        answer = PositionSubmission(
            proposal_id=site.proposal_id,
            round=2,
            state=state,
            delegate_id=delegate,
            document_sha256=site.v2.sha256,
            position=Position.APPROVE,
        )
        await closed.execute_update("submit_position", answer, id=f"close-{state.value}")
    await closed.result()  # every participant answered: the round closed

    def act(**changes: Any) -> str:
        return site.action_link(1, **changes).removeprefix("/act/")

    open_action = verify_action(site.settings.signing_keys, act())
    open_comment = verify_comment(site.settings.signing_keys, site.comment_token())
    return Target(
        site,
        act={
            "open": act(),
            "open-legacy": legacy(site.settings.signing_key, open_action),
            "expired": act(expires_in=timedelta(seconds=-1)),
            "closed-round": site.action_link(2).removeprefix("/act/"),
            "no-such-round": site.action_link(99).removeprefix("/act/"),
            "cross-state": act(state=MemberState.SG),
            "not-a-participant": act(state=MemberState.MY, delegate_id="MY-0000000000000001"),
            "unknown-delegate": act(delegate_id="PH-ffffffffffffffff"),
            "revoked-delegate": act(delegate_id=REVOKED_DELEGATE),
            "superseded-document": act(document_sha256=site.v1.sha256),
            "unknown-document": act(document_sha256="f" * 64),
            "unknown-proposal": act(proposal_id="p-unknown"),
            "retired-key": sign_action(SigningKeys("2020-01", OTHER_SECRET), open_action),
            "forged-under-our-key-id": sign_action(
                SigningKeys(key_id_of(site.settings.signing_key), OTHER_SECRET), open_action
            ),
            "forged-legacy": legacy(OTHER_SECRET, open_action),
            "comment-link": site.comment_token(),
        },
        comment={
            "open": site.comment_token(),
            "expired": site.comment_token(expires_in=timedelta(seconds=-1)),
            "no-such-consultation": site.comment_token(stage_index=7),
            "revoked-stakeholder": site.comment_token(stakeholder_id="SH-0000000000000002"),
            "unknown-stakeholder": site.comment_token(stakeholder_id="SH-ffffffffffffffff"),
            "a-delegate-not-a-stakeholder": site.comment_token(stakeholder_id=Site.delegate_id),
            "superseded-document": site.comment_token(document_sha256=site.v1.sha256),
            "unknown-document": site.comment_token(document_sha256="f" * 64),
            "unknown-proposal": site.comment_token(proposal_id="p-unknown"),
            "retired-key": sign_comment(SigningKeys("2020-01", OTHER_SECRET), open_comment),
            "action-link": act(),
        },
        open_action=open_action,
        open_comment=open_comment,
    )


# --- every kind of link, as a delegate or stakeholder would meet it -------------------------------------------

LINK_PAGES: list[tuple[str, str, int, str]] = [
    ("act", "open", 200, '<form method="post"'),
    ("act", "open-legacy", 200, '<form method="post"'),
    ("act", "expired", 410, "the link has expired"),
    ("act", "closed-round", 410, "If a new round has opened, your state's delegates have received a new email"),
    ("act", "no-such-round", 410, "This review round is closed"),
    ("act", "cross-state", 403, "Contact your state's focal point or the secretariat"),
    ("act", "not-a-participant", 403, "Contact your state's focal point or the secretariat"),
    ("act", "unknown-delegate", 403, "no longer on the roster"),
    ("act", "revoked-delegate", 403, "no longer on the roster for this state"),
    ("act", "superseded-document", 409, "use the link in the most recent email"),
    ("act", "unknown-document", 404, "a proposal or document we do not hold"),
    ("act", "unknown-proposal", 404, "a proposal or document we do not hold"),
    ("act", "retired-key", 400, "signed with a key that has been retired; use the link in the most recent email"),
    ("act", "forged-under-our-key-id", 400, "altered"),
    ("act", "forged-legacy", 400, "altered"),
    ("act", "comment-link", 400, "Use the link exactly as it appears in the email"),
    ("comment", "open", 200, '<form method="post"'),
    ("comment", "expired", 410, "the link has expired"),
    ("comment", "no-such-consultation", 410, "This consultation is closed"),
    ("comment", "revoked-stakeholder", 403, "Contact the ASEAN AI SAFE secretariat"),
    ("comment", "unknown-stakeholder", 403, "no longer invited to comment"),
    ("comment", "a-delegate-not-a-stakeholder", 403, "no longer invited to comment"),
    ("comment", "superseded-document", 409, "use the link in the most recent email"),
    ("comment", "unknown-document", 404, "a proposal or document we do not hold"),
    ("comment", "unknown-proposal", 404, "a proposal or document we do not hold"),
    ("comment", "retired-key", 400, "signed with a key that has been retired"),
    ("comment", "action-link", 400, "Use the link exactly as it appears in the email"),
]


async def test_each_kind_of_link_gets_its_page_and_a_bad_one_says_what_to_do(target: Target) -> None:
    http = target.site.http
    assert {(r, k) for r, k, _, _ in LINK_PAGES} == {("act", k) for k in target.act} | {
        ("comment", k) for k in target.comment
    }
    before = recorded(target.site)
    for route, kind, status, says in LINK_PAGES:
        token = target.token(route, kind)
        page = await http.get(f"/{route}/{token}")
        assert_clear_page(page, status)
        assert says in " ".join(page.text.replace("&#39;", "'").split()), (route, kind)
        if status == 200:
            continue
        # A valid form for the link changes nothing either: the POST is refused just like the GET.
        form = {"csrf": csrf_token(target.site.settings.signing_keys, token), "position": "approve", "text": "Hi."}
        refused = await http.post(f"/{route}/{token}", data=form)
        assert 400 <= refused.status_code < 500, (route, kind, refused.status_code)
        assert "<h1>" in refused.text
    assert recorded(target.site) == before


async def test_opening_a_link_any_number_of_times_records_nothing(target: Target) -> None:
    """Mail scanners prefetch links, with any query string: GET never answers for the delegate."""
    csrf = csrf_token(target.site.settings.signing_keys, target.act["open"])
    before = recorded(target.site)
    for number in range(12):
        for route in ("act", "comment"):
            query = {"position": "approve", "csrf": csrf, "text": "prefetched"} if number % 2 else {}
            page = await target.site.http.get(f"/{route}/{target.token(route, 'open')}", params=query)
            assert page.status_code == 200
    assert recorded(target.site) == before
    live = await target.site.client.get_workflow_handle(target.open_action.round_workflow_id).query(
        "status", result_type=RoundStatus
    )
    assert live.positions == {}


# --- fuzzing the link routes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCase:
    route: str
    method: str
    token: str
    csrf: str  # "valid", "other-link", "truncated", "none", or a literal value
    form: dict[str, str]
    query: dict[str, str]


def mutate(token: str, how: str, at: int, char: str) -> str:
    at = at % (len(token) + 1)
    return {
        "truncate": token[:at],
        "drop-head": token[at:],
        "replace": token[:at] + char + token[at + 1 :],
        "insert": token[:at] + char + token[at:],
        "delete": token[:at] + token[at + 1 :],
        "append": token + char * (at % 7 + 1),
    }[how]


def link_cases(target: Target) -> st.SearchStrategy[LinkCase]:
    """Links of every kind (named, random, mutated, re-signed with other keys) with random forms."""
    our_kid = key_id_of(target.site.settings.signing_key)

    def resigned(route: str, secret: str, kid: str) -> str:
        keys = SigningKeys(kid, secret)
        if route == "act":
            return sign_action(keys, target.open_action)
        return sign_comment(keys, target.open_comment)

    @st.composite
    def token_for(draw: st.DrawFn, route: str) -> str:
        named = target.act if route == "act" else target.comment
        base = draw(st.sampled_from(sorted(named.values())))
        return draw(
            st.one_of(
                st.just(base),  # three times: half the cases use a link of a named kind as it is
                st.just(base),
                st.just(base),
                st.text(max_size=300),
                st.integers(2000, 5000).map(lambda n: "A" * n),
                st.builds(
                    mutate,
                    st.just(base),
                    st.sampled_from(["truncate", "drop-head", "replace", "insert", "delete", "append"]),
                    st.integers(0, 400),
                    st.sampled_from(B64URL + ".~%/ é\x00"),
                ),
                st.builds(
                    resigned,
                    st.just(route),
                    st.text(min_size=1, max_size=40),
                    st.one_of(st.just(our_kid), st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)),
                ),
            )
        )

    field_values = st.one_of(st.text(max_size=80), st.integers(3990, 10_050).map(lambda n: "x" * n))
    forms = st.fixed_dictionaries(
        {},
        optional={
            "position": st.one_of(st.sampled_from([p.value for p in Position]), st.text(max_size=30)),
            "reason": field_values,
            "amount": st.one_of(st.text(max_size=30), st.decimals().map(str)),
            "text": field_values,
            "section": st.one_of(st.text(max_size=40), st.integers(195, 260).map(lambda n: "s" * n)),
            "csrf_extra": st.text(max_size=20),
        },
    )

    @st.composite
    def case(draw: st.DrawFn) -> LinkCase:
        route = draw(st.sampled_from(["act", "comment"]))
        return LinkCase(
            route=route,
            method=draw(st.sampled_from(["GET", "POST"])),
            token=draw(token_for(route)),
            csrf=draw(st.one_of(st.sampled_from(["valid", "other-link", "truncated", "none"]), st.text(max_size=250))),
            form=draw(forms),
            query=draw(st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=2)),
        )

    return case()


def harmless(target: Target, case: LinkCase, csrf: str | None) -> dict[str, str]:
    """The case's form, changed just enough that a good link with a valid form token cannot record anything
    (a complete, valid answer is not hostile input: recording it is the app's job)."""
    form = dict(case.form)
    if csrf is None or case.csrf != "valid" or not target.can_record(case.route, case.token):
        return form
    if case.route == "act":
        reason = form.get("reason", "")
        chosen = form.get("position")
        could_pass = chosen in {p.value for p in REVIEW_POSITIONS} and len(reason) <= 4000
        if could_pass and (not Position(chosen).needs_reason or reason.strip()):
            form["position"] = Position.CONFIRM.value  # not an answer a review round takes
    else:
        text = form.get("text", "").replace("\r\n", "\n").strip()
        if text and len(text) <= 10_000 and len(form.get("section", "").strip()) <= 200:
            form["text"] = "  "
    return form


def csrf_for(target: Target, case: LinkCase) -> str | None:
    keys = target.site.settings.signing_keys
    match case.csrf:
        case "valid":
            return csrf_token(keys, case.token)
        case "other-link":
            return csrf_token(keys, target.token(case.route, "open") + "x")
        case "truncated":
            return csrf_token(keys, case.token)[:-2]
        case "none":
            return None
        case literal:
            return literal


def every_named_link(target: Target) -> list[LinkCase]:
    """Every named link, both methods, with a valid form token and an answer, and a form token that is not ASCII
    (once a 500): run before the random cases."""
    form = {"position": "approve", "reason": "", "text": "A comment."}
    non_ascii_csrf = [
        LinkCase(route, "POST", target.token(route, "open"), "n.é", form, {}) for route in ("act", "comment")
    ]
    return non_ascii_csrf + [
        LinkCase(route, method, token, "valid", form, {})
        for route, named in (("act", target.act), ("comment", target.comment))
        for token in named.values()
        for method in ("GET", "POST")
    ]


async def test_fuzzed_links_and_forms_never_get_a_5xx_and_never_record(target: Target) -> None:
    examples = 500
    site = target.site
    before = recorded(site)

    async def check(case: LinkCase) -> None:
        csrf = csrf_for(target, case)
        form = harmless(target, case, csrf) | ({"csrf": csrf} if csrf is not None else {})
        url = f"/{case.route}/{quote(case.token, safe='')}"
        if case.method == "GET":
            response = await site.http.get(url, params=case.query)
        else:
            response = await site.http.post(url, params=case.query, data=form)
        assert response.status_code < 500, (case, response.status_code, response.text[:300])
        # A page that says what happened; "/act/" with no token at all is redirected to "/act" (then a 404 page).
        assert response.is_redirect or "<h1>" in response.text, (case, response.status_code)
        assert "Traceback" not in response.text, case
        assert recorded(site) == before, case
        target.statuses[(case.route, case.method, response.status_code)] += 1

    named = every_named_link(target)
    for case in named:
        await check(case)
    ran = await fuzz(link_cases(target), check, examples)

    assert len(named) == 2 + 2 * (len(target.act) + len(target.comment)) == 56
    assert ran == examples
    assert sum(target.statuses.values()) == len(named) + examples
    assert recorded(site) == before
    assert {status for _, _, status in target.statuses} >= {200, 400, 403, 404, 409, 410}


BODY_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data; boundary=aisafe",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "application/json",
    "text/plain",
]


@st.composite
def raw_bodies(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """A POST body as a client may send it: any bytes, or a form or multipart body that is nearly right."""
    route = draw(st.sampled_from(["act", "comment"]))
    content_type = draw(st.one_of(st.sampled_from(BODY_TYPES), st.from_regex(r"[ -~]{0,60}", fullmatch=True)))
    field_name = draw(st.sampled_from(["csrf", "position", "reason", "text", "amount", "section", ""]))
    value = draw(st.binary(max_size=300))
    body = draw(
        st.one_of(
            st.binary(max_size=3000),
            st.just(field_name.encode() + b"=" + value),
            st.just(
                b'--aisafe\r\nContent-Disposition: form-data; name="'
                + field_name.encode()
                + b'"; filename="x.txt"\r\n\r\n'
                + value
                + draw(st.sampled_from([b"\r\n--aisafe--\r\n", b"\r\n--aisa", b""]))
            ),
        )
    )
    return route, content_type, body


async def test_fuzzed_post_bodies_never_get_a_5xx_and_never_record(target: Target) -> None:
    examples = 200
    before = recorded(target.site)

    async def check(drawn: tuple[str, str, bytes]) -> None:
        route, content_type, body = drawn
        response = await target.site.http.post(
            f"/{route}/{target.token(route, 'open')}", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code < 500, (drawn, response.status_code, response.text[:300])
        assert "<h1>" in response.text
        assert recorded(target.site) == before

    assert await fuzz(raw_bodies(), check, examples) == examples
    assert recorded(target.site) == before


# --- the whole HTTP surface, from the OpenAPI schema -----------------------------------------------------------


async def test_every_operation_in_the_openapi_schema_answers_without_a_server_error(target: Target) -> None:
    """Schemathesis over `app.openapi()` (the app serves no docs page, but its schema is generated): links,
    sign-in, the auditor pages and the dashboard. Unauthenticated, the signed-in pages answer 401/303, never 5xx."""
    site = target.site
    schema = schemathesis.openapi.from_dict(site.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"GET /act/{token}", "POST /act/{token}", "GET /comment/{token}", "POST /comment/{token}"} <= labels
    assert {"GET /", "GET /healthz", "POST /signin"} <= labels
    before = recorded(site)
    statuses: Counter[str] = Counter()

    async def check(case: Any) -> None:
        sent = case.as_transport_kwargs(base_url=str(site.http.base_url))
        headers = dict(sent.get("headers") or {})
        if sent.get("cookies"):
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in sent["cookies"].items())
        response = await site.http.request(
            sent["method"],
            sent["url"],
            headers=headers,
            params=sent.get("params"),
            data=sent.get("data"),
            json=sent.get("json"),
            files=sent.get("files"),
            follow_redirects=False,
        )
        case.validate_response(response, checks=[not_a_server_error])
        assert recorded(site) == before
        statuses[case.operation.label] += 1

    per_operation = 25
    for operation in operations:
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        strategy = st.one_of(operation.as_strategy(generation_mode=mode) for mode in modes)
        ran = await fuzz(strategy, check, per_operation)
        takes = sum(len(p) for p in (operation.path_parameters, operation.query, operation.headers, operation.body))
        # An operation that takes nothing has a single request to make (Hypothesis stops when none is left).
        assert ran == per_operation if takes else ran >= 1, operation.label

    assert set(statuses) == labels
    assert recorded(site) == before


# --- floods: per link and per client address ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_one_request_per_refill_interval() -> None:
    clock = Clock()
    bucket = TokenBucket(30, clock)

    assert [bucket.take("link") for _ in range(30)] == [None] * 30
    assert bucket.take("link") == 2  # 30 a minute: one every 2 s
    assert bucket.take("another link") is None
    clock.now += 1.0
    assert bucket.take("link") == 1
    clock.now += 1.0
    assert bucket.take("link") is None
    assert bucket.take("link") == 2
    clock.now += 3600
    assert [bucket.take("link") for _ in range(31)].count(None) == 30  # never more than the burst


def test_a_bucket_forgets_the_least_recently_seen_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_TRACKED", 3)
    bucket = TokenBucket(1, Clock())
    for key in ("a", "b", "c", "d"):
        assert bucket.take(key) is None

    assert bucket.take("d") is not None and bucket.take("c") is not None
    assert bucket.take("a") is None  # forgotten (the memory is bounded), so it starts afresh


def use_limits(site: Site, clock: Clock, **limits: Any) -> None:
    site.app.state.link_limiter = LinkLimiter(site.settings.model_copy(update=limits), clock)


async def test_one_link_opened_too_often_gets_429_with_retry_after(site: Site) -> None:
    clock = Clock()
    use_limits(site, clock)  # the defaults: 30 a minute per link
    assert site.settings.rate_limit_per_token == 30
    link = f"/comment/{site.comment_token()}"  # no consultation runs: a "closed" page, each time
    for number in range(30):
        if number % 2:
            assert (await site.http.get(link)).status_code == 410
        else:
            assert (await site.http.post(link, data={"text": "x"})).status_code == 403  # no form token

    for method in ("GET", "POST"):
        limited = await site.http.request(method, link, data={"reason": "x" * 5000} if method == "POST" else None)
        assert_clear_page(limited, 429)
        assert limited.headers["Retry-After"] == "2"
        assert "Too many requests" in limited.text and "opened too many times" in limited.text
        assert "Wait 2 seconds" in limited.text and "Nothing was recorded" in limited.text
    assert (await site.http.get("/act/garbage")).status_code == 400  # another link is not held back
    assert (await site.http.get("/healthz")).status_code == 200
    clock.now += 2
    assert (await site.http.get(link)).status_code == 410
    assert (await site.http.get(link)).status_code == 429
    assert recorded(site) == Counter()


async def test_one_client_address_behind_a_trusted_proxy_is_limited_across_links(site: Site) -> None:
    clock = Clock()
    use_limits(site, clock, rate_limit_per_address=5, trusted_proxies=1)
    client = {"X-Forwarded-For": "198.51.100.7"}
    for number in range(5):
        assert (await site.http.get(f"/act/garbage-{number}", headers=client)).status_code == 400

    limited = await site.http.get("/act/garbage-new", headers=client)
    assert_clear_page(limited, 429)
    assert limited.headers["Retry-After"] == "12"  # 5 a minute
    assert "from your network" in limited.text
    # The proxy appends the address it saw: an address the client put before it changes nothing.
    spoofed = await site.http.post("/act/garbage-new", headers={"X-Forwarded-For": "203.0.113.1, 198.51.100.7"})
    assert spoofed.status_code == 429
    assert (await site.http.get("/act/garbage-new", headers={"X-Forwarded-For": "198.51.100.8"})).status_code == 400
    assert (await site.http.get("/act/garbage-new")).status_code == 400  # no header: the proxy itself, exempt
    clock.now += 12
    assert (await site.http.get("/act/garbage-new", headers=client)).status_code == 400


async def test_x_forwarded_for_is_ignored_unless_a_proxy_is_trusted(site: Site) -> None:
    use_limits(site, Clock(), rate_limit_per_address=5, rate_limit_exempt="")
    assert site.settings.trusted_proxies == 0
    for number in range(5):
        headers = {"X-Forwarded-For": f"198.51.100.{number}"}
        assert (await site.http.get(f"/act/garbage-{number}", headers=headers)).status_code == 400

    refused = await site.http.get("/act/garbage-5", headers={"X-Forwarded-For": "198.51.100.99"})
    assert refused.status_code == 429


async def test_the_host_itself_is_not_limited_per_address_by_default(site: Site) -> None:
    """`aisafe demo` and `make bench` click every delegate's link from 127.0.0.1."""
    use_limits(site, Clock(), rate_limit_per_address=5)
    assert "127.0.0.1" in site.settings.rate_limit_exempt.split(",")
    for number in range(20):
        assert (await site.http.get(f"/act/garbage-{number}")).status_code == 400


def test_rate_limit_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PER_TOKEN", "PER_ADDRESS", "EXEMPT"):
        monkeypatch.delenv(f"AISAFE_RATE_LIMIT_{name}", raising=False)
    monkeypatch.delenv("AISAFE_TRUSTED_PROXIES", raising=False)
    defaults = Settings()
    assert (defaults.rate_limit_per_token, defaults.rate_limit_per_address, defaults.trusted_proxies) == (30, 120, 0)
    monkeypatch.setenv("AISAFE_RATE_LIMIT_PER_TOKEN", "10")
    monkeypatch.setenv("AISAFE_RATE_LIMIT_PER_ADDRESS", "0")
    monkeypatch.setenv("AISAFE_TRUSTED_PROXIES", "2")
    monkeypatch.setenv("AISAFE_RATE_LIMIT_EXEMPT", "")

    limiter = LinkLimiter(Settings())

    assert limiter.per_token is not None and limiter.per_token.capacity == 10
    assert limiter.per_address is None and limiter.exempt == set() and limiter.trusted_proxies == 2
