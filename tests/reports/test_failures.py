"""A run's failures grouped by cause: one summary for the console, message, admin and e-mail."""

from __future__ import annotations

import errno

import pytest
from django.db import OperationalError

from pfsync_app.atlas import errors as atlas_errors
from pfsync_app.exceptions import ImageDownloadError, SyncAborted
from pfsync_app.models import SyncRun
from pfsync_app.reports.causes import Cause, cause_label, cause_of
from pfsync_app.reports.failures import run_message, summarize_failures
from pfsync_app.reports.recorder import RunRecorder

pytestmark = pytest.mark.django_db


def image_failed(recorder, pf_id: str, status: int, n: int = 0) -> None:
    """One image.failed entry as the listings stage records it."""
    recorder.count("images_failed")
    recorder.error(
        "image.failed",
        f"image {n}: image https://img.example/{pf_id}/{n}.jpg: HTTP {status} after 1 attempt",
        pf_id=pf_id,
        object_type="property",
        cause=Cause("http_status", status),
        url=f"https://img.example/{pf_id}/{n}.jpg",
    )


def test_failures_are_grouped_by_what_failed_and_why_most_frequent_first():
    with RunRecorder.start("pf_sync") as recorder:
        image_failed(recorder, "01JA", 404)
        image_failed(recorder, "01JB", 403)
        image_failed(recorder, "01JC", 404)
        recorder.error(
            "listing.failed", "value too long", pf_id="01JD", cause=Cause("invalid_value")
        )
        recorder.info("property.created", "kept out of the failures", pf_id="01JE")

    summary = summarize_failures(recorder.run.pk)

    assert summary.total == 4
    assert summary.headline() == (
        "3 images failed: 2 HTTP 404, 1 HTTP 403; 1 listing failed: value the table refused"
    )


def test_each_cause_shows_its_first_entries_with_listing_and_url_then_how_many_more():
    with RunRecorder.start("pf_sync") as recorder:
        for n in range(5):
            image_failed(recorder, f"01J{n}", 404, n)
        image_failed(recorder, "01JX", 403)

    lines = summarize_failures(recorder.run.pk).lines(examples=3)

    assert lines == [
        "6 images failed: 5 HTTP 404, 1 HTTP 403",
        "  HTTP 404: listing 01J0: https://img.example/01J0/0.jpg",
        "  HTTP 404: listing 01J1: https://img.example/01J1/1.jpg",
        "  HTTP 404: listing 01J2: https://img.example/01J2/2.jpg",
        "  ... and 2 more HTTP 404",
        "  HTTP 403: listing 01JX: https://img.example/01JX/0.jpg",
    ]


def test_errors_recorded_without_a_cause_are_counted_without_one():
    with RunRecorder.start("pf_sync") as recorder:
        recorder.error("user.failed", "no e-mail", pf_id="7")
        recorder.error("user.failed", "no name", pf_id="8")

    summary = summarize_failures(recorder.run.pk)

    assert summary.headline() == "2 users failed"
    assert summary.lines()[1] == "  other: user 7: no e-mail"


def test_errors_past_the_entry_bound_are_still_counted_in_the_summary(settings):
    settings.PF_REPORT_MAX_ENTRIES = 2
    with RunRecorder.start("pf_sync") as recorder:
        for n in range(5):
            image_failed(recorder, f"01J{n}", 404, n)

    summary = summarize_failures(recorder.run.pk)

    assert summary.total == 5
    assert summary.headline() == "2 images failed: HTTP 404; 3 more errors not recorded"
    assert summary.lines()[-1] == (
        "3 more errors were counted but not recorded (PF_REPORT_MAX_ENTRIES is 2)"
    )


def test_a_run_whose_job_says_nothing_gets_a_message_of_counters_and_failures_by_cause():
    with RunRecorder.start("pf_sync") as recorder:
        recorder.count("properties_created", 60)
        recorder.count("images_downloaded", 41)
        for n in range(12):
            image_failed(recorder, f"01J{n}", 404, n)
        for n in range(7):
            image_failed(recorder, f"01K{n}", 403, n)

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert run.status == SyncRun.Status.FINISHED_WITH_ERRORS
    assert run.message == (
        "60 created, 41 images downloaded; 19 images failed: 12 HTTP 404, 7 HTTP 403"
    )


