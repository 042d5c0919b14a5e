"""pf_repair end to end: lost, emptied, altered and moved images mended from the sandbox."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from pfsync_app.jobs.check import check_images
from pfsync_app.jobs.repair import RepairOptions, repair_images
from pfsync_app.models import ImageFile, PropertyImage, ReportEntry, RunLock, SyncRun
from pfsync_app.writers.lock import take
from tests.fixtures.images import alter, empty, image_rows, lose, run_command

pytestmark = pytest.mark.django_db


def stored_bytes(row: PropertyImage) -> bytes:
    with default_storage.open(row.image, "rb") as handle:
        return handle.read()


def fresh(row: PropertyImage) -> PropertyImage:
    return PropertyImage.objects.get(pk=row.pk)


def test_pf_repair_restores_lost_and_emptied_files_and_pf_check_then_finds_nothing(synced):
    rows = image_rows()
    lose(rows[0])
    lose(rows[7])
    empty(rows[12])
    emptied_path = Path(default_storage.path(rows[12].image))

    status, out = run_command("pf_repair")

    assert status == 0
    lines = out.splitlines()
    assert lines[:2] == ["PF IMAGE REPAIR STARTED...", "Found 3 missing images. Starting repair..."]
    assert lines[-1] == "Repaired 3 of 3 images; 0 still missing."
    for row in (rows[0], rows[7], rows[12]):
        now = fresh(row)
        assert now.image != row.image
        assert now.image.startswith("property_images/")
        assert stored_bytes(now) == synced.data.image_bytes(row.source_url)
        assert f"Successfully repaired image for property {row.property_id}: {now.image}" in lines
        record = ImageFile.objects.get(image_id=row.pk)
        assert (record.name, record.size) == (now.image, len(stored_bytes(now)))
    assert emptied_path.exists() and emptied_path.read_bytes() == b""  # never deleted
    run = SyncRun.objects.get(command="pf_repair")
    assert (run.status, run.images_downloaded, run.images_failed, run.errors) == (
        "succeeded",
        3,
        0,
        0,
    )
    assert ReportEntry.objects.filter(run=run, action="image.repaired").count() == 3
    assert run_command("pf_check")[0] == 0


def test_pf_repair_verify_mends_a_file_altered_in_place(synced):
    rows = image_rows()
    alter(rows[2])
    altered_name = rows[2].image

    plain = repair_images(RepairOptions())
    verified = repair_images(RepairOptions(verify=True))

    assert (plain.total_found, plain.exit_code) == (0, 0)
    assert [(r.image.image_id, r.image.reason) for r in verified.repaired] == [
        (rows[2].pk, "corrupt")
    ]
    assert stored_bytes(fresh(rows[2])) == synced.data.image_bytes(rows[2].source_url)
    assert default_storage.exists(altered_name)  # the damaged file is left, not overwritten
    assert check_images(verify=True).exit_code == 0


def test_an_image_whose_url_moved_is_repaired_from_the_listings_current_url(synced):
    rows = image_rows()
    row = rows[3]
    pf_id = row.property.pf_id
    new_url = synced.data.rotate_image_url(pf_id, row.position)
    lose(row)

    status, out = run_command("pf_repair", "--json")

    report = json.loads(out)
    now = fresh(row)
    assert status == 0
    assert now.source_url == new_url != row.source_url
    assert (now.width, now.height) == synced.data.image_size(new_url)
    assert stored_bytes(now) == synced.data.image_bytes(new_url)
    assert ImageFile.objects.get(image_id=row.pk).source_url == new_url
    (repaired,) = report["repaired"]
    assert (repaired["url_changed"], repaired["old_source_url"], repaired["source_url"]) == (
        True,
        row.source_url,
        new_url,
    )
    entry = ReportEntry.objects.get(action="image.repaired")
    assert "from the listing's current URL" in entry.message
    assert "HTTP 404" in entry.message


def test_images_that_cannot_be_repaired_are_reported_and_the_rest_are_repaired(synced):
    rows = image_rows()
    gone, not_image, fine = rows[0], rows[5], rows[9]
    for row in (gone, not_image, fine):
        lose(row)
    synced.faults.add_image(gone.source_url, "404")
    synced.faults.add_image(not_image.source_url, "html200")

    status, out = run_command("pf_repair")

    assert status == 1
    lines = out.splitlines()
    assert lines[-1] == "Repaired 1 of 3 images; 2 still missing."
    failed = {line for line in lines if line.startswith("Failed to repair image")}
    assert failed == {
        f"Failed to repair image {gone.pk} for property {gone.property_id}: image "
        f"{gone.source_url}: HTTP 404 Not Found after 1 attempt; listing "
        f"{gone.property.pf_id} still gives the same URL",
        f"Failed to repair image {not_image.pk} for property {not_image.property_id}: image "
        f"{not_image.source_url}: Content-Type 'text/html' is not an image after 1 attempt",
    }
    assert fresh(gone).image == gone.image
    assert fresh(not_image).image == not_image.image
    assert stored_bytes(fresh(fine)) == synced.data.image_bytes(fine.source_url)
    run = SyncRun.objects.get(command="pf_repair")
    assert (run.status, run.images_downloaded, run.images_failed, run.errors) == (
        "finished_with_errors",
        1,
        2,
        2,
    )
    assert set(
        ReportEntry.objects.filter(run=run, action="image.repair_failed").values_list(
            "object_id", flat=True
        )
    ) == {gone.pk, not_image.pk}


def test_a_listing_removed_from_property_finder_leaves_its_lost_image_reported(synced):
    row = image_rows()[0]
    lose(row)
    synced.data.remove_listing(row.property.pf_id)
    synced.faults.add_image(row.source_url, "410")

    result = repair_images(RepairOptions())

    (failure,) = result.failed
    assert failure.cause.endswith(f"listing {row.property.pf_id} is no longer on Property Finder")
    assert result.exit_code == 1


def test_dry_run_lists_what_would_be_repaired_and_downloads_nothing(synced):
    rows = image_rows()
    lose(rows[0])
    empty(rows[1])
    files_before = sorted(os.listdir(default_storage.path("property_images")))

    status, out = run_command("pf_repair", "--dry-run")

    assert status == 1
    assert out.splitlines()[:2] == [
        "PF IMAGE REPAIR STARTED...",
        "Found 2 missing images. Would repair:",
    ]
    assert f"  image {rows[0].pk} of property {rows[0].property_id}" in out
    assert sorted(os.listdir(default_storage.path("property_images"))) == files_before
    assert [fresh(r).image for r in rows[:2]] == [r.image for r in rows[:2]]
    run = SyncRun.objects.get(command="pf_repair")
    assert run.options["dry_run"] is True
    assert ReportEntry.objects.filter(run=run, action="image.would_repair").count() == 2


def test_limit_repairs_only_the_first_images_and_counts_the_rest_as_still_missing(synced):
    rows = image_rows()
    for row in rows[:3]:
        lose(row)

    status, out = run_command("pf_repair", "--limit", "1")

    assert status == 1
    assert "Found 3 missing images. Starting repair (the first 1: --limit)..." in out
    assert out.splitlines()[-1] == "Repaired 1 of 1 image; 2 still missing."
    assert fresh(rows[0]).image != rows[0].image
    assert [fresh(r).image for r in rows[1:3]] == [r.image for r in rows[1:3]]


def test_property_repairs_only_that_listings_images(synced):
    rows = image_rows()
    lose(rows[0])
    lose(rows[10])

    result = repair_images(RepairOptions(pf_id=rows[10].property.pf_id))

    assert [r.image.image_id for r in result.repaired] == [rows[10].pk]
    assert fresh(rows[0]).image == rows[0].image


def test_nothing_missing_exits_0_without_asking_property_finder(synced):
    synced.faults.revoke_credentials()

    status, out = run_command("pf_repair")

    assert status == 0
    assert "✓ No missing images found. Nothing to repair." in out


def test_refused_credentials_stop_the_repair_with_status_2(synced):
    lose(image_rows()[0])
    synced.faults.revoke_credentials()

    with pytest.raises(CommandError, match=r"^pf_repair could not run: Property Finder refused"):
        call_command("pf_repair", stdout=StringIO())

    assert SyncRun.objects.get(command="pf_repair").status == "failed"


@contextmanager
def lock_held_by_another_process():
    """pfsync's writer lock as another live pf_sync on this host would hold it."""
    other_pid = os.getppid()
    lease = take("pf_sync")
    RunLock.objects.filter(token=lease.token).update(pid=other_pid)
    yield other_pid


