"""Hostile records, generated: any value of any record is fitted or fails that one record.

Hypothesis builds users and listings in the shapes of the vendored spec (the
sandbox's generator, then the fields pfsync reads drawn by hand from the spec's
types and enums), spec-legal ones mixed with hostile ones: NUL and other control
characters, lone surrogates, 100 KB strings, numbers beyond every column's range,
wrong types, missing and null fields, a record that is not an object, duplicate
ids in one page. The sandbox serves them as given (``serve_records``) and a real
pf_sync reads, maps and writes them on the test database, page by page. Webhook
events are generated in the spec's envelope, about those served records, with
hostile payloads and envelopes, and sent signed to the real endpoint.

Whatever is generated: no exception escapes a record; each record that cannot
be saved is one error entry naming its id and the field; every record beside it
is saved. An event is refused with a 400 saying why, or stored and settled at
once (processed, or ignored with its reason), never left pending to fail again.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import (
    Agent,
    AgentLink,
    ListingState,
    Property,
    PropertyImage,
    ReportEntry,
    SyncRun,
    WebhookEvent,
)
from pfsync_app.sandbox import REMOVE, signature
from pfsync_app.sandbox.generate import make_image, make_listing, make_user
from pfsync_app.sandbox.store import apply_changes
from pfsync_app.writers.fit import clean_text, forget_columns
from tests.fixtures.faults import FastClient
from tests.fixtures.sandbox import spec_validator

pytestmark = pytest.mark.django_db(transaction=True)

PER_PAGE = 3
#: Examples per test: a multiple of the profile's (tests/conftest.py: 10 in scripts/test, 60
#: with --hypothesis-profile=long), as each is one small pf_sync or a few events, ~0.15 s.
SYNC_EXAMPLES = 10 * hypothesis_settings.default.max_examples
EVENT_EXAMPLES = 6 * hypothesis_settings.default.max_examples
ENTRY_ID_LIMIT = ReportEntry._meta.get_field("pf_id").max_length
SEED = 17

# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------

#: Text any column takes as it is: no NUL, no lone surrogate, short.
legal_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
)


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    """Text PostgreSQL refuses or no column holds whole: fitted, never a reason to fail."""
    base = draw(legal_text)
    at = draw(st.integers(0, len(base)))
    bad = draw(
        st.sampled_from(
            ["\x00", "\ud800", "\udfff", "a\x00b\ud83d", "\x01\x07\x1b\x7f", "x" * 100_000]
        )
    )
    return base[:at] + bad + base[at:]


beyond_range = st.sampled_from([10**12, 10**30, -(10**30), 2**63, -1])

# ---------------------------------------------------------------------------
# Records: what the sandbox serves, and what pfsync must make of it
# ---------------------------------------------------------------------------


@dataclass
class Case:
    """One served record: ``fails`` names the field its one error entry names (None: saved)."""

    raw: Any
    fails: str | None
    pf_id: str  # how its entries name it ("" when it has no usable id)
    hostile: str = ""  # what was done to it, for a failing example's report


#: Listing mutations that the record cannot survive: (dotted key, value, field named).
LISTING_FATAL = [
    ("bedrooms", [2], "bedrooms"),
    ("bedrooms", {"count": 2}, "bedrooms"),
    ("price.amounts.sale", "a lot", "price.amounts.sale"),
    ("size", math.nan, "size"),
    ("size", math.inf, "size"),
    ("location", "Dubai Marina", "location"),
    ("location.id", "twelve", "location.id"),
    ("title.en", ["a", "title"], "title.en"),
    ("title", "a title", "title"),
    ("createdAt", "yesterday", "createdAt"),
    ("media.images", "not a list", "media.images"),
    ("portals.propertyfinder.isLive", "yes", "portals.propertyfinder.isLive"),
]
#: Listing fields whose hostile text is fitted.
LISTING_TEXTS = [
    "reference",
    "title.en",
    "title.ar",
    "description.en",
    "description.ar",
    "category",
    "type",
    "furnishingType",
    "price.type",
]
#: Listing values that are empty, absurd or beside the column's range: fitted, with a warning.
LISTING_FITTED = [
    ("price.amounts.sale", st.sampled_from([10**30, -250, 0, 1.5e308, "12.5"])),
    ("bedrooms", st.sampled_from(["-1", -1, 10**12, "lots", "", None])),
    ("bathrooms", st.sampled_from(["-3", 10**12, "many", None])),
    ("size", st.sampled_from([10**30, -5, 0, "12.5", 1e-30, None])),
    ("location.id", beyond_range),
    ("assignedTo.id", beyond_range),
    ("media.images.0.original.width", beyond_range),
    ("media.images.0.original.height", st.sampled_from([10**12, -1, "tall", None])),
    ("media.images.0.original", st.sampled_from([None, "an image", {}])),
    ("title", st.just(None)),
    ("title", st.just(REMOVE)),
    ("description.en", st.just(None)),
    ("price", st.sampled_from([None, REMOVE, {}])),
    ("media", st.sampled_from([None, REMOVE, {"images": []}])),
    ("location", st.sampled_from([None, REMOVE])),
    ("assignedTo", st.sampled_from([None, REMOVE])),
    ("portals", st.sampled_from([None, REMOVE])),
    ("state", st.sampled_from([None, REMOVE])),
    ("createdAt", st.sampled_from([None, ""])),
    ("updatedAt", st.just(REMOVE)),
    ("reference", st.sampled_from([12345, None])),
]

#: User mutations the record cannot survive.
USER_FATAL = [
    ("firstName", ["Layla"], "firstName"),
    ("lastName", 12345, "lastName"),
    ("email", {"address": "a@b.example"}, "email"),
    ("publicProfile.id", "not a number", "publicProfile.id"),
    ("publicProfile.id", None, "publicProfile.id"),
    ("publicProfile.id", 10**30, "publicProfile.id"),
    ("publicProfile", "agent", "publicProfile"),
    ("role", "agent", "role"),
    ("createdAt", "soon", "createdAt"),
]
USER_TEXTS = ["firstName", "lastName", "email", "mobile", "status", "role.baseRoleKey"]
USER_FITTED = [
    ("lastName", st.sampled_from([None, REMOVE, ""])),
    ("mobile", st.sampled_from([None, REMOVE])),
    ("email", st.sampled_from([None, REMOVE, ""])),
    ("publicProfile", st.sampled_from([None, REMOVE])),
    ("role", st.sampled_from([None, REMOVE, {}])),
    ("status", st.sampled_from([None, "suspended"])),
    ("createdAt", st.sampled_from([None, REMOVE])),
]


def settable(raw: Any, dotted: str) -> bool:
    """Whether every parent of ``dotted`` is there to hold it (an earlier change may have
    removed one)."""
    node = raw
    for key in dotted.split(".")[:-1]:
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and isinstance(node.get(key), dict | list):
            node = node[key]
        else:
            return False
    return isinstance(node, dict)


def _legal_listing(draw: st.DrawFn, sb: Any, key: str, pf_id: str, profiles: list[int]) -> dict:
    """A spec-legal listing with the fields pfsync reads drawn from the spec's types."""
    index = draw(st.integers(0, 199))
    raw = make_listing(SEED, index, sb.url, 0, [])
    price_type = draw(st.sampled_from(["sale", "yearly", "monthly", "weekly", "daily"]))
    live = draw(st.booleans())
    raw.update(
        id=pf_id,
        reference=draw(legal_text),
        title={"en": draw(legal_text), "ar": draw(legal_text)},
        description={"en": draw(legal_text), "ar": draw(legal_text)},
        bedrooms=draw(st.sampled_from(["studio", *map(str, range(1, 31))])),
        bathrooms=draw(st.sampled_from(["none", *map(str, range(1, 21))])),
        size=draw(st.integers(1, 10**5) | st.floats(1, 10**5).map(lambda x: round(x, 2))),
        price={
            "type": price_type,
            "amounts": {price_type: draw(st.integers(1, 10**9))},
        },
        portals={"propertyfinder": {"isLive": live}},
        state={"type": "live" if live else "takendown", "stage": "live" if live else "takendown"},
    )
    if profiles and draw(st.booleans()):
        raw["assignedTo"] = {"id": draw(st.sampled_from(profiles))}
    else:
        raw.pop("assignedTo", None)
    count = draw(st.integers(0, 1))
    rng = random.Random(f"{key}:{pf_id}")
    raw["media"] = {"images": [make_image(rng, sb.url, key, "jpg") for _ in range(count)]}
    spec_validator("#/components/schemas/response-combined-flat").validate(raw)
    return raw


