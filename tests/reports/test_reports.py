"""Run recording: SyncRun counters and entries, dead runs, the daily report file, pf_report."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from pfsync_app.models import ReportEntry, SyncRun
from pfsync_app.reports.logs import redact
from pfsync_app.reports.recorder import RunRecorder, mark_interrupted_runs
from pfsync_app.reports.report_file import report_file_header, write_report_line
from pfsync_app.reports.summary import daily_summary, format_duration

pytestmark = pytest.mark.django_db

UTC = dt.UTC
HEADER = (
    "Date                | Properties Created | Properties Updated | Images Downloaded "
    "| Users Created | Users Updated | Errors"
)


def dead_pid() -> int:
    """The pid of a process that has just ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def make_run(**fields) -> SyncRun:
    """A finished pf_sync run with the given fields."""
    values = {
        "command": SyncRun.Command.SYNC,
        "status": SyncRun.Status.SUCCEEDED,
        "started_at": timezone.now(),
        "finished_at": timezone.now(),
        **fields,
    }
    return SyncRun.objects.create(**values)


def bar_positions(line: str) -> list[int]:
    return [i for i, char in enumerate(line) if char == "|"]


# ---------------------------------------------------------------------------
# The recorder
# ---------------------------------------------------------------------------


def test_start_creates_a_running_run_with_this_process_pid_and_host():
    recorder = RunRecorder.start(
        "pf_sync", options={"dry_run": False, "since": dt.date(2026, 1, 2)}
    )

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert run.status == SyncRun.Status.RUNNING
    assert run.pid is not None and run.pid > 0
    assert run.hostname == socket.gethostname()
    assert run.options == {"dry_run": False, "since": "2026-01-02"}


def test_start_refuses_an_unknown_command_with_a_sentence_naming_it():
    with pytest.raises(ValueError, match="Unknown run command 'pf_nope'"):
        RunRecorder.start("pf_nope")


def test_counters_and_entries_are_saved_at_checkpoint_and_finish():
    recorder = RunRecorder.start("pf_sync")
    recorder.count("properties_created", 2)
    recorder.count("images_downloaded")
    recorder.info(
        "property_created", "Created property 1", pf_id="L1", object_type="property", object_id=1
    )
    recorder.checkpoint()

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert (run.properties_created, run.images_downloaded) == (2, 1)
    assert list(run.entries.values_list("level", "action", "pf_id", "object_id")) == [
        ("info", "property_created", "L1", 1)
    ]

    recorder.warning("image_skipped", "too small", pf_id="L2")
    run = recorder.finish(message="all done")

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.finished_at is not None
    assert run.message == "all done"
    assert run.entries.count() == 2
    assert recorder.counters["properties_created"] == 2


def test_an_error_counts_and_the_run_finishes_with_errors():
    recorder = RunRecorder.start("pf_check")
    recorder.error("image_failed", "HTTP 404", pf_id="L3")

    run = recorder.finish()

    assert run.errors == 1
    assert run.status == SyncRun.Status.FINISHED_WITH_ERRORS
    assert run.entries.get().level == ReportEntry.Level.ERROR


def test_counting_an_unknown_counter_is_refused():
    recorder = RunRecorder.start("pf_check")
    with pytest.raises(ValueError, match="Unknown run counter 'properties_eaten'"):
        recorder.count("properties_eaten")


