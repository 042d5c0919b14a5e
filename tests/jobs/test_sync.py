"""pf_sync end to end against the sandbox and the real database."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import (
    Agent,
    ImageFile,
    ListingState,
    Property,
    PropertyImage,
    ReportEntry,
    SyncRun,
)
from tests.fixtures.site import assert_database_equals_sandbox, expected_live, expected_price

pytestmark = pytest.mark.django_db(transaction=True)

FORBIDDEN_SQL = re.compile(r"^\s*(DELETE|TRUNCATE|DROP|ALTER)\b", re.IGNORECASE)


def assert_users_match(sb):
    for raw in sb.data.users():
        agent = Agent.objects.get(pf_user_id=raw["id"])
        profile = raw.get("publicProfile") or {}
        assert agent.email == raw["email"]
        assert agent.first_name == raw["firstName"]
        assert agent.last_name == (raw.get("lastName") or "")
        assert agent.phone == (raw.get("mobile") or profile.get("phone") or "")
        assert agent.role == ((raw.get("role") or {}).get("baseRoleKey") or "")
        assert agent.pf_public_profile_id == (profile.get("id") if profile else None)
        assert not agent.is_staff and not agent.is_superuser
        assert agent.password.startswith("!")  # unusable: cannot log in


def test_one_sync_fills_the_host_tables_exactly_as_the_sandbox_says(sandbox_settings):
    sb = sandbox_settings
    result = run_sync(SyncOptions())
    assert result.exit_code == 0, result.failures
    assert_users_match(sb)
    assert_database_equals_sandbox(sb)
    run = SyncRun.objects.get(pk=result.run_id)
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.properties_created == len(sb.data.listings())
    total_images = sum(
        len((raw.get("media") or {}).get("images") or []) for raw in sb.data.listings()
    )
    assert run.images_downloaded == total_images
    assert ImageFile.objects.count() == total_images


def test_a_second_sync_with_no_change_writes_and_downloads_nothing(sandbox_settings):
    run_sync(SyncOptions())
    image_requests_before = sum(1 for r in sandbox_settings.requests if "/images/" in r[1])
    with CaptureQueriesContext(connection) as queries:
        result = run_sync(SyncOptions())
    image_requests_after = sum(1 for r in sandbox_settings.requests if "/images/" in r[1])
    assert result.exit_code == 0
    counters = result.counters
    assert counters["properties_created"] == counters["properties_updated"] == 0
    assert counters["images_downloaded"] == counters["users_created"] == 0
    assert counters["users_updated"] == 0
    assert image_requests_after == image_requests_before
    host_tables = ("properties_property", "properties_propertyimage", "users_user", "areas_area")
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if re.match(r"^\s*(INSERT|UPDATE)", q["sql"], re.I)
        and any(t in q["sql"] for t in host_tables)
    ]
    assert writes == []


def test_changes_on_property_finder_arrive_and_nothing_else_moves(sandbox_settings):
    sb = sandbox_settings
    run_sync(SyncOptions())
    listings = sb.data.listings()
    with_images = [raw for raw in listings if (raw.get("media") or {}).get("images")]
    grows, shrinks = with_images[0]["id"], with_images[1]["id"]
    others = [raw for raw in listings if raw["id"] not in {grows, shrinks}]
    priced = next(raw for raw in others if expected_price(raw) is not None)
    retitled = next(raw for raw in others if raw["id"] != priced["id"])
    removed = next(
        raw["id"]
        for raw in others
        if raw["id"] not in {priced["id"], retitled["id"]} and expected_live(raw)
    )
    kind = priced["price"]["type"]
    new_amount = int(priced["price"]["amounts"][kind]) - 50000
    sb.data.update_listing(priced["id"], **{f"price.amounts.{kind}": new_amount})
    sb.data.update_listing(retitled["id"], **{"title.en": "Renovated corner unit"})
    added_url = sb.data.add_image(grows)
    removed_url = sb.data.listing(shrinks)["media"]["images"][-1]["original"]["url"]
    sb.data.remove_image(shrinks, len(sb.data.listing(shrinks)["media"]["images"]) - 1)
    sb.data.remove_listing(removed)
    new_id = sb.data.add_listing()
    user = sb.data.users()[0]
    sb.data.update_user(user["id"], mobile="+971500000999")

    with CaptureQueriesContext(connection) as queries:
        result = run_sync(SyncOptions())

    assert result.exit_code == 0, result.failures
    c = result.counters
    assert c["properties_created"] == 1
    assert c["properties_updated"] == 4
    assert c["properties_unpublished"] == 1
    assert c["images_deactivated"] == 1
    assert c["users_updated"] == 1 and c["users_created"] == 0
    new_images = len((sb.data.listing(new_id).get("media") or {}).get("images") or [])
    assert c["images_downloaded"] == 1 + new_images

    assert Property.objects.get(pf_id=priced["id"]).price == Decimal(new_amount)
    assert Property.objects.get(pf_id=retitled["id"]).title == "Renovated corner unit"
    assert PropertyImage.objects.get(source_url=added_url).is_active
    gone = PropertyImage.objects.get(source_url=removed_url)
    assert gone.is_active is False and default_storage.exists(gone.image)
    unpublished = Property.objects.get(pf_id=removed)
    assert unpublished.is_published is False
    assert Agent.objects.get(pf_user_id=user["id"]).phone == "+971500000999"
    assert not [q["sql"] for q in queries.captured_queries if FORBIDDEN_SQL.match(q["sql"])]

    current = [raw for raw in sb.data.listings()]
    assert Property.objects.filter(is_published=True).count() == sum(
        1 for raw in current if expected_live(raw)
    )


def test_no_delete_truncate_drop_or_alter_reaches_the_database_during_syncs(sandbox_settings):
    with CaptureQueriesContext(connection) as queries:
        run_sync(SyncOptions())
        run_sync(SyncOptions(full=True))
    assert queries.captured_queries
    assert not [q["sql"] for q in queries.captured_queries if FORBIDDEN_SQL.match(q["sql"])]


def test_a_bad_listing_and_a_failed_image_are_reported_and_the_rest_is_saved(sandbox_settings):
    sb = sandbox_settings
    listings = sb.data.listings()
    broken = listings[0]["id"]
    sb.data.update_listing(broken, **{"title": "not an object", "price": "free"})
    with_images = [raw for raw in listings[1:] if (raw.get("media") or {}).get("images")]
    failing_url = with_images[0]["media"]["images"][0]["original"]["url"]
    sb.faults.add_image(failing_url, "404")

    result = run_sync(SyncOptions())

    assert result.exit_code == 1
    assert Property.objects.filter(pf_id__in=[r["id"] for r in listings[1:]]).count() == (
        len(listings) - 1
    )
    errors = ReportEntry.objects.filter(run_id=result.run_id, level="error")
    assert errors.filter(pf_id=broken).exists()
    assert errors.filter(pf_id=with_images[0]["id"], action="image.failed").exists()
    assert not PropertyImage.objects.filter(source_url=failing_url).exists()

    sb.faults.clear()
    again = run_sync(SyncOptions())
    assert PropertyImage.objects.filter(source_url=failing_url, is_active=True).count() == 1
    assert again.counters["images_downloaded"] == 1


def test_dry_run_writes_nothing_and_shows_field_changes(sandbox_settings):
    sb = sandbox_settings
    run_sync(SyncOptions())
    priced = next(raw for raw in sb.data.listings() if expected_price(raw) is not None)
    kind = priced["price"]["type"]
    old = int(priced["price"]["amounts"][kind])
    sb.data.update_listing(priced["id"], **{f"price.amounts.{kind}": old - 1000})
    sb.data.add_listing()
    counts = (Property.objects.count(), PropertyImage.objects.count(), Agent.objects.count())
    files = sorted(default_storage.listdir("property_images")[1])

    result = run_sync(SyncOptions(dry_run=True))

    assert (
        Property.objects.count(),
        PropertyImage.objects.count(),
        Agent.objects.count(),
    ) == counts
    assert sorted(p for p in default_storage.listdir("property_images")[1]) == files
    assert Property.objects.get(pf_id=priced["id"]).price == Decimal(old)
    assert any(f"price: {old} → {old - 1000}" in line for line in result.changes)
    assert any("would be created" in line for line in result.changes)


def test_unpublishing_stops_above_the_circuit_breaker(sandbox_settings, settings):
    sb = sandbox_settings
    run_sync(SyncOptions())
    live = [raw["id"] for raw in sb.data.listings() if expected_live(raw)]
    for pf_id in live[: len(live) // 2]:
        sb.data.remove_listing(pf_id)
    result = run_sync(SyncOptions())
    assert result.counters["properties_unpublished"] == 0
    assert "PF_SYNC_MAX_UNPUBLISH_PERCENT" in result.unpublish_note
    assert Property.objects.filter(pf_id__in=live, is_published=True).count() == len(live)

    forced = run_sync(SyncOptions(allow_mass_unpublish=True))
    assert forced.counters["properties_unpublished"] == len(live) // 2


def test_a_failed_page_never_unpublishes(sandbox_settings):
    sb = sandbox_settings
    run_sync(SyncOptions())
    live = next(raw["id"] for raw in sb.data.listings() if expected_live(raw))
    sb.data.remove_listing(live)
    sb.faults.add("/v1/listings", "status", status=500, times=100)
    result = run_sync(SyncOptions())
    assert result.exit_code == 1
    assert result.counters["properties_unpublished"] == 0
    assert Property.objects.get(pf_id=live).is_published is True
    assert "did not complete" in result.unpublish_note


def served_with_one_unreadable_record(sb, without: str | None = None) -> None:
    """Serve the sandbox's listings as they are (minus ``without``) and a string among them."""
    raws = [raw for raw in sb.data.listings() if raw["id"] != without]
    sb.data.serve_records(listings=[*raws[:2], "not a listing", *raws[2:]])


