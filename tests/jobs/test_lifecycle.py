"""The one lifecycle of every job: what it creates it closes, what it was handed it leaves."""

from __future__ import annotations

from typing import Any

import pytest

from pfsync_app.exceptions import SyncAborted, WriterBusy
from pfsync_app.jobs.base import Job
from pfsync_app.jobs.check import check_images
from pfsync_app.jobs.clients import build_client
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import SyncRun
from pfsync_app.writers.lock import writer_lock

pytestmark = pytest.mark.django_db


class Watched:
    """Wraps a client and remembers whether close() was called."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def close(self) -> None:
        self.closed = True
        self.client.close()


def test_a_client_handed_to_a_job_is_not_closed_by_it(sandbox_settings):
    client = Watched(build_client())
    run_sync(SyncOptions(), client=client)
    assert not client.closed
    client.close()


def test_a_client_the_job_built_itself_is_closed_when_the_run_ends(sandbox_settings, monkeypatch):
    built: list[Watched] = []

    def build(concurrency=None):
        built.append(Watched(build_client(concurrency)))
        return built[-1]

    monkeypatch.setattr("pfsync_app.jobs.base.build_client", build)
    run_sync(SyncOptions())
    assert len(built) == 1 and built[0].closed


def test_pf_check_builds_no_client_and_takes_no_lock(sandbox_settings, monkeypatch):
    def no_client(*args, **kwargs):
        raise AssertionError("pf_check built an API client")

    monkeypatch.setattr("pfsync_app.jobs.base.build_client", no_client)
    with writer_lock("pf_sync"):
        result = check_images()
    assert result.exit_code == 0


def test_a_start_refused_by_the_lock_is_recorded_as_skipped_not_failed(
    sandbox_settings, monkeypatch
):
    def busy(command):
        raise WriterBusy("another pf_sync is running (pid 4242, started 02:00)")

    monkeypatch.setattr("pfsync_app.jobs.base.writer_lock", busy)
    with pytest.raises(WriterBusy):
        run_sync(SyncOptions())
    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.SKIPPED
    assert run.message.startswith("another pf_sync is running")


def test_a_job_whose_work_raises_ends_its_run_as_failed_and_reraises(db):
    class Broken(Job):
        command = SyncRun.Command.CHECK

        def work(self) -> None:
            raise SyncAborted("the storage went away")

    with pytest.raises(SyncAborted, match="the storage went away"):
        Broken().run()
    run = SyncRun.objects.get()
    assert (run.status, run.message) == (SyncRun.Status.FAILED, "the storage went away")
