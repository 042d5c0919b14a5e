"""pf_webhooks list / subscribe / unsubscribe through the API's /v1/webhooks, on the sandbox."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pfsync_app.jobs.webhooks import EVENT_TYPES
from pfsync_app.sandbox import Sandbox

SECRET = "command-secret"
HOOK = "http://127.0.0.1:8000/pf/webhook/"


@pytest.fixture
def sb(sandbox_settings: Sandbox, settings: Any) -> Sandbox:
    settings.PF_WEBHOOK_SECRET = SECRET
    settings.PF_WEBHOOK_ALLOW_UNSIGNED = False
    settings.PF_API_MAX_RETRY_WAIT = 0
    return sandbox_settings


def run(*args: str) -> str:
    out = StringIO()
    call_command("pf_webhooks", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_subscribe_defaults_to_all_eight_events_signed_with_pf_webhook_secret(sb):
    output = run("subscribe", "--url", HOOK)
    subscriptions = sb.webhooks.subscriptions()
    assert sorted(s.event_id for s in subscriptions) == sorted(EVENT_TYPES)
    assert {(s.url, s.secret) for s in subscriptions} == {(HOOK, SECRET)}
    assert "8 subscriptions added" in output
    assert SECRET not in output


def test_subscribing_again_adds_no_second_subscription(sb):
    run("subscribe", "--url", HOOK)
    output = run("subscribe", "--url", HOOK)
    assert len(sb.webhooks.subscriptions()) == len(EVENT_TYPES)
    assert "0 subscriptions added" in output
    assert "already subscribed" in output


def test_subscribe_takes_chosen_events_and_another_secret(sb):
    run("subscribe", "--url", HOOK, "--event", "listing.published", "--secret", "other")
    (subscription,) = sb.webhooks.subscriptions()
    assert (subscription.event_id, subscription.secret) == ("listing.published", "other")


def test_subscribe_refuses_to_subscribe_unsigned_when_unsigned_events_would_be_refused(
    sb, settings
):
    settings.PF_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="no signing secret") as error:
        run("subscribe", "--url", HOOK)
    assert error.value.returncode == 2
    assert not sb.webhooks.subscriptions()


def test_subscribe_unsigned_is_allowed_when_pf_webhook_allow_unsigned_is_true(sb, settings):
    settings.PF_WEBHOOK_SECRET = ""
    settings.PF_WEBHOOK_ALLOW_UNSIGNED = True
    assert "(unsigned)" in run("subscribe", "--url", HOOK, "--event", "user.created")
    assert sb.webhooks.subscriptions()[0].secret is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "not a url"], "is not an http(s) URL"),
        (["--url", "ftp://127.0.0.1/x"], "is not an http(s) URL"),
        (["--url", HOOK, "--secret", "x" * 33], "at most 32"),
    ],
)
def test_subscribe_mistakes_are_one_sentence_errors_with_status_2(sb, args, message):
    with pytest.raises(CommandError, match=re.escape(message)) as error:
        run("subscribe", *args)
    assert error.value.returncode == 2
    assert not sb.webhooks.subscriptions()


def test_subscribe_refuses_an_event_type_pfsync_does_not_handle(sb):
    with pytest.raises(CommandError, match="invalid choice"):
        run("subscribe", "--url", HOOK, "--event", "lead.created")


def test_list_shows_each_subscription(sb):
    assert run("list").strip() == "No event subscriptions."
    run("subscribe", "--url", HOOK, "--event", "user.updated", "--event", "listing.published")
    lines = run("list").splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["listing.published", HOOK],
        ["user.updated", HOOK],
    ]


def test_unsubscribe_deletes_the_subscriptions_of_an_event_type(sb):
    run("subscribe", "--url", HOOK)
    output = run("unsubscribe", "user.deleted", "user.deactivated")
    assert "user.deleted" in output
    remaining = {s.event_id for s in sb.webhooks.subscriptions()}
    assert remaining == set(EVENT_TYPES) - {"user.deleted", "user.deactivated"}


def test_unsubscribing_an_event_without_subscription_says_there_is_nothing_to_do(sb):
    run("subscribe", "--url", HOOK, "--event", "user.created")

    output = run("unsubscribe", "listing.action", "user.created")

    assert "there is no subscription to listing.action: nothing to unsubscribe" in output
    assert re.search(r"user\.created\s+unsubscribed", output)
    assert sb.webhooks.subscriptions() == []


def test_unsubscribing_an_unknown_event_type_is_refused_before_any_request(sb):
    sb.clear_requests()
    with pytest.raises(CommandError, match=r"argument EVENT_TYPE: invalid choice: 'listing'"):
        run("unsubscribe", "listing")
    assert not sb.requests


def test_refused_credentials_are_a_one_sentence_error(sb):
    sb.faults.revoke_credentials()
    with pytest.raises(CommandError, match="pf_webhooks list failed") as error:
        run("list")
    assert error.value.returncode == 2
    assert sb.api_secret not in str(error.value)
