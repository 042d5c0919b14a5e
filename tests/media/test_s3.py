"""Media on S3-compatible object storage, end to end: sync, lose objects, check, repair, check.

Django's default storage is django-storages' S3Storage on a bucket of moto's
S3 server running on 127.0.0.1 (tests/fixtures/s3.py): the same HTTP requests
as against AWS S3 or MinIO, nothing mocked inside boto3.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from storages.backends.s3 import S3Storage

from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.media.files import StoredFiles
from pfsync_app.models import ImageFile, PropertyImage, SyncRun

pytestmark = pytest.mark.django_db

IMAGES = 20  # two of the sandbox fixture's 12 listings have no image


@pytest.fixture
def synced_s3(s3_media, sandbox_settings, settings):
    """The sandbox's listings synced with media on S3; (bucket, sandbox)."""
    # S3Storage opens a boto3 session per thread (~0.2 s of CPU each): a few threads suffice.
    settings.PF_SYNC_CONCURRENCY = 4
    result = run_sync(SyncOptions())
    assert result.exit_code == 0, result.failures
    assert PropertyImage.objects.filter(is_active=True).count() == IMAGES
    return s3_media, sandbox_settings


def image_rows() -> list[PropertyImage]:
    return list(PropertyImage.objects.filter(is_active=True).order_by("property_id", "position"))


def fresh(row: PropertyImage) -> PropertyImage:
    return PropertyImage.objects.get(pk=row.pk)


def run_command(name: str, *args: str) -> tuple[int, str]:
    """Run a command through call_command: (exit status, stdout)."""
    out = StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=StringIO())
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def local_files() -> list[Path]:
    """Every file under MEDIA_ROOT (a folder of its own per test), if the folder exists at all."""
    root = Path(settings.MEDIA_ROOT)
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def test_pf_sync_stores_every_image_as_an_object_in_the_bucket_and_nothing_on_local_disk(
    synced_s3,
):
    bucket, sandbox = synced_s3
    rows = image_rows()
    objects = bucket.sizes()

    assert isinstance(default_storage, S3Storage)
    assert sorted(objects) == sorted(row.image for row in rows)
    for row in rows:
        assert row.image.startswith("property_images/")
        data = bucket.read(row.image)
        assert data == sandbox.data.image_bytes(row.source_url)
        record = ImageFile.objects.get(image_id=row.pk)
        assert (record.name, record.size) == (row.image, objects[row.image])
    assert local_files() == []


def test_pf_check_names_the_deleted_and_emptied_objects_and_pf_repair_restores_them(
    synced_s3, s3_server
):
    bucket, sandbox = synced_s3
    rows = image_rows()
    deleted, emptied = [rows[0], rows[7]], rows[12]
    for row in deleted:
        bucket.delete(row.image)
    bucket.put(emptied.image, b"")

    with s3_server.recording() as check_requests:
        status, out = run_command("pf_check", "--json")

    report = json.loads(out)
    assert status == 1
    assert {(m["image_id"], m["reason"]) for m in report["missing"]} == {
        (deleted[0].pk, "missing"),
        (deleted[1].pk, "missing"),
        (emptied.pk, "empty"),
    }
    assert (report["checked"], report["missing_count"]) == (IMAGES, 3)
    # One listing of the folder told which objects exist and their sizes: no HEAD per object.
    assert [r.method for r in check_requests] == ["GET"]
    assert check_requests[0].is_listing

    status, out = run_command("pf_repair")

    assert status == 0, out
    assert out.splitlines()[-1] == "Repaired 3 of 3 images; 0 still missing."
    objects = bucket.sizes()
    for row in [*deleted, emptied]:
        now = fresh(row)
        assert now.image != row.image
        assert now.image.startswith("property_images/")
        assert bucket.read(now.image) == sandbox.data.image_bytes(row.source_url)
        record = ImageFile.objects.get(image_id=row.pk)
        assert (record.name, record.size) == (now.image, objects[now.image])
    assert objects[emptied.image] == 0  # the emptied object is left, never deleted
    assert all(row.image not in objects for row in deleted)
    run = SyncRun.objects.get(command="pf_repair")
    assert (run.status, run.images_downloaded, run.images_failed) == ("succeeded", 3, 0)

    status, out = run_command("pf_check")

    assert status == 0
    assert out.splitlines()[0] == "✓ No missing images found. All images are present."
    assert local_files() == []


