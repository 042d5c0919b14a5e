"""The admin: runs with their counters and entries, synced properties with their images."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
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
from pfsync_app.reports.causes import Cause
from pfsync_app.reports.recorder import RunRecorder

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


def test_the_run_list_shows_tashkent_start_times_duration_and_the_counters_that_matter(
    admin_client, run
):
    response = admin_client.get(reverse("admin:pfsync_app_syncrun_changelist"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "2026-01-19 00:00:05" in html
    assert "3 min 12 s" in html
    for number in ("4321", "8765"):
        assert number in html
    assert "with errors" in html
    assert 'title="finished with errors: sync finished"' in html  # the message, on hover
    columns = [
        "started",
        "command",
        "status_short",
        "duration_text",
        "created",
        "updated",
        "images_failed_",
        "errors_",
    ]
    positions = [html.index(f"column-{column}") for column in columns]
    assert positions == sorted(positions)


def test_the_run_page_shows_every_counter(admin_client, run):
    html = admin_client.get(
        reverse("admin:pfsync_app_syncrun_change", args=[run.pk])
    ).content.decode()

    for number in ("4321", "8765", "2468", "135"):
        assert number in html


def test_the_run_list_shows_pf_sync_runs_unless_another_command_is_picked(admin_client, run):
    SyncRun.objects.create(command="pf_check", status="succeeded", properties_created=97531)
    url = reverse("admin:pfsync_app_syncrun_changelist")

    html = admin_client.get(url).content.decode()
    assert "4321" in html and "97531" not in html
    assert 'href="?command=pf_check"' in html

    html = admin_client.get(url, {"command": "pf_check"}).content.decode()
    assert "97531" in html and "4321" not in html

    html = admin_client.get(url, {"command": "all"}).content.decode()
    assert "97531" in html and "4321" in html

    html = admin_client.get(url, {"status__exact": "succeeded", "command": "all"}).content.decode()
    assert "97531" in html and "4321" not in html


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


# ---------------------------------------------------------------------------
# The overview, and runs and entries that say what failed
# ---------------------------------------------------------------------------

NIGHTLY = {"dry_run": False, "only": None, "listing_ids": [], "limit": None}


@pytest.fixture
def failed_night(listing) -> SyncRun:
    """Last night's pf_sync: 3 images failed (2 HTTP 404, 1 HTTP 403), one user created."""
    agent = Agent.objects.get(username="agent-7")
    with RunRecorder.start("pf_sync", options=NIGHTLY) as recorder:
        recorder.count("properties_created", 1)
        recorder.info(
            "user.created", "Ann Agent", pf_id="77", object_type="user", object_id=agent.pk
        )
        for n, status in enumerate((404, 404, 403)):
            recorder.count("images_failed")
            recorder.error(
                "image.failed",
                f"image {n}: image https://img.example/{n}.jpg: HTTP {status} after 1 attempt "
                + "and a long explanation " * 20,
                pf_id=listing.pf_id,
                object_type="property",
                object_id=listing.pk,
                cause=Cause("http_status", status),
                url=f"https://img.example/{n}.jpg",
            )
    return SyncRun.objects.get(pk=recorder.run.pk)