@st.composite
def listing_cases(draw: st.DrawFn, sb: Any, prefix: str, profiles: list[int]) -> list[Case]:
    """One page's worth of listings (a few pages at PER_PAGE): legal, fitted and failing ones."""
    cases: list[Case] = []
    for number in range(draw(st.integers(1, 8))):
        key = f"raw-{number}"
        pf_id = f"{prefix}L{number}"
        raw = _legal_listing(draw, sb, key, pf_id, profiles)
        kind = draw(st.sampled_from(["legal", "legal", "text", "fitted", "fatal", "id", "shape"]))
        saved = [c for c in cases if c.fails is None and isinstance(c.raw, dict)]
        if kind == "legal" and saved and draw(st.integers(0, 4)) == 0:
            twin = saved[-1]
            cases.append(Case(twin.raw, None, twin.pf_id, "a duplicate id in the page"))
            continue
        case = Case(raw, None, pf_id)
        if kind == "text":
            for field in draw(st.lists(st.sampled_from(LISTING_TEXTS), min_size=1, max_size=3)):
                apply_changes(raw, {field: draw(hostile_text())})
                case.hostile += f"{field}=hostile text; "
        elif kind == "fitted":
            for field, values in draw(
                st.lists(st.sampled_from(LISTING_FITTED), min_size=1, max_size=3)
            ):
                value = draw(values)
                if not settable(raw, field):
                    continue
                apply_changes(raw, {field: value})
                case.hostile += f"{field}={value!r:.40}; "
        elif kind == "fatal":
            field, value, named = draw(st.sampled_from(LISTING_FATAL))
            if field.startswith("price.amounts"):
                raw["price"] = {"type": "sale", "amounts": {}}
            apply_changes(raw, {field: value})
            case.fails, case.hostile = named, f"{field}={value!r}"
        elif kind == "id":
            how = draw(st.sampled_from(["nul", "surrogate", "long", "list", "null", "missing"]))
            at = draw(st.integers(0, len(pf_id)))
            raw["id"] = {
                "nul": pf_id[:at] + "\x00" + pf_id[at:],
                "surrogate": pf_id[:at] + "\udc80" + pf_id[at:],
                "long": pf_id + "x" * 100_000,
                "list": [pf_id],
                "null": None,
            }.get(how, REMOVE)
            if raw["id"] is REMOVE:
                del raw["id"]
            named = {"nul": pf_id, "surrogate": pf_id, "long": raw.get("id", "")}
            case.fails, case.pf_id, case.hostile = "id", named.get(how, ""), f"id: {how}"
        elif kind == "shape":
            raw = draw(st.sampled_from(["a listing", 12, None, [pf_id], True]))
            case = Case(raw, "results[", "", f"the record is {raw!r}")
        cases.append(case)
    return cases


