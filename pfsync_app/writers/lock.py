"""One pf_sync, pf_repair or pf_areas link at a time per database: a lease on a row.

The lock is pfsync's RunLock row. A run takes it when it is free or its lease
has run out, renews the lease while it runs (the job's heartbeat, in
``jobs/base.py``) and gives it back at the end. Each of these is one short
statement in a transaction of its own, and every time in them is the
database's (``now()``), never a host's. So the lock holds the same on SQLite,
on PostgreSQL and behind a transaction pooler such as PgBouncer (where a
session advisory lock does not: the pooler hands the session to other
clients), and hosts whose clocks disagree cannot take it from each other. A
holder that dies without giving it back blocks the next run only until its
lease runs out. The row is updated, never deleted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import DateTimeField, ExpressionWrapper, Q, QuerySet, Value
from django.db.models.functions import Now
from django.utils import timezone

from pfsync_app.exceptions import WriterBusy, first_line
from pfsync_app.models import RunLock

logger = logging.getLogger("pfsync.locking")


LOCK_NAME = "pfsync-writer"


#: Seconds a lease lasts unless renewed. The heartbeat renews it every quarter of that, and
#: stops its run when no renewal has succeeded for half of it.
LEASE_SECONDS = 60.0


def _rows(using: str) -> QuerySet[RunLock]:
    return RunLock.objects.using(using).filter(name=LOCK_NAME)


def _lease_end(seconds: float) -> ExpressionWrapper:
    """The database's now plus ``seconds``, computed by the database."""
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=seconds)), output_field=DateTimeField()
    )


def _busy_message(holder: RunLock | None) -> str:
    if holder is None or not holder.pid:
        return "another pf_sync is running"
    started = timezone.localtime(holder.acquired_at).strftime("%H:%M")
    command = holder.command or "pf_sync"
    return f"another {command} is running (pid {holder.pid}, started {started})"


def describe_holder(holder: RunLock | None) -> str:
    """Who holds the lock, for a message: ``pid 11308 on web-1 (pf_sync)``."""
    if holder is None or not holder.token:
        return "nobody"
    return f"pid {holder.pid} on {holder.hostname or '?'} ({holder.command or 'pf_sync'})"


@dataclass
class Lease:
    """The writer lock as one run holds it: renewed by its job's heartbeat, released at the end."""

    command: str
    token: str
    seconds: float
    using: str
    #: time.monotonic() just before the statement that took the lease was sent: the lease
    #: runs out ``seconds`` after that at the latest, whatever the clocks say.
    taken_at: float
    #: Taken inside a transaction of the caller's (a test's): no other connection sees the
    #: row before that commits, so there is nothing another thread could renew.
    in_transaction: bool = False

    def renew(self) -> bool:
        """Push the lease's end to the database's now plus ``seconds``; False if no longer ours."""
        mine = _rows(self.using).filter(token=self.token)
        return mine.update(expires_at=_lease_end(self.seconds)) == 1

    def holder(self) -> RunLock | None:
        """The lock row as it is now (whoever holds it)."""
        return _rows(self.using).first()

    def release(self) -> bool:
        """Give the lock back; False when it was no longer ours (another run took it over)."""
        mine = _rows(self.using).filter(token=self.token)
        return mine.update(token="", pid=0, command="", expires_at=None) == 1


def take(command: str, *, using: str = DEFAULT_DB_ALIAS, seconds: float | None = None) -> Lease:
    """Take the writer lock for ``command``; raise WriterBusy naming the run that holds it."""
    seconds = float(LEASE_SECONDS if seconds is None else seconds)
    token = uuid.uuid4().hex
    free = Q(token="") | Q(expires_at__lt=Now())
    claim = {
        "token": token,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "command": command,
        "acquired_at": Now(),
        "expires_at": _lease_end(seconds),
    }
    taken_at = time.monotonic()
    # One conditional UPDATE: the database lets exactly one of two racing runs match it.
    taken = _rows(using).filter(free).update(**claim)
    if not taken and not _rows(using).exists():
        # The first run on this database: create the row (a racing run may create it first).
        RunLock.objects.using(using).bulk_create(
            [RunLock(name=LOCK_NAME, pid=0)], ignore_conflicts=True
        )
        taken = _rows(using).filter(free).update(**claim)
    if not taken:
        raise WriterBusy(_busy_message(_rows(using).first()))
    return Lease(
        command=command,
        token=token,
        seconds=seconds,
        using=using,
        taken_at=taken_at,
        in_transaction=connections[using].in_atomic_block,
    )


@contextmanager
def writer_lock(command: str, using: str = DEFAULT_DB_ALIAS) -> Iterator[Lease]:
    """Hold pfsync's writer lock for the block; raise WriterBusy when another run holds it.

    The lease is not renewed here: a job holding it for longer than a fraction
    of LEASE_SECONDS runs a heartbeat (``jobs.base.Heartbeat``).
    """
    lease = take(command, using=using)
    try:
        yield lease
    finally:
        _release_quietly(lease)


def _release_quietly(lease: Lease) -> None:
    """Give the lock back; if that fails, say so instead of hiding why the run ended."""
    try:
        lease.release()
    except DatabaseError as exc:
        logger.warning(
            "could not give the writer lock back (%s); it is free again when its lease runs "
            "out, within %g s",
            first_line(exc),
            lease.seconds,
        )


def process_is_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (one we may not signal counts)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
