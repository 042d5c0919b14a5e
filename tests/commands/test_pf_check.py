"""pf_check end to end: a real sync from the sandbox, then files lost, emptied and altered."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection

from pfsync_app.models import ImageFile, PropertyImage, SyncRun
from tests.fixtures.images import IMAGES, alter, empty, image_rows, lose, run_command

pytestmark = pytest.mark.django_db

PROJECT = Path(__file__).resolve().parents[2]


def test_pf_check_reports_exactly_the_lost_and_emptied_files_and_exits_1(synced):
    rows = image_rows()
    lose(rows[0])
    lose(rows[5])
    empty(rows[9])

    status, out = run_command("pf_check", "--json")

    report = json.loads(out)
    assert status == 1
    assert {(m["image_id"], m["reason"]) for m in report["missing"]} == {
        (rows[0].pk, "missing"),
        (rows[5].pk, "missing"),
        (rows[9].pk, "empty"),
    }
    first = next(m for m in report["missing"] if m["image_id"] == rows[0].pk)
    assert first == {
        "image_id": rows[0].pk,
        "property_id": rows[0].property_id,
        "pf_id": rows[0].property.pf_id,
        "name": rows[0].image,
        "source_url": rows[0].source_url,
        "position": rows[0].position,
        "reason": "missing",
        "detail": "",
    }
    assert (report["checked"], report["missing_count"], report["exit_code"]) == (IMAGES, 3, 1)
    assert report["reasons"] == {"missing": 2, "empty": 1, "corrupt": 0}


def test_pf_check_prints_one_line_per_property_like_the_old_service(synced):
    rows = image_rows()
    lose(rows[0])
    lose(rows[1])
    empty(rows[4])

    status, out = run_command("pf_check")

    first, second = rows[0].property, rows[4].property
    assert status == 1
    assert out.splitlines()[:3] == [
        "✗ Found 3 missing images:",
        f"  Property ID {first.pk} (pf_id: {first.pf_id}): 2 missing images",
        f"  Property ID {second.pk} (pf_id: {second.pf_id}): 1 missing image (1 empty)",
    ]


def test_pf_check_after_a_clean_sync_says_all_images_are_present_and_exits_0(synced):
    status, out = run_command("pf_check")

    assert status == 0
    assert out.splitlines()[0] == "✓ No missing images found. All images are present."
    run = SyncRun.objects.get(command="pf_check")
    assert (run.status, run.errors) == ("succeeded", 0)


def test_pf_check_property_narrows_the_check_to_one_listing(synced):
    rows = image_rows()
    lose(rows[0])
    lose(rows[10])

    status, out = run_command("pf_check", "--json", "--property", rows[10].property.pf_id)

    assert status == 1
    assert [m["image_id"] for m in json.loads(out)["missing"]] == [rows[10].pk]


def test_pf_check_with_an_unknown_property_stops_with_status_2(synced):
    with pytest.raises(CommandError, match=r"no property has pf_id 'NOPE'") as caught:
        call_command("pf_check", "--property", "NOPE", stdout=StringIO())

    assert caught.value.returncode == 2


def test_pf_check_verify_finds_a_file_altered_in_place_that_the_cheap_check_misses(synced):
    rows = image_rows()
    alter(rows[3])

    cheap_status, _ = run_command("pf_check")
    status, out = run_command("pf_check", "--verify", "--json")

    report = json.loads(out)
    assert cheap_status == 0
    assert status == 1
    assert [(m["image_id"], m["reason"]) for m in report["missing"]] == [(rows[3].pk, "corrupt")]
    assert (report["verified"], report["unverified"]) == (IMAGES, 0)
    assert ImageFile.objects.count() == IMAGES


def test_pf_check_stops_with_status_2_when_the_host_schema_is_wrong(synced):
    table = PropertyImage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")

    with pytest.raises(CommandError, match=r"^pf_check could not run: Host table") as caught:
        call_command("pf_check", stdout=StringIO())

    assert caught.value.returncode == 2


def manage(database: Path, *args: str, media: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "MEDIA_ROOT": str(media),
        "DJANGO_SETTINGS_MODULE": "project_settings.settings",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_pf_check_as_a_process_exits_0_1_and_2(tmp_path):
    media = tmp_path / "media"
    (media / "property_images").mkdir(parents=True)
    (media / "property_images" / "here.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    database = tmp_path / "check.sqlite3"
    assert manage(database, "migrate", "--no-input", media=media).returncode == 0

    clean = manage(database, "pf_check", media=media)
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO properties_property (id, pf_id, reference, title, title_ar, description,"
            " description_ar, category, property_type, status_type, price_period, furnishing,"
            " is_published, created_at, updated_at) VALUES (7, 'PFX', '', '', '', '', '', '', '',"
            " '', '', '', 1, '2026-01-01', '2026-01-01')"
        )
        db.executemany(
            "INSERT INTO properties_propertyimage (property_id, image, source_url, position,"
            " is_active, created_at) VALUES (7, ?, '', ?, 1, '2026-01-01')",
            [("property_images/here.jpg", 0), ("property_images/gone.jpg", 1)],
        )
    missing = manage(database, "pf_check", media=media)
    broken = manage(tmp_path / "empty.sqlite3", "pf_check", media=media)

    assert (clean.returncode, clean.stdout.splitlines()[0]) == (
        0,
        "✓ No missing images found. All images are present.",
    )
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[:2] == [
        "✗ Found 1 missing image:",
        "  Property ID 7 (pf_id: PFX): 1 missing image",
    ]
    assert broken.returncode == 2
    assert "pf_check could not run: pfsync's tables are missing" in broken.stderr


def test_pf_check_unreferenced_lists_files_no_row_names_and_deletes_nothing(synced):
    stray = default_storage.save("property_images/left-by-a-killed-run.jpg", StringIO("x"))
    code, out = run_command("pf_check", "--unreferenced")
    assert code == 0
    assert "1 file in the image folder not referenced by any image row" in out
    assert f"  {stray}" in out
    assert default_storage.exists(stray)

    code, out = run_command("pf_check", "--unreferenced", "--json")
    assert json.loads(out)["unreferenced"] == [stray]


def test_pf_check_unreferenced_is_quiet_when_every_file_has_its_row(synced):
    code, out = run_command("pf_check", "--unreferenced")
    assert code == 0
    assert "No unreferenced files in the image folder." in out


def test_pf_check_verify_finds_a_file_that_no_longer_decodes_though_its_checksum_matches(synced):
    rows = image_rows()
    row = rows[4]
    path = Path(default_storage.path(row.image))
    half = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(half)
    # As an importer that stored the broken file would have recorded it: its own checksum.
    ImageFile.objects.filter(image_id=row.pk).update(
        size=len(half), sha256=hashlib.sha256(half).hexdigest()
    )

    status, out = run_command("pf_check", "--verify", "--json")

    report = json.loads(out)
    assert status == 1
    (missing,) = report["missing"]
    assert (missing["image_id"], missing["reason"]) == (row.pk, "corrupt")
    assert missing["detail"].startswith("it does not decode: ")
    assert missing["detail"].endswith("data ends before the image does (truncated)")
    assert run_command("pf_check")[0] == 0  # the cheap check cannot tell
