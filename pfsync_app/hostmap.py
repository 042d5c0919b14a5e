"""The host schema pfsync writes into, and how a site maps it onto its own tables.

pfsync writes a fixed set of facts (its *fields*: a property's title, an
image's source URL...). By default each one is the column of the same name in
the tables README.md's "Plugging into your schema" lists. A site whose tables
differ says so in one setting, ``PFSYNC_HOST``: per table, its name, which
host column holds each field (or ``None`` when it has none), the defaults of
columns pfsync does not fill, extra columns filled from the API record, and the
columns the site's own signal receivers fill::

    PFSYNC_HOST = {
        "user": {"table": "accounts_account", "columns": {"pf_user_id": None, ...}},
        "property": {
            "table": "listings_listing",
            "columns": {"user": "owner_id", "area": None, "cover_image": "image", ...},
            "defaults": {"views": 0},
            "extra": {"permit_number": "compliance.listingAdvertisementNumber"},
            "fallback_agent": "admin",
        },
        "image": {"table": "listings_listingimage", "columns": {"source_url": None, ...}},
        "area": None,
    }

A field switched off is simply not written, except the *kept* ones (Property
Finder ids, an image's URL, position, size and active flag): pfsync keeps those
in its own tables, so matching and incremental runs work the same. ``PFSYNC_TABLES``
still names tables; a ``table`` in ``PFSYNC_HOST`` wins over it.

This module is pure: it reads settings and describes fields, it touches no
database. ``models`` builds the unmanaged models from ``host_map()``, the
writers use it through ``writers.columns``, and ``checks`` reports its problems.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.utils import timezone

from pfsync_app.conf import DEFAULT_TABLES, pfsync_settings

TABLE_KEYS = ("area", "user", "property", "image")

#: What the README section that explains the map is called (hints point at it).
README_SECTION = 'README.md, section "Plugging into your schema"'

# A field's role when a site has no column for it.
REQUIRED = "required"  # pfsync cannot work without it: it cannot be switched off
KEPT = "kept"  # pfsync keeps it in its own table when the host has no column
OPTIONAL = "optional"  # not written when the host has no column
DERIVED = "derived"  # off unless the site names a column for it

# The kinds of value pfsync writes, for the check of a column's type.
ID, TEXT, INT, DECIMAL, BOOL, DATETIME, REF = (
    "id",
    "text",
    "int",
    "decimal",
    "bool",
    "datetime",
    "ref",
)


@dataclass(frozen=True)
class HostField:
    """One fact pfsync writes into a host table: its default column, type and meaning."""

    name: str
    kind: str
    meaning: str
    build: Callable[[], models.Field] | None = None  # None for a reference (built by models)
    role: str = OPTIONAL
    column: str = ""  # the default column; the name itself, or name + "_id" for a reference
    auth: bool = False  # a column of Django's auth user, absent from a separate agents table
    to: str = ""  # for a reference: the table key it points at
    may_be_empty: bool = False  # whether pfsync may have no value for it (writes NULL)
    longest: int | None = None  # the longest text pfsync writes, when less than the column's

    @property
    def default_column(self) -> str:
        """The column HOST_SCHEMA gives it."""
        if self.column:
            return self.column
        return f"{self.name}_id" if self.kind == REF else self.name

    @property
    def max_length(self) -> int | None:
        """The longest text pfsync may write into it (its HOST_SCHEMA length), if text."""
        if self.longest is not None:
            return self.longest
        if self.build is None:
            return None
        return getattr(self.build(), "max_length", None)


def _char(length: int, **kwargs: Any) -> Callable[[], models.Field]:
    return lambda: models.CharField(max_length=length, blank=True, default="", **kwargs)


def _text() -> models.Field:
    return models.TextField(blank=True, default="")


def _int(**kwargs: Any) -> Callable[[], models.Field]:
    return lambda: models.IntegerField(null=True, blank=True, **kwargs)


def _small() -> models.Field:
    return models.SmallIntegerField(null=True, blank=True)


def _decimal(digits: int) -> Callable[[], models.Field]:
    return lambda: models.DecimalField(max_digits=digits, decimal_places=2, null=True, blank=True)


def _bool(default: bool) -> Callable[[], models.Field]:
    return lambda: models.BooleanField(default=default)


def _when() -> models.Field:
    return models.DateTimeField(default=timezone.now)


def _pk() -> models.Field:
    return models.BigAutoField(primary_key=True)


FIELDS: dict[str, tuple[HostField, ...]] = {
    "area": (
        HostField("id", ID, "the area's primary key", _pk, REQUIRED),
        HostField(
            "name", TEXT, "the area's name", lambda: models.CharField(max_length=255), REQUIRED
        ),
        HostField(
            "pf_location_id",
            ID,
            "Property Finder location id (`location.id` of a listing)",
            _int(unique=True),
            REQUIRED,
        ),
    ),
    "user": (
        HostField("id", ID, "the user's primary key", _pk, REQUIRED),
        HostField(
            "password",
            TEXT,
            "an unusable password for users pfsync creates; never changed",
            lambda: models.CharField(max_length=128),
            auth=True,
        ),
        HostField(
            "last_login",
            DATETIME,
            "never written",
            lambda: models.DateTimeField(null=True, blank=True),
            auth=True,
            may_be_empty=True,
        ),
        HostField(
            "is_superuser",
            BOOL,
            "false for users pfsync creates; never changed",
            _bool(False),
            auth=True,
        ),
        HostField(
            "username",
            TEXT,
            "made from the e-mail for users pfsync creates",
            lambda: models.CharField(max_length=150, unique=True),
            auth=True,
        ),
        HostField("first_name", TEXT, "`firstName`", _char(150)),
        HostField("last_name", TEXT, "`lastName`", _char(150)),
        HostField(
            "email", TEXT, "`email` (users are matched by it when not linked yet)", _char(254)
        ),
        HostField(
            "is_staff",
            BOOL,
            "false for users pfsync creates; never changed",
            _bool(False),
            auth=True,
        ),
        HostField("is_active", BOOL, "true for users pfsync creates", _bool(True), auth=True),
        HostField(
            "date_joined",
            DATETIME,
            "set when pfsync creates the user",
            lambda: models.DateTimeField(default=timezone.now),
            auth=True,
        ),
        HostField("phone", TEXT, "`mobile`, else `publicProfile.phone`", _char(32)),
        HostField("role", TEXT, "`role.baseRoleKey` (agent, admin, ...)", _char(32)),
        HostField("pf_user_id", ID, "Property Finder user `id`", _int(unique=True), KEPT),
        HostField(
            "pf_public_profile_id",
            ID,
            "`publicProfile.id`; listings point at it through `assignedTo.id`",
            _int(unique=True),
            KEPT,
            may_be_empty=True,
        ),
    ),
    "property": (
        HostField("id", ID, "the property's primary key", _pk, REQUIRED),
        HostField(
            "pf_id",
            ID,
            "Property Finder listing `id`",
            lambda: models.CharField(max_length=64, null=True, blank=True, unique=True),
            KEPT,
        ),
        HostField("reference", TEXT, "`reference`", _char(64)),
        HostField(
            "user",
            REF,
            "the agent: the user whose public profile is `assignedTo.id`",
            to="user",
            may_be_empty=True,
        ),
        HostField("area", REF, "the area linked to `location.id`", to="area", may_be_empty=True),
        HostField("title", TEXT, "`title.en`", _char(255)),
        HostField("title_ar", TEXT, "`title.ar`", _char(255)),
        HostField("description", TEXT, "`description.en`", _text),
        HostField("description_ar", TEXT, "`description.ar`", _text),
        HostField("category", TEXT, "`category` (residential, commercial)", _char(32)),
        HostField("property_type", TEXT, "`type` (apartment, villa, ...)", _char(32)),
        HostField(
            "status_type",
            TEXT,
            "`sale` when `price.type` is sale, else `rent`",
            _char(16),
            longest=4,
        ),
        HostField(
            "price",
            DECIMAL,
            "`price.amounts[price.type]`; empty when on request or absent",
            _decimal(14),
            may_be_empty=True,
        ),
        HostField(
            "price_period", TEXT, "`price.type` (sale, yearly, monthly, weekly, daily)", _char(16)
        ),
        HostField("bedrooms", INT, '`bedrooms`: "studio" is 0', _small, may_be_empty=True),
        HostField("bathrooms", INT, '`bathrooms`: "none" is 0', _small, may_be_empty=True),
        HostField("size", DECIMAL, "`size`", _decimal(12), may_be_empty=True),
        HostField("furnishing", TEXT, "`furnishingType`", _char(32)),
        HostField(
            "is_published",
            BOOL,
            "live on Property Finder; false once a listing is no longer returned",
            _bool(False),
        ),
        HostField(
            "pf_updated_at",
            DATETIME,
            "`updatedAt`",
            lambda: models.DateTimeField(null=True, blank=True),
            may_be_empty=True,
        ),
        HostField("created_at", DATETIME, "set on insert", _when),
        HostField("updated_at", DATETIME, "set on every update", _when),
        HostField(
            "cover_image",
            TEXT,
            "the storage name of the first image (a site's main image column)",
            _char(255),
            DERIVED,
            may_be_empty=True,
        ),
        HostField(
            "location_name",
            TEXT,
            "the name of the listing's location (its area's, or the one given to pf_areas link)",
            _char(255),
            DERIVED,
            may_be_empty=True,
        ),
    ),
    "image": (
        HostField("id", ID, "the image's primary key", _pk, REQUIRED),
        HostField("property", REF, "the property", role=REQUIRED, to="property"),
        HostField(
            "image",
            TEXT,
            "the file's storage name, e.g. `property_images/3f0c...e1.jpg`",
            lambda: models.CharField(max_length=255),
            REQUIRED,
        ),
        HostField(
            "source_url",
            TEXT,
            "the URL it was downloaded from (`media.images[i].original.url`)",
            _char(1024),
            KEPT,
        ),
        HostField(
            "position", INT, "index in `media.images`", lambda: models.IntegerField(default=0), KEPT
        ),
        HostField(
            "width", INT, "from the API, else from the file", _int(), KEPT, may_be_empty=True
        ),
        HostField(
            "height", INT, "from the API, else from the file", _int(), KEPT, may_be_empty=True
        ),
        HostField(
            "is_active",
            BOOL,
            "false once the image is gone from the listing (the row and file stay)",
            _bool(True),
            KEPT,
        ),
        HostField("created_at", DATETIME, "set on insert", _when),
    ),
}

_BY_NAME = {key: {f.name: f for f in fields} for key, fields in FIELDS.items()}

#: The options each table's entry of PFSYNC_HOST accepts.
TABLE_OPTIONS = {
    "area": ("table", "columns", "defaults", "filled_by_receivers"),
    "user": ("table", "columns", "defaults", "extra", "filled_by_receivers", "auth"),
    "property": ("table", "columns", "defaults", "extra", "filled_by_receivers", "fallback_agent"),
    "image": ("table", "columns", "defaults", "filled_by_receivers"),
}


def host_field(key: str, name: str) -> HostField:
    """The field ``name`` of table ``key`` (KeyError when pfsync has none of that name)."""
    return _BY_NAME[key][name]


@dataclass(frozen=True)
class TableMap:
    """One host table as the site maps it: its name and where each pfsync field lives."""

    key: str
    table: str | None  # None: the site has no such table (areas only)
    columns: Mapping[str, str | None]  # every pfsync field -> host column, or None
    defaults: Mapping[str, Any] = field(default_factory=dict)  # host column -> INSERT default
    extra: Mapping[str, str] = field(default_factory=dict)  # host column -> dotted API path
    filled_by_receivers: tuple[str, ...] = ()
    fallback_agent: int | str | None = None

    @property
    def present(self) -> bool:
        """Whether the site has this table at all."""
        return self.table is not None

    def fields(self) -> tuple[HostField, ...]:
        """Every pfsync field of this table, in the contract's order."""
        return FIELDS[self.key]

    def column(self, name: str) -> str | None:
        """The host column holding field ``name``, or None when the host has none."""
        return self.columns.get(name)

    def holds(self, name: str) -> bool:
        """Whether a host column holds field ``name``."""
        return self.present and self.columns.get(name) is not None

    def kept(self, name: str) -> bool:
        """Whether pfsync keeps field ``name`` in its own table (the host has no column)."""
        return host_field(self.key, name).role == KEPT and not self.holds(name)

    def mapped(self) -> dict[str, str]:
        """pfsync field -> host column, for the fields the host holds."""
        return {name: column for name, column in self.columns.items() if column is not None}

    def field_of_column(self, column: str) -> str | None:
        """The pfsync field a host column holds, or None."""
        for name, mapped in self.columns.items():
            if mapped == column:
                return name
        return None