def test_a_busy_writer_lock_stops_the_repair_with_status_2_and_its_message(synced):
    lose(image_rows()[0])

    with lock_held_by_another_process() as pid:
        with pytest.raises(
            CommandError, match=rf"another pf_sync is running \(pid {pid}"
        ) as caught:
            call_command("pf_repair", stdout=StringIO())
        dry_status, _ = run_command("pf_repair", "--dry-run")

    assert caught.value.returncode == 2
    assert dry_status == 1  # a dry run takes no lock
    assert fresh(image_rows()[0]).image == image_rows()[0].image


def test_when_the_api_is_down_old_urls_are_still_repaired_and_moved_ones_say_why_not(
    synced, settings
):
    rows = image_rows()
    still_there, moved = rows[0], rows[2]
    lose(still_there)
    lose(moved)
    synced.data.rotate_image_url(moved.property.pf_id, moved.position)
    settings.PF_API_MAX_ATTEMPTS = 1
    synced.faults.add("/v1/auth/token", "status", times=None, status=503)

    result = repair_images(RepairOptions())

    assert [r.image.image_id for r in result.repaired] == [still_there.pk]
    (failure,) = result.failed
    assert failure.image.image_id == moved.pk
    assert "HTTP 404 Not Found" in failure.cause
    assert "the Property Finder API cannot be reached" in failure.cause
    assert ReportEntry.objects.filter(action="api.unreachable", level="warning").count() == 1


