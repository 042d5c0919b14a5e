"""The declared retry policy: what is retried, how long it waits, and what is raised at the end."""

from __future__ import annotations

import logging
import re

import pytest
import requests
import responses

from pfsync_app.atlas import (
    ApiError,
    AtlasConnectionError,
    FirewallBlockedError,
    MalformedResponseError,
    RateLimitedError,
)
from tests.fixtures.atlas import (
    CDN_BLOCK_PAGE,
    LISTINGS_URL,
    PROBLEM_JSON,
    TOKEN_URL,
    WEBHOOKS_URL,
    listing_json,
    make_client,
    page_body,
    problem,
    token_body,
)

RATE_LIMITED = problem("Too Many Requests", "Rate limit exceeded", "RATE_LIMIT")
INTERNAL = problem("Internal Server Error", "generic error", "INTERNAL")


def fail_then_succeed(api, *failures):
    """Register ``failures`` (kwargs of responses.get) for the listings URL, then one good page."""
    for failure in failures:
        api.get(LISTINGS_URL, **failure)
    return api.get(LISTINGS_URL, json=page_body([listing_json()]))


def fetch(client):
    return [listing for page in client.iter_listing_pages() for listing in page.items]


def listing_calls(api):
    return [call for call in api.calls if call.request.url.startswith(LISTINGS_URL)]


def test_a_429_with_retry_after_waits_exactly_that_long(api, clock):
    fail_then_succeed(
        api,
        {"status": 429, "json": RATE_LIMITED, "headers": {"Retry-After": "7"}},
        {"status": 429, "json": RATE_LIMITED, "headers": {"Retry-After": "3"}},
    )

    listings = fetch(make_client(clock))

    assert len(listings) == 1
    assert clock.sleeps == [7.0, 3.0]


def test_a_429_retry_after_is_capped(api, clock):
    fail_then_succeed(api, {"status": 429, "headers": {"Retry-After": "3600"}})

    fetch(make_client(clock, retry_after_cap=45.0))

    assert clock.sleeps == [45.0]


def test_a_429_without_retry_after_backs_off_exponentially_with_jitter(api, clock):
    fail_then_succeed(api, *[{"status": 429, "json": RATE_LIMITED}] * 4)

    fetch(make_client(clock))

    assert len(clock.sleeps) == 4
    for attempt, wait in enumerate(clock.sleeps):
        assert 2**attempt <= wait <= 2**attempt + 1


def test_a_429_that_persists_raises_rate_limited_error_after_max_attempts(api, clock):
    api.get(LISTINGS_URL, status=429, json=RATE_LIMITED, headers={"Retry-After": "2"})

    with pytest.raises(RateLimitedError) as caught:
        fetch(make_client(clock, max_attempts=4))

    assert len(listing_calls(api)) == 4
    assert clock.sleeps == [2.0, 2.0, 2.0]
    assert caught.value.retry_after == 2.0
    assert "Rate limit exceeded" in str(caught.value)
    assert "(4 attempts over 6.0 s)" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_with_backoff(api, clock, status):
    fail_then_succeed(api, {"status": status, "json": INTERNAL}, {"status": status})

    assert len(fetch(make_client(clock))) == 1
    assert len(listing_calls(api)) == 3
    assert 1 <= clock.sleeps[0] <= 2 and 2 <= clock.sleeps[1] <= 3


def test_a_server_error_that_persists_raises_api_error_with_the_problem_detail(api, clock):
    api.get(LISTINGS_URL, status=500, json=INTERNAL, content_type=PROBLEM_JSON)

    with pytest.raises(ApiError) as caught:
        fetch(make_client(clock, max_attempts=3))

    error = caught.value
    assert (error.status, error.detail) == (500, "generic error")
    assert error.url.startswith(LISTINGS_URL)
    assert "HTTP 500: Internal Server Error: generic error" in str(error)
    assert len(listing_calls(api)) == 3


def test_a_connection_error_is_retried(api, clock):
    fail_then_succeed(api, {"body": requests.ConnectionError("connection refused")})

    assert len(fetch(make_client(clock))) == 1
    assert len(clock.sleeps) == 1


def test_a_timeout_is_retried_and_a_persistent_one_raises_connection_error(api, clock):
    api.get(LISTINGS_URL, body=requests.ReadTimeout("read timed out"))

    with pytest.raises(AtlasConnectionError) as caught:
        fetch(make_client(clock, max_attempts=3, timeout=12))

    assert "timed out after 12 s" in str(caught.value)
    assert len(listing_calls(api)) == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, problem("Bad Request", "perPage must be at most 100", "SCHEMA_VALIDATION")),
        (403, problem("Forbidden", "missing permission listings:read", "AUTHORIZATION")),
        (404, problem("Not Found", "no such resource", "NOT_FOUND")),
        (422, problem("Unprocessable Entity", "validation failed", "BUSINESS_VALIDATION")),
    ],
)
def test_client_errors_are_not_retried(api, clock, status, body):
    api.get(LISTINGS_URL, status=status, json=body, content_type=PROBLEM_JSON)

    with pytest.raises(ApiError) as caught:
        fetch(make_client(clock))

    assert type(caught.value) is ApiError
    assert caught.value.status == status
    assert caught.value.detail == body["detail"]
    assert body["detail"] in str(caught.value)
    assert len(listing_calls(api)) == 1
    assert clock.sleeps == []


