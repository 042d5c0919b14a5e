"""The one lifecycle every pfsync job runs: preflight, lock, a recorded run, clients, work, end.

Modelled on django-anymail's backends: ``Job.run()`` owns the lifecycle and a
concrete job fills the hooks (``preflight``, ``work``, ``finish_message``,
``result``). A job creates only what it needs (pf_check builds no API client
and takes no lock) and tears down only what it created itself: a client or
downloader handed in by the caller (a test, the webhook view's shared client)
is never closed here.

    preflight()            settings, host schema, database; the job's own checks
    writer lock            jobs that write host rows, unless a dry run; a heartbeat
                           renews its lease while the job runs
    RunRecorder            the recorded run; its context manager is the one way it ends
    work()                 the job itself, opening clients on demand
    finish_message()       the run's message when it ends normally

A start that fails preflight is recorded as a failed run (when pfsync's tables
can be written); a start refused because another run holds the writer lock is
recorded as skipped, never as failed. Both raise ``SyncAborted`` (exit status 2).
A job whose lease is lost (its renewal failed for half the lease, or another run
took the lock over) stops: at once when it runs in a management command's main
thread (the command interrupts it), else when its work returns; its run ends as
failed with the reason, and ``SyncAborted`` is raised.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import TracebackType
from typing import Any, ClassVar

from django.core.files.storage import Storage, default_storage
from django.db import DatabaseError, connections

from pfsync_app.atlas import AtlasClient
from pfsync_app.atlas.errors import AtlasError, AuthenticationError, CredentialsMissing
from pfsync_app.checks import check_host_schema, check_settings, one_sentence
from pfsync_app.database import require_database
from pfsync_app.exceptions import SyncAborted, WriterBusy, first_line
from pfsync_app.jobs.clients import build_client
from pfsync_app.jobs.pipeline import Progress
from pfsync_app.media.download import ImageDownloader
from pfsync_app.models import SyncRun
from pfsync_app.reports.recorder import RunRecorder
from pfsync_app.writers.fit import forget_columns
from pfsync_app.writers.lock import Lease, describe_holder, writer_lock

logger = logging.getLogger("pfsync.jobs")


# How a job running in the main thread is stopped at once from another thread (its heartbeat,
# when the lease is lost). Only the management commands set it, while they run: a web
# worker's signals are the server's, never pfsync's.
_interrupt_main: Callable[[], None] | None = None


@contextmanager
def main_thread_interrupt(interrupt: Callable[[], None]) -> Iterator[None]:
    """While the block runs, a main-thread job whose lease is lost is stopped by ``interrupt()``.

    ``interrupt`` must make the main thread raise a KeyboardInterrupt (the
    management commands send it SIGTERM, whose handler raises ``Terminated``).
    """
    global _interrupt_main
    previous, _interrupt_main = _interrupt_main, interrupt
    try:
        yield
    finally:
        _interrupt_main = previous


class Heartbeat:
    """Renews a lease while a job holds it, and calls ``on_lost`` before the lease can run out.

    The lease is renewed every quarter of its length. A renewal that fails (the
    database cannot be reached) is tried again every twentieth. When none has
    succeeded for half the lease, or another run has taken the lock over,
    ``on_lost(reason)`` is called once: with half the lease still to go, so the
    run stops before anyone else may take the lock. The deadline is a timer of
    its own: a renewal that hangs cannot delay it. Every time here is this
    process's monotonic clock, measured from before the statement that took or
    renewed the lease was sent, so it errs on the early side of the database's.
    """

    def __init__(self, lease: Lease, on_lost: Callable[[str], None]) -> None:
        self.lease = lease
        self.on_lost = on_lost
        self.every = lease.seconds / 4
        self.retry = lease.seconds / 20
        self.give_up = lease.seconds / 2
        #: When on_lost is called unless a renewal succeeds first (time.monotonic()).
        self.deadline = lease.taken_at + self.give_up
        self.renewals = 0
        self.problem = ""
        self._mutex = threading.Lock()
        self._stopping = threading.Event()
        self._lost = False
        self._timer: threading.Timer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.lease.in_transaction:
            return self
        self._arm(self.deadline)
        self._thread = threading.Thread(target=self._run, name="pfsync-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._mutex:
            self._stopping.set()
            if self._timer is not None:
                self._timer.cancel()
        if self._thread is not None:
            # A renewal stuck on a dead connection must not hold the run's end up.
            self._thread.join(timeout=max(self.retry, 1.0))

    def _run(self) -> None:
        try:
            wait = self.every
            while not self._stopping.wait(wait):
                wait = self.every if self.renew() else self.retry
        finally:
            # This thread's own database connection.
            connections.close_all()

    def renew(self) -> bool:
        """Renew the lease once; False when the renewal failed and is to be tried again soon."""
        started = time.monotonic()
        try:
            ours = self.lease.renew()
        except DatabaseError as exc:
            self.problem = first_line(exc)
            logger.warning(
                "could not renew the writer lock's lease: %s (trying again in %g s)",
                self.problem,
                self.retry,
            )
            return False
        if not ours:
            try:
                holder = describe_holder(self.lease.holder())
            except DatabaseError:
                holder = "another run"
            self._lose(
                f"the writer lock was taken over by {holder} while this run held it "
                "(its lease had run out); this run stopped"
            )
            self._stopping.set()
            return True
        self.renewals += 1
        self.deadline = started + self.give_up
        self._arm(self.deadline)
        return True

    def _arm(self, deadline: float) -> None:
        with self._mutex:
            if self._lost or self._stopping.is_set():
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        self._lose(
            f"the writer lock's lease could not be renewed for {self.give_up:g} s "
            f"({self.problem or 'the database did not answer'}); this run stopped before the "
            "lease ran out"
        )

    def _lose(self, reason: str) -> None:
        with self._mutex:
            if self._lost or self._stopping.is_set():
                return
            self._lost = True
        self.on_lost(reason)


def check_ready() -> None:
    """Raise SyncAborted, one sentence, when a setting, the host schema or the database is wrong."""
    errors = [m for m in check_settings() if m.is_serious()]
    if not errors:
        # Unreachable, or pfsync's tables missing: said as such, before the host's tables.
        require_database()
        errors = [m for m in check_host_schema() if m.is_serious()]
    if errors:
        raise SyncAborted(one_sentence(errors))


def atlas_failure(exc: AtlasError, doing: str, *, mid_run: bool = False) -> SyncAborted:
    """The sentence a run stops with when the Atlas API fails it: credentials, or reachability.

    ``doing`` says what was being done ("cannot reach the Property Finder API",
    "cannot fetch listings 1, 2"); refused credentials are said the same way
    whatever was being done, ``mid_run`` when a token was granted earlier; a key or
    secret that is not configured at all is said as such (nothing was refused).
    """
    if isinstance(exc, CredentialsMissing):
        # Nothing was sent, so nothing was refused.
        word = "key" if "key" in exc.missing else "secret"
        return SyncAborted(
            f"no {word} is configured for the Property Finder API "
            "(set PF_API_KEY and PF_API_SECRET)"
        )
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
        #: Why the writer lock's lease was lost, once it was: the run must not write on.
        self.lease_lost = ""
        self._thread: threading.Thread | None = None
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
        self._thread = threading.current_thread()
        with self._resources:
            if holding_lock:
                try:
                    lease = self._resources.enter_context(writer_lock(self.command))
                except WriterBusy as exc:
                    RunRecorder.record_refused(
                        self.command, options, str(exc), SyncRun.Status.SKIPPED
                    )
                    raise
                self._resources.enter_context(self.heartbeat(lease))
            self.recorder = RunRecorder.start(
                self.command, options=options, holding_lock=holding_lock
            )
            with self.recorder:
                try:
                    self.work()
                except KeyboardInterrupt:
                    # The heartbeat interrupted the work: the run failed for that reason.
                    self.check_lease()
                    raise
                self.check_lease()
                self.recorder.finish(message=self.finish_message())
        return self.result()

    # -- the writer lock's lease -----------------------------------------------

    def heartbeat(self, lease: Lease) -> Heartbeat:
        """The heartbeat that keeps ``lease`` while this job holds it (a context manager)."""
        return Heartbeat(lease, on_lost=self._lose_lease)

    def check_lease(self) -> None:
        """Raise SyncAborted when the writer lock's lease was lost: the run must stop writing."""
        if self.lease_lost:
            raise SyncAborted(self.lease_lost)

    def _lose_lease(self, reason: str) -> None:
        """Called by the heartbeat's thread: note why, and stop the job at once if we can."""
        self.lease_lost = reason
        logger.error("%s", reason)
        interrupt = _interrupt_main
        if interrupt is not None and self._thread is threading.main_thread():
            interrupt()

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
