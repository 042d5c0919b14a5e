"""pf_report --run N prints one run's entries; pf_report --check applies the health rule."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.utils import timezone

from pfsync_app.models import SyncRun
from pfsync_app.reports.causes import Cause
from pfsync_app.reports.recorder import RunRecorder

pytestmark = pytest.mark.django_db


def report(*args: str) -> tuple[str, int]:
    """pf_report's stdout and exit status."""
    out = StringIO()
    try:
        call_command("pf_report", *args, stdout=out, stderr=StringIO())
    except SystemExit as exited:
        return out.getvalue(), int(exited.code)
    return out.getvalue(), 0


@pytest.fixture
def run() -> SyncRun:
    """A pf_sync run with two failed images, a warning and a created property."""
    with RunRecorder.start("pf_sync", options={"dry_run": False, "limit": None}) as recorder:
        recorder.count("properties_created")
        recorder.info("property.created", "Sea view flat (2 images)", pf_id="01JA")
        recorder.warning("location.unmapped", "location 68: 1 listing saved with no area")
        for pf_id, status in (("01JA", 404), ("01JB", 403)):
            recorder.count("images_failed")
            recorder.error(
                "image.failed",
                f"image 1: image https://img.example/{pf_id}.jpg: HTTP {status} after 1 attempt",
                pf_id=pf_id,
                cause=Cause("http_status", status),
                url=f"https://img.example/{pf_id}.jpg",
            )
    return SyncRun.objects.get(pk=recorder.run.pk)


def test_a_runs_entries_are_printed_errors_first_after_its_failures_by_cause(run):
    text, status = report("--run", str(run.pk))

    assert status == 0
    lines = text.splitlines()
    assert lines[0] == f"Run {run.pk}: pf_sync, finished with errors"
    assert "  options: dry run: no, limit: —" in lines
    assert f"  {run.message}" in lines
    assert "2 images failed: 1 HTTP 403, 1 HTTP 404" in lines
    entries = lines[lines.index("2 images failed: 1 HTTP 403, 1 HTTP 404") + 1 :]
    assert entries == [
        "error   image.failed 01JA [HTTP 404]: image 1: image https://img.example/01JA.jpg: "
        "HTTP 404 after 1 attempt",
        "error   image.failed 01JB [HTTP 403]: image 1: image https://img.example/01JB.jpg: "
        "HTTP 403 after 1 attempt",
        "warning location.unmapped: location 68: 1 listing saved with no area",
        "info    property.created 01JA: Sea view flat (2 images)",
        "4 entries.",
    ]


def test_a_runs_entries_as_json_carry_their_cause_and_url(run):
    text, _ = report("--run", str(run.pk), "--json")

    data = json.loads(text)
    assert data["run"]["id"] == run.pk
    assert data["failures"]["total"] == 2
    first = data["entries"][0]
    assert (first["reason"], first["http_status"], first["cause"]) == (
        "http_status",
        404,
        "HTTP 404",
    )
    assert first["url"] == "https://img.example/01JA.jpg"


def test_an_unknown_run_is_one_sentence_and_exit_status_2():
    with pytest.raises(CommandError, match="there is no run 999") as refused:
        call_command("pf_report", "--run", "999", stdout=StringIO())
    assert refused.value.returncode == 2


def nightly(hours_ago: float, status: str = "succeeded") -> SyncRun:
    started = timezone.now() - dt.timedelta(hours=hours_ago)
    return SyncRun.objects.create(
        command="pf_sync",
        status=status,
        options={"dry_run": False, "listing_ids": [], "only": None, "limit": None},
        started_at=started,
        finished_at=started + dt.timedelta(minutes=5),
        message="Property Finder refused the credentials",
    )


def test_check_exits_0_when_the_nightly_sync_is_healthy():
    nightly(hours_ago=2)

    text, status = report("--check")

    assert status == 0
    assert text.startswith("healthy: the last nightly pf_sync")


def test_check_exits_1_before_any_sync_and_after_a_failed_night():
    assert report("--check") == ("UNHEALTHY: no nightly pf_sync has succeeded yet\n", 1)

    nightly(hours_ago=5)
    failed = nightly(hours_ago=1, status="failed")
    text, status = report("--check")

    assert status == 1
    assert f"(run {failed.pk}, " in text
    assert text.rstrip().endswith("failed (Property Finder refused the credentials)")


def test_check_as_json_is_what_the_health_view_answers():
    nightly(hours_ago=30)

    text, status = report("--check", "--json")

    assert status == 1
    data = json.loads(text)
    assert data["healthy"] is False
    assert "more than PF_SYNC_MAX_AGE_HOURS=26" in data["reason"]


def test_check_exits_2_when_the_database_cannot_tell(monkeypatch):
    def unreachable(now=None):
        raise OperationalError("connection refused\nmore")

    monkeypatch.setattr("pfsync_app.management.commands.pf_report.sync_health", unreachable)

    with pytest.raises(CommandError) as refused:
        call_command("pf_report", "--check", stdout=StringIO())

    assert refused.value.returncode == 2
    assert str(refused.value).startswith(
        "pf_report could not run: cannot check the nightly sync: database 'default' ("
    )
    assert str(refused.value).endswith("failed: connection refused")


def test_run_and_check_cannot_be_asked_at_once():
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("pf_report", "--run", "1", "--check", stdout=StringIO())