def test_worker_threads_count_and_add_entries_without_losing_any():
    recorder = RunRecorder.start("pf_sync")

    def work(n: int) -> None:
        for i in range(100):
            recorder.count("images_downloaded")
            recorder.info("image_downloaded", f"worker {n} image {i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.finish()

    assert recorder.run.images_downloaded == 800
    assert ReportEntry.objects.filter(run=recorder.run).count() == 800


def test_checkpoint_from_a_worker_thread_is_refused():
    recorder = RunRecorder.start("pf_sync")
    problems: list[BaseException] = []

    def worker() -> None:
        try:
            recorder.checkpoint()
        except RuntimeError as exc:
            problems.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()

    assert len(problems) == 1
    assert "thread that started run" in str(problems[0])


def test_entries_past_the_bound_are_dropped_and_one_note_says_how_many(settings):
    settings.PF_REPORT_MAX_ENTRIES = 3
    recorder = RunRecorder.start("pf_sync")
    for i in range(5):
        recorder.info("property_updated", f"updated {i}")

    run = recorder.finish()

    assert run.entries_dropped == 2
    messages = list(run.entries.order_by("id").values_list("level", "message"))
    assert messages[:3] == [("info", "updated 0"), ("info", "updated 1"), ("info", "updated 2")]
    assert messages[3][0] == "warning"
    assert messages[3][1].startswith("2 more entries were not recorded")
    assert len(messages) == 4


def test_errors_are_counted_even_when_their_entries_are_dropped(settings):
    settings.PF_REPORT_MAX_ENTRIES = 1
    recorder = RunRecorder.start("pf_sync")
    for i in range(3):
        recorder.error("listing_failed", f"listing {i} broke")

    run = recorder.finish()

    assert run.errors == 3
    assert run.entries_dropped == 2
    assert run.entries.filter(level="error").count() == 1
    assert run.status == SyncRun.Status.FINISHED_WITH_ERRORS


def test_an_exception_inside_the_context_fails_the_run_and_is_reraised():
    with (
        pytest.raises(RuntimeError, match="database went away"),
        RunRecorder.start("pf_sync") as recorder,
    ):
        recorder.count("properties_created")
        raise RuntimeError("database went away\nsecond line of detail")

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert run.status == SyncRun.Status.FAILED
    assert run.message == "RuntimeError: database went away"
    assert run.properties_created == 1
    assert run.finished_at is not None


def test_keyboard_interrupt_inside_the_context_marks_the_run_interrupted():
    with pytest.raises(KeyboardInterrupt), RunRecorder.start("pf_repair") as recorder:
        raise KeyboardInterrupt

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert run.status == SyncRun.Status.INTERRUPTED
    assert "KeyboardInterrupt" in run.message


def test_a_clean_exit_from_the_context_finishes_the_run():
    with RunRecorder.start("pf_check") as recorder:
        recorder.count("images_failed", 0)

    assert SyncRun.objects.get(pk=recorder.run.pk).status == SyncRun.Status.SUCCEEDED


def test_a_run_failed_explicitly_stays_failed_when_the_context_exits():
    with RunRecorder.start("pf_sync") as recorder:
        recorder.finish(SyncRun.Status.FAILED, "Authentication failed: check PF_API_KEY.")

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert run.status == SyncRun.Status.FAILED
    assert run.message == "Authentication failed: check PF_API_KEY."


def test_messages_of_entries_and_runs_are_redacted(settings):
    settings.PF_API_SECRET = "s3cr3t-value-123"
    recorder = RunRecorder.start("pf_sync")
    recorder.error("auth", "POST /v1/auth/token with apiSecret s3cr3t-value-123 failed")

    run = recorder.finish(
        SyncRun.Status.FAILED, "header was Authorization: Bearer eyJhbGciOi.abc.def"
    )

    assert "s3cr3t-value-123" not in run.entries.get().message
    assert "eyJhbGciOi" not in run.message


# ---------------------------------------------------------------------------
# Dead runs
# ---------------------------------------------------------------------------


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted_by_the_next_start():
    stale = SyncRun.objects.create(
        command="pf_sync", status="running", pid=dead_pid(), hostname=socket.gethostname()
    )

    RunRecorder.start("pf_check")

    stale.refresh_from_db()
    assert stale.status == SyncRun.Status.INTERRUPTED
    assert stale.finished_at is not None
    assert f"process {stale.pid}" in stale.message


def test_running_runs_of_live_processes_or_other_hosts_are_left_alone():
    live = SyncRun.objects.create(
        command="pf_sync", status="running", pid=1, hostname=socket.gethostname()
    )
    elsewhere = SyncRun.objects.create(
        command="pf_sync", status="running", pid=dead_pid(), hostname="another-host"
    )

    assert mark_interrupted_runs() == 0

    live.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (live.status, elsewhere.status) == ("running", "running")


def test_holding_the_lock_marks_every_other_running_sync_or_repair_run_interrupted():
    current = RunRecorder.start("pf_sync").run
    other_host_sync = SyncRun.objects.create(
        command="pf_sync", status="running", pid=1, hostname="another-host"
    )
    other_repair = SyncRun.objects.create(
        command="pf_repair", status="running", pid=1, hostname=socket.gethostname()
    )
    check = SyncRun.objects.create(command="pf_check", status="running", pid=1, hostname="x")

    assert mark_interrupted_runs(holding_lock=True) == 2

    statuses = {
        run.pk: run.status
        for run in SyncRun.objects.filter(
            pk__in=[current.pk, other_host_sync.pk, other_repair.pk, check.pk]
        )
    }
    assert statuses == {
        current.pk: "running",
        other_host_sync.pk: "interrupted",
        other_repair.pk: "interrupted",
        check.pk: "running",
    }


# ---------------------------------------------------------------------------
# The daily report file
# ---------------------------------------------------------------------------


def test_the_report_file_header_is_the_old_services():
    assert report_file_header() == HEADER


def test_each_sync_run_appends_one_line_under_a_header_written_once(settings, tmp_path):
    settings.REPORT_FILE = str(tmp_path / "reports" / "daily.txt")  # folder does not exist yet
    for created in (15, 3):
        with RunRecorder.start("pf_sync", options={"dry_run": False}) as recorder:
            recorder.count("properties_created", created)
            recorder.count("properties_updated", 234)
            recorder.count("images_downloaded", 1245)

    lines = (tmp_path / "reports" / "daily.txt").read_text().splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 3
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["15", "3"]
    assert lines[1].split("|")[2:] == [
        " 234                ",
        " 1245              ",
        " 0             ",
        " 0             ",
        " 0",
    ]


def test_dry_runs_and_other_commands_write_no_report_line(settings, tmp_path):
    settings.REPORT_FILE = str(tmp_path / "daily.txt")
    RunRecorder.start("pf_sync", options={"dry_run": True}).finish()
    RunRecorder.start("pf_check").finish()
    RunRecorder.start("pf_repair").finish()

    assert not (tmp_path / "daily.txt").exists()


def test_report_lines_are_dated_in_tashkent_and_aligned_with_the_header(tmp_path):
    path = tmp_path / "daily.txt"
    evening_utc = dt.datetime(2026, 1, 18, 19, 30, 0, tzinfo=UTC)
    assert None is write_report_line(
        make_run(
            started_at=evening_utc,
            properties_created=15,
            properties_updated=234,
            images_downloaded=1245,
            users_created=2,
            users_updated=12,
        ),
        path,
    )
    assert None is write_report_line(make_run(started_at=evening_utc, errors=1234567), path)

    header, first, second = path.read_text().splitlines()
    assert first == (
        "2026-01-19 00:30:00 | 15                 | 234                | 1245              "
        "| 2             | 12            | 0"
    )
    assert bar_positions(first) == bar_positions(header)
    assert bar_positions(second) == bar_positions(header)


def test_an_unwritable_report_file_becomes_an_error_entry_and_the_run_is_kept(settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where a folder should be")
    settings.REPORT_FILE = str(blocker / "daily.txt")

    with RunRecorder.start("pf_sync") as recorder:
        recorder.count("properties_created", 7)

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert run.properties_created == 7
    assert run.errors == 1
    assert run.status == SyncRun.Status.FINISHED_WITH_ERRORS
    entry = run.entries.get()
    assert entry.level == "error"
    assert entry.message.startswith(f"report file {blocker / 'daily.txt'}: ")


def test_a_report_file_failure_is_recorded_even_past_the_entry_bound(settings, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings.REPORT_FILE = str(blocker / "daily.txt")
    settings.PF_REPORT_MAX_ENTRIES = 1
    with RunRecorder.start("pf_sync") as recorder:
        recorder.info("property_updated", "kept")
        recorder.info("property_updated", "dropped")

    run = SyncRun.objects.get(pk=recorder.run.pk)
    assert list(run.entries.order_by("id").values_list("action", flat=True)) == [
        "property_updated",
        "report_file",
        "entries_dropped",
    ]
    assert run.entries.get(action="entries_dropped").message.startswith("1 more entries")


# ---------------------------------------------------------------------------
# Redaction and display helpers
# ---------------------------------------------------------------------------


def test_redact_removes_the_api_secret_bearer_tokens_and_database_passwords(settings, monkeypatch):
    settings.PF_API_SECRET = "api-secret-987"
    # Restored after the test; the open connection does not read it again.
    monkeypatch.setitem(django_settings.DATABASES["default"], "PASSWORD", "db-pass-555")
    text = (
        "secret api-secret-987; Authorization: Bearer abc.DEF-123_x=; "
        "dsn host=db user=pf password=hunter2 dbname=x; url postgres://pf:db-pass-555@db/x; "
        'token body {"accessToken": "tok-999"}'
    )

    cleaned = redact(text)

    for secret in ("api-secret-987", "abc.DEF-123_x", "hunter2", "db-pass-555", "tok-999"):
        assert secret not in cleaned
    assert "Bearer [redacted]" in cleaned
    assert "password=[redacted]" in cleaned
    assert "host=db user=pf" in cleaned


def test_redact_leaves_ordinary_text_alone():
    assert redact("Listing L1: 3 images downloaded") == "Listing L1: 3 images downloaded"
    assert redact(None) == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "0 s"), (45, "45 s"), (192, "3 min 12 s"), (7500, "2 h 5 min 0 s")],
)
def test_format_duration_reads_like_a_person_would_say_it(seconds, text):
    assert format_duration(dt.timedelta(seconds=seconds)) == text