def test_the_overview_is_the_first_thing_under_property_finder_sync(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()

    section = html[html.index("app-pfsync_app") :]
    names = [section.index(f"pfsync_app-{model}") for model in ("overview", "property", "syncrun")]
    assert names == sorted(names)
    assert reverse("admin:pfsync_app_overview_changelist") == "/admin/pfsync_app/overview/"


def test_the_overview_shows_last_night_with_its_failures_by_cause_linked_to_the_entries(
    admin_client, failed_night
):
    WebhookEvent.objects.create(event_id="e1", event_type="listing.published", status="pending")
    with RunRecorder.start("pf_check", options={"property": None, "verify": False}) as check:
        check.error("image.missing", "image 1 of property 2: 'a.jpg' file is missing")

    html = admin_client.get(reverse("admin:pfsync_app_overview_changelist")).content.decode()

    assert "Last night's sync" in html
    assert "1 created; 3 images failed: 2 HTTP 404, 1 HTTP 403" in html
    assert "<svg" in html and "pf-chart" in html
    assert "1 image files missing or damaged</a>" in html
    assert "1 pending" in html
    link = html[html.index("pf-failures") :]
    href = link[link.index('href="') + 6 : link.index('">2 HTTP 404')].replace("&amp;", "&")
    listed = admin_client.get(href).content.decode()
    assert listed.count("https://img.example/0.jpg") >= 1
    assert "https://img.example/2.jpg" not in listed
    assert f"Report entries of run {failed_night.pk}" in listed


def test_the_overview_is_for_those_who_may_see_runs(client, django_user_model):
    staff = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(staff)
    url = reverse("admin:pfsync_app_overview_changelist")

    assert client.get(url).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_syncrun"))
    assert client.get(url).status_code == 200


def test_the_overview_before_any_run_says_so(admin_client):
    html = admin_client.get(reverse("admin:pfsync_app_overview_changelist")).content.decode()

    assert "No nightly pf_sync has run yet." in html
    assert "no nightly pf_sync has succeeded yet" in html


def test_a_run_page_shows_what_failed_its_options_and_entries_under_one_header(
    admin_client, failed_night, listing
):
    html = admin_client.get(
        reverse("admin:pfsync_app_syncrun_change", args=[failed_night.pk])
    ).content.decode()

    assert "3 images failed" in html
    assert '<span class="pf-key">dry run:</span> no' in html
    entries = html[html.index('id="entries-group"') :]
    assert entries.count("<thead>") == 1
    assert 'class="original"' not in html
    assert "and a long explanation " * 20 in entries  # in full, not cut
    property_link = reverse("admin:pfsync_app_property_change", args=[listing.pk])
    assert entries.count(f'href="{property_link}"') == 3
    user_link = reverse("admin:host_user_change", args=[listing.user_id])
    assert f'href="{user_link}">user 77</a>' in entries


def test_an_entry_of_a_listing_saved_after_it_failed_links_the_property_by_its_pf_id(
    admin_client, listing
):
    with RunRecorder.start("pf_sync", options=NIGHTLY) as recorder:
        recorder.error("listing.failed", "value too long", pf_id=listing.pf_id)

    html = admin_client.get(
        reverse("admin:pfsync_app_syncrun_change", args=[recorder.run.pk])
    ).content.decode()

    property_link = reverse("admin:pfsync_app_property_change", args=[listing.pk])
    assert f'href="{property_link}">{listing.pf_id}</a>' in html


def test_the_entry_list_has_no_run_filter_and_names_the_run_it_was_opened_for(
    admin_client, failed_night
):
    url = reverse("admin:pfsync_app_reportentry_changelist")

    unfiltered = admin_client.get(url).content.decode()
    for_run = admin_client.get(url, {"run": failed_night.pk}).content.decode()
    by_cause = admin_client.get(url, {"run": failed_night.pk, "cause": "http_status:403"})

    assert "By run" not in unfiltered and "by run" not in unfiltered
    assert f"Report entries of run {failed_night.pk}: pf_sync" in for_run
    assert reverse("admin:pfsync_app_syncrun_change", args=[failed_night.pk]) in for_run
    listed = by_cause.content.decode()
    assert "https://img.example/2.jpg" in listed and "https://img.example/0.jpg" not in listed
    assert ">HTTP 403<" in listed


def test_a_dry_run_says_so_in_the_run_list_and_is_not_last_night(admin_client, failed_night):
    with RunRecorder.start("pf_sync", options={**NIGHTLY, "dry_run": True}) as dry:
        dry.count("properties_updated", 50)

    runs = admin_client.get(reverse("admin:pfsync_app_syncrun_changelist")).content.decode()
    rows = runs[runs.index("<tbody>") :].split("</tr>")
    dry_row = next(row for row in rows if f"/syncrun/{dry.run.pk}/change/" in row)
    real_row = next(row for row in rows if f"/syncrun/{failed_night.pk}/change/" in row)
    assert "✓ dry run</span>" in dry_row
    assert "dry run" not in real_row

    html = admin_client.get(reverse("admin:pfsync_app_overview_changelist")).content.decode()
    card = html[html.index('id="pf-last-sync"') : html.index('id="pf-chart"')]
    assert f"run {failed_night.pk}</a>" in card
    assert f"run {dry.run.pk}</a>" not in card
    chart = html[html.index('id="pf-chart"') : html.index('id="pf-schedule"')]
    assert f"/syncrun/{failed_night.pk}/change/" in chart
    assert f"/syncrun/{dry.run.pk}/change/" not in chart


def test_a_run_that_could_not_run_is_shown_with_its_message_as_the_cause(admin_client):
    started = timezone.now() - dt.timedelta(hours=1)
    run = SyncRun.objects.create(
        command="pf_sync",
        status="failed",
        options=NIGHTLY,
        started_at=started,
        finished_at=started + dt.timedelta(seconds=30),
        message="cannot reach the Property Finder API: connection refused",
    )

    html = admin_client.get(reverse("admin:pfsync_app_overview_changelist")).content.decode()
    card = html[html.index('id="pf-last-sync"') : html.index('id="pf-chart"')]
    assert "Nothing failed" not in card
    assert (
        "The run stopped before it finished: "
        "cannot reach the Property Finder API: connection refused"
    ) in card

    page = admin_client.get(reverse("admin:pfsync_app_syncrun_change", args=[run.pk]))
    what_failed = page.content.decode().split("field-failures", 1)[1].split("</div>\n", 2)[:2]
    assert "The run stopped before it finished" in "".join(what_failed)
