"""pfsync_app.jobs.check: finding missing, empty and corrupt image files, without a command line."""

from __future__ import annotations

import hashlib
import io
import os
import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, InMemoryStorage, Storage, default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.check import UnknownProperty, check_images, find_missing_images
from pfsync_app.media import files as stored_files
from pfsync_app.media.files import StoredFiles
from pfsync_app.models import (
    Agent,
    Area,
    ImageFile,
    Property,
    PropertyImage,
    ReportEntry,
    SyncRun,
)
from pfsync_app.writers.images import image_rows, referenced_names

pytestmark = pytest.mark.django_db

HOST_TABLES = [m._meta.db_table for m in (Area, Agent, Property, PropertyImage)]
WRITE_SQL = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


# --verify decodes every file: the stored bytes must be a real image.
JPEG = _jpeg()


def make_property(pf_id: str | None = "PF1") -> Property:
    now = timezone.now()
    return Property.objects.create(pf_id=pf_id, created_at=now, updated_at=now)


def make_image(prop: Property, name: str, position: int = 0, **fields) -> PropertyImage:
    fields.setdefault("source_url", f"https://images.example/{name}")
    return PropertyImage.objects.create(
        property=prop, image=name, position=position, created_at=timezone.now(), **fields
    )


def store(storage: Storage, name: str, content: bytes = JPEG) -> str:
    saved = storage.save(name, ContentFile(content))
    assert saved == name
    return saved


def found(result) -> dict[int, str]:
    return {item.image_id: item.reason for item in result.missing}


@pytest.fixture
def rows():
    """Four images of one PF property: present, missing, empty, and present in another folder."""
    prop = make_property("PF1")
    present = make_image(prop, store(default_storage, "property_images/a.jpg"), 0)
    missing = make_image(prop, "property_images/gone.jpg", 1)
    empty = make_image(prop, store(default_storage, "property_images/empty.jpg", b""), 2)
    other = make_image(prop, store(default_storage, "older/b.jpg"), 3)
    return {"present": present, "missing": missing, "empty": empty, "other": other}


def test_missing_and_empty_files_are_found_each_with_its_reason(rows):
    result = find_missing_images()

    assert found(result) == {rows["missing"].pk: "missing", rows["empty"].pk: "empty"}
    assert result.checked == 4
    item = next(i for i in result.missing if i.reason == "missing")
    assert (item.property_id, item.pf_id, item.name, item.position) == (
        rows["missing"].property_id,
        "PF1",
        "property_images/gone.jpg",
        1,
    )
    assert item.source_url == "https://images.example/property_images/gone.jpg"


def test_inactive_images_and_properties_not_from_property_finder_are_not_checked(rows):
    make_image(rows["present"].property, "property_images/old.jpg", 4, is_active=False)
    make_image(make_property(None), "property_images/host-only.jpg")
    make_image(make_property(""), "property_images/host-only-2.jpg")

    assert found(find_missing_images()) == {
        rows["missing"].pk: "missing",
        rows["empty"].pk: "empty",
    }


def test_only_the_given_property_is_checked(rows):
    other = make_image(make_property("PF2"), "property_images/also-gone.jpg")

    assert found(find_missing_images(pf_id="PF2")) == {other.pk: "missing"}


def test_the_filesystem_is_scanned_once_per_folder_and_never_asked_file_by_file(rows, monkeypatch):
    class NoExists(FileSystemStorage):
        def exists(self, name):
            raise AssertionError(f"exists({name!r}) called")

    scanned = []
    real_scandir = os.scandir

    def counting_scandir(path):
        scanned.append(os.path.basename(path))
        return real_scandir(path)

    monkeypatch.setattr(stored_files.os, "scandir", counting_scandir)
    prop = rows["present"].property
    for position in range(10, 30):
        make_image(prop, f"property_images/more-{position}.jpg", position)

    result = find_missing_images(NoExists())

    assert sorted(scanned) == ["older", "property_images"]
    assert len(result.missing) == 22


def test_a_storage_that_lists_is_listed_once_per_folder_and_sized_only_for_present_files():
    calls = []

    class Counting(InMemoryStorage):
        def listdir(self, path):
            calls.append(("listdir", path))
            return super().listdir(path)

        def size(self, name):
            calls.append(("size", name))
            return super().size(name)

        def exists(self, name):
            calls.append(("exists", name))
            return super().exists(name)

    storage = Counting()
    prop = make_property()
    make_image(prop, store(storage, "property_images/a.jpg"), 0)
    gone = make_image(prop, "property_images/gone.jpg", 1)
    empty = make_image(prop, store(storage, "property_images/empty.jpg", b""), 2)
    missing_folder = make_image(prop, "nowhere/c.jpg", 3)
    calls.clear()  # saving asked exists()

    result = find_missing_images(storage)

    assert found(result) == {gone.pk: "missing", empty.pk: "empty", missing_folder.pk: "missing"}
    assert sorted(calls) == [
        ("listdir", "nowhere"),
        ("listdir", "property_images"),
        ("size", "property_images/a.jpg"),
        ("size", "property_images/empty.jpg"),
    ]


