"""The client-side rate limiter keeps every window of its period under its limit."""

from __future__ import annotations

import threading

import pytest
import responses

from pfsync_app.atlas import RateLimiter
from tests.fixtures.atlas import (
    LISTINGS_URL,
    TOKEN_URL,
    FakeClock,
    make_client,
    page_body,
    token_body,
)


def busiest_window(stamps: list[float], period: float) -> int:
    """The most timestamps that fall in any window of ``period`` seconds (start excluded)."""
    stamps = sorted(stamps)
    best = 0
    start = 0
    for end, stamp in enumerate(stamps):
        while stamps[start] <= stamp - period:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_acquisitions_under_the_limit_do_not_wait():
    clock = FakeClock()
    limiter = RateLimiter(5, 60.0, clock=clock, sleep=clock.sleep)

    waits = [limiter.acquire() for _ in range(5)]

    assert waits == [0.0] * 5
    assert clock.sleeps == []


def test_the_next_acquisition_waits_until_the_oldest_leaves_the_window():
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(2, 60.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.advance(10)
    limiter.acquire()

    waited = limiter.acquire()

    assert waited == pytest.approx(50.0)
    assert clock.now == pytest.approx(60.0)


def test_a_long_run_never_exceeds_the_limit_in_any_minute():
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(650, 60.0, clock=clock, sleep=clock.sleep)
    stamps = []

    for _ in range(2000):
        limiter.acquire()
        stamps.append(clock())
        clock.advance(0.01)

    assert busiest_window(stamps, 60.0) == 650
    # And it does not hold back more than it must: 2000 requests need just over 3 minutes.
    assert 180.0 <= clock.now < 190.0


def test_the_limiter_is_shared_by_threads_and_holds_the_limit_across_them():
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(10, 60.0, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work():
        start.wait()
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(clock())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(stamps) == 80
    assert busiest_window(stamps, 60.0) == 10


@pytest.mark.parametrize(("limit", "period"), [(0, 60.0), (5, 0.0)])
def test_a_limiter_needs_a_positive_limit_and_period(limit, period):
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(limit, period)


@responses.activate
def test_the_client_spaces_its_api_requests_to_stay_under_requests_per_minute():
    clock = FakeClock(start=0.0)
    client = make_client(clock, requests_per_minute=3)
    responses.post(TOKEN_URL, json=token_body(expires_in=100_000))
    stamps = []

    def answer(request):
        stamps.append(clock())
        return 200, {}, '{"results": [], "pagination": {}}'

    responses.add_callback(responses.GET, LISTINGS_URL, callback=answer)

    for _ in range(7):
        list(client.iter_listing_pages())

    assert len(stamps) == 7
    assert busiest_window(stamps, 60.0) == 3
    assert clock.now == pytest.approx(120.0)


@responses.activate
def test_token_requests_have_their_own_lower_limit():
    clock = FakeClock(start=0.0)
    client = make_client(clock, token_requests_per_minute=2, requests_per_minute=1000)
    stamps = []

    def issue(request):
        stamps.append(clock())
        # A token that is due for renewal at once, so each request asks for another.
        return 200, {}, '{"accessToken": "t", "tokenType": "Bearer", "expiresIn": 1}'

    responses.add_callback(responses.POST, TOKEN_URL, callback=issue)
    responses.get(LISTINGS_URL, json=page_body([]))

    for _ in range(5):
        client.authenticate()
        clock.advance(1)

    assert len(stamps) == 5
    assert busiest_window(stamps, 60.0) == 2