# ---------------------------------------------------------------------------
# Per-day summaries and pf_report
# ---------------------------------------------------------------------------


def tashkent_today_at(hour: int, minute: int = 0, days_ago: int = 0) -> dt.datetime:
    tz = timezone.get_default_timezone()
    day = timezone.localtime(timezone.now(), tz).date() - dt.timedelta(days=days_ago)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour, minute)), tz)


def test_daily_summary_sums_sync_runs_per_tashkent_day_newest_first():
    just_after_midnight = tashkent_today_at(0, 30)  # 19:30 UTC the day before
    make_run(started_at=just_after_midnight, properties_created=2, errors=1)
    make_run(started_at=tashkent_today_at(0, 40), properties_created=3, status="failed")
    make_run(started_at=tashkent_today_at(23, 50, days_ago=1), properties_updated=5)
    make_run(started_at=tashkent_today_at(1, 0), properties_created=100, options={"dry_run": True})
    make_run(command="pf_check", started_at=tashkent_today_at(1, 0), images_failed=9)

    today, yesterday, before = daily_summary(days=3)

    assert just_after_midnight.astimezone(UTC).hour == 19
    assert today["date"] == tashkent_today_at(12).date()
    assert (today["runs"], today["failed_runs"], today["properties_created"]) == (2, 1, 5)
    assert (today["errors"], today["images_failed"]) == (1, 0)
    assert (yesterday["runs"], yesterday["properties_updated"]) == (1, 5)
    assert before["runs"] == 0


