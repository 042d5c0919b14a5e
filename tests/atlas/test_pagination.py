"""Paging through users, listings and locations: every page once, stopping at the right one."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers

from pfsync_app.atlas import MalformedResponseError
from tests.fixtures.atlas import (
    LISTINGS_URL,
    LOCATIONS_URL,
    USERS_URL,
    listing_json,
    location_json,
    make_client,
    page_body,
    user_json,
)


def listings(*ids):
    return [listing_json(id=listing_id) for listing_id in ids]


def on_page(api, url, page, body):
    return api.get(
        url,
        json=body,
        match=[matchers.query_param_matcher({"page": str(page)}, strict_match=False)],
    )


def query(url):
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def query_of(call):
    return query(call.request.url)


def requested_pages(api, url=LISTINGS_URL):
    return [int(query_of(call)["page"]) for call in api.calls if call.request.url.startswith(url)]


def test_listing_pages_are_followed_to_the_last_page(api, clock):
    on_page(api, LISTINGS_URL, 1, page_body(listings("A", "B"), page=1, per_page=2, total=5))
    on_page(api, LISTINGS_URL, 2, page_body(listings("C", "D"), page=2, per_page=2, total=5))
    on_page(api, LISTINGS_URL, 3, page_body(listings("E"), page=3, per_page=2, total=5))

    pages = list(make_client(clock).iter_listing_pages(per_page=2))

    assert [[listing.id for listing in page.items] for page in pages] == [
        ["A", "B"],
        ["C", "D"],
        ["E"],
    ]
    assert [(page.page, page.total_pages, page.next_page) for page in pages] == [
        (1, 3, 2),
        (2, 3, 3),
        (3, 3, None),
    ]
    assert requested_pages(api) == [1, 2, 3]


def test_paging_stops_when_next_page_is_null(api, clock):
    on_page(
        api, LISTINGS_URL, 1, page_body(listings("A"), total=500, total_pages=5, next_page=None)
    )

    pages = list(make_client(clock).iter_listing_pages())

    assert len(pages) == 1
    assert requested_pages(api) == [1]


def test_paging_stops_at_the_last_page_even_if_next_page_points_beyond(api, clock):
    on_page(api, LISTINGS_URL, 1, page_body(listings("A"), page=1, total_pages=2, next_page=2))
    on_page(api, LISTINGS_URL, 2, page_body(listings("B"), page=2, total_pages=2, next_page=3))

    pages = list(make_client(clock).iter_listing_pages())

    assert len(pages) == 2
    assert requested_pages(api) == [1, 2]


def test_paging_stops_on_an_empty_page(api, clock):
    on_page(api, LISTINGS_URL, 1, page_body(listings("A"), page=1, total_pages=3, next_page=2))
    on_page(api, LISTINGS_URL, 2, page_body([], page=2, total=3, total_pages=3, next_page=3))

    pages = list(make_client(clock).iter_listing_pages())

    assert [len(page.items) for page in pages] == [1, 0]
    assert requested_pages(api) == [1, 2]


def test_an_empty_first_page_ends_paging_at_once(api, clock):
    on_page(api, LISTINGS_URL, 1, page_body([], total=0))

    pages = list(make_client(clock).iter_listing_pages())

    assert [(page.items, page.total, page.total_pages) for page in pages] == [([], 0, 0)]


def test_paging_follows_a_page_count_that_shrinks_while_paging(api, clock):
    on_page(api, LISTINGS_URL, 1, page_body(listings("A"), page=1, total_pages=4, next_page=2))
    on_page(api, LISTINGS_URL, 2, page_body(listings("B"), page=2, total_pages=2, next_page=None))
    on_page(api, LISTINGS_URL, 3, page_body(listings("X"), page=3, total_pages=4))

    pages = list(make_client(clock).iter_listing_pages())

    assert [page.items[0].id for page in pages] == ["A", "B"]
    assert requested_pages(api) == [1, 2]


def test_paging_follows_a_page_count_that_grows_while_paging(api, clock):
    on_page(api, LISTINGS_URL, 1, page_body(listings("A"), page=1, total_pages=2, next_page=2))
    on_page(api, LISTINGS_URL, 2, page_body(listings("B"), page=2, total_pages=3, next_page=3))
    on_page(api, LISTINGS_URL, 3, page_body(listings("C"), page=3, total_pages=3, next_page=None))

    pages = list(make_client(clock).iter_listing_pages())

    assert [page.items[0].id for page in pages] == ["A", "B", "C"]


def test_a_next_page_that_goes_backwards_is_stopped_as_a_loop(api, clock):
    on_page(api, LISTINGS_URL, 1, page_body(listings("A"), page=1, total_pages=0, next_page=2))
    on_page(api, LISTINGS_URL, 2, page_body(listings("B"), page=2, total_pages=0, next_page=1))

    with pytest.raises(MalformedResponseError, match="names page 1 as the next page after page 2"):
        list(make_client(clock).iter_listing_pages())

    assert requested_pages(api) == [1, 2]


def test_per_page_is_never_sent_above_100(api, clock):
    api.get(LISTINGS_URL, json=page_body(listings("A")))
    api.get(USERS_URL, json=page_body([user_json()], key="data"))
    client = make_client(clock)

    list(client.iter_listing_pages(per_page=500))
    list(client.iter_user_pages(per_page=1000))
    list(client.iter_listing_pages())

    per_pages = [
        query_of(call).get("perPage") for call in api.calls if "/v1/auth" not in call.request.url
    ]
    assert per_pages == ["100", "100", "100"]


def test_per_page_below_one_is_refused_before_any_request(api, clock):
    with pytest.raises(ValueError, match="per_page must be at least 1"):
        make_client(clock).iter_listing_pages(per_page=0)

    assert len(api.calls) == 0


def test_listing_filters_become_the_specs_query_parameters(api, clock):
    api.get(LISTINGS_URL, json=page_body([]))

    list(
        make_client(clock).iter_listing_pages(
            draft=False, state="live", location_id=[5002, 5003], **{"sort[createdAt]": "asc"}
        )
    )

    assert query_of(api.calls[-1]) == {
        "draft": "false",
        "filter[state]": "live",
        "filter[locationId]": "5002,5003",
        "sort[createdAt]": "asc",
        "page": "1",
        "perPage": "100",
    }


def test_users_are_read_from_data(api, clock):
    on_page(
        api,
        USERS_URL,
        1,
        page_body([user_json(id=1), user_json(id=2)], key="data", per_page=2, total=3),
    )
    on_page(
        api, USERS_URL, 2, page_body([user_json(id=3)], key="data", page=2, per_page=2, total=3)
    )

    pages = list(make_client(clock).iter_user_pages(per_page=2))

    assert [user.id for page in pages for user in page.items] == [1, 2, 3]


def test_a_users_answer_without_data_is_a_malformed_response(api, clock):
    api.get(USERS_URL, json=page_body([user_json()], key="results"))

    with pytest.raises(MalformedResponseError, match="has no 'data' list of users"):
        list(make_client(clock).iter_user_pages())


def test_a_listings_answer_without_pagination_is_a_malformed_response_naming_the_url(api, clock):
    api.get(LISTINGS_URL, json={"results": listings("A")})

    with pytest.raises(MalformedResponseError) as caught:
        list(make_client(clock).iter_listing_pages())

    assert "https://atlas.test/v1/listings?page=1&perPage=100" in str(caught.value)
    assert "has no 'pagination'" in str(caught.value)


def test_a_bad_record_is_reported_on_its_page_and_paging_goes_on(api, clock):
    bad = listing_json(id="BAD", size="huge")
    on_page(api, LISTINGS_URL, 1, page_body([listing_json(id="A"), bad], per_page=2, total=3))
    on_page(api, LISTINGS_URL, 2, page_body(listings("C"), page=2, per_page=2, total=3))

    pages = list(make_client(clock).iter_listing_pages(per_page=2))

    assert [listing.id for page in pages for listing in page.items] == ["A", "C"]
    [error] = pages[0].errors
    assert (error.kind, error.record_id, error.field) == ("listing", "BAD", "size")


def test_get_listings_asks_by_ids_in_chunks(api, clock):
    ids = [f"L{number:03d}" for number in range(120)]

    def answer(request):
        wanted = query(request.url)["filter[ids]"].split(",")
        return 200, {}, json.dumps(page_body(listings(*wanted)))

    api.add_callback(responses.GET, LISTINGS_URL, callback=answer)

    found = make_client(clock).get_listings([*ids, "L000"])

    assert [listing.id for listing in found] == ids
    chunks = [query_of(call)["filter[ids]"].split(",") for call in api.calls[1:]]
    assert [len(chunk) for chunk in chunks] == [50, 50, 20]


def test_get_listings_with_no_ids_makes_no_request(api, clock):
    assert make_client(clock).get_listings([]) == []
    assert len(api.calls) == 0


def test_location_search_sends_the_text_and_filters(api, clock):
    search = api.get(LOCATIONS_URL, json={**page_body([location_json()], key="data"), "order": []})

    found = list(
        make_client(clock).search_locations(
            "Marina Gate", type="TOWER", parent="Dubai, Dubai Marina", id=5002
        )
    )

    assert [location.name for location in found] == ["Marina Gate 1"]
    assert query_of(search.calls[0]) == {
        "search": "Marina Gate",
        "filter[type]": "TOWER",
        "filter[parent]": "Dubai, Dubai Marina",
        "filter[id]": "5002",
        "page": "1",
        "perPage": "100",
    }


def test_location_search_pages_through_all_matches(api, clock):
    on_page(
        api, LOCATIONS_URL, 1, page_body([location_json(id=1)], key="data", per_page=1, total=2)
    )
    on_page(
        api,
        LOCATIONS_URL,
        2,
        page_body([location_json(id=2)], key="data", page=2, per_page=1, total=2),
    )

    found = list(make_client(clock).search_locations("Marina"))

    assert [location.id for location in found] == [1, 2]


@pytest.mark.parametrize("text", ["", "M", " M "])
def test_location_search_needs_two_characters_before_any_request(api, clock, text):
    with pytest.raises(ValueError, match="at least 2 characters"):
        make_client(clock).search_locations(text)

    assert len(api.calls) == 0


def test_a_page_whose_every_record_is_unreadable_does_not_end_the_paging(api, clock):
    unreadable = [listing_json(id="A", bedrooms=[2]), "not a listing"]
    on_page(api, LISTINGS_URL, 1, page_body(unreadable, page=1, per_page=2, total=4))
    on_page(api, LISTINGS_URL, 2, page_body(listings("C", "D"), page=2, per_page=2, total=4))

    pages = list(make_client(clock).iter_listing_pages(per_page=2))

    assert requested_pages(api) == [1, 2]
    assert [len(page.errors) for page in pages] == [2, 0]
    assert [listing.id for listing in pages[1].items] == ["C", "D"]