def test_pf_check_verify_reads_objects_back_and_pf_repair_verify_mends_one_altered_in_place(
    synced_s3,
):
    bucket, sandbox = synced_s3
    row = image_rows()[3]
    data = bytearray(bucket.read(row.image))
    data[-10] ^= 0xFF
    bucket.put(row.image, bytes(data))

    cheap_status, _ = run_command("pf_check")
    status, out = run_command("pf_check", "--verify", "--json")

    report = json.loads(out)
    assert cheap_status == 0  # same size: only reading the bytes back can tell
    assert status == 1
    assert [(m["image_id"], m["reason"]) for m in report["missing"]] == [(row.pk, "corrupt")]
    assert (report["verified"], report["unverified"]) == (IMAGES, 0)

    status, _ = run_command("pf_repair", "--verify")

    assert status == 0
    assert bucket.read(fresh(row).image) == sandbox.data.image_bytes(row.source_url)
    assert bucket.read(row.image) == bytes(data)  # the damaged object is left, not overwritten
    assert run_command("pf_check", "--verify")[0] == 0
    assert local_files() == []


def test_stored_files_lists_each_prefix_once_under_the_storage_location_with_sizes(
    s3_bucket, s3_server
):
    storage = S3Storage(**s3_bucket.storage_options(), location="site-media")
    s3_bucket.put("site-media/property_images/here.jpg", b"abc")
    s3_bucket.put("site-media/property_images/empty.jpg", b"")
    s3_bucket.put("site-media/property_images/sub/deeper.jpg", b"abcd")
    s3_bucket.put("property_images/outside.jpg", b"abcde")
    files = StoredFiles(storage)

    with s3_server.recording() as seen:
        sizes = {
            name: files.size(name)
            for name in (
                "property_images/here.jpg",
                "property_images/empty.jpg",
                "property_images/outside.jpg",
                "property_images/deeper.jpg",
                "property_images/sub/deeper.jpg",
            )
        }

    assert sizes == {
        "property_images/here.jpg": 3,
        "property_images/empty.jpg": 0,
        "property_images/outside.jpg": None,
        "property_images/deeper.jpg": None,
        "property_images/sub/deeper.jpg": 4,
    }
    assert [(r.method, r.is_listing) for r in seen] == [("GET", True), ("GET", True)]


def test_a_bucket_that_cannot_be_listed_stops_the_check_with_a_sentence_naming_the_folder(
    s3_bucket,
):
    options = {**s3_bucket.storage_options(), "bucket_name": "pfsync-no-such-bucket"}
    files = StoredFiles(S3Storage(**options))

    with pytest.raises(
        SyncAborted, match=r"^cannot list storage folder 'property_images': .*NoSuchBucket"
    ):
        files.size("property_images/here.jpg")


def refuse_writes(bucket) -> None:
    """A bucket policy that denies every PutObject, as a read-only IAM grant would."""
    bucket.client.put_bucket_policy(
        Bucket=bucket.name,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": f"arn:aws:s3:::{bucket.name}/*",
                    }
                ],
            }
        ),
    )


def use_bucket(django_settings, bucket, name: str) -> None:
    """Point Django's default storage at bucket ``name`` on the same server."""
    django_settings.STORAGES = {
        **django_settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**bucket.storage_options(), "bucket_name": name},
        },
    }


@pytest.mark.parametrize("command", ["pf_repair", "pf_sync"])
def test_a_bucket_refusing_writes_stops_the_run_before_any_download(synced_s3, command):
    bucket, sandbox = synced_s3
    bucket.delete(image_rows()[0].image)  # something to repair
    refuse_writes(bucket)
    sandbox.clear_requests()

    with pytest.raises(CommandError) as caught:
        call_command(command, stdout=StringIO(), stderr=StringIO())

    assert caught.value.returncode == 2
    assert f"the media storage bucket {bucket.name} cannot be written: " in str(caught.value)
    assert "AWS_STORAGE_BUCKET_NAME" in str(caught.value)
    assert [r.path for r in sandbox.requests if r.path.startswith("/images/")] == []


def test_pf_repair_on_a_missing_bucket_is_one_sentence(synced_s3, settings):
    bucket, sandbox = synced_s3
    use_bucket(settings, bucket, "pfsync-no-such-bucket")
    sandbox.clear_requests()

    with pytest.raises(CommandError) as caught:
        call_command("pf_repair", stdout=StringIO(), stderr=StringIO())

    assert caught.value.returncode == 2
    assert "the media storage bucket pfsync-no-such-bucket cannot be written" in str(caught.value)
    assert sandbox.requests == []


def test_pf_check_on_an_empty_bucket_says_the_bucket_looks_wrong_once(synced_s3, settings):
    bucket, _ = synced_s3
    empty = f"{bucket.name}-empty"
    bucket.client.create_bucket(Bucket=empty)
    try:
        use_bucket(settings, bucket, empty)
        with pytest.raises(CommandError) as caught:
            call_command("pf_check", stdout=StringIO(), stderr=StringIO())
    finally:
        bucket.client.delete_bucket(Bucket=empty)

    assert caught.value.returncode == 2
    assert str(caught.value) == (
        f"pf_check could not run: 0 of {IMAGES} files found in bucket {empty}: "
        "is AWS_STORAGE_BUCKET_NAME right?"
    )