def test_pf_report_prints_a_table_with_runs_unpublished_and_failed_images():
    make_run(
        started_at=tashkent_today_at(0, 30),
        properties_created=15,
        properties_unpublished=4,
        images_failed=6,
    )
    out = StringIO()

    call_command("pf_report", "--days", "2", stdout=out)

    header, today, yesterday = out.getvalue().splitlines()
    columns = [c.strip() for c in header.split("|")]
    assert columns[:3] == ["Date", "Runs", "Failed Runs"]
    assert "Unpublished" in columns and "Images Failed" in columns
    values = dict(zip(columns, [c.strip() for c in today.split("|")], strict=True))
    assert values["Runs"] == "1"
    assert values["Properties Created"] == "15"
    assert values["Unpublished"] == "4"
    assert values["Images Failed"] == "6"
    assert bar_positions(today) == bar_positions(header)
    assert yesterday.split("|")[1].strip() == "0"


def test_pf_report_json_lists_days_newest_first():
    make_run(started_at=tashkent_today_at(0, 30), users_created=2)
    out = StringIO()

    call_command("pf_report", "--days", "3", "--json", stdout=out)

    data = json.loads(out.getvalue())
    assert [item["date"] for item in data] == [
        (tashkent_today_at(12) - dt.timedelta(days=n)).date().isoformat() for n in range(3)
    ]
    assert data[0]["users_created"] == 2
    assert data[0]["runs"] == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "Error: argument --days: expected 1 to 3650 days, got 0"),
        ("3651", "Error: argument --days: expected 1 to 3650 days, got 3651"),
        ("week", "Error: argument --days: expected a whole number of days, got 'week'"),
    ],
)
def test_pf_report_refuses_a_bad_days_value_with_one_sentence(value, message):
    with pytest.raises(CommandError) as excinfo:
        call_command("pf_report", "--days", value)
    assert str(excinfo.value) == message


