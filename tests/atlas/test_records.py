"""Tolerant parsing of Atlas records: odd shapes are read, bad records become RecordErrors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfsync_app.atlas import parsing, records
from pfsync_app.atlas.errors import MalformedResponseError
from tests.fixtures import hostile
from tests.fixtures.atlas import LISTING, listing_json, location_json, page_body, user_json


def parse_listings(*items):
    return parsing.parse_page(
        page_body(list(items)),
        kind="listing",
        items_key="results",
        parser=parsing.parse_listing,
        url="https://atlas.test/v1/listings?page=1",
        requested_page=1,
        requested_per_page=100,
    )


def parse_users(*items):
    return parsing.parse_page(
        page_body(list(items), key="data"),
        kind="user",
        items_key="data",
        parser=parsing.parse_user,
        url="https://atlas.test/v1/users?page=1",
        requested_page=1,
        requested_per_page=100,
    )


def test_a_full_listing_is_read_into_typed_fields():
    listing, errors = parsing.parse_listing(listing_json())

    assert errors == []
    assert listing.id == "01JQ7X5V0C8YH0K3B3M2N4P6QR"
    assert listing.reference == "MHP-A-10442"
    assert (listing.title_en, listing.title_ar) == (
        "Marina view 2BR with balcony",
        LISTING["title"]["ar"],
    )
    assert listing.description_en.startswith("Bright two-bedroom")
    assert listing.description_ar == LISTING["description"]["ar"]
    assert (listing.category, listing.property_type) == ("residential", "apartment")
    assert (listing.bedrooms, listing.bathrooms) == ("2", "3")
    assert listing.size == Decimal("1250.75")
    assert listing.furnishing_type == "semi-furnished"
    assert listing.price == records.Price(
        type="yearly",
        amounts={"yearly": Decimal(145000), "monthly": Decimal(12500)},
        on_request=False,
    )
    assert listing.price.amount == Decimal(145000)
    assert listing.location_id == 5002
    assert listing.assigned_to_id == 88123
    assert listing.is_live is True
    assert (listing.state_type, listing.state_stage) == ("live", "live")
    assert listing.created_at == datetime(2025, 8, 14, 9, 12, 45, tzinfo=UTC)
    assert listing.updated_at == datetime(2025, 9, 20, 11, 4, 9, 512000, tzinfo=UTC)
    assert listing.raw["uaeEmirate"] == "dubai"


def test_listing_images_are_the_original_variant_with_their_index_as_position():
    listing, _ = parsing.parse_listing(listing_json())

    assert listing.images == (
        records.ListingImage(
            0, "https://images.propertyfinder.test/listings/01JQ7X5V/0-original.jpg", 2048, 1536
        ),
        records.ListingImage(
            1, "https://images.propertyfinder.test/listings/01JQ7X5V/1-original.jpg", 1600, 1200
        ),
    )


def test_bedrooms_added_by_the_changelog_are_kept_as_strings():
    listing, _ = parsing.parse_listing(listing_json(bedrooms="27", bathrooms="none"))

    assert (listing.bedrooms, listing.bathrooms) == ("27", "none")


def test_unknown_enum_values_are_kept_as_the_apis_strings():
    listing, _ = parsing.parse_listing(
        listing_json(type="sky-villa", category="mixed-use", furnishingType="partly")
    )

    assert (listing.property_type, listing.category, listing.furnishing_type) == (
        "sky-villa",
        "mixed-use",
        "partly",
    )


def test_numeric_bedrooms_are_read_as_their_string():
    listing, _ = parsing.parse_listing(listing_json(bedrooms=4, bathrooms=2))

    assert (listing.bedrooms, listing.bathrooms) == ("4", "2")


@pytest.mark.parametrize("missing", ["media", "assignedTo", "price", "portals", "state"])
def test_a_listing_without_an_optional_object_still_parses(missing):
    listing, errors = parsing.parse_listing(listing_json(**{missing: ...}))

    assert listing.id == LISTING["id"]
    assert errors == []


def test_missing_optional_objects_leave_their_fields_empty():
    listing, _ = parsing.parse_listing(
        listing_json(media=..., assignedTo=..., price=..., location=..., title=..., size=...)
    )

    assert listing.images == ()
    assert listing.assigned_to_id is None
    assert listing.price is None
    assert listing.location_id is None
    assert listing.title_en is None and listing.title_ar is None
    assert listing.size is None


def test_null_fields_are_read_as_none():
    listing, errors = parsing.parse_listing(
        listing_json(
            reference=None,
            title={"en": "Only English", "ar": None},
            bedrooms=None,
            size=None,
            price=None,
            assignedTo=None,
            media={"images": None},
            updatedAt=None,
        )
    )

    assert errors == []
    assert listing.reference is None
    assert (listing.title_en, listing.title_ar) == ("Only English", None)
    assert listing.bedrooms is None and listing.size is None and listing.price is None
    assert listing.assigned_to_id is None and listing.images == () and listing.updated_at is None


def test_a_price_on_request_has_no_amount():
    listing, _ = parsing.parse_listing(
        listing_json(price={"type": "sale", "amounts": {}, "onRequest": True})
    )

    assert listing.price.on_request is True
    assert listing.price.amount is None


def test_is_live_comes_from_the_propertyfinder_portal_first():
    listing, _ = parsing.parse_listing(
        listing_json(
            portals={"propertyfinder": {"isLive": False}},
            state={"type": "live", "stage": "live"},
        )
    )

    assert listing.is_live is False


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"type": "live", "stage": "live"}, True),
        ({"type": "live_changes_pending_approval", "stage": "live"}, True),
        ({"type": "takendown", "stage": "takendown"}, False),
        ({"type": "draft"}, False),
        ({}, None),
    ],
)
def test_is_live_falls_back_to_the_listing_state(state, expected):
    listing, _ = parsing.parse_listing(listing_json(portals=..., state=state))

    assert listing.is_live is expected


def test_is_live_is_unknown_without_portals_or_state():
    listing, _ = parsing.parse_listing(listing_json(portals={"propertyfinder": {}}, state=...))

    assert listing.is_live is None


def test_size_is_an_exact_decimal():
    listing, _ = parsing.parse_listing(listing_json(size=0.1))

    assert listing.size == Decimal("0.1")


def test_datetimes_are_timezone_aware():
    listing, _ = parsing.parse_listing(
        listing_json(createdAt="2025-08-14T13:12:45+04:00", updatedAt="2025-08-14T09:12:45")
    )

    assert listing.created_at.utcoffset() == timedelta(hours=4)
    assert listing.updated_at == datetime(2025, 8, 14, 9, 12, 45, tzinfo=UTC)


def test_an_image_without_an_original_url_is_left_out_of_a_whole_listing_keeping_positions():
    media = {
        "images": [
            {"original": {"url": "https://img.test/0.jpg", "width": 10, "height": 10}},
            {"large": {"url": "https://img.test/1-large.jpg"}},
            {"original": {"url": "https://img.test/2.jpg"}},
        ]
    }

    page = parse_listings(listing_json(media=media))

    [listing] = page.items
    assert [(image.position, image.url) for image in listing.images] == [
        (0, "https://img.test/0.jpg"),
        (2, "https://img.test/2.jpg"),
    ]
    assert listing.images[1].width is None
    # The listing itself is whole: the bad item travels with it, not as a page error.
    assert page.errors == []
    [problem] = listing.image_problems
    assert problem.position == 1
    assert problem.field == "media.images[1].original.url"
    assert "no original URL" in problem.message


def test_a_listing_without_id_becomes_a_record_error_while_the_others_parse():
    page = parse_listings(listing_json(id="A1"), listing_json(id=...), listing_json(id="A3"))

    assert [listing.id for listing in page.items] == ["A1", "A3"]
    assert page.errors == [records.RecordError("listing", None, "id", "missing")]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"size": "about 100"}, "size"),
        ({"title": "Marina view"}, "title"),
        ({"location": {"id": "near the marina"}}, "location.id"),
        ({"price": {"type": "sale", "amounts": {"sale": "lots"}}}, "price.amounts.sale"),
        ({"portals": {"propertyfinder": {"isLive": "yes"}}}, "portals.propertyfinder.isLive"),
        ({"updatedAt": "yesterday"}, "updatedAt"),
        ({"media": {"images": "none"}}, "media.images"),
    ],
)
def test_a_field_of_the_wrong_type_names_the_listing_and_the_field(changes, field):
    page = parse_listings(listing_json(id="GOOD"), listing_json(id="BAD-1", **changes))

    assert [listing.id for listing in page.items] == ["GOOD"]
    [error] = page.errors
    assert (error.kind, error.record_id, error.field) == ("listing", "BAD-1", field)
    assert "BAD-1" in str(error) and field in str(error)


def test_an_item_that_is_not_an_object_becomes_a_record_error():
    page = parse_listings(listing_json(id="GOOD"), None)

    assert [listing.id for listing in page.items] == ["GOOD"]
    assert page.errors[0].field == "results[1]"


def test_a_full_user_is_read_into_typed_fields():
    user, _ = parsing.parse_user(user_json())

    assert user.id == 40211
    assert (user.first_name, user.last_name) == ("Sara", "Haddad")
    assert user.email == "sara.haddad@agency.test"
    assert user.mobile == "+971501234567"
    assert user.status == "active"
    assert user.base_role_key == "agent"
    assert user.public_profile == records.PublicProfile(
        88123, "Sara Haddad", "sara@agency.test", "+971501234567"
    )
    assert user.created_at == datetime(2024, 1, 15, 7, 45, tzinfo=UTC)


def test_a_user_without_public_profile_or_role_still_parses():
    user, _ = parsing.parse_user(user_json(publicProfile=None, role=..., mobile=None))

    assert user.public_profile is None
    assert user.base_role_key is None
    assert user.mobile is None


def test_a_user_without_id_becomes_a_record_error_naming_the_field():
    page = parse_users(user_json(id=1), user_json(id=...), user_json(id=3))

    assert [user.id for user in page.items] == [1, 3]
    assert page.errors == [records.RecordError("user", None, "id", "missing")]


def test_a_user_with_a_bad_field_names_the_user_and_the_field():
    page = parse_users(user_json(id=7, createdAt=20240115), user_json(id=8))

    assert [user.id for user in page.items] == [8]
    [error] = page.errors
    assert (error.kind, error.record_id, error.field) == ("user", "7", "createdAt")


def test_a_location_keeps_its_tree_as_path_and_its_coordinates():
    location, _ = parsing.parse_location(location_json())

    assert location.id == 5002
    assert (location.type, location.name) == ("TOWER", "Marina Gate 1")
    assert [node.name for node in location.path] == ["Dubai", "Dubai Marina", "Marina Gate 1"]
    assert location.path[0] == records.LocationNode(1, "CITY", "Dubai")
    assert (location.lat, location.lng) == (25.087965, 55.147874)


def test_a_location_without_coordinates_has_no_lat_lng():
    location, _ = parsing.parse_location(location_json(coordinates=None, tree=...))

    assert (location.lat, location.lng, location.path) == (None, None, ())


def test_a_page_keeps_the_pagination_of_the_answer():
    page = parsing.parse_page(
        page_body([listing_json()], page=2, per_page=1, total=3),
        kind="listing",
        items_key="results",
        parser=parsing.parse_listing,
        url="u",
        requested_page=2,
        requested_per_page=1,
    )

    assert (page.page, page.per_page, page.total, page.total_pages, page.next_page) == (
        2,
        1,
        3,
        3,
        3,
    )


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ([], "not a JSON object"),
        ({"pagination": {}}, "has no 'results'"),
        ({"results": {}, "pagination": {}}, "has a dict as 'results'"),
        ({"results": []}, "has no 'pagination'"),
        ({"results": [], "pagination": []}, "malformed 'pagination'"),
        ({"results": [], "pagination": {"nextPage": "soon"}}, "pagination.nextPage"),
    ],
)
def test_a_page_without_its_list_or_pagination_is_a_malformed_response(body, complaint):
    with pytest.raises(MalformedResponseError) as caught:
        parsing.parse_page(
            body,
            kind="listing",
            items_key="results",
            parser=parsing.parse_listing,
            url="https://atlas.test/v1/listings?page=1",
            requested_page=1,
            requested_per_page=100,
        )

    assert complaint in str(caught.value)
    assert "https://atlas.test/v1/listings?page=1" in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "items_key", "parser", "keys"),
    [
        ("listing", "results", parsing.parse_listing, hostile.LISTING_KEYS),
        ("user", "data", parsing.parse_user, hostile.USER_KEYS),
        ("location", "data", parsing.parse_location, hostile.LOCATION_KEYS),
    ],
    ids=["listings", "users", "locations"],
)
@settings(max_examples=30 * settings.default.max_examples)
@given(data=st.data())
def test_any_record_is_read_or_is_one_error_naming_its_field_and_nothing_else_escapes(
    kind, items_key, parser, keys, data
):
    raw_items = data.draw(st.lists(hostile.records(keys), max_size=4))

    page = parsing.parse_page(
        page_body(raw_items, key=items_key),
        kind=kind,
        items_key=items_key,
        parser=parser,
        url="https://atlas.test/v1/x",
        requested_page=1,
        requested_per_page=100,
    )

    assert len(page.items) + len(page.errors) == len(raw_items)
    for error in page.errors:
        assert error.kind == kind and error.field and error.message
