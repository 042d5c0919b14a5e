"""Mapping rules (the domain's), case by case, from API-shaped records.

Fitting the values to the host's real columns is the writers' rule: tests/writers/.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings

from pfsync_app.atlas.parsing import parse_listing, parse_user
from pfsync_app.atlas.records import InvalidRecord
from pfsync_app.mapping import changed_fields, map_listing, map_user, render_changes
from tests.fixtures import hostile


def listing(**overrides):
    raw = {
        "id": "01JABCDEF0123456789ABCDEFG",
        "reference": "MH-1001",
        "title": {"en": "Marina view 2BR", "ar": "شقة بإطلالة على المارينا"},
        "description": {"en": "Bright and airy.", "ar": "مشرقة وجيدة التهوية."},
        "category": "residential",
        "type": "apartment",
        "bedrooms": "2",
        "bathrooms": "3",
        "size": 1250.5,
        "furnishingType": "furnished",
        "price": {"type": "sale", "amounts": {"sale": 1500000}},
        "location": {"id": 50},
        "assignedTo": {"id": 7},
        "portals": {"propertyfinder": {"isLive": True}},
        "updatedAt": "2026-01-19T10:00:00Z",
        "media": {"images": []},
    }
    raw.update(overrides)
    record, errors = parse_listing(raw)
    assert errors == []
    return record


@pytest.mark.parametrize(
    ("bedrooms", "expected"),
    [("studio", 0), ("1", 1), ("5", 5), ("27", 27), (None, None)],
)
def test_bedrooms_studio_is_zero_and_numbers_are_numbers(bedrooms, expected):
    assert map_listing(listing(bedrooms=bedrooms)).fields["bedrooms"] == expected


@pytest.mark.parametrize(("bathrooms", "expected"), [("none", 0), ("3", 3), (None, None)])
def test_bathrooms_none_is_zero(bathrooms, expected):
    assert map_listing(listing(bathrooms=bathrooms)).fields["bathrooms"] == expected


def test_an_unknown_bedrooms_value_is_stored_empty_with_a_warning():
    values = map_listing(listing(bedrooms="loft"))
    assert values.fields["bedrooms"] is None
    assert any("bedrooms" in w for w in values.warnings)


@pytest.mark.parametrize(
    ("price", "amount", "period", "status"),
    [
        ({"type": "sale", "amounts": {"sale": 1500000}}, Decimal("1500000.00"), "sale", "sale"),
        ({"type": "yearly", "amounts": {"yearly": 85000}}, Decimal("85000.00"), "yearly", "rent"),
        ({"type": "monthly", "amounts": {"monthly": 9000}}, Decimal("9000.00"), "monthly", "rent"),
        ({"type": "weekly", "amounts": {"weekly": 2500}}, Decimal("2500.00"), "weekly", "rent"),
        ({"type": "daily", "amounts": {"daily": 400}}, Decimal("400.00"), "daily", "rent"),
        ({"type": "sale", "amounts": {"sale": 1}, "onRequest": True}, None, "sale", "sale"),
        ({"type": "yearly", "amounts": {}}, None, "yearly", "rent"),
    ],
)
def test_price_comes_from_the_amount_of_its_own_type(price, amount, period, status):
    fields = map_listing(listing(price=price)).fields
    assert fields["price"] == amount
    assert fields["price_period"] == period
    assert fields["status_type"] == status


def test_no_price_object_leaves_price_and_status_empty():
    fields = map_listing(listing(price=None)).fields
    assert (fields["price"], fields["price_period"], fields["status_type"]) == (None, "", "")


def test_a_negative_price_is_stored_empty_with_a_warning_not_a_failure():
    values = map_listing(listing(price={"type": "sale", "amounts": {"sale": -250}}))
    assert values.fields["price"] is None
    assert any("price" in w for w in values.warnings)


def test_mapping_keeps_the_api_s_values_whole_for_the_writers_to_fit():
    values = map_listing(
        listing(title={"en": "x" * 300}, price={"type": "sale", "amounts": {"sale": 10**15}})
    )
    assert values.fields["title"] == "x" * 300
    assert values.fields["price"] == 10**15
    assert values.warnings == []


def test_extra_columns_take_the_api_record_s_value_at_their_dotted_path():
    record = listing(
        compliance={"listingAdvertisementNumber": "7110123456"},
        amenities=["balcony", "shared-pool"],
        price={"type": "yearly", "amounts": {"yearly": 85000, "monthly": 7500}},
    )
    extra = {
        "permit": "compliance.listingAdvertisementNumber",
        "amenities": "amenities",
        "monthly": "price.amounts.monthly",
        "first_image": "media.images.0.original.url",
        "missing": "compliance.issuingClientLicenseNumber",
    }
    values = map_listing(record, extra)
    assert values.extras == {
        "permit": "7110123456",
        "amenities": ["balcony", "shared-pool"],
        "monthly": 7500,
        "first_image": None,
        "missing": None,
    }
    assert values.fingerprint() != map_listing(record).fingerprint()


def test_arabic_title_and_description_are_kept():
    fields = map_listing(listing()).fields
    assert fields["title_ar"] == "شقة بإطلالة على المارينا"
    assert fields["description_ar"] == "مشرقة وجيدة التهوية."


@pytest.mark.parametrize(
    ("overrides", "published"),
    [
        ({"portals": {"propertyfinder": {"isLive": True}}}, True),
        ({"portals": {"propertyfinder": {"isLive": False}}}, False),
        ({"portals": None, "state": {"type": "live", "stage": "live"}}, True),
        ({"portals": None, "state": {"type": "draft", "stage": "draft"}}, False),
        ({"portals": None}, False),
    ],
)
def test_published_means_live_on_property_finder(overrides, published):
    assert map_listing(listing(**overrides)).fields["is_published"] is published


def test_agent_and_location_are_carried_as_ids_to_resolve():
    values = map_listing(listing())
    assert (values.assigned_to_id, values.location_id) == (7, 50)
    no_agent = map_listing(listing(assignedTo=None, location=None))
    assert (no_agent.assigned_to_id, no_agent.location_id) == (None, None)


def test_images_take_the_original_variant_at_their_position():
    images = [
        {"original": {"url": f"https://cdn.example/{i}.jpg", "width": 800 + i, "height": 600}}
        for i in range(3)
    ]
    values = map_listing(listing(media={"images": images}))
    assert [(i.position, i.source_url, i.width) for i in values.images] == [
        (0, "https://cdn.example/0.jpg", 800),
        (1, "https://cdn.example/1.jpg", 801),
        (2, "https://cdn.example/2.jpg", 802),
    ]


def test_the_fingerprint_changes_with_any_written_value_and_only_then():
    base = map_listing(listing())
    assert base.fingerprint() == map_listing(listing()).fingerprint()
    assert base.fingerprint() != map_listing(listing(reference="MH-1002")).fingerprint()
    assert base.fingerprint() != map_listing(listing(assignedTo={"id": 8})).fingerprint()


def user(**overrides):
    raw = {
        "id": 11,
        "firstName": "Layla",
        "lastName": "Haddad",
        "email": "Layla@Agency.ae",
        "mobile": "+971501234567",
        "status": "active",
        "role": {
            "id": 2,
            "name": "Agent",
            "roleKey": "agent",
            "baseRoleKey": "agent",
            "isCustom": False,
        },
        "publicProfile": {"id": 7, "name": "Layla H", "email": "l@a.ae", "phone": "+97140000000"},
        "createdAt": "2025-01-01T00:00:00Z",
    }
    raw.update(overrides)
    record, errors = parse_user(raw)
    assert errors == []
    return record


def test_user_phone_is_mobile_else_the_public_profile_phone():
    assert map_user(user()).fields["phone"] == "+971501234567"
    assert map_user(user(mobile=None)).fields["phone"] == "+97140000000"
    assert map_user(user(mobile=None, publicProfile=None)).fields["phone"] == ""


def test_user_role_and_profile_link():
    values = map_user(user())
    assert values.fields["role"] == "agent"
    assert (values.pf_user_id, values.pf_public_profile_id) == (11, 7)
    assert map_user(user(publicProfile=None)).pf_public_profile_id is None
    assert map_user(user(lastName=None)).fields["last_name"] == ""


def test_changes_are_described_field_by_field():
    changed = changed_fields(
        {"price": Decimal("1500000.00"), "title": "A"},
        {"price": Decimal("1450000.00"), "title": "A"},
    )
    assert changed == {"price": (Decimal("1500000.00"), Decimal("1450000.00"))}
    assert render_changes(changed) == ["price: 1500000 → 1450000"]


def test_equal_decimals_and_a_float_of_the_same_value_are_not_a_change():
    assert changed_fields({"size": Decimal("1.50")}, {"size": Decimal("1.5")}) == {}
    assert changed_fields({"size": Decimal("1.5")}, {"size": 1.5}) == {}


@settings(max_examples=30 * settings.default.max_examples)
@given(raw=hostile.records(hostile.LISTING_KEYS))
def test_any_listing_that_parses_maps_and_has_a_fingerprint(raw):
    try:
        record, _ = parse_listing(raw)
    except InvalidRecord:
        return  # one error entry of its page: tests/atlas/test_records.py
    values = map_listing(record)
    assert values.pf_id == record.id
    assert len(values.fingerprint()) == 64
    for warning in values.warnings:
        assert isinstance(warning, str)


@settings(max_examples=30 * settings.default.max_examples)
@given(raw=hostile.records(hostile.USER_KEYS))
def test_any_user_that_parses_maps(raw):
    try:
        record, _ = parse_user(raw)
    except InvalidRecord:
        return
    values = map_user(record)
    assert values.pf_user_id == record.id
    assert all(isinstance(value, str) for value in values.fields.values())
