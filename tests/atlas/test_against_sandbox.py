"""The Atlas client against the running sandbox: everything comes back, through faults."""

from __future__ import annotations

import pytest

from pfsync_app.atlas import AtlasClient
from pfsync_app.sandbox import Sandbox


def client_for(sb: Sandbox, **options) -> AtlasClient:
    waits: list[float] = []
    client = AtlasClient(
        sb.url,
        sb.api_key,
        sb.api_secret,
        timeout=5.0,
        max_attempts=8,
        max_retry_wait=60.0,
        sleep=waits.append,  # back-off is recorded, not slept
        **options,
    )
    client.waits = waits
    return client


def all_ids(client: AtlasClient) -> tuple[list[int], list[str]]:
    users = [u.id for page in client.iter_user_pages() for u in page.items]
    listings = [item.id for page in client.iter_listing_pages(per_page=4) for item in page.items]
    return users, listings


def test_every_user_and_listing_comes_back_page_by_page():
    with Sandbox(users=9, listings=40, images_per_listing=1, image_bytes=2000, seed=3) as sb:
        client = client_for(sb)
        users, listings = all_ids(client)
    assert sorted(users) == sorted(u["id"] for u in sb.data.users())
    assert listings == [raw["id"] for raw in sb.data.listings()]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_everything_comes_back_through_injected_faults(seed):
    with Sandbox(
        users=9, listings=40, images_per_listing=1, image_bytes=2000, seed=seed, fault_rate=0.5
    ) as sb:
        client = client_for(sb)
        users, listings = all_ids(client)
        faults = [r for r in sb.requests if r.path.startswith("/v1/")]
    assert sorted(users) == sorted(u["id"] for u in sb.data.users())
    assert listings == [raw["id"] for raw in sb.data.listings()]
    assert client.waits, "the fault rate should have caused at least one retry"
    assert len(faults) > 1 + 1 + 10  # token, users, 10 listing pages: retries happened


def test_a_token_living_one_second_is_renewed_as_often_as_needed():
    with Sandbox(
        users=9, listings=40, images_per_listing=1, image_bytes=2000, token_ttl=1, latency_ms=150
    ) as sb:
        client = client_for(sb)
        users, listings = all_ids(client)
        token_requests = [r for r in sb.requests if r.path == "/v1/auth/token"]
    assert len(listings) == 40 and len(users) == 9
    assert len(token_requests) >= 2
