"""Webhook subscriptions through /v1/webhooks, shaped as the spec's request and response schemas."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from responses import matchers

from pfsync_app.atlas import ApiError, MalformedResponseError
from tests.fixtures.atlas import (
    PROBLEM_JSON,
    WEBHOOKS_URL,
    make_client,
    problem,
)

HOOK = {
    "eventId": "listing.published",
    "url": "https://site.test/pfsync/webhook/",
    "createdAt": "2025-09-01T10:00:00Z",
}


def test_list_webhooks_reads_the_subscriptions_from_data(api, clock):
    api.get(WEBHOOKS_URL, json={"data": [HOOK, {**HOOK, "eventId": "user.created"}]})

    hooks = make_client(clock).list_webhooks()

    assert [hook.event_id for hook in hooks] == ["listing.published", "user.created"]
    assert hooks[0].url == "https://site.test/pfsync/webhook/"
    assert hooks[0].created_at == datetime(2025, 9, 1, 10, tzinfo=UTC)


def test_list_webhooks_can_filter_by_event_type(api, clock):
    api.get(
        WEBHOOKS_URL,
        json={"data": [HOOK]},
        match=[matchers.query_param_matcher({"eventType": "listing.published"})],
    )

    assert len(make_client(clock).list_webhooks("listing.published")) == 1


def test_a_webhook_list_without_data_is_a_malformed_response(api, clock):
    api.get(WEBHOOKS_URL, json=[HOOK])

    with pytest.raises(MalformedResponseError, match="no 'data' list of webhooks"):
        make_client(clock).list_webhooks()


def test_subscribe_posts_event_id_callback_url_and_secret(api, clock):
    api.post(
        WEBHOOKS_URL,
        status=201,
        json=HOOK,
        match=[
            matchers.json_params_matcher(
                {
                    "eventId": "listing.published",
                    "callbackUrl": "https://site.test/pfsync/webhook/",
                    "secret": "pF3Z9km2L7xQhR8dBnAeTfYu",
                }
            )
        ],
    )

    hook = make_client(clock).subscribe_webhook(
        "listing.published", "https://site.test/pfsync/webhook/", secret="pF3Z9km2L7xQhR8dBnAeTfYu"
    )

    assert hook.event_id == "listing.published"


def test_subscribe_without_secret_sends_no_secret(api, clock):
    api.post(
        WEBHOOKS_URL,
        status=201,
        json=HOOK,
        match=[
            matchers.json_params_matcher(
                {"eventId": "listing.published", "callbackUrl": "https://site.test/pfsync/webhook/"}
            )
        ],
    )

    make_client(clock).subscribe_webhook("listing.published", "https://site.test/pfsync/webhook/")


def test_a_webhook_secret_over_32_characters_is_refused_before_any_request(api, clock):
    with pytest.raises(ValueError, match="at most 32 characters"):
        make_client(clock).subscribe_webhook("listing.published", "https://s.test/", "x" * 33)

    assert len(api.calls) == 0


def test_unsubscribe_deletes_the_event_subscription(api, clock):
    delete = api.delete(f"{WEBHOOKS_URL}/listing.published", status=204)

    make_client(clock).unsubscribe_webhook("listing.published")

    assert delete.call_count == 1


def test_unsubscribing_an_unknown_event_raises_api_error_with_the_detail(api, clock):
    api.delete(
        f"{WEBHOOKS_URL}/user.created",
        status=404,
        json=problem("Not Found", "subscription not found", "NOT_FOUND"),
        content_type=PROBLEM_JSON,
    )

    with pytest.raises(ApiError, match="HTTP 404: Not Found: subscription not found"):
        make_client(clock).unsubscribe_webhook("user.created")
