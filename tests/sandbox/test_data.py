"""The sandbox's data: deterministic from the seed, changeable while it serves, cheap at scale."""

from __future__ import annotations

import time
import tracemalloc

import pytest
import requests

from pfsync_app.sandbox import REMOVE, Sandbox
from tests.fixtures.sandbox import SMALL, SandboxApi


def _fetch(api: SandboxApi, listing_id: str) -> dict:
    body = api.get("/v1/listings", params={"filter[ids]": listing_id}).json()
    return body["results"][0]


def test_the_same_seed_gives_the_same_data() -> None:
    with Sandbox(**SMALL) as one, Sandbox(**SMALL) as two:
        assert one.api_key == two.api_key and one.api_secret == two.api_secret
        assert one.data.users() == two.data.users()
        strip = lambda text: text.replace(one.url, "").replace(two.url, "")  # noqa: E731
        assert strip(repr(one.data.listings())) == strip(repr(two.data.listings()))
        url = one.data.listings()[0]["media"]["images"][0]["original"]["url"]
        assert one.data.image_bytes(url) == two.data.image_bytes(url.replace(one.url, two.url))


def test_another_seed_gives_other_data() -> None:
    with Sandbox(**{**SMALL, "seed": 2}) as other, Sandbox(**SMALL) as sb:
        assert other.data.listings()[0]["id"] != sb.data.listings()[0]["id"]
        assert other.api_secret != sb.api_secret


def test_update_listing_shows_in_the_next_fetch_with_a_newer_updated_at(
    sandbox_api: SandboxApi,
) -> None:
    data = sandbox_api.sandbox.data
    listing_id = data.listings()[0]["id"]
    before = _fetch(sandbox_api, listing_id)
    data.update_listing(listing_id, **{"price.amounts.sale": 1_234_000, "title.en": "New title"})
    after = _fetch(sandbox_api, listing_id)
    assert after["price"]["amounts"]["sale"] == 1_234_000
    assert after["title"]["en"] == "New title"
    assert after["updatedAt"] > before["updatedAt"]
    data.update_listing(listing_id, bedrooms="3")
    again = _fetch(sandbox_api, listing_id)
    assert again["bedrooms"] == "3"
    assert again["updatedAt"] > after["updatedAt"]


def test_update_listing_takes_a_function_and_removes_keys(sandbox: Sandbox) -> None:
    listing_id = sandbox.data.listings()[0]["id"]
    sandbox.data.update_listing(listing_id, lambda item: item["title"].update(en="Edited"))
    sandbox.data.update_listing(listing_id, description=REMOVE)
    listing = sandbox.data.listing(listing_id)
    assert listing["title"]["en"] == "Edited"
    assert "description" not in listing


def test_readers_return_copies(sandbox: Sandbox) -> None:
    listing_id = sandbox.data.listings()[0]["id"]
    sandbox.data.update_listing(listing_id, reference="REF-1")
    sandbox.data.listing(listing_id)["reference"] = "changed by a caller"
    assert sandbox.data.listing(listing_id)["reference"] == "REF-1"


def test_add_and_remove_listings(sandbox_api: SandboxApi) -> None:
    data = sandbox_api.sandbox.data
    new_id = data.add_listing(**{"title.en": "Added", "bedrooms": "studio"})
    body = sandbox_api.get("/v1/listings", params={"perPage": 100}).json()
    assert body["results"][-1]["id"] == new_id
    assert body["results"][-1]["title"]["en"] == "Added"
    assert body["pagination"]["total"] == 13
    removed = body["results"][0]
    data.remove_listing(removed["id"])
    ids = [item["id"] for item in sandbox_api.get("/v1/listings").json()["results"]]
    assert removed["id"] not in ids
    for image in (removed.get("media") or {}).get("images") or []:
        assert requests.get(image["original"]["url"], timeout=5).status_code == 404