def test_a_storage_that_cannot_list_is_asked_about_each_name():
    class Plain(Storage):
        """A storage with exists() and size() only, as some remote backends are."""

        def __init__(self, files):
            self.files = files

        def exists(self, name):
            return name in self.files

        def size(self, name):
            return len(self.files[name])

    prop = make_property()
    make_image(prop, "property_images/a.jpg", 0)
    gone = make_image(prop, "property_images/gone.jpg", 1)
    empty = make_image(prop, "property_images/empty.jpg", 2)
    storage = Plain({"property_images/a.jpg": JPEG, "property_images/empty.jpg": b""})

    assert found(find_missing_images(storage)) == {gone.pk: "missing", empty.pk: "empty"}


def test_in_memory_storage_configured_in_settings_is_checked(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    prop = make_property()
    make_image(prop, store(default_storage, "property_images/a.jpg"), 0)
    gone = make_image(prop, "property_images/gone.jpg", 1)

    result = check_images()

    assert isinstance(default_storage._wrapped, InMemoryStorage)
    assert found(result) == {gone.pk: "missing"}


def test_unusual_names_are_looked_up_one_by_one_and_names_outside_storage_are_missing():
    prop = make_property()
    store(default_storage, "top.jpg")
    top = make_image(prop, "top.jpg", 0)
    outside = make_image(prop, "../outside.jpg", 1)
    blank = make_image(prop, "", 2)
    doubled = make_image(prop, "property_images//x.jpg", 3)

    result = find_missing_images()

    assert found(result) == {outside.pk: "missing", blank.pk: "missing", doubled.pk: "missing"}
    assert top.pk not in found(result)
    assert next(i for i in result.missing if i.image_id == blank.pk).detail == (
        "the row names no file"
    )


def test_a_folder_that_cannot_be_read_stops_the_check_instead_of_calling_everything_missing(
    rows, monkeypatch
):
    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(stored_files.os, "scandir", refuse)

    with pytest.raises(SyncAborted, match=r"cannot list storage folder '.+': Permission denied"):
        find_missing_images()


def test_rows_are_read_in_keyset_pages_without_a_server_side_cursor():
    prop = make_property()
    PropertyImage.objects.bulk_create(
        PropertyImage(property=prop, image=f"p/{i}.jpg", position=i, created_at=timezone.now())
        for i in range(1200)
    )
    image_table = PropertyImage._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        result = find_missing_images(chunk_size=100)

    assert len(result.missing) == 1200
    reads = [q["sql"] for q in queries.captured_queries if image_table in q["sql"]]
    # One short query per page (and the empty one after the last full page): a transaction
    # pooler cannot break it, and DISABLE_SERVER_SIDE_CURSORS cannot load the whole table.
    assert len(reads) == 13
    assert all(sql.lstrip().upper().startswith("SELECT") for sql in reads)
    assert "LIMIT 100" in reads[-1]


def test_keyset_pages_give_every_row_once_in_property_and_position_order():
    rows = []
    for pf_id in ("PF1", "PF2", "PF3"):
        prop = make_property(pf_id)
        # Two active rows at the same position too: the id keeps them apart.
        for position in (0, 1, 1, 2, 5):
            rows.append(make_image(prop, f"p/{pf_id}-{len(rows)}.jpg", position))

    for size in (1, 2, 3, 7, 100):
        streamed = [row[0] for row in image_rows(chunk_size=size)]
        assert streamed == [
            r.pk for r in sorted(rows, key=lambda r: (r.property_id, r.position, r.pk))
        ]
    assert referenced_names("p/", chunk_size=2) == {r.image for r in rows}


def record(row: PropertyImage, content: bytes, name: str | None = None) -> None:
    ImageFile.objects.create(
        image_id=row.pk,
        name=name or row.image,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )


def test_verify_finds_files_whose_bytes_or_size_differ_from_what_was_recorded():
    prop = make_property()
    sound = make_image(prop, store(default_storage, "property_images/sound.jpg"), 0)
    altered = make_image(prop, store(default_storage, "property_images/altered.jpg"), 1)
    shorter = make_image(prop, store(default_storage, "property_images/short.jpg", JPEG[:50]), 2)
    unknown = make_image(prop, store(default_storage, "property_images/host.jpg"), 3)
    renamed = make_image(prop, store(default_storage, "property_images/renamed.jpg"), 4)
    record(sound, JPEG)
    record(altered, JPEG[:-1] + b"!")
    record(shorter, JPEG)
    record(renamed, b"other", name="property_images/previous.jpg")

    cheap = find_missing_images()
    verified = find_missing_images(verify=True, verify_workers=2)

    assert cheap.missing == []
    assert found(verified) == {altered.pk: "corrupt", shorter.pk: "corrupt"}
    details = {i.image_id: i.detail for i in verified.missing}
    assert details[altered.pk] == "sha256 differs from the one recorded"
    assert details[shorter.pk] == f"50 bytes stored, {len(JPEG)} bytes recorded"
    assert (verified.verified, verified.unverified) == (3, 2)
    assert unknown.pk not in found(verified)


def test_check_records_its_run_and_writes_nothing_to_the_host_tables(rows):
    with CaptureQueriesContext(connection) as queries:
        result = check_images(verify=True)

    writes = [
        q["sql"]
        for q in queries.captured_queries
        if WRITE_SQL.match(q["sql"]) and any(t in q["sql"] for t in HOST_TABLES)
    ]
    assert writes == []
    assert result.exit_code == 1
    run = SyncRun.objects.get(pk=result.run_id)
    assert (run.command, run.status, run.errors) == ("pf_check", "finished_with_errors", 2)
    assert run.options == {"property": None, "verify": True}
    assert run.message == "checked 4 images (0 verified, 2 without a recorded checksum); " + (
        "2 to repair (1 missing, 1 empty)"
    )
    entries = {(e.action, e.object_id) for e in ReportEntry.objects.filter(run=run)}
    assert entries == {
        ("image.missing", rows["missing"].pk),
        ("image.empty", rows["empty"].pk),
    }


def test_check_with_nothing_missing_exits_0_and_says_so():
    prop = make_property()
    make_image(prop, store(default_storage, "property_images/a.jpg"))

    result = check_images()

    assert (result.exit_code, result.missing, result.checked) == (0, [], 1)
    assert SyncRun.objects.get(pk=result.run_id).status == "succeeded"


def test_check_does_not_wait_for_the_writer_lock(rows):
    from pfsync_app.writers.lock import writer_lock

    with writer_lock("pf_sync"):
        assert check_images().exit_code == 1


def test_missing_rows_are_counted_per_property_in_property_order(rows):
    later = make_property("PF2")
    make_image(later, "property_images/x.jpg", 0)
    make_image(later, "property_images/y.jpg", 1)

    groups = check_images().by_property()

    assert [(g.property_id, g.pf_id, g.total, g.reasons) for g in groups] == [
        (rows["present"].property_id, "PF1", 2, {"missing": 1, "empty": 1}),
        (later.pk, "PF2", 2, {"missing": 2}),
    ]


def test_an_unknown_property_stops_the_check_with_one_sentence():
    with pytest.raises(UnknownProperty, match=r"^no property has pf_id 'NOPE'$"):
        check_images(pf_id="NOPE")


def test_a_missing_host_table_stops_the_check_and_the_failed_run_is_recorded(rows):
    table = PropertyImage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")

    with pytest.raises(SyncAborted, match=rf"Host table '{table}' \(image\) does not exist"):
        check_images()

    run = SyncRun.objects.get(command="pf_check")
    assert run.status == "failed"
    assert f"Host table '{table}'" in run.message


def test_stored_files_gives_sizes_and_none_for_absent_files_folders_and_broken_links(tmp_path):
    storage = FileSystemStorage(location=tmp_path / "files")
    store(storage, "pics/a.jpg")
    store(storage, "pics/nothing.jpg", b"")
    os.makedirs(storage.path("pics/folder.jpg"))
    os.symlink(tmp_path / "nowhere.jpg", storage.path("pics/broken.jpg"))
    files = StoredFiles(storage)

    sizes = {
        name: files.size(name)
        for name in (
            "pics/a.jpg",
            "pics/nothing.jpg",
            "pics/folder.jpg",
            "pics/broken.jpg",
            "pics/gone.jpg",
            "other/a.jpg",
            "",
        )
    }

    assert sizes == {
        "pics/a.jpg": len(JPEG),
        "pics/nothing.jpg": 0,
        "pics/folder.jpg": None,
        "pics/broken.jpg": None,
        "pics/gone.jpg": None,
        "other/a.jpg": None,
        "": None,
    }