@dataclass(frozen=True)
class HostMap:
    """The map of every host table, and what is wrong with the setting (one sentence each)."""

    tables: Mapping[str, TableMap]
    problems: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> TableMap:
        return self.tables[key]


def _default_columns(key: str, auth: bool = True) -> dict[str, str | None]:
    columns: dict[str, str | None] = {}
    for host in FIELDS[key]:
        off = host.role == DERIVED or (host.auth and not auth)
        columns[host.name] = None if off else host.default_column
    return columns


def read_host_map(host: Any = None, tables: Any = None) -> HostMap:
    """Parse PFSYNC_HOST (and PFSYNC_TABLES) into a HostMap; mistakes become ``problems``.

    What cannot be read is left at its default, so the models can always be built
    and the check can say what is wrong.
    """
    host = pfsync_settings.PFSYNC_HOST if host is None else host
    tables = pfsync_settings.PFSYNC_TABLES if tables is None else tables
    problems: list[str] = []
    if not isinstance(host, Mapping):
        host = {}  # the settings check says so (pfsync.E010)
    if not isinstance(tables, Mapping):
        tables = {}
    for key in host:
        if key not in TABLE_KEYS:
            problems.append(
                f"PFSYNC_HOST has an unknown table {key!r}; use {', '.join(TABLE_KEYS)}."
            )
    parsed: dict[str, TableMap] = {}
    for key in TABLE_KEYS:
        names = {**DEFAULT_TABLES, **{k: v for k, v in tables.items() if isinstance(v, str)}}
        parsed[key] = _read_table(key, host.get(key, {}), names[key], problems)
    if not parsed["area"].present:
        columns = dict(parsed["property"].columns)
        columns["area"] = None
        parsed["property"] = _replace(parsed["property"], columns=columns)
    return HostMap(parsed, tuple(problems))


