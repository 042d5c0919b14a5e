"""Fault scenarios of the Atlas API: rate limits, server errors, resets, hangs, bad pages, tokens.

Each scenario runs a real sync against the sandbox with the fault on, checks the
run finished (or stopped cleanly) and reported the cause, then converges: the
next run without the fault brings the complete state, nothing lost, no duplicates.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pfsync_app.exceptions import SyncAborted
from pfsync_app.models import Property, SyncRun
from tests.fixtures.faults import OnFirstPage, Scenario, entries, messages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault_scenario]


@pytest.fixture
def scenario(sandbox_settings):
    """A fault scenario on the small sandbox."""
    return Scenario(sandbox_settings)


def test_429_bursts_with_retry_after_are_waited_out_as_the_api_asks(scenario):
    sb = scenario.sb
    scenario.baseline()
    sb.faults.add("/v1/listings", "status", status=429, retry_after=7, times=3)
    sb.faults.add("/v1/users", "status", status=429, retry_after=2, times=1)
    client = scenario.client()

    result = scenario.sync(client=client)

    assert result.exit_code == 0, result.failures
    assert client.waits.count(7.0) == 3 and 2.0 in client.waits
    assert Property.objects.count() == len(sb.data.listings())
    scenario.converge()


def test_429_bursts_without_retry_after_back_off_and_the_run_completes(scenario):
    sb = scenario.sb
    sb.faults.add("/v1/listings", "status", status=429, times=3)
    client = scenario.client()

    result = scenario.sync(client=client)

    assert result.exit_code == 0, result.failures
    assert len(client.waits) == 3 and all(0 < wait <= 30 for wait in client.waits)
    scenario.converge()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_and_the_run_completes(scenario, status):
    sb = scenario.sb
    scenario.baseline()
    sb.faults.add("/v1/users", "status", status=status, times=2)
    sb.faults.add("/v1/listings", "status", status=status, times=3)

    result = scenario.sync()

    assert result.exit_code == 0, result.failures
    assert Property.objects.count() == len(sb.data.listings())
    scenario.converge()


def test_connection_resets_are_retried_and_the_run_completes(scenario):
    sb = scenario.sb
    sb.faults.add("/v1/auth/token", "reset", times=1)
    sb.faults.add("/v1/listings", "reset", times=2)

    result = scenario.sync()

    assert result.exit_code == 0, result.failures
    scenario.converge()


def test_a_request_hanging_past_the_timeout_is_retried(scenario, settings):
    settings.PF_API_TIMEOUT = 1
    sb = scenario.sb
    sb.faults.add("/v1/listings", "hang", seconds=3, times=1)

    result = scenario.sync()

    assert result.exit_code == 0, result.failures
    assert Property.objects.count() == len(sb.data.listings())
    scenario.converge()


def test_a_request_hanging_every_time_fails_the_fetch_with_its_cause_and_unpublishes_nothing(
    scenario, settings
):
    settings.PF_API_TIMEOUT = 0.5
    sb = scenario.sb
    scenario.baseline(limit=12)
    gone = next(p.pf_id for p in Property.objects.filter(is_published=True))
    sb.data.remove_listing(gone)
    sb.faults.add("/v1/listings", "hang", seconds=1.5, times=None)

    result = scenario.sync(client=scenario.client(max_attempts=2))

    assert result.exit_code == 1
    text = messages(result.run_id, level="error")
    assert "listings.fetch_failed" in text and "timed out after 0.5 s" in text
    assert Property.objects.get(pf_id=gone).is_published is True
    assert "did not complete" in result.unpublish_note
    scenario.converge()
    assert Property.objects.get(pf_id=gone).is_published is False


def test_invalid_json_once_is_fetched_again(scenario):
    sb = scenario.sb
    sb.faults.add("/v1/listings", "invalid_json", times=1)
    sb.faults.add("/v1/users", "invalid_json", times=1)

    result = scenario.sync()

    assert result.exit_code == 0, result.failures
    scenario.converge()


@pytest.mark.parametrize("incomplete", [False, True], ids=["short-body", "cut-connection"])
def test_a_truncated_page_is_fetched_again(scenario, incomplete):
    sb = scenario.sb
    sb.faults.add("/v1/listings?page=2", "truncated", times=1, incomplete=incomplete)

    result = scenario.sync(client=scenario.client(per_page=5))

    assert result.exit_code == 0, result.failures
    assert Property.objects.count() == len(sb.data.listings())
    scenario.converge()


def test_a_page_without_results_ends_the_fetch_with_an_error_and_unpublishes_nothing(scenario):
    sb = scenario.sb
    scenario.baseline(limit=12)
    gone = next(p.pf_id for p in Property.objects.filter(is_published=True))
    sb.data.remove_listing(gone)
    sb.faults.add("/v1/listings?page=2", "missing_results", times=1)

    result = scenario.sync(client=scenario.client(per_page=5))

    assert result.exit_code == 1
    failed = entries(result.run_id, level="error", action="listings.fetch_failed")
    assert len(failed) == 1 and "'results'" in failed[0].message
    assert result.counters["properties_unpublished"] == 0
    assert Property.objects.get(pf_id=gone).is_published is True
    scenario.converge()


@pytest.mark.parametrize("fault", ["status", "invalid_json"])
def test_a_page_failing_after_all_retries_keeps_the_pages_before_and_unpublishes_nothing(
    scenario, fault
):
    sb = scenario.sb
    scenario.baseline(limit=12)
    first_page = [raw["id"] for raw in sb.data.listings()[:5]]
    gone = sb.data.listings()[-1]["id"]
    sb.data.remove_listing(gone)
    for pf_id in first_page:
        sb.data.update_listing(pf_id, **{"title.en": f"Changed {pf_id}"})
    sb.faults.add("/v1/listings?page=2", fault, status=500, times=None)

    result = scenario.sync(client=scenario.client(per_page=5))

    assert result.exit_code == 1
    failed = entries(result.run_id, level="error", action="listings.fetch_failed")
    assert len(failed) == 1 and "page=2" in failed[0].message
    assert "attempts" in failed[0].message
    assert sorted(
        Property.objects.filter(title__startswith="Changed").values_list("pf_id", flat=True)
    ) == sorted(first_page)
    assert Property.objects.get(pf_id=gone).is_published is True
    assert result.counters["properties_unpublished"] == 0
    scenario.converge()


def test_tokens_expiring_every_two_seconds_are_renewed_without_losing_anything(settings):
    from pfsync_app.sandbox import Sandbox
    from tests.fixtures.faults import SMALL

    with Sandbox(**{**SMALL, "token_ttl": 2, "latency_ms": 150}) as sb:
        settings.PF_API_URL = sb.url
        settings.PF_API_KEY, settings.PF_API_SECRET = sb.api_key, sb.api_secret
        settings.PF_MEDIA_ALLOW_PRIVATE_HOSTS = True
        scenario = Scenario(sb)

        result = scenario.sync(client=scenario.client(per_page=1))

        assert result.exit_code == 0, result.failures
        tokens = [r for r in sb.requests if r.path == "/v1/auth/token"]
        assert len(tokens) >= 2
        scenario.converge()


def test_a_401_mid_run_renews_the_token_once_and_the_run_completes(scenario):
    sb = scenario.sb
    sb.faults.add("/v1/listings?page=2", "status", status=401, times=1)

    result = scenario.sync(client=scenario.client(per_page=5))

    assert result.exit_code == 0, result.failures
    assert sum(1 for r in sb.requests if r.path == "/v1/auth/token") == 2
    scenario.converge()


def test_every_token_expiring_mid_run_is_renewed_and_the_run_completes(scenario):
    sb = scenario.sb

    result = scenario.sync(
        client=scenario.client(per_page=2), progress=OnFirstPage(sb.faults.expire_tokens)
    )

    assert result.exit_code == 0, result.failures
    assert Property.objects.count() == len(sb.data.listings())
    scenario.converge()


def test_credentials_revoked_mid_run_stop_with_status_2_and_keep_what_was_saved(scenario):
    sb = scenario.sb
    scenario.baseline()
    before = set(Property.objects.values_list("pf_id", flat=True))

    with pytest.raises(SyncAborted, match="refused the credentials mid-run") as info:
        scenario.sync(
            client=scenario.client(per_page=2),
            progress=OnFirstPage(sb.faults.revoke_credentials),
        )

    assert sb.api_secret not in str(info.value)
    run = SyncRun.objects.latest("id")
    assert run.status == SyncRun.Status.FAILED and "credentials" in run.message
    assert before <= set(Property.objects.values_list("pf_id", flat=True))
    assert Property.objects.count() < len(sb.data.listings())
    scenario.converge()


def test_credentials_revoked_make_the_command_exit_with_status_2_and_one_sentence(scenario):
    sb = scenario.sb
    scenario.baseline()
    sb.faults.revoke_credentials()

    with pytest.raises(CommandError) as info:
        call_command("pf_sync", stdout=StringIO(), stderr=StringIO())

    assert info.value.returncode == 2
    text = str(info.value)
    assert text.startswith("pf_sync could not run: Property Finder refused the credentials")
    assert "\n" not in text and sb.api_secret not in text
    scenario.converge()
