"""System checks: the host schema pfsync writes into, and pfsync's settings.

Ids are stable; each message has a hint that tells the user what to change.
A clean ``check --database default`` means the first pf_sync writes rows.

- pfsync.E001  the database cannot be reached
- pfsync.E002  a host table is missing
- pfsync.E003  a column the map names is missing
- pfsync.E004  a NOT NULL column without a default that pfsync neither fills nor has a default for
- pfsync.E005  a mapped column's type cannot hold what pfsync writes into it
- pfsync.E006  the map gives a default to a UNIQUE column (every row would repeat it)
- pfsync.E007  the map's fallback agent is not a host user
- pfsync.E010  a setting has a wrong type or value (PFSYNC_HOST and PFSYNC_TABLES included)
- pfsync.W001  no Property Finder API credentials are configured
- pfsync.W002  webhooks: no signing secret
- pfsync.W003  migrations are pending, so the host schema is not checked yet (not said
               during migrate, which applies them)
- pfsync.W004  a column is shorter (or narrower) than the values pfsync may write
- pfsync.W005  the site has no column for a fact, and what it loses (said once, here)
- pfsync.W006  pfsync may have no value for a NOT NULL column without a default
- pfsync.W007  columns are to be filled by receivers, and no receiver is connected
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError

from pfsync_app.conf import DEFAULT_TABLES, SETTINGS, pfsync_settings
from pfsync_app.exceptions import first_line
from pfsync_app.hostmap import (
    BOOL,
    DATETIME,
    DECIMAL,
    ID,
    INT,
    KEPT,
    README_SECTION,
    REF,
    TABLE_KEYS,
    TEXT,
    HostField,
    HostMap,
    TableMap,
    host_map,
    read_host_map,
)
from pfsync_app.introspection import read_columns, site_defaults
from pfsync_app.words import plural, verb

HOST_MODEL_KEYS = tuple(DEFAULT_TABLES)

# What each kind of value pfsync writes can go into (column kinds of writers.fit).
_HOLDS = {
    "text": {"text"},
    "int": {"int", "decimal", "float", "text"},
    "decimal": {"decimal", "int", "float", "text"},
    "bool": {"bool", "int", "text"},
    "datetime": {"datetime", "date", "text"},
    "ref": {"int"},
}
_SIGNALS = {
    "user": "before_user_save",
    "property": "before_property_save",
    "image": "before_image_save",
}
# What a site without a column for a field loses (pfsync.W005).
_LOSSES = {
    ("property", "is_published"): (
        "a listing that Property Finder no longer returns cannot be hidden on the site"
    ),
    ("image", "is_active"): (
        "a photo removed from a listing stays on the site (pfsync remembers it is inactive; "
        "an after_image_save receiver can hide it)"
    ),
    ("property", "user"): "listings are saved without their agent",
}


def host_models() -> dict[str, Any]:
    """The unmanaged models that map the host's tables, by table key."""
    from pfsync_app.models import Agent, Area, Property, PropertyImage

    return {"area": Area, "user": Agent, "property": Property, "image": PropertyImage}


def value_kind(host: HostField) -> str:
    """The kind of value pfsync writes into a field's column (text, int, ...)."""
    if host.kind == ID:
        built = host.build()
        return TEXT if built.get_internal_type() == "CharField" else INT
    return {TEXT: "text", INT: "int", DECIMAL: "decimal", BOOL: "bool", DATETIME: "datetime"}.get(
        host.kind, "ref" if host.kind == REF else "text"
    )


def check_host_schema(
    using: str = DEFAULT_DB_ALIAS, host: HostMap | None = None
) -> list[checks.CheckMessage]:
    """Compare the column map (the one in effect, or ``host``) with the live database."""
    host = host or host_map()
    connection = connections[using]
    models = host_models()
    try:
        with connection.cursor() as cursor:
            tables = set(connection.introspection.table_names(cursor))
        messages: list[checks.CheckMessage] = []
        found = {}
        for key in TABLE_KEYS:
            table = host[key]
            model = models[key]
            if not table.present:
                continue
            name = table.table
            if name not in tables:
                messages.append(
                    checks.Error(
                        f"Host table {name!r} ({key}) does not exist in database {using!r}.",
                        hint=_missing_table_hint(key, name, model, tables),
                        obj=model,
                        id="pfsync.E002",
                    )
                )
                continue
            columns = read_columns(name, using)
            found[key] = columns
            references = _references(name, connection)
            messages.extend(_table_problems(table, model, columns, using, host, references))
        if "user" in found:
            messages.extend(_fallback_problems(host, models["user"], found["user"], using))
        messages.extend(_losses(host))
        return messages
    except DatabaseError as exc:
        return [
            checks.Error(
                f"Database {using!r} cannot be reached: {first_line(exc)}",
                hint="Check DATABASE_URL or POSTGRES_DSN, and that the server is running.",
                id="pfsync.E001",
            )
        ]