def _legal_user(draw: st.DrawFn, user_id: int, profile_id: int) -> dict:
    raw = make_user(SEED, draw(st.integers(0, 99)))
    raw.update(
        id=user_id,
        firstName=draw(legal_text),
        lastName=draw(legal_text),
        email=f"u{user_id}@{draw(st.sampled_from(['agency.example', 'realty.example']))}",
    )
    if raw.get("publicProfile") is not None:
        raw["publicProfile"]["id"] = profile_id
    spec_validator("#/components/schemas/User").validate(raw)
    return raw


@st.composite
def user_cases(draw: st.DrawFn, first_id: int) -> list[Case]:
    """A few users: legal, fitted and failing ones."""
    cases: list[Case] = []
    for number in range(draw(st.integers(0, 6))):
        user_id = first_id + number
        raw = _legal_user(draw, user_id, first_id + 500 + number)
        case = Case(raw, None, str(user_id))
        kind = draw(st.sampled_from(["legal", "legal", "text", "fitted", "fatal", "id", "shape"]))
        if kind == "text":
            for field in draw(st.lists(st.sampled_from(USER_TEXTS), min_size=1, max_size=3)):
                if not settable(raw, field):
                    continue
                apply_changes(raw, {field: draw(hostile_text())})
                case.hostile += f"{field}=hostile text; "
        elif kind == "fitted":
            for field, values in draw(
                st.lists(st.sampled_from(USER_FITTED), min_size=1, max_size=3)
            ):
                value = draw(values)
                if not settable(raw, field):
                    continue
                apply_changes(raw, {field: value})
                case.hostile += f"{field}={value!r:.40}; "
        elif kind == "fatal":
            field, value, named = draw(st.sampled_from(USER_FATAL))
            if field.startswith("publicProfile.") and not isinstance(
                raw.get("publicProfile"), dict
            ):
                raw["publicProfile"] = {"id": 1}
            apply_changes(raw, {field: value})
            case.fails, case.hostile = named, f"{field}={value!r}"
        elif kind == "id":
            value = draw(st.sampled_from([10**30, -(2**63) - 1, "abc", [user_id], None, REMOVE]))
            if value is REMOVE:
                del raw["id"]
            else:
                raw["id"] = value
            shown = str(value) if isinstance(value, int | str) else ""
            case.fails, case.pf_id, case.hostile = "id", shown, f"id={value!r}"
        elif kind == "shape":
            raw = draw(st.sampled_from(["a user", 7, None, [user_id]]))
            case = Case(raw, "data[", "", f"the record is {raw!r}")
        cases.append(case)
    return cases