def test_validation_errors_list_their_pointers_in_the_detail(api, clock):
    body = {
        **problem("Unprocessable Entity", "", "BUSINESS_VALIDATION"),
        "errors": [{"detail": "must be one of rent, sale", "pointer": "/filter/offeringType"}],
    }
    api.get(LISTINGS_URL, status=422, json=body, content_type=PROBLEM_JSON)

    with pytest.raises(ApiError, match="/filter/offeringType: must be one of rent, sale"):
        fetch(make_client(clock))


def test_the_cdn_block_page_is_retried_with_backoff(api, clock):
    fail_then_succeed(api, {"status": 403, "body": CDN_BLOCK_PAGE, "content_type": "text/html"})

    assert len(fetch(make_client(clock))) == 1
    assert len(clock.sleeps) == 1 and 1 <= clock.sleeps[0] <= 2


def test_a_persistent_cdn_block_page_raises_firewall_blocked_error(api, clock):
    api.get(LISTINGS_URL, status=403, body=CDN_BLOCK_PAGE, content_type="text/html; charset=utf-8")

    with pytest.raises(FirewallBlockedError) as caught:
        fetch(make_client(clock, max_attempts=5))

    assert caught.value.status == 403
    assert "blocked by Property Finder's CDN firewall (HTML block page" in str(caught.value)
    assert re.search(r"\(5 attempts over \d+ s\)$", str(caught.value))
    assert len(listing_calls(api)) == 5


def test_the_total_wait_of_one_request_is_bounded(api, clock):
    api.get(LISTINGS_URL, status=503)

    with pytest.raises(ApiError):
        fetch(make_client(clock, max_attempts=50, max_retry_wait=20.0))

    assert sum(clock.sleeps) == pytest.approx(20.0)
    assert len(listing_calls(api)) < 10


def test_a_body_that_is_not_json_is_retried_a_few_times_then_malformed(api, clock):
    api.get(LISTINGS_URL, body='{"results": [{"id": "01JQ', content_type="application/json")

    with pytest.raises(MalformedResponseError) as caught:
        fetch(make_client(clock))

    assert "not valid JSON" in str(caught.value)
    assert LISTINGS_URL in str(caught.value)
    assert len(listing_calls(api)) == 3


def test_a_cut_off_body_that_arrives_whole_on_retry_is_used(api, clock):
    fail_then_succeed(api, {"body": '{"results": [', "content_type": "application/json"})

    assert len(fetch(make_client(clock))) == 1


def test_a_subscription_post_is_not_retried_on_a_server_error(api, clock):
    webhook = api.post(WEBHOOKS_URL, status=500, json=INTERNAL)

    with pytest.raises(ApiError):
        make_client(clock).subscribe_webhook("listing.published", "https://site.test/hook")

    assert webhook.call_count == 1


def test_a_subscription_post_is_retried_on_429(api, clock):
    api.post(WEBHOOKS_URL, status=429, headers={"Retry-After": "1"})
    api.post(
        WEBHOOKS_URL,
        status=201,
        json={"eventId": "listing.published", "url": "https://site.test/hook", "createdAt": None},
    )

    webhook = make_client(clock).subscribe_webhook("listing.published", "https://site.test/hook")

    assert webhook.event_id == "listing.published"
    assert clock.sleeps == [1.0]


def test_token_request_failures_are_retried_too(clock):
    with responses.RequestsMock() as api:
        api.post(TOKEN_URL, status=502)
        api.post(TOKEN_URL, json=token_body())

        make_client(clock).authenticate()

    assert len(clock.sleeps) == 1


def test_each_retry_logs_one_line_with_what_failed_the_attempt_and_the_wait(api, clock, caplog):
    fail_then_succeed(
        api,
        {"status": 503, "json": problem("Service Unavailable", "try later", "INTERNAL")},
        {"status": 429, "headers": {"Retry-After": "4"}},
    )

    with caplog.at_level(logging.WARNING, logger="pfsync.atlas"):
        fetch(make_client(clock, max_attempts=6))

    lines = [r.getMessage() for r in caplog.records if r.name == "pfsync.atlas"]
    assert len(lines) == 2
    assert "GET https://atlas.test/v1/listings?page=1&perPage=100" in lines[0]
    assert "HTTP 503: Service Unavailable: try later" in lines[0]
    # The first back-off is 1 s plus up to 1 s of jitter.
    first_wait = re.search(r"attempt 1 of 6, retrying in (\d+\.\d) s", lines[0])
    assert first_wait and 1.0 <= float(first_wait.group(1)) <= 2.0
    assert "HTTP 429" in lines[1] and "attempt 2 of 6, retrying in 4.0 s" in lines[1]