def _missing_table_hint(key: str, name: str, model: Any, tables: set[str]) -> str:
    """What to do about a missing host table: name the right one, or (areas) say there is none."""
    hint = (
        "Run the host site's migrations, or name the table that holds "
        f"{model._meta.verbose_name_plural} in PFSYNC_HOST[{key!r}]['table'] "
        f"(or PFSYNC_TABLES[{key!r}]; default {DEFAULT_TABLES[key]!r})"
    )
    if key == "user":
        # The default is a fixed name, not the site's AUTH_USER_MODEL: name its table.
        auth = get_user_model()._meta
        if auth.db_table in tables and auth.db_table != name:
            hint += (
                f"; the site's AUTH_USER_MODEL ({auth.label}) is table {auth.db_table!r}: "
                f"PFSYNC_HOST['user']['table'] = {auth.db_table!r}"
            )
    if key == "area":
        hint += "; a site with no areas table sets PFSYNC_HOST['area'] = None"
    return hint + "; python manage.py pf_schema shows the map in effect."


def _references(table: str, connection: Any) -> dict[str, str]:
    """The foreign-key columns of ``table``, each with the table it points at."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {
        c["columns"][0]: c["foreign_key"][0]
        for c in constraints.values()
        if c.get("foreign_key") and len(c["columns"]) == 1
    }


def _reference_field(table: TableMap, host: HostMap, target: str) -> HostField | None:
    """pfsync's reference field of ``table`` that points at host table ``target`` (property...)."""
    for field in table.fields():
        if field.kind == REF and field.to and host[field.to].table == target:
            return field
    return None