def test_a_quiet_run_says_nothing_changed_and_a_dry_run_says_it_wrote_nothing():
    with RunRecorder.start("pf_sync") as quiet:
        pass
    with RunRecorder.start("pf_sync", options={"dry_run": True}) as dry:
        dry.count("properties_updated", 3)

    assert SyncRun.objects.get(pk=quiet.run.pk).message == "nothing changed"
    assert SyncRun.objects.get(pk=dry.run.pk).message == "dry run, nothing written: 3 updated"


def test_a_jobs_own_message_is_kept_as_it_is():
    with RunRecorder.start("pf_check") as recorder:
        recorder.error("image.missing", "image 1 of property 2: 'a.jpg' file is missing")
        recorder.finish(message="checked 1 images; 1 to repair (1 missing)")

    assert recorder.run.message == "checked 1 images; 1 to repair (1 missing)"


def test_a_report_file_that_cannot_be_written_is_in_the_message_with_its_cause(settings, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    settings.REPORT_FILE = str(folder)  # a folder where the file should be

    with RunRecorder.start("pf_sync") as recorder:
        recorder.count("properties_updated", 2)

    run = SyncRun.objects.get(pk=recorder.run.pk)
    entry = run.entries.get(action="report_file")
    assert (entry.reason, entry.http_status) == ("eisdir", None)
    assert run.message == "2 updated; 1 report file line not written: is a folder"
    assert summarize_failures(run).lines()[1] == (
        f"  is a folder: report file {folder}: Is a directory"
    )


def test_the_run_message_is_worded_from_the_same_summary():
    with RunRecorder.start("pf_repair") as recorder:
        image_failed(recorder, "01JA", 410)
        recorder.finish(message="repaired 0 of 1 images; 1 still missing")

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert run_message(run) == "nothing changed; 1 image failed: HTTP 410"


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (
            ImageDownloadError("https://x/a.jpg", "http_status", "HTTP 404", 404),
            ("http_status", 404),
        ),
        (ImageDownloadError("https://x/a.jpg", "timeout", "slow"), ("timeout", None)),
        (atlas_errors.ApiError(503, "down", "https://atlas/v1/listings"), ("api_error", 503)),
        (atlas_errors.AtlasConnectionError("refused"), ("api_unreachable", None)),
        (atlas_errors.MalformedResponseError("not JSON"), ("malformed_answer", None)),
        (OperationalError("server closed the connection"), ("database", None)),
        (OSError(errno.ENOSPC, "No space left on device"), ("enospc", None)),
        (OSError("no errno"), ("os_error", None)),
        (ValueError("too long"), ("invalid_value", None)),
        (SyncAborted("listing 1 does not exist"), ("aborted", None)),
        (RuntimeError("a bug"), ("unexpected", None)),
    ],
    ids=lambda case: type(case).__name__ if isinstance(case, BaseException) else str(case),
)
def test_an_exception_has_a_cause(exc, cause):
    assert (cause_of(exc).reason, cause_of(exc).http_status) == cause


def test_a_stopped_run_takes_the_cause_of_what_stopped_it():
    try:
        try:
            raise atlas_errors.AuthenticationError("Atlas refused the API credentials")
        except atlas_errors.AtlasError as inner:
            raise SyncAborted("Property Finder refused the credentials") from inner
    except SyncAborted as exc:
        assert cause_of(exc) == Cause("credentials")


@pytest.mark.parametrize(
    ("reason", "status", "label"),
    [
        ("http_status", 404, "HTTP 404"),
        ("api_error", 503, "API error (HTTP 503)"),
        ("timeout", None, "timed out"),
        ("listing", 404, "dead URL and no new one (HTTP 404)"),
        ("something_new", None, "something new"),
        ("", None, "other"),
    ],
)
def test_causes_read_as_people_say_them(reason, status, label):
    assert cause_label(reason, status) == label
