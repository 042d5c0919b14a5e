"""SIGTERM, what docker stop, systemd and Kubernetes send, and other runs that do not finish.

Real ``manage.py`` processes on a database of their own. A terminated run is
marked interrupted before the process exits with status 2, its lock is given
back and its temporary files are removed; the next run starts at once and
completes. A run ended by an exception nobody expected exits 2 with one
sentence, never 1 with a traceback (1 means "finished, with item errors").
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from pfsync_app.media.files import TEMP_DIR_NAME
from pfsync_app.models import PropertyImage, SyncRun
from pfsync_app.sandbox import Sandbox
from tests.fixtures.faults import (
    PROJECT_DIR,
    SMALL,
    manage,
    process_env,
    record_scenario,
    start,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.fault_scenario]

STOPPED = "CommandError: pf_sync was stopped by SIGTERM before it finished"


def runs(db) -> list[tuple[str, str, str]]:
    """(command, status, message) of every recorded run, oldest first."""
    return db.query(f"SELECT command, status, message FROM {SyncRun._meta.db_table} ORDER BY id")


def leftovers(db) -> list[str]:
    """Temporary downloads, and stored images that no row names."""
    media = db.folder / "media"
    referenced = {name for (name,) in db.query(f"SELECT image FROM {_images()}")}
    found = [str(p.relative_to(media)) for p in (media / TEMP_DIR_NAME).glob("*") if p.is_file()]
    found += [
        str(p.relative_to(media))
        for p in (media / "property_images").glob("*")
        if str(p.relative_to(media)) not in referenced
    ]
    return found


def _images() -> str:
    return PropertyImage._meta.db_table


def api_request(path: str):
    """A wait_for condition: the sandbox has received a request for ``path``."""
    return lambda sb: any(r.path.startswith(path) for r in sb.requests)


@pytest.mark.parametrize(
    ("moment", "knobs", "fault"),
    [
        # Many downloads in flight, each taking a while: the stop waits for none to finish
        # its retries, and removes what they stored.
        pytest.param(
            "while images download", {"image_latency_ms": 400}, None, id="images_downloading"
        ),
        # Blocked in an API request that hangs: the signal ends the wait at once.
        pytest.param("while an API request hangs", {}, ("/v1/users", 60), id="api_hanging"),
    ],
)
def test_sigterm_marks_the_run_interrupted_gives_the_lock_back_and_leaves_no_file_behind(
    db, moment, knobs, fault
):
    with Sandbox(**SMALL, **knobs) as sb:
        if fault:
            path, seconds = fault
            sb.faults.add(path, "hang", times=1, seconds=seconds)
            started = api_request(path)
        else:
            started = api_request("/images/")
        process = start(db, "pf_sync", "--concurrency", "4", sb=sb)
        wait_for(lambda: started(sb), what=f"the run to be busy {moment}")
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        print(
            f"\npf_sync stopped {moment}: exited {time.monotonic() - signalled:.2f} s after SIGTERM"
        )

        assert process.returncode == 2, stderr
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1] == STOPPED
        # Marked before the process exited: no later run had to notice it.
        assert runs(db) == [("pf_sync", "interrupted", "interrupted: Terminated")]
        assert db.lock_row() == (0, "", False)
        assert leftovers(db) == []

        sb.faults.clear()
        after = manage(db, "pf_sync", sb=sb)

    assert after.returncode == 0, after.stderr
    assert [status for _, status, _ in runs(db)] == ["interrupted", "succeeded"]
    assert leftovers(db) == []
    record_scenario("", True, 0)


def test_sigterm_while_a_repair_downloads_marks_it_interrupted_and_gives_the_lock_back(db):
    with Sandbox(**SMALL) as sb:
        synced = manage(db, "pf_sync", sb=sb)
        assert synced.returncode == 0, synced.stderr
        for (name,) in db.query(f"SELECT image FROM {_images()}"):
            (db.folder / "media" / name).unlink()
        sb.faults.image_latency_ms = 400
        sb.clear_requests()
        process = start(db, "pf_repair", "--concurrency", "2", sb=sb)
        wait_for(lambda: api_request("/images/")(sb), what="the repair's downloads")
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)

        assert process.returncode == 2, stderr
        assert stderr.strip().splitlines()[-1] == (
            "CommandError: pf_repair was stopped by SIGTERM before it finished"
        )
        assert runs(db)[-1][:2] == ("pf_repair", "interrupted")
        assert db.lock_row() == (0, "", False)
        temporary = db.folder / "media" / TEMP_DIR_NAME
        assert [p for p in temporary.glob("*") if p.is_file()] == []

        sb.faults.image_latency_ms = 0
        after = manage(db, "pf_repair", sb=sb)
    assert after.returncode == 0, after.stderr
    record_scenario("", True, 0)


# Runs pf_sync as manage.py does, with its work replaced by a bug.
UNEXPECTED = """
import sys
import django

django.setup()
from pfsync_app.jobs.sync import SyncJob


def work(self):
    raise KeyError("listing")


SyncJob.work = work
from django.core.management import execute_from_command_line

execute_from_command_line(["manage.py", "pf_sync"])
"""


def test_a_run_ended_by_an_unexpected_exception_exits_2_with_one_sentence_not_1(db):
    with Sandbox(**SMALL) as sb:
        process = subprocess.run(
            [sys.executable, "-c", UNEXPECTED],
            cwd=PROJECT_DIR,
            env=process_env(db, sb),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip().splitlines() == [
        "CommandError: pf_sync stopped on an unexpected error: KeyError: 'listing' "
        "(run it with --traceback to see where)"
    ]
    assert runs(db) == [("pf_sync", "failed", "KeyError: 'listing'")]
    assert db.lock_row() == (0, "", False)
    record_scenario("", True, 0)
