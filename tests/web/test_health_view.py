"""The health view for uptime monitors: 200 while the nightly sync is healthy, else 503."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from pfsync_app.models import SyncRun

pytestmark = pytest.mark.django_db

URL = "/pf/health/"


def nightly(hours_ago: float, status: str = "succeeded") -> SyncRun:
    started = timezone.now() - dt.timedelta(hours=hours_ago)
    return SyncRun.objects.create(
        command="pf_sync",
        status=status,
        options={"dry_run": False, "only": None, "listing_ids": [], "limit": None},
        started_at=started,
        finished_at=started + dt.timedelta(minutes=5),
        message="Database 'default' cannot be reached: host db.internal refused",
        hostname="sync-worker.internal",
    )


def test_the_health_view_is_pfsync_health_under_pf():
    assert reverse("pfsync:health") == URL


def test_a_recent_nightly_success_answers_200_with_its_time_and_age(client):
    run = nightly(hours_ago=3)

    response = client.get(URL)

    assert response.status_code == 200
    data = response.json()
    assert data["healthy"] is True
    assert data["last_success"]["id"] == run.pk
    assert 2.8 < data["last_success_age_hours"] < 3.0
    assert data["last_run_status"] == "succeeded"
    assert data["pending_webhook_events"] == 0
    assert data["lock"] is None
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]


def test_before_any_sync_it_answers_503_with_a_one_line_reason(client):
    response = client.get(URL)

    assert response.status_code == 503
    assert response.json()["reason"] == "no nightly pf_sync has succeeded yet"


def test_a_stale_success_answers_503(client):
    nightly(hours_ago=30)

    response = client.get(URL)

    assert response.status_code == 503
    assert "more than PF_SYNC_MAX_AGE_HOURS=26" in response.json()["reason"]


def test_a_nightly_run_that_failed_answers_503_without_its_message_or_host(client):
    nightly(hours_ago=5)
    nightly(hours_ago=1, status="failed")

    response = client.get(URL)

    assert response.status_code == 503
    assert response.json()["reason"].endswith(") failed")
    assert "db.internal" not in response.content.decode()
    assert "sync-worker" not in response.content.decode()


def test_a_database_that_cannot_be_reached_answers_503_with_a_reason(client, monkeypatch):
    def unreachable(now=None):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr("pfsync_app.views.sync_health", unreachable)

    response = client.get(URL)

    assert response.status_code == 503
    assert response.json() == {
        "healthy": False,
        "reason": "the database cannot be reached, or pfsync's tables are missing",
    }


def test_with_a_token_set_a_request_without_it_or_with_another_is_refused(client, settings):
    settings.PF_HEALTH_TOKEN = "monitor-token-1234"
    nightly(hours_ago=1)

    missing = client.get(URL)
    wrong = client.get(URL, headers={"Authorization": "Bearer another-token"})
    wrong_query = client.get(URL, {"token": "another-token"})

    assert [r.status_code for r in (missing, wrong, wrong_query)] == [401, 401, 401]
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert "monitor-token-1234" not in wrong.content.decode()


def test_with_a_token_set_a_bearer_header_or_a_token_parameter_is_let_in(client, settings):
    settings.PF_HEALTH_TOKEN = "monitor-token-1234"
    nightly(hours_ago=1)

    by_header = client.get(URL, headers={"Authorization": "Bearer monitor-token-1234"})
    by_query = client.get(URL, {"token": "monitor-token-1234"})

    assert [r.status_code for r in (by_header, by_query)] == [200, 200]


def test_the_token_is_compared_in_constant_time(client, settings, monkeypatch):
    settings.PF_HEALTH_TOKEN = "monitor-token-1234"
    compared = []

    def compare(given, expected):
        compared.append((given, expected))
        return False

    monkeypatch.setattr("pfsync_app.views.constant_time_compare", compare)

    client.get(URL, {"token": "guess"})

    assert compared == [("guess", "monitor-token-1234")]


def test_only_reading_is_allowed(client):
    assert client.post(URL).status_code == 405
    assert client.head(URL).status_code == 503