def _replace(table: TableMap, **changes: Any) -> TableMap:
    values = {
        "key": table.key,
        "table": table.table,
        "columns": table.columns,
        "defaults": table.defaults,
        "extra": table.extra,
        "filled_by_receivers": table.filled_by_receivers,
        "fallback_agent": table.fallback_agent,
    }
    values.update(changes)
    return TableMap(**values)


def _read_table(key: str, entry: Any, table: str, problems: list[str]) -> TableMap:
    where = f"PFSYNC_HOST[{key!r}]"
    if entry is None:
        if key == "area":
            return TableMap(key, None, {name: None for name in _BY_NAME[key]})
        problems.append(f"{where} cannot be None: pfsync cannot work without this table.")
        entry = {}
    if not isinstance(entry, Mapping):
        problems.append(f"{where} must be a dict of table, columns, defaults...; got {entry!r}.")
        entry = {}
    allowed = TABLE_OPTIONS[key]
    for option in entry:
        if option not in allowed:
            problems.append(f"{where} has an unknown key {option!r}; use {', '.join(allowed)}.")
    if "table" in entry:
        if entry["table"] is None and key == "area":
            return TableMap(key, None, {name: None for name in _BY_NAME[key]})
        if isinstance(entry["table"], str) and entry["table"].strip():
            table = entry["table"].strip()
        else:
            problems.append(f"{where}['table'] must be a table name, got {entry['table']!r}.")
    auth = entry.get("auth", True)
    if not isinstance(auth, bool):
        problems.append(f"{where}['auth'] must be true or false, got {auth!r}.")
        auth = True
    columns = _default_columns(key, auth)
    given_columns = entry.get("columns", {})
    if not isinstance(given_columns, Mapping):
        problems.append(f"{where}['columns'] must be a dict, got {given_columns!r}.")
        given_columns = {}
    for name, column in given_columns.items():
        if name not in _BY_NAME[key]:
            problems.append(
                f"{where}['columns'] names {name!r}, which is not a pfsync field of the {key} "
                f"table (its fields: {', '.join(_BY_NAME[key])})."
            )
            continue
        if column is not None and not _is_column_name(column):
            problems.append(
                f"{where}['columns'][{name!r}] must be a column name or None, got {column!r}."
            )
            continue
        if column is None and host_field(key, name).role == REQUIRED:
            problems.append(
                f"{where}['columns'][{name!r}] cannot be None: pfsync cannot work without it."
            )
            continue
        columns[name] = column
    seen: dict[str, str] = {}
    for name, column in columns.items():
        if column is None:
            continue
        if column in seen:
            problems.append(
                f"{where}['columns'] puts both {seen[column]!r} and {name!r} into column "
                f"{column!r}; one column holds one field."
            )
            columns[name] = None
            continue
        seen[column] = name
    defaults = _read_dict(entry, "defaults", where, problems)
    extra = _read_dict(entry, "extra", where, problems)
    for column, path in list(extra.items()):
        if not isinstance(path, str) or not path.strip() or not _is_column_name(column):
            problems.append(
                f"{where}['extra'][{column!r}] must map a column name to a dotted path of the "
                f"API record (e.g. 'compliance.listingAdvertisementNumber'), got {path!r}."
            )
            del extra[column]
        elif column in seen:
            problems.append(
                f"{where}['extra'] fills column {column!r}, which already holds pfsync's "
                f"{seen[column]!r}."
            )
            del extra[column]
    receivers = entry.get("filled_by_receivers", ())
    if isinstance(receivers, str) or not all(_is_column_name(c) for c in receivers or ()):
        problems.append(
            f"{where}['filled_by_receivers'] must be a list of column names, got {receivers!r}."
        )
        receivers = ()
    fallback = entry.get("fallback_agent")
    if fallback is not None and (
        isinstance(fallback, bool)
        or not isinstance(fallback, int | str)
        or (isinstance(fallback, str) and not fallback.strip())
    ):
        problems.append(
            f"{where}['fallback_agent'] must be a username or a user id, got {fallback!r}."
        )
        fallback = None
    return TableMap(
        key=key,
        table=table,
        columns=columns,
        defaults={k: v for k, v in defaults.items() if _is_column_name(k)},
        extra=extra,
        filled_by_receivers=tuple(receivers or ()),
        fallback_agent=fallback.strip() if isinstance(fallback, str) else fallback,
    )


def _read_dict(entry: Mapping, option: str, where: str, problems: list[str]) -> dict[str, Any]:
    value = entry.get(option, {})
    if not isinstance(value, Mapping):
        problems.append(f"{where}[{option!r}] must be a dict, got {value!r}.")
        return {}
    for column in value:
        if not _is_column_name(column):
            problems.append(f"{where}[{option!r}] has {column!r}, which is not a column name.")
    return dict(value)


def _is_column_name(value: Any) -> bool:
    # "__" would read as a lookup in the ORM.
    return isinstance(value, str) and bool(value.strip()) and "__" not in value


_current: dict[str, Any] = {}


def host_map() -> HostMap:
    """The map in effect, read from settings once per process (the models are built from it)."""
    if "map" not in _current:
        _current["map"] = read_host_map()
    return _current["map"]


def resolve_path(record: Mapping[str, Any] | None, path: str) -> Any:
    """The value at a dotted ``path`` of an API record (``price.amounts.yearly``), or None.

    A number in the path indexes a list (``media.images.0.original.url``).
    """
    value: Any = record
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is None:
            return None
    return value
