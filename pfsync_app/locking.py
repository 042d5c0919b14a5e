"""One pf_sync or pf_repair at a time per database.

On PostgreSQL the lock is a session-level advisory lock: the database releases
it when the holding process dies, however it dies. On SQLite (the embedded
default, one machine) a row in pfsync's RunLock table plays the lock, taken
over when the process that holds it no longer exists. In both cases the
RunLock row says who holds it, for the message the second run prints.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.utils import timezone

from pfsync_app.models import RunLock

LOCK_NAME = "pfsync-writer"
# An arbitrary constant: the 64-bit key of pfsync's advisory lock.
ADVISORY_KEY = 0x7066_7379_6E63


class LockBusy(Exception):
    """Another pf_sync or pf_repair holds the lock."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _busy_message(holder: RunLock | None) -> str:
    if holder is None or not holder.pid:
        return "another pf_sync is running"
    started = timezone.localtime(holder.acquired_at).strftime("%H:%M")
    command = holder.command or "pf_sync"
    return f"another {command} is running (pid {holder.pid}, started {started})"


@contextmanager
def writer_lock(command: str, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Hold pfsync's writer lock for the block; raise LockBusy when another run holds it."""
    connection = connections[using]
    me = {"pid": os.getpid(), "hostname": socket.gethostname(), "command": command}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY])
            (acquired,) = cursor.fetchone()
        if not acquired:
            raise LockBusy(_busy_message(RunLock.objects.filter(name=LOCK_NAME).first()))
        try:
            RunLock.objects.update_or_create(
                name=LOCK_NAME, defaults={**me, "acquired_at": timezone.now()}
            )
            yield
        finally:
            RunLock.objects.filter(name=LOCK_NAME, pid=me["pid"]).delete()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])
        return

    _acquire_row_lock(me)
    try:
        yield
    finally:
        RunLock.objects.filter(name=LOCK_NAME, pid=me["pid"]).delete()


def _acquire_row_lock(me: dict) -> None:
    with transaction.atomic():
        holder = RunLock.objects.select_for_update().filter(name=LOCK_NAME).first()
        if holder is not None:
            same_host = holder.hostname == me["hostname"]
            if not same_host or (_process_alive(holder.pid) and holder.pid != me["pid"]):
                raise LockBusy(_busy_message(holder))
            holder.delete()
        try:
            RunLock.objects.create(name=LOCK_NAME, acquired_at=timezone.now(), **me)
        except IntegrityError:
            raise LockBusy(_busy_message(RunLock.objects.filter(name=LOCK_NAME).first())) from None