def test_an_unreadable_record_fails_alone_and_the_fetch_still_completes(sandbox_settings):
    sb = sandbox_settings
    run_sync(SyncOptions(images=False))
    published = Property.objects.filter(is_published=True).count()
    served_with_one_unreadable_record(sb)

    result = run_sync(SyncOptions(images=False))

    assert result.exit_code == 1
    assert [f for f in result.failures if f.startswith("listing ?")] == result.failures
    assert len(result.failures) == 1
    assert result.unpublish_note == ""
    assert result.counters["properties_unpublished"] == 0
    assert Property.objects.filter(is_published=True).count() == published


def test_an_unreadable_record_without_an_id_never_unpublishes_what_it_could_be(sandbox_settings):
    sb = sandbox_settings
    run_sync(SyncOptions(images=False))
    live = next(raw["id"] for raw in sb.data.listings() if expected_live(raw))
    served_with_one_unreadable_record(sb, without=live)

    result = run_sync(SyncOptions(images=False))

    assert result.counters["properties_unpublished"] == 0
    assert Property.objects.get(pf_id=live).is_published is True
    kept = ReportEntry.objects.get(run_id=result.run_id, action="unpublish.kept")
    assert kept.message.startswith("1 published property not returned by the look-up kept")


def test_without_an_unreadable_record_a_listing_gone_is_unpublished(sandbox_settings):
    sb = sandbox_settings
    run_sync(SyncOptions(images=False))
    live = next(raw["id"] for raw in sb.data.listings() if expected_live(raw))
    sb.data.remove_listing(live)

    result = run_sync(SyncOptions(images=False))

    assert result.counters["properties_unpublished"] == 1
    assert Property.objects.get(pf_id=live).is_published is False


