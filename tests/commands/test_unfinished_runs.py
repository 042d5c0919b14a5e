"""A run that did not finish exits 2, never 1, with one sentence: stopped, lease lost, or a bug.

Exit status 1 keeps meaning "finished, with item errors". Real processes
stopped by SIGTERM are in tests/faults/test_sigterm.py; here the commands run
in this process (pytest's main thread), so the SIGTERM handler PfsyncCommand
installs, and the heartbeat's interrupt, are the real ones.
"""

from __future__ import annotations

import signal
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from pfsync_app.jobs import base
from pfsync_app.jobs.listings import ListingStage
from pfsync_app.jobs.sync import SyncJob
from pfsync_app.models import RunLock, SyncRun
from pfsync_app.writers import lock


def boom(self) -> None:
    raise RuntimeError("boom: an unexpected bug")


@pytest.mark.django_db
def test_an_unexpected_error_ends_the_run_failed_and_the_command_with_status_2_in_one_sentence(
    sandbox_settings, monkeypatch
):
    monkeypatch.setattr(SyncJob, "work", boom)
    with pytest.raises(CommandError) as caught:
        call_command("pf_sync", stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 2
    assert str(caught.value) == (
        "pf_sync stopped on an unexpected error: RuntimeError: boom: an unexpected bug "
        "(run it with --traceback to see where)"
    )
    run = SyncRun.objects.get()
    assert (run.status, run.message) == (
        SyncRun.Status.FAILED,
        "RuntimeError: boom: an unexpected bug",
    )
    # Given back: the next run can start.
    assert RunLock.objects.get(name=lock.LOCK_NAME).token == ""


@pytest.mark.django_db
def test_with_traceback_an_unexpected_error_is_raised_as_python_would(
    sandbox_settings, monkeypatch
):
    monkeypatch.setattr(SyncJob, "work", boom)
    with pytest.raises(RuntimeError, match="boom"):
        call_command("pf_sync", traceback=True, stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db
def test_a_mistake_on_the_command_line_keeps_its_own_sentence_and_status(sandbox_settings):
    with pytest.raises(CommandError) as caught:
        call_command("pf_sync", "--limit", "0", stdout=StringIO())
    assert "unexpected" not in str(caught.value)


@pytest.mark.django_db
def test_sigterm_is_handled_only_while_a_command_runs_and_the_previous_handler_comes_back(
    sandbox_settings, monkeypatch
):
    seen = {}

    def look(self) -> None:
        seen["handler"] = signal.getsignal(signal.SIGTERM)
        seen["interrupt"] = base._interrupt_main

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(SyncJob, "work", look)
    call_command("pf_sync", stdout=StringIO(), stderr=StringIO())
    assert callable(seen["handler"]) and seen["handler"] is not before
    assert seen["interrupt"] is not None
    assert signal.getsignal(signal.SIGTERM) is before
    assert base._interrupt_main is None


@pytest.mark.django_db(transaction=True)
def test_a_command_run_from_another_thread_installs_no_signal_handler(
    sandbox_settings, monkeypatch
):
    seen = {}

    def look(self) -> None:
        seen["handler"] = signal.getsignal(signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(SyncJob, "work", look)

    def run_in_thread() -> None:
        try:
            call_command("pf_sync", stdout=StringIO())
        finally:
            connections.close_all()

    worker = threading.Thread(target=run_in_thread)
    worker.start()
    worker.join(60)
    assert seen["handler"] is before


@pytest.mark.django_db(transaction=True)
def test_a_command_whose_lease_is_taken_over_stops_at_once_even_while_it_waits(
    sandbox_settings, monkeypatch
):
    monkeypatch.setattr(lock, "LEASE_SECONDS", 4.0)  # renewed every second
    waited = threading.Event()

    def steal_then_wait(self, listings) -> None:
        RunLock.objects.filter(name=lock.LOCK_NAME).update(
            token="f" * 32, pid=4242, hostname="cron-host", command="pf_repair"
        )
        # Blocked, as on a hanging download: only the heartbeat's interrupt ends the wait.
        waited.wait(120)

    monkeypatch.setattr(ListingStage, "save", steal_then_wait)
    with pytest.raises(CommandError) as caught:
        call_command("pf_sync", stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 2
    assert str(caught.value) == (
        "pf_sync could not run: the writer lock was taken over by pid 4242 on cron-host "
        "(pf_repair) while this run held it (its lease had run out); this run stopped"
    )
    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.FAILED
    assert run.message.startswith("the writer lock was taken over")
    assert RunLock.objects.get(name=lock.LOCK_NAME).pid == 4242
