"""The admin: runs with their counters and entries, synced properties with their images."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from pfsync_app.models import (
    Agent,
    Area,
    Property,
    PropertyImage,
    ReportEntry,
    SyncRun,
    WebhookEvent,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """The admin user's password is hashed once per test: a fast hasher keeps tests quick."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def run() -> SyncRun:
    """A finished pf_sync run with distinctive counters and one entry of each level."""
    started = dt.datetime(2026, 1, 18, 19, 0, 5, tzinfo=dt.UTC)  # 2026-01-19 00:00:05 Tashkent
    run = SyncRun.objects.create(
        command="pf_sync",
        status="finished_with_errors",
        started_at=started,
        finished_at=started + dt.timedelta(minutes=3, seconds=12),
        properties_created=4321,
        properties_updated=8765,
        images_downloaded=2468,
        users_created=135,
        errors=1,
        message="sync finished",
    )
    for level, message in (
        ("info", "INFO-created listing L1"),
        ("warning", "WARNING-image too small"),
        ("error", "ERROR-listing L9 has no price"),
        ("info", "INFO-updated listing L2"),
    ):
        ReportEntry.objects.create(run=run, level=level, action="test", message=message)
    return run


@pytest.fixture
def listing(settings, tmp_path) -> Property:
    """A synced property with one stored image and one whose file is gone."""
    settings.MEDIA_ROOT = tmp_path
    now = timezone.now()
    area = Area.objects.create(name="Dubai Marina", pf_location_id=50)
    agent = Agent.objects.create(username="agent-7", first_name="Ann", last_name="Agent")
    prop = Property.objects.create(
        pf_id="01JTESTLISTING",
        reference="REF-7",
        title="Sea view flat",
        area=area,
        user=agent,
        price=1_250_000,
        is_published=True,
        pf_updated_at=now,
        created_at=now,
        updated_at=now,
    )
    stored = default_storage.save("property_images/present.jpg", ContentFile(b"\xff\xd8jpeg"))
    PropertyImage.objects.create(
        property=prop,
        image=stored,
        position=1,
        source_url="https://img.example/1.jpg",
        created_at=now,
    )
    PropertyImage.objects.create(
        property=prop,
        image="property_images/gone.jpg",
        position=2,
        source_url="https://img.example/2.jpg",
        created_at=now,
    )
    return prop


def test_the_run_list_shows_tashkent_start_times_duration_and_counters(admin_client, run):
    response = admin_client.get(reverse("admin:pfsync_app_syncrun_changelist"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "2026-01-19 00:00:05" in html
    assert "3 min 12 s" in html
    for number in ("4321", "8765", "2468", "135"):
        assert number in html
    assert "finished with errors" in html


def test_the_run_list_filters_by_command_and_status(admin_client, run):
    SyncRun.objects.create(command="pf_check", status="succeeded", properties_created=97531)
    url = reverse("admin:pfsync_app_syncrun_changelist")

    html = admin_client.get(url, {"command__exact": "pf_check"}).content.decode()
    assert "97531" in html and "4321" not in html

    html = admin_client.get(url, {"status__exact": "finished_with_errors"}).content.decode()
    assert "4321" in html and "97531" not in html


def test_a_run_page_shows_its_entries_errors_first_then_warnings_then_info(admin_client, run):
    response = admin_client.get(reverse("admin:pfsync_app_syncrun_change", args=[run.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    positions = [
        html.index(text)
        for text in (
            "ERROR-listing L9 has no price",
            "WARNING-image too small",
            "INFO-created listing L1",
            "INFO-updated listing L2",
        )
    ]
    assert positions == sorted(positions)
    assert 'name="_save"' not in html  # read-only: no save button


def test_a_run_page_links_to_its_entries_filtered_by_level(admin_client, run):
    html = admin_client.get(
        reverse("admin:pfsync_app_syncrun_change", args=[run.pk])
    ).content.decode()
    link = (
        f"{reverse('admin:pfsync_app_reportentry_changelist')}?run={run.pk}&amp;level__exact=error"
    )
    assert link in html

    listed = admin_client.get(
        reverse("admin:pfsync_app_reportentry_changelist"),
        {"run": run.pk, "level__exact": "error"},
    ).content.decode()
    assert "ERROR-listing L9 has no price" in listed
    assert "WARNING-image too small" not in listed


def test_runs_and_entries_cannot_be_added_changed_or_deleted(admin_client, run):
    entry = run.entries.first()
    refused = [
        admin_client.get(reverse("admin:pfsync_app_syncrun_add")),
        admin_client.get(reverse("admin:pfsync_app_syncrun_delete", args=[run.pk])),
        admin_client.post(reverse("admin:pfsync_app_syncrun_change", args=[run.pk]), {}),
        admin_client.get(reverse("admin:pfsync_app_reportentry_add")),
        admin_client.get(reverse("admin:pfsync_app_reportentry_delete", args=[entry.pk])),
    ]

    assert [r.status_code for r in refused] == [403] * len(refused)
    assert SyncRun.objects.filter(pk=run.pk).exists()


def test_the_property_page_shows_thumbnails_and_marks_a_missing_file(admin_client, listing):
    response = admin_client.get(reverse("admin:pfsync_app_property_change", args=[listing.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert '<img src="/media/property_images/present.jpg" height="80"' in html
    assert "✗ file missing" in html
    assert '<img src="/media/property_images/gone.jpg"' not in html
    assert "https://img.example/2.jpg" in html


def test_the_property_list_shows_area_agent_and_published(admin_client, listing):
    response = admin_client.get(reverse("admin:pfsync_app_property_changelist"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "01JTESTLISTING" in html
    assert "Dubai Marina" in html
    assert "Ann Agent" in html
    assert admin_client.get(reverse("admin:pfsync_app_property_add")).status_code == 403


def test_webhook_events_are_listed_with_their_outcome(admin_client):
    WebhookEvent.objects.create(
        event_id="evt-1",
        event_type="listing.published",
        entity_id="01JWEBHOOK",
        status="failed",
        attempts=3,
        last_error="Listing not found\nmore detail",
    )

    html = admin_client.get(reverse("admin:pfsync_app_webhookevent_changelist")).content.decode()

    assert "01JWEBHOOK" in html
    assert "Listing not found" in html
    assert "more detail" not in html


def test_the_host_user_page_has_the_property_finder_fields(admin_client, admin_user):
    html = admin_client.get(
        reverse("admin:host_user_change", args=[admin_user.pk])
    ).content.decode()

    for field in ("phone", "role", "pf_user_id", "pf_public_profile_id"):
        assert f'name="{field}"' in html


def test_internal_tables_are_not_in_the_admin(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()

    assert "Listing states" not in html
    assert "Image files" not in html
    assert html.count(">Properties<") == 1
    assert "Areas" in html