def test_listing_option_syncs_only_those_and_an_unknown_id_stops_with_status_2(sandbox_settings):
    sb = sandbox_settings
    pf_id = sb.data.listings()[3]["id"]
    result = run_sync(SyncOptions(listing_ids=[pf_id]))
    assert list(Property.objects.values_list("pf_id", flat=True)) == [pf_id]
    assert result.exit_code == 0
    with pytest.raises(SyncAborted, match="NOPE123 does not exist"):
        run_sync(SyncOptions(listing_ids=["NOPE123"]))
    with pytest.raises(CommandError, match="NOPE123 does not exist") as info:
        call_command("pf_sync", "--listing", "NOPE123", stdout=StringIO(), stderr=StringIO())
    assert info.value.returncode == 2


def test_wrong_credentials_stop_with_status_2_and_one_sentence(sandbox_settings, settings):
    settings.PF_API_SECRET = "wrong-secret"
    with pytest.raises(SyncAborted, match="refused the credentials") as info:
        run_sync(SyncOptions())
    assert "wrong-secret" not in str(info.value)
    assert SyncRun.objects.get().status == SyncRun.Status.FAILED


def test_unmapped_locations_are_remembered_and_reported(sandbox_settings):
    result = run_sync(SyncOptions(images=False))
    assert result.unmapped_locations
    location_id, count = max(result.unmapped_locations.items(), key=lambda item: item[1])
    assert ListingState.objects.filter(location_id=location_id).count() == count
    assert ReportEntry.objects.filter(action="location.unmapped", pf_id=str(location_id)).exists()