def _table_problems(
    table: TableMap,
    model: Any,
    columns: Any,
    using: str,
    site_map: HostMap,
    references: dict[str, str],
) -> list[checks.CheckMessage]:
    """What is wrong, or will go wrong, with one present host table.

    ``references`` are the table's foreign-key columns and the tables they point at: a
    NOT NULL one pointing at a table pfsync maps is pfsync's reference field under
    another name, and the hints say so.
    """
    key, name = table.key, columns.table
    where = f"PFSYNC_HOST[{key!r}]"
    messages: list[checks.CheckMessage] = []
    filled: set[str] = set()
    for host in table.fields():
        column = table.column(host.name)
        if column is None:
            continue
        filled.add(column)
        real = columns.get(column)
        if real is None:
            kept = (
                " (pfsync keeps it in its own table when it is switched off)"
                if host.role == KEPT
                else ""
            )
            hint = (
                f"Map {host.name!r} to the column that holds it, or switch it off with "
                f"None{kept}, in {where}['columns'] ({README_SECTION}); pfsync never "
                "changes the host's schema itself."
            )
            holding = [
                other
                for other, target in references.items()
                if host.kind == REF and host.to and target == site_map[host.to].table
            ]
            if len(holding) == 1:
                hint = (
                    f"{name}.{holding[0]} points at {site_map[host.to].table}: map pfsync's "
                    f"{host.name!r} field to it: {where}['columns'][{host.name!r}] = "
                    f"{holding[0]!r} ({README_SECTION})."
                )
            messages.append(
                checks.Error(
                    f"Column {name}.{column} is missing in database {using!r}: it is to hold "
                    f"pfsync's {host.name!r} ({host.meaning}).",
                    hint=hint,
                    obj=model,
                    id="pfsync.E003",
                )
            )
            continue
        kind = value_kind(host)
        if real.kind not in _HOLDS[kind]:
            messages.append(
                checks.Error(
                    f"Column {name}.{column} ({real.describe()}) cannot hold pfsync's "
                    f"{host.name!r}, which is {kind} ({host.meaning}).",
                    hint=(
                        f"Map {host.name!r} to a column of a fitting type, or switch it off "
                        f"with None, in {where}['columns'] ({README_SECTION})."
                    ),
                    obj=model,
                    id="pfsync.E005",
                )
            )
            continue
        messages.extend(_narrower(table, host, real, model))
        if host.may_be_empty and not real.null and not real.has_db_default:
            if host.name == "user" and table.fallback_agent is not None:
                continue
            if column in table.defaults or column in dict(site_defaults(name)):
                continue
            when = {
                "user": "whose agent is not a synced user (set a fallback_agent, or a default)",
                "location_name": "whose location is not linked yet",
                "cover_image": "without images",
                "price": "on request or without a price",
            }.get(host.name, f"without a {host.name}")
            messages.append(
                checks.Warning(
                    f"Column {name}.{column} is NOT NULL without a default, and pfsync may "
                    f"have no value for it: a listing {when} fails.",
                    hint=f"Give it a default in {where}['defaults'] ({README_SECTION}).",
                    obj=model,
                    id="pfsync.W006",
                )
            )
    for option, named in (
        ("extra", list(table.extra)),
        ("defaults", list(table.defaults)),
        ("filled_by_receivers", list(table.filled_by_receivers)),
    ):
        for column in named:
            if column not in columns:
                messages.append(
                    checks.Error(
                        f"Column {name}.{column}, named in {where}[{option!r}], is missing in "
                        f"database {using!r}.",
                        hint=f"Correct the column in {where}[{option!r}] ({README_SECTION}).",
                        obj=model,
                        id="pfsync.E003",
                    )
                )
            elif option == "defaults" and columns[column].unique:
                messages.append(
                    checks.Error(
                        f"Column {name}.{column} is UNIQUE, so a default from {where}['defaults'] "
                        "would be the same for every row.",
                        hint=(
                            f"Fill it in a {_SIGNALS.get(key, 'before_*_save')} receiver "
                            f"instead, and name it in {where}['filled_by_receivers'] "
                            f"({README_SECTION})."
                        ),
                        obj=model,
                        id="pfsync.E006",
                    )
                )
            if option != "defaults":
                filled.add(column)
    defaults = {**dict(site_defaults(name)), **table.defaults}
    for real in columns.columns.values():
        if (
            real.null
            or real.has_db_default
            or real.primary_key
            or real.name in filled
            or real.name in defaults
        ):
            continue
        signal = _SIGNALS.get(key, "before_*_save")
        hint = (
            f"Give it a default in {where}['defaults'], or fill it in a {signal} "
            f"receiver and name it in {where}['filled_by_receivers'] ({README_SECTION})."
        )
        target = references.get(real.name)
        pointing = _reference_field(table, site_map, target) if target else None
        if pointing is not None:
            # A foreign key to a table pfsync maps: it is pfsync's reference under another name.
            hint = (
                f"It points at {target}, which pfsync maps as {pointing.to!r}: map pfsync's "
                f"{pointing.name!r} field to this column: "
                f"{where}['columns'][{pointing.name!r}] = {real.name!r} ({README_SECTION})."
            )
        messages.append(
            checks.Error(
                f"Column {name}.{real.name} ({real.describe()}) has no default, and pfsync "
                "neither fills it nor has a default for it: every row pfsync inserts would fail.",
                hint=hint,
                obj=model,
                id="pfsync.E004",
            )
        )
    if table.filled_by_receivers and key in _SIGNALS:
        from pfsync_app import signals

        if not getattr(signals, _SIGNALS[key]).has_listeners():
            messages.append(
                checks.Warning(
                    f"{where}['filled_by_receivers'] names {', '.join(table.filled_by_receivers)}, "
                    f"but no receiver is connected to {_SIGNALS[key]}.",
                    hint=f"Connect the site's receiver ({README_SECTION}).",
                    obj=model,
                    id="pfsync.W007",
                )
            )
    return messages


def _narrower(table: TableMap, host: HostField, real: Any, model: Any) -> list:
    """pfsync.W004 when a column is shorter or narrower than what pfsync may write."""
    label = real.label
    text = None
    if value_kind(host) == "text" and real.kind == "text" and real.max_length:
        longest = host.max_length
        if (table.key, host.name) in (("image", "image"), ("property", "cover_image")):
            folder = str(pfsync_settings.PF_IMAGE_UPLOAD_DIR).strip("/")
            longest = len(folder) + 1 + 32 + len(".jpeg")
        if longest is None or longest > real.max_length:
            identifier = host.kind == ID or host.name in ("image", "source_url", "cover_image")
            what = (
                "one that is longer fails its record (ids and file names are never cut)"
                if identifier
                else "longer values are cut, with a warning"
            )
            text = (
                f"Column {label} holds {real.max_length} characters and pfsync may write "
                f"{longest or 'any number of'} into it ({host.name!r}): {what}."
            )
    elif real.kind == "decimal" and value_kind(host) == "decimal":
        built = host.build()
        if real.digits and built.max_digits - built.decimal_places > real.digits - (
            real.scale or 0
        ):
            text = (
                f"Column {label} ({real.describe()}) is narrower than pfsync's {host.name!r} "
                f"(numeric({built.max_digits},{built.decimal_places})): larger values become empty."
            )
    elif real.kind == "int" and value_kind(host) == "decimal":
        text = (
            f"Column {label} ({real.describe()}) holds whole numbers: pfsync's {host.name!r} is "
            "rounded half-up, with a warning when it had a fraction."
        )
    if text is None:
        return []
    return [
        checks.Warning(
            text,
            hint=f"Widen the column if that matters, or map another one ({README_SECTION}).",
            obj=model,
            id="pfsync.W004",
        )
    ]


