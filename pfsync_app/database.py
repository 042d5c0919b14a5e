"""What a database error means to the operator, in one sentence: which of three things is wrong.

A command that cannot use its database says one of:

- ``cannot connect to the database 127.0.0.1:5432/mhp: connection refused (check
  DATABASE_URL or POSTGRES_DSN, and that the server is running)``;
- ``pfsync's tables are missing from database 'default' (3 migrations not applied):
  run python manage.py migrate``;
- ``the host's table 'areas_area' is missing from database 'default': name the site's
  table in PFSYNC_HOST (python manage.py pf_schema shows the map in effect)``.

``database_problem`` classifies an error a command or a job ran into;
``require_database`` asks the same questions before any work (the jobs' preflight).
Anything else is the driver's first line, with the database named.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError

from pfsync_app.exceptions import SyncAborted, first_line
from pfsync_app.words import plural

APP_LABEL = "pfsync_app"

# "no such table: x" (SQLite), 'relation "x" does not exist' (PostgreSQL).
_MISSING_TABLE = re.compile(r'no such table: "?([\w.]+)"?|relation "([\w.]+)" does not exist')
# libpq: 'connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs...'
_LIBPQ_REASON = re.compile(r"failed: (?:FATAL:\s+)?(.+)")


def where(using: str = DEFAULT_DB_ALIAS) -> str:
    """The database as the operator configured it: ``HOST:PORT/NAME``, or the SQLite file."""
    settings = connections[using].settings_dict
    name = settings.get("NAME") or "?"
    if connections[using].vendor == "sqlite":
        return f"the SQLite file {name}"
    host = settings.get("HOST") or "localhost"
    port = settings.get("PORT") or "5432"
    return f"{host}:{port}/{name}"


def connection_problem(using: str = DEFAULT_DB_ALIAS) -> str | None:
    """Why the database ``using`` cannot be connected to, or None when it can."""
    connection = connections[using]
    try:
        connection.ensure_connection()
        if connection.vendor == "sqlite":
            # SQLite creates a missing file on connect; reading proves it is a database.
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except DatabaseError as exc:
        _forget(connection)
        return (
            f"cannot connect to the database {where(using)}: {_reason(exc)} "
            "(check DATABASE_URL or POSTGRES_DSN, and that the server is running)"
        )
    return None


def pending_pfsync_migrations(using: str = DEFAULT_DB_ALIAS) -> int:
    """How many of pfsync's migrations are not applied to ``using``; DatabaseError if unknown."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[using])
    targets = [node for node in executor.loader.graph.leaf_nodes() if node[0] == APP_LABEL]
    return sum(
        1 for migration, _ in executor.migration_plan(targets) if migration.app_label == APP_LABEL
    )


def migrations_problem(using: str = DEFAULT_DB_ALIAS) -> str | None:
    """The sentence for pfsync's tables missing (migrations not applied), or None."""
    pending = pending_pfsync_migrations(using)
    if not pending:
        return None
    return (
        f"pfsync's tables are missing from database {using!r} "
        f"({plural(pending, 'migration')} not applied): run python manage.py migrate"
    )


def require_database(using: str = DEFAULT_DB_ALIAS) -> None:
    """Raise SyncAborted, one sentence, unless ``using`` connects and has pfsync's tables."""
    problem = connection_problem(using)
    if problem is None:
        try:
            problem = migrations_problem(using)
        except DatabaseError as exc:
            problem = database_problem(exc, using)
    if problem:
        raise SyncAborted(problem)


def database_problem(exc: BaseException, using: str = DEFAULT_DB_ALIAS) -> str:
    """What ``exc``, an error from ``using``, means: no connection, pfsync's or a host table."""
    problem = connection_problem(using)
    if problem:
        return problem
    table = missing_table(exc)
    try:
        migrations = migrations_problem(using)
    except DatabaseError:
        migrations = None
    if migrations:
        return migrations
    dropped = missing_pfsync_table(exc)
    if dropped:
        return dropped
    if table is not None:
        return (
            f"the host's table {table!r} is missing from database {using!r}: run the site's "
            "migrations, or name the site's table in PFSYNC_HOST (python manage.py pf_schema "
            "shows the map in effect)"
        )
    return f"database {using!r} ({where(using)}) failed: {first_line(exc)}"


def missing_pfsync_table(exc: BaseException) -> str | None:
    """The sentence for ``exc`` naming one of pfsync's own tables as missing, else None.

    Migrations may be recorded as applied while a table is gone (dropped by hand):
    ``pfsync's table 'pfsync_app_listingstate' is missing: run python manage.py
    migrate (it may have been dropped by hand)``. Not a lost connection: SQLite's
    "no such table" is an OperationalError, so the run recorder asks this first.
    """
    table = missing_table(exc)
    if table is None or table not in pfsync_tables():
        return None
    return (
        f"pfsync's table {table!r} is missing: run python manage.py migrate "
        "(it may have been dropped by hand)"
    )


def missing_table(exc: BaseException) -> str | None:
    """The table a "no such table" / "relation does not exist" error names, else None.

    The exceptions ``exc`` arose from are read too: a server-side cursor closed after
    its query failed raises its own error, with the missing table in the context.
    """
    for seen in exception_chain(exc):
        found = _MISSING_TABLE.search(str(seen))
        if found is not None:
            return (found.group(1) or found.group(2)).split(".")[-1]
    return None


def from_database(exc: BaseException, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether ``exc``, or an exception it arose from, is a database error (Django's or the
    driver's own, which a closed server-side cursor raises unwrapped)."""
    errors: tuple[type[BaseException], ...] = (DatabaseError,)
    if using in connections.settings:  # an alias not in DATABASES has no driver of its own
        errors += (getattr(connections[using].Database, "Error", DatabaseError),)
    return any(isinstance(seen, errors) for seen in exception_chain(exc))


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it arose from (``__cause__``, else ``__context__``), ten at most."""
    seen: BaseException | None = exc
    for _ in range(10):  # a chain, not a cycle
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def pfsync_tables() -> set[str]:
    """The tables pfsync's own migrations create."""
    from django.apps import apps

    return {
        model._meta.db_table
        for model in apps.get_app_config(APP_LABEL).get_models(include_auto_created=True)
        if model._meta.managed
    }


def _reason(exc: BaseException) -> str:
    """The driver's reason, without libpq's "connection to server at ..." preamble."""
    text = first_line(exc)
    found = _LIBPQ_REASON.search(text)
    reason = found.group(1).strip() if found else text
    return reason[:1].lower() + reason[1:]


def _forget(connection: Any) -> None:
    """Drop a half-opened connection so the next attempt starts clean."""
    with contextlib.suppress(DatabaseError):
        connection.close()