def test_the_command_prints_the_old_services_counters(sandbox_settings):
    out = StringIO()
    call_command("pf_sync", stdout=out, stderr=StringIO())
    text = out.getvalue()
    for label in ("Properties created", "Properties updated", "Images downloaded", "Users created"):
        assert label in text


def test_a_media_folder_that_cannot_be_written_stops_the_run_before_any_work(
    sandbox_settings, settings, tmp_path
):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the media folder should be")
    settings.MEDIA_ROOT = blocker / "media"
    with pytest.raises(SyncAborted, match=r"media folder .* cannot be written") as info:
        run_sync(SyncOptions())
    assert "MEDIA_ROOT" in str(info.value)
    assert not Property.objects.exists()


def test_a_run_with_images_after_runs_without_them_downloads_them(sandbox_settings):
    run_sync(SyncOptions(images=False))
    run_sync(SyncOptions(images=False))
    assert PropertyImage.objects.count() == 0
    result = run_sync(SyncOptions())
    assert PropertyImage.objects.count() > 0
    assert result.counters["images_downloaded"] == PropertyImage.objects.count()
    again = run_sync(SyncOptions())
    assert again.listings_skipped_unchanged == again.listings_received


def test_files_are_removed_when_saving_a_listing_fails_unexpectedly(sandbox_settings, settings):
    import os
    from unittest import mock

    from pfsync_app.jobs import listings

    failing = mock.patch.object(listings, "save_listing", side_effect=RuntimeError("boom"))
    with failing, pytest.raises(RuntimeError):
        run_sync(SyncOptions())
    files = [name for _, _, names in os.walk(settings.MEDIA_ROOT) for name in names]
    assert files == []


def test_a_deactivated_row_keeps_its_own_checksum_when_its_position_is_replaced(sandbox_settings):
    from pfsync_app.mapping import ImageValues, PropertyValues
    from pfsync_app.media.download import StoredImage
    from pfsync_app.writers.images import plan_images
    from pfsync_app.writers.listings import Lookups, save_listing

    run_sync(SyncOptions())
    pid = next(
        p
        for p in PropertyImage.objects.values_list("property_id", flat=True)
        if PropertyImage.objects.filter(property_id=p).count() >= 2
    )
    prop = Property.objects.get(pk=pid)
    x, y = list(PropertyImage.objects.filter(property_id=pid).order_by("position"))[:2]
    y_before = ImageFile.objects.get(image_id=y.pk)
    default_storage.delete(x.image)
    values = PropertyValues(
        pf_id=prop.pf_id,
        fields={"title": prop.title},
        location_id=None,
        assigned_to_id=None,
        images=[ImageValues(y.position, x.source_url, 10, 10)],
    )
    plan = plan_images(values.images, [x, y], default_storage.exists)
    assert plan.replace and plan.deactivate == [y]
    new = StoredImage(
        name="property_images/new.jpg", size=3, sha256="ab" * 32, content_type="image/jpeg"
    )
    save_listing(values, prop, plan, {y.position: new}, Lookups(), fingerprint="")
    assert ImageFile.objects.get(image_id=x.pk).name == "property_images/new.jpg"
    y_after = ImageFile.objects.get(image_id=y.pk)
    assert (y_after.name, y_after.sha256) == (y_before.name, y_before.sha256)