# ---------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------


def forget_everything() -> None:
    """An empty site before each example: the examples share one database."""
    ReportEntry.objects.all().delete()
    SyncRun.objects.all().delete()
    PropertyImage.objects.all().delete()
    ListingState.objects.all().delete()
    Property.objects.all().delete()
    AgentLink.objects.all().delete()
    Agent.objects.all().delete()
    forget_columns()


def describe(cases: list[Case]) -> str:
    return "\n".join(f"  {c.pf_id or '?'}: {c.hostile or 'legal'} -> {c.fails}" for c in cases)


# The sandbox and the database are shared by the examples: each starts from an empty site
# (the profile lets function-scoped fixtures be shared so).
@hypothesis_settings(max_examples=SYNC_EXAMPLES)
@given(data=st.data())
def test_every_hostile_record_fails_alone_and_every_record_beside_it_is_saved(
    sandbox_settings, data
):
    sb = sandbox_settings
    forget_everything()
    prefix = uuid.uuid4().hex[:6].upper()
    first_user = data.draw(st.integers(10_000, 2**31 - 10_000), label="first user id")
    users = data.draw(user_cases(first_user), label="users")
    profiles = [
        c.raw["publicProfile"]["id"]
        for c in users
        if c.fails is None and isinstance(c.raw, dict) and c.raw.get("publicProfile")
    ]
    listings = data.draw(listing_cases(sb, prefix, profiles), label="listings")
    sb.data.serve_records(users=[c.raw for c in users], listings=[c.raw for c in listings])
    client = FastClient(sb, per_page=PER_PAGE)
    try:
        result = run_sync(SyncOptions(), client=client)
    finally:
        client.close()

    failing = [c for c in users + listings if c.fails]
    errors = list(ReportEntry.objects.filter(run_id=result.run_id, level="error"))
    shown = "\n".join(f"  {e.action} {e.pf_id!r}: {e.message[:200]}" for e in errors)
    context = f"\nusers:\n{describe(users)}\nlistings:\n{describe(listings)}\nerrors:\n{shown}"
    assert result.exit_code == (1 if failing else 0), context
    run = SyncRun.objects.get(pk=result.run_id)
    assert run.status == (
        SyncRun.Status.FINISHED_WITH_ERRORS if failing else SyncRun.Status.SUCCEEDED
    ), context
    # Each record that cannot be saved: one error entry, naming its id and the field.
    assert len(errors) == len(failing), context
    unmatched = list(errors)
    for case in failing:
        found = [
            e
            for e in unmatched
            if case.pf_id[:ENTRY_ID_LIMIT] == e.pf_id and f"(field {case.fails}" in e.message
        ]
        assert found, f"no entry for {case.pf_id!r} naming {case.fails}{context}"
        unmatched.remove(found[0])
    # Every record beside them is saved.
    saved_users = {c.raw["id"] for c in users if c.fails is None}
    assert set(Agent.objects.values_list("pf_user_id", flat=True)) == saved_users, context
    saved_listings = {c.raw["id"] for c in listings if c.fails is None}
    assert set(Property.objects.values_list("pf_id", flat=True)) == saved_listings, context