def test_log_lines_during_a_run_name_the_run_also_from_worker_threads(caplog):
    import logging

    from pfsync_app.reports.logs import RunContextFilter

    caplog.set_level(logging.INFO, logger="pfsync")
    caplog.handler.addFilter(RunContextFilter())
    recorder = RunRecorder.start("pf_check")
    worker = threading.Thread(target=lambda: logging.getLogger("pfsync.t").info("from a worker"))
    worker.start()
    worker.join()
    logging.getLogger("pfsync.t").info("from the main thread")
    recorder.finish()
    logging.getLogger("pfsync.t").info("after the run")
    assert [r.run_id for r in caplog.records] == [recorder.run.pk, recorder.run.pk, "-"]


def run_ids_logged(caplog, *, in_a_new_thread: bool = False) -> str | int:
    """The run id a log line gets now, in this thread or a new one (a next request)."""
    import logging

    from pfsync_app.reports.logs import RunContextFilter

    caplog.set_level(logging.INFO, logger="pfsync")
    caplog.handler.addFilter(RunContextFilter())
    caplog.clear()
    log = logging.getLogger("pfsync.t")
    if in_a_new_thread:
        worker = threading.Thread(target=lambda: log.info("an unrelated request"))
        worker.start()
        worker.join()
    else:
        log.info("an unrelated request")
    [record] = caplog.records
    return record.run_id


def test_a_run_whose_end_cannot_be_saved_no_longer_names_later_log_lines(caplog, monkeypatch):
    recorder = RunRecorder.start("pf_webhooks")
    assert run_ids_logged(caplog, in_a_new_thread=True) == recorder.run.pk

    def refuse(*args, **kwargs):
        raise RuntimeError("the save failed")

    monkeypatch.setattr(SyncRun, "save", refuse)
    with pytest.raises(RuntimeError):
        recorder.finish()
    assert run_ids_logged(caplog) == "-"
    assert run_ids_logged(caplog, in_a_new_thread=True) == "-"


def test_a_run_ending_does_not_take_the_id_of_a_run_started_since(caplog):
    from pfsync_app.reports.logs import end_current_run, set_current_run

    set_current_run(7)
    set_current_run(8)  # another thread's run, started after 7
    end_current_run(7)
    assert run_ids_logged(caplog, in_a_new_thread=True) == 8
    end_current_run(8)
    assert run_ids_logged(caplog, in_a_new_thread=True) == "-"


def test_an_entry_echoing_a_nul_character_from_the_api_is_still_recorded():
    recorder = RunRecorder.start("pf_sync")
    recorder.error("listing.invalid", "title 'a\x00b' is odd", pf_id="X\x00Y")
    recorder.finish()
    entry = ReportEntry.objects.get(run=recorder.run)
    assert (entry.pf_id, entry.message) == ("XY", "title 'ab' is odd")


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_a_run_ended_by_an_error_echoing_text_the_database_refuses_is_still_recorded(bad):
    with pytest.raises(ValueError), RunRecorder.start("pf_sync", options={"name": f"a{bad}b"}):
        raise ValueError(f"listing L{bad}1 cannot be read")

    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.FAILED
    assert run.options["name"] == "ab"
    assert "listing L1" in run.message
