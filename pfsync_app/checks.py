"""System checks: the host schema pfsync writes into, and pfsync's settings.

Ids are stable; each message has a hint that tells the user what to change.

- pfsync.E001  the database cannot be reached
- pfsync.E002  a host table is missing
- pfsync.E003  a column of a host table is missing
- pfsync.E010  a setting has a wrong type or value
- pfsync.W001  no Property Finder API credentials are configured
- pfsync.W002  webhooks: no signing secret
- pfsync.W003  migrations are pending, so the host schema is not checked yet
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError

from pfsync_app.conf import DEFAULT_TABLES, SETTINGS, pfsync_settings
from pfsync_app.exceptions import first_line

HOST_MODEL_KEYS = tuple(DEFAULT_TABLES)


def host_models() -> dict[str, Any]:
    """The unmanaged models that map the host's tables, by PFSYNC_TABLES key."""
    from pfsync_app.models import Agent, Area, Property, PropertyImage

    return {"area": Area, "user": Agent, "property": Property, "image": PropertyImage}


def check_host_schema(using: str = DEFAULT_DB_ALIAS) -> list[checks.CheckMessage]:
    """Compare each mapped host table and column with the live database."""
    connection = connections[using]
    try:
        with connection.cursor() as cursor:
            tables = set(connection.introspection.table_names(cursor))
            messages: list[checks.CheckMessage] = []
            for key, model in host_models().items():
                table = model._meta.db_table
                if table not in tables:
                    messages.append(
                        checks.Error(
                            f"Host table {table!r} ({key}) does not exist in database {using!r}.",
                            hint=(
                                "Run the host site's migrations, or point "
                                f"PFSYNC_TABLES[{key!r}] at the table that holds "
                                f"{model._meta.verbose_name_plural} "
                                f"(default {DEFAULT_TABLES[key]!r})."
                            ),
                            obj=model,
                            id="pfsync.E002",
                        )
                    )
                    continue
                present = {
                    column.name
                    for column in connection.introspection.get_table_description(cursor, table)
                }
                for field in model._meta.concrete_fields:
                    if field.column not in present:
                        messages.append(
                            checks.Error(
                                f"Column {table}.{field.column} is missing in database {using!r}.",
                                hint=(
                                    f"Add the column {field.column!r} to {table!r} with the "
                                    "host's migrations (see HOST_SCHEMA.md); pfsync never "
                                    "changes the host's schema itself."
                                ),
                                obj=model,
                                id="pfsync.E003",
                            )
                        )
            return messages
    except DatabaseError as exc:
        return [
            checks.Error(
                f"Database {using!r} cannot be reached: {first_line(exc)}",
                hint="Check DATABASE_URL or POSTGRES_DSN, and that the server is running.",
                id="pfsync.E001",
            )
        ]


@checks.register(checks.Tags.database)
def check_database(databases: Iterable[str] | None = None, **kwargs: Any) -> list:
    """Run the host schema check on each database Django asks about (``check --database``)."""
    messages: list[checks.CheckMessage] = []
    for alias in databases or ():
        pending = pending_migrations(alias)
        if pending:
            # ``migrate`` runs the database checks before it creates the tables.
            messages.append(
                checks.Warning(
                    f"{pending} migration(s) are not applied to database {alias!r}; "
                    "the host schema is checked once they are.",
                    hint="Run python manage.py migrate.",
                    id="pfsync.W003",
                )
            )
            continue
        messages.extend(check_host_schema(alias))
    return messages


def pending_migrations(using: str) -> int:
    """How many migrations of the project are not applied yet (0 if it cannot tell)."""
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connections[using])
        targets = executor.loader.graph.leaf_nodes()
        return len(executor.migration_plan(targets))
    except DatabaseError:
        return 0


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """Check every pfsync setting against its registry rule before any work starts."""
    messages: list[checks.CheckMessage] = []
    wrong = set()
    for setting in SETTINGS:
        problem = setting.problem(setting.current())
        if problem:
            wrong.add(setting.name)
            where = (
                "the environment or the Django settings" if setting.env else "the Django settings"
            )
            messages.append(
                checks.Error(problem, hint=f"Set {setting.name} in {where}.", id="pfsync.E010")
            )
    tables = {} if "PFSYNC_TABLES" in wrong else pfsync_settings.PFSYNC_TABLES
    unknown = set(tables) - set(HOST_MODEL_KEYS)
    if unknown:
        messages.append(
            checks.Error(
                f"PFSYNC_TABLES has unknown keys: {', '.join(sorted(unknown))}.",
                hint=f"Use only {', '.join(HOST_MODEL_KEYS)}.",
                id="pfsync.E010",
            )
        )
    if (
        not pfsync_settings.PF_WEBHOOK_SECRET
        and pfsync_settings.PF_WEBHOOK_ALLOW_UNSIGNED
        and webhook_url_mounted()
    ):
        messages.append(unsigned_webhooks_warning())
    return messages


@checks.register(checks.Tags.security, deploy=True)
def check_credentials(app_configs: Any = None, **kwargs: Any) -> list:
    """Warn (with ``check --deploy``) when no API credentials are configured."""
    if pfsync_settings.PF_API_KEY and pfsync_settings.PF_API_SECRET:
        return []
    return [
        checks.Warning(
            "PF_API_KEY or PF_API_SECRET is not set: pf_sync cannot authenticate.",
            hint="Set both from Property Finder's Expert dashboard (or run pf_sandbox).",
            id="pfsync.W001",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def check_webhook_secret(app_configs: Any = None, **kwargs: Any) -> list:
    """Warn (with ``check --deploy``) when the webhook URL is mounted without a secret."""
    if pfsync_settings.PF_WEBHOOK_SECRET or not webhook_url_mounted():
        return []
    if pfsync_settings.PF_WEBHOOK_ALLOW_UNSIGNED:
        return []  # check_settings already warns, on every command
    return [unsigned_webhooks_warning()]


def unsigned_webhooks_warning() -> checks.Warning:
    """pfsync.W002: what happens to webhook events without PF_WEBHOOK_SECRET."""
    if pfsync_settings.PF_WEBHOOK_ALLOW_UNSIGNED:
        text = "webhook events are accepted without any signature"
    else:
        text = "webhook events are refused"
    return checks.Warning(
        f"PF_WEBHOOK_SECRET is not set: {text}.",
        hint="Set PF_WEBHOOK_SECRET and subscribe with the same secret.",
        id="pfsync.W002",
    )


def webhook_url_mounted() -> bool:
    """Whether the host mounted pfsync's webhook view in its URLs."""
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("pfsync:webhook")
    except NoReverseMatch:
        return False
    return True