# ---------------------------------------------------------------------------
# Webhook events
# ---------------------------------------------------------------------------

WEBHOOK_SECRET = "hostile-records-secret"
EVENT_TYPES = [
    "listing.published",
    "listing.unpublished",
    "listing.action",
    "user.created",
    "user.updated",
    "user.activated",
    "user.deactivated",
    "user.deleted",
    "listing.created",  # one pfsync does not act on
]

#: Any JSON an event's payload may hold, hostile leaves included (NaN, 10**40, NUL, 100 KB).
payload_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**40), 10**40)
    | st.floats()
    | legal_text
    | hostile_text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(legal_text | hostile_text(), children, max_size=3)
    ),
    max_leaves=6,
)

#: Envelope values the endpoint refuses with 400: (value, why it is refused).
BAD_EVENT_TEXT = st.sampled_from(
    [None, "", "  ", ["x"], {"a": 1}, True, "a\x00b", "a\ud800b", "x" * 200]
)


@dataclass
class Delivery:
    """One event sent to the endpoint, and whether it must be refused (400)."""

    event: dict
    refused: bool


@st.composite
def deliveries(draw: st.DrawFn, entity_ids: list[Any]) -> Delivery:
    """An event in the spec's envelope, about a served record (or none), legal or hostile."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    entity_id = draw(st.sampled_from(entity_ids) if entity_ids else st.just("01K0000"))
    if not isinstance(entity_id, str | int) or isinstance(entity_id, bool):
        entity_id = draw(st.text("0123456789ABC", min_size=1, max_size=10))
    event = {
        "id": f"evt-{uuid.uuid4()}",
        "type": event_type,
        "timestamp": "2025-11-02T19:31:13Z",
        "entity": {"id": entity_id, "type": event_type.split(".")[0]},
        "payload": draw(st.dictionaries(legal_text, payload_values, max_size=3)),
    }
    refused = False
    if draw(st.integers(0, 3)) == 0:
        where = draw(st.sampled_from(["id", "type", "entity.id"]))
        apply_changes(event, {where: draw(BAD_EVENT_TEXT)})
        refused = True
    elif isinstance(entity_id, str) and (
        clean_text(entity_id)[0] != entity_id or not entity_id.strip() or len(entity_id) > 64
    ):
        refused = True  # a served record's hostile id: the event cannot name it
    return Delivery(event, refused)


@hypothesis_settings(max_examples=EVENT_EXAMPLES)
@given(data=st.data())
def test_every_hostile_webhook_event_is_refused_or_settled_with_its_reason(
    sandbox_settings, settings, client, data
):
    settings.PF_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.PF_API_MAX_RETRY_WAIT = 0
    sb = sandbox_settings
    forget_everything()
    WebhookEvent.objects.all().delete()
    prefix = uuid.uuid4().hex[:6].upper()
    users = data.draw(user_cases(data.draw(st.integers(10_000, 2**31 - 10_000))), label="users")
    listings = data.draw(listing_cases(sb, prefix, []), label="listings")
    sb.data.serve_records(users=[c.raw for c in users], listings=[c.raw for c in listings])
    ids = [c.raw.get("id") for c in users + listings if isinstance(c.raw, dict)]
    sent = data.draw(st.lists(deliveries(ids), min_size=1, max_size=4), label="events")

    for delivery in sent:
        body = json.dumps(delivery.event).encode()
        response = client.post(
            "/pf/webhook/",
            data=body,
            content_type="application/json",
            HTTP_X_SIGNATURE=signature(WEBHOOK_SECRET, body),
        )
        shown = f"{delivery.event!r:.300}"
        if delivery.refused:
            assert response.status_code == 400, shown
            assert response.json()["error"].startswith("the "), shown
            continue
        assert response.status_code == 200, f"{response.content!r}: {shown}"
        row = WebhookEvent.objects.get(event_id=delivery.event["id"])
        # Settled at once, with the reason when ignored: never left to fail nine more runs.
        assert row.status in (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED), (
            f"{row.status}: {row.last_error}: {shown}"
        )
        if row.status == WebhookEvent.Status.IGNORED:
            assert row.last_error, shown