def test_pf_repair_verify_mends_a_file_that_no_longer_decodes_like_a_missing_one(synced):
    rows = image_rows()
    row = rows[5]
    broken = Path(default_storage.path(row.image))
    html = b"\xff\xd8\xff\xe0<!DOCTYPE html><html><body>Gone</body></html>".ljust(64)
    broken.write_bytes(html)
    ImageFile.objects.filter(image_id=row.pk).update(
        size=len(html), sha256=hashlib.sha256(html).hexdigest()
    )

    result = repair_images(RepairOptions(verify=True))

    assert [(r.image.image_id, r.image.reason) for r in result.repaired] == [(row.pk, "corrupt")]
    now = fresh(row)
    assert now.image != row.image
    assert stored_bytes(now) == synced.data.image_bytes(row.source_url)
    assert broken.read_bytes() == html  # the old file is left in place, as always
    assert check_images(verify=True).exit_code == 0


def test_pf_repair_never_stores_a_broken_download_and_leaves_the_row_to_the_next_repair(synced):
    rows = image_rows()
    row = rows[6]
    lose(row)
    synced.faults.add_image(row.source_url, "truncated", times=None, content_length=False)

    result = repair_images(RepairOptions())

    (failure,) = result.failed
    assert (failure.image.image_id, failure.reason) == (row.pk, "truncated")
    assert fresh(row).image == row.image
    synced.faults.clear()
    assert repair_images(RepairOptions()).exit_code == 0


def test_a_full_media_storage_stops_the_repair_with_one_sentence_and_status_2(synced, settings):
    for row in image_rows()[:3]:
        lose(row)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "tests.fixtures.faults.FullDiskStorage"},
    }

    with pytest.raises(CommandError) as caught:
        call_command("pf_repair", stdout=StringIO(), stderr=StringIO())

    assert caught.value.returncode == 2
    assert str(caught.value).startswith(
        "pf_repair could not run: the media storage is full: cannot save property_images/"
    )
    assert str(caught.value).endswith(": No space left on device")
    run = SyncRun.objects.get(command="pf_repair")
    assert (run.status, run.images_failed) == ("failed", 0)
