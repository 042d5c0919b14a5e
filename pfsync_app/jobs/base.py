"""The one lifecycle every pfsync job runs: preflight, lock, a recorded run, clients, work, end.

Modelled on django-anymail's backends: ``Job.run()`` owns the lifecycle and a
concrete job fills the hooks (``preflight``, ``work``, ``finish_message``,
``result``). A job creates only what it needs (pf_check builds no API client
and takes no lock) and tears down only what it created itself: a client or
downloader handed in by the caller (a test, the webhook view's shared client)
is never closed here.

    preflight()            settings, host schema, database; the job's own checks
    writer lock            jobs that write host rows, unless a dry run
    RunRecorder            the recorded run; its context manager is the one way it ends
    work()                 the job itself, opening clients on demand
    finish_message()       the run's message when it ends normally

A start that fails preflight is recorded as a failed run (when pfsync's tables
can be written); a start refused because another run holds the writer lock is
recorded as skipped, never as failed. Both raise ``SyncAborted`` (exit status 2).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import ExitStack
from typing import Any, ClassVar

from django.core.files.storage import Storage, default_storage

from pfsync_app.atlas import AtlasClient
from pfsync_app.atlas.errors import AtlasError, AuthenticationError
from pfsync_app.checks import check_host_schema, check_settings
from pfsync_app.exceptions import SyncAborted, WriterBusy
from pfsync_app.jobs.clients import build_client
from pfsync_app.jobs.pipeline import Progress
from pfsync_app.media.download import ImageDownloader
from pfsync_app.models import SyncRun
from pfsync_app.reports.recorder import RunRecorder
from pfsync_app.writers.fit import forget_columns
from pfsync_app.writers.lock import writer_lock

logger = logging.getLogger("pfsync.jobs")


def check_ready() -> None:
    """Raise SyncAborted, one sentence, when a setting, the host schema or the database is wrong."""
    errors = [m for m in check_settings() if m.is_serious()]
    errors = errors or [m for m in check_host_schema() if m.is_serious()]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        hint = f" {first.hint}" if first.hint else ""
        raise SyncAborted(f"{first.msg.rstrip('.')}{more}.{hint}")


def atlas_failure(exc: AtlasError, doing: str, *, mid_run: bool = False) -> SyncAborted:
    """The sentence a run stops with when the Atlas API fails it: credentials, or reachability.

    ``doing`` says what was being done ("cannot reach the Property Finder API",
    "cannot fetch listings 1, 2"); refused credentials are said the same way
    whatever was being done, ``mid_run`` when a token was granted earlier.
    """
    if isinstance(exc, AuthenticationError):
        when = "mid-run" if mid_run else "(PF_API_KEY/PF_API_SECRET)"
        return SyncAborted(f"Property Finder refused the credentials {when}: {exc}")
    return SyncAborted(f"{doing}: {exc}")


class Job(ABC):
    """One run of a pfsync command. Subclasses set ``command`` and fill the hooks."""

    #: The SyncRun.Command this job records its runs as.
    command: ClassVar[str]
    #: Whether the job writes host rows, and so holds the writer lock (unless a dry run).
    writes: ClassVar[bool] = False

    def __init__(
        self,
        *,
        client: AtlasClient | None = None,
        downloader: ImageDownloader | None = None,
        storage: Storage | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.downloader = downloader
        self.storage = storage if storage is not None else default_storage
        self.progress = progress or Progress()
        self.recorder: RunRecorder | None = None
        self._resources = ExitStack()

    # -- hooks ---------------------------------------------------------------

    @property
    def dry_run(self) -> bool:
        """Whether this run writes nothing (then it takes no lock)."""
        return False

    def options(self) -> dict[str, Any]:
        """The options recorded on the run."""
        return {}

    def preflight(self) -> None:
        """Raise SyncAborted when the job cannot run; jobs extend this with their own checks."""
        check_ready()

    @abstractmethod
    def work(self) -> None:
        """The job itself, between the recorded run's start and its end."""

    def finish_message(self) -> str:
        """The run's message when the work ended normally."""
        return ""

    # -- the lifecycle ---------------------------------------------------------

    def run(self) -> Any:
        """Run the job; raise SyncAborted (exit status 2) when it cannot run or must stop."""
        forget_columns()  # the host's columns are read again once per job
        options = self.options()
        try:
            self.preflight()
        except SyncAborted as exc:
            RunRecorder.record_refused(self.command, options, str(exc))
            raise
        holding_lock = self.writes and not self.dry_run
        with self._resources:
            if holding_lock:
                try:
                    self._resources.enter_context(writer_lock(self.command))
                except WriterBusy as exc:
                    RunRecorder.record_refused(
                        self.command, options, str(exc), SyncRun.Status.SKIPPED
                    )
                    raise
            self.recorder = RunRecorder.start(
                self.command, options=options, holding_lock=holding_lock
            )
            with self.recorder:
                self.work()
                self.recorder.finish(message=self.finish_message())
        return self.result()

    def result(self) -> Any:
        """What the run returns to its caller (a command or a test)."""
        return None

    # -- resources, created on demand and closed only if created here ----------

    def open_client(self, concurrency: int | None = None) -> AtlasClient:
        """The Atlas client: the one handed in, else one built from settings (closed at the end)."""
        if self.client is None:
            self.client = build_client(concurrency)
            self._resources.callback(self.client.close)
        return self.client

    def open_downloader(self) -> ImageDownloader:
        """The image downloader: the one handed in, else one on the client's connection pool."""
        if self.downloader is None:
            session = self.client.session if self.client is not None else None
            self.downloader = ImageDownloader(session=session, storage=self.storage)
            self._resources.callback(self.downloader.close)
        return self.downloader

    def on_close(self, callback: Any, *args: Any, **kwargs: Any) -> None:
        """Call ``callback`` when the job's resources are released (after the run has ended)."""
        self._resources.callback(callback, *args, **kwargs)

    def authenticate(self) -> None:
        """Get an access token, or stop the run with one sentence (refused, or unreachable)."""
        try:
            self.open_client().authenticate()
        except AtlasError as exc:
            raise atlas_failure(exc, "cannot reach the Property Finder API") from exc
