"""One pf_sync or pf_repair at a time per database.

On PostgreSQL the lock is a session-level advisory lock: the database releases
it when the holding process dies, however it dies. On SQLite (the embedded
default, one machine) a row in pfsync's RunLock table plays the lock, taken
over when the process that holds it no longer exists. In both cases the
RunLock row says who holds it, for the message the second run prints.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    connections,
    transaction,
)
from django.utils import timezone

from pfsync_app.exceptions import WriterBusy, first_line
from pfsync_app.models import RunLock

logger = logging.getLogger("pfsync.locking")


LOCK_NAME = "pfsync-writer"


# An arbitrary constant: the 64-bit key of pfsync's advisory lock.
ADVISORY_KEY = 0x7066_7379_6E63


def _busy_message(holder: RunLock | None) -> str:
    if holder is None or not holder.pid:
        return "another pf_sync is running"
    started = timezone.localtime(holder.acquired_at).strftime("%H:%M")
    command = holder.command or "pf_sync"
    return f"another {command} is running (pid {holder.pid}, started {started})"


@contextmanager
def writer_lock(command: str, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Hold pfsync's writer lock for the block; raise WriterBusy when another run holds it."""
    connection = connections[using]
    me = {"pid": os.getpid(), "hostname": socket.gethostname(), "command": command}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY])
            (acquired,) = cursor.fetchone()
        if not acquired:
            raise WriterBusy(_busy_message(RunLock.objects.filter(name=LOCK_NAME).first()))
        try:
            _claim_row(me, check_holder=False)
            yield
        finally:
            _release_quietly(me, connection, advisory=True)
        return

    _claim_row(me, check_holder=True)
    try:
        yield
    finally:
        _release_quietly(me, connection, advisory=False)


def _release_quietly(me: dict, connection: Any, *, advisory: bool) -> None:
    """Give the lock back; if the database went away, say so instead of hiding why the run ended.

    A dead PostgreSQL session has released its advisory lock already, and an
    SQLite RunLock row naming a process that no longer exists is taken over.
    """
    try:
        _release_row(me)
    except DatabaseError as exc:
        logger.warning("could not clear the pf_sync lock row: %s", first_line(exc))
    if not advisory:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])
    except DatabaseError as exc:
        logger.warning("could not release the pf_sync advisory lock: %s", first_line(exc))


def _claim_row(me: dict, *, check_holder: bool) -> None:
    """Write ourselves into the RunLock row; on SQLite the row is the lock itself."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                holder, _ = RunLock.objects.select_for_update().get_or_create(
                    name=LOCK_NAME, defaults={"pid": 0}
                )
        except IntegrityError:
            holder = RunLock.objects.select_for_update().get(name=LOCK_NAME)
        if check_holder and holder.pid and holder.pid != me["pid"]:
            same_host = holder.hostname == me["hostname"]
            if not same_host or process_is_alive(holder.pid):
                raise WriterBusy(_busy_message(holder))
        # The row is updated, never deleted: pfsync issues no DELETE at all.
        RunLock.objects.filter(pk=holder.pk).update(acquired_at=timezone.now(), **me)


def _release_row(me: dict) -> None:
    RunLock.objects.filter(name=LOCK_NAME, pid=me["pid"]).update(pid=0, command="")


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