def _fallback_problems(
    host: HostMap, agents: Any, columns: Any, using: str
) -> list[checks.CheckMessage]:
    """pfsync.E007 when the map's fallback agent names no host user."""
    reference = host["property"].fallback_agent
    if reference is None:
        return []
    users = host["user"]
    query = agents._base_manager.using(using)
    if isinstance(reference, int):
        exists = query.filter(pk=reference).exists()
    elif users.holds("username") and users.column("username") in columns:
        exists = query.filter(username=reference).exists()
    elif users.holds("email") and users.column("email") in columns:
        exists = query.filter(email__iexact=reference).exists()
    else:
        exists = False
    if exists:
        return []
    return [
        checks.Error(
            f"PFSYNC_HOST['property']['fallback_agent'] is {reference!r}, and no host user in "
            f"{users.table} has that {_what_names(reference)}.",
            hint=f"Name an existing user by id or username ({README_SECTION}).",
            obj=agents,
            id="pfsync.E007",
        )
    ]


def _what_names(reference: int | str) -> str:
    return "id" if isinstance(reference, int) else "username"


def _losses(host: HostMap) -> list[checks.CheckMessage]:
    """pfsync.W005: what the site loses for each fact it has no column for."""
    messages = []
    for (key, name), loss in _LOSSES.items():
        table = host[key]
        if table.present and not table.holds(name):
            messages.append(
                checks.Warning(
                    f"{table.table} has no column for pfsync's {name!r} "
                    f"(PFSYNC_HOST[{key!r}]['columns'][{name!r}] is None): {loss}.",
                    hint=f"Map it to a column if the site has one ({README_SECTION}).",
                    id="pfsync.W005",
                )
            )
    prop = host["property"]
    if not prop.holds("area") and not prop.holds("location_name"):
        messages.append(
            checks.Warning(
                f"{prop.table} has no column for a listing's area or its location's name: "
                "listings are saved without where they are.",
                hint=(
                    "Map 'area' (with a host areas table) or 'location_name' to a column "
                    f"({README_SECTION})."
                ),
                id="pfsync.W005",
            )
        )
    return messages


@checks.register(checks.Tags.database)
def check_database(databases: Iterable[str] | None = None, **kwargs: Any) -> list:
    """Run the host schema check on each database Django asks about (``check --database``)."""
    messages: list[checks.CheckMessage] = []
    for alias in databases or ():
        pending = pending_migrations(alias)
        if pending:
            # ``migrate`` runs the database checks before it creates the tables: the host
            # schema waits, and migrate itself is not told to run migrate.
            if migrate_is_running():
                continue
            messages.append(
                checks.Warning(
                    f"{plural(pending, 'migration')} {verb(pending, 'is', 'are')} not applied "
                    f"to database {alias!r}; the host schema is checked once they are.",
                    hint="Run python manage.py migrate.",
                    id="pfsync.W003",
                )
            )
            continue
        messages.extend(check_host_schema(alias))
    return messages


def migrate_is_running() -> bool:
    """Whether Django's ``migrate`` (or a command built on it) is what runs the checks now.

    Django tells a check nothing of the command that asked for it, so the call
    stack is looked at: a ``migrate`` command object in it. Overriding ``migrate``
    instead would take the command from a site (or an app) that overrides it.
    """
    from django.core.management.commands.migrate import Command as Migrate

    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Migrate):
            return True
        frame = frame.f_back
    return False


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
    if "PFSYNC_HOST" not in wrong and "PFSYNC_TABLES" not in wrong:
        for problem in read_host_map().problems:
            messages.append(checks.Error(problem, hint=f"See {README_SECTION}.", id="pfsync.E010"))
    if (
        not pfsync_settings.PF_WEBHOOK_SECRET
        and pfsync_settings.PF_WEBHOOK_ALLOW_UNSIGNED
        and webhook_url_mounted()
    ):
        messages.append(unsigned_webhooks_warning())
    return messages


def one_sentence(messages: list[checks.CheckMessage]) -> str:
    """The first of serious check messages as one sentence, its hint after it, and how many more."""
    first = messages[0]
    others = len(messages) - 1
    more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
    hint = f" {first.hint}" if first.hint else ""
    return f"{first.msg.rstrip('.')}{more}.{hint}"


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