def test_unpublished_listings_stay_listed_but_drafts_do_not(sandbox_api: SandboxApi) -> None:
    data = sandbox_api.sandbox.data
    first, second = (item["id"] for item in data.listings()[:2])
    data.unpublish_listing(first)
    assert _fetch(sandbox_api, first)["portals"]["propertyfinder"]["isLive"] is False
    data.update_listing(second, state={"type": "draft", "stage": "draft"})
    ids = [item["id"] for item in sandbox_api.get("/v1/listings").json()["results"]]
    assert first in ids
    assert second not in ids
    drafts = sandbox_api.get("/v1/listings", params={"draft": "true"}).json()["results"]
    assert [item["id"] for item in drafts] == [second]


def test_image_changes_show_in_the_listing_and_on_the_image_host(sandbox: Sandbox) -> None:
    listing_id = sandbox.data.listings()[0]["id"]
    added = sandbox.data.add_image(listing_id)
    images = sandbox.data.listing(listing_id)["media"]["images"]
    assert images[-1]["original"]["url"] == added
    assert requests.get(added, timeout=5).status_code == 200
    first = images[0]["original"]["url"]
    sandbox.data.remove_image(listing_id, 0)
    assert requests.get(first, timeout=5).status_code == 404
    assert len(sandbox.data.listing(listing_id)["media"]["images"]) == len(images) - 1


def test_rotate_image_url_makes_the_old_url_404(sandbox: Sandbox) -> None:
    listing_id = sandbox.data.listings()[0]["id"]
    before = sandbox.data.listing(listing_id)["media"]["images"][1]
    new_url = sandbox.data.rotate_image_url(listing_id, 1)
    after = sandbox.data.listing(listing_id)["media"]["images"][1]
    assert after["original"]["url"] == new_url != before["original"]["url"]
    assert (after["original"]["width"], after["original"]["height"]) == (
        before["original"]["width"],
        before["original"]["height"],
    )
    assert requests.get(before["original"]["url"], timeout=5).status_code == 404
    assert requests.get(new_url, timeout=5).content == sandbox.data.image_bytes(new_url)


def test_image_changes_on_a_listing_without_media_create_it(sandbox: Sandbox) -> None:
    bare = next(item for item in sandbox.data.listings() if "media" not in item)
    sandbox.data.add_image(bare["id"])
    assert len(sandbox.data.listing(bare["id"])["media"]["images"]) == 1


def test_bad_positions_and_ids_say_what_was_wrong(sandbox: Sandbox) -> None:
    listing_id = sandbox.data.listings()[0]["id"]
    with pytest.raises(IndexError, match="there is no position 9"):
        sandbox.data.remove_image(listing_id, 9)
    with pytest.raises(KeyError, match="no listing 'nope'"):
        sandbox.data.update_listing("nope", reference="x")
    with pytest.raises(KeyError, match="no user 1"):
        sandbox.data.update_user(1, firstName="x")


def test_user_changes_show_in_the_next_fetch(sandbox_api: SandboxApi) -> None:
    data = sandbox_api.sandbox.data
    user_id = data.users()[1]["id"]
    data.update_user(user_id, mobile=None, **{"publicProfile.phone": "+971500000001"})
    new_id = data.add_user(firstName="Mona")
    users = {u["id"]: u for u in sandbox_api.get("/v1/users").json()["data"]}
    assert users[user_id]["mobile"] is None
    assert users[user_id]["publicProfile"]["phone"] == "+971500000001"
    assert users[new_id]["firstName"] == "Mona"
    assert users[new_id]["publicProfile"]["id"]


def test_twenty_thousand_listings_start_fast_and_small() -> None:
    started = time.monotonic()
    with Sandbox(users=20, listings=20_000, images_per_listing=1) as sb:
        assert time.monotonic() - started < 2
        api = SandboxApi(sb)
        last = api.get("/v1/listings", params={"page": 200, "perPage": 100}).json()
        assert len(last["results"]) == 100
        assert last["pagination"]["nextPage"] is None
    tracemalloc.start()
    try:
        Sandbox(users=20, listings=4000, images_per_listing=1).stop()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Listings are kept as an id and an index until changed: a few hundred bytes each.
    assert peak / 4000 < 1000
