"""The real columns of the host's tables, read from the database (and the site's own models).

``read_columns`` introspects one table: each column's kind of value, length,
precision, range, nullability, default and uniqueness, as ``Column``.
``model_columns`` describes one of pfsync's own tables from its model, and
``site_defaults`` says what the site's own Django model for a table writes into
a column it is given nothing for. The checks (``checks``) and the fit rule
(``writers.fit``) read the same ``Column``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Model
from django.utils import timezone

# Column kinds (what a value is converted to).
TEXT, INT, DECIMAL, FLOAT, BOOL, DATETIME, DATE, JSON, OTHER = (
    "text",
    "int",
    "decimal",
    "float",
    "bool",
    "datetime",
    "date",
    "json",
    "other",
)

# Django's field types (as introspection names them) by the kind of value they hold.
_KINDS = {
    "CharField": TEXT,
    "TextField": TEXT,
    "SlugField": TEXT,
    "EmailField": TEXT,
    "URLField": TEXT,
    "FileField": TEXT,
    "ImageField": TEXT,
    "FilePathField": TEXT,
    "GenericIPAddressField": TEXT,
    "SmallIntegerField": INT,
    "IntegerField": INT,
    "BigIntegerField": INT,
    "PositiveSmallIntegerField": INT,
    "PositiveIntegerField": INT,
    "PositiveBigIntegerField": INT,
    "SmallAutoField": INT,
    "AutoField": INT,
    "BigAutoField": INT,
    "ForeignKey": INT,
    "OneToOneField": INT,
    "DecimalField": DECIMAL,
    "FloatField": FLOAT,
    "BooleanField": BOOL,
    "NullBooleanField": BOOL,
    "DateTimeField": DATETIME,
    "DateField": DATE,
    "JSONField": JSON,
}


@dataclass(frozen=True)
class Column:
    """One real column: what it holds, how much, and what happens without a value."""

    table: str
    name: str
    kind: str
    field_type: str = ""  # Django's name of the column's type (introspection's guess)
    max_length: int | None = None
    digits: int | None = None
    scale: int | None = None
    low: int | None = None
    high: int | None = None
    null: bool = True
    db_default: str | None = None  # the default's SQL expression, when the column has one
    auto: bool = False  # filled by the database itself (a serial or identity primary key)
    unique: bool = False
    primary_key: bool = False

    @property
    def label(self) -> str:
        """``table.column`` as messages name it."""
        return f"{self.table}.{self.name}"

    @property
    def has_db_default(self) -> bool:
        """Whether the database fills the column when an INSERT leaves it out."""
        return self.auto or self.db_default is not None

    def describe(self) -> str:
        """The column's type as a person reads it: ``varchar(100) NOT NULL``."""
        text = {
            TEXT: f"varchar({self.max_length})" if self.max_length else "text",
            INT: "integer",
            DECIMAL: f"numeric({self.digits},{self.scale})" if self.digits else "numeric",
            FLOAT: "float",
            BOOL: "boolean",
            DATETIME: "timestamp",
            DATE: "date",
            JSON: "json",
        }.get(self.kind, self.field_type or "other")
        if self.kind == INT and self.field_type.startswith("Small"):
            text = "smallint"
        elif self.kind == INT and self.field_type.startswith("Big"):
            text = "bigint"
        if not self.null:
            text += " NOT NULL"
        if self.db_default is not None:
            text += f" DEFAULT {self.db_default}"
        return text


@dataclass
class TableColumns:
    """The real columns of one table, by name."""

    table: str
    columns: dict[str, Column] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> Column:
        return self.columns[name]

    def get(self, name: str) -> Column | None:
        """The column ``name``, or None when the table has none."""
        return self.columns.get(name)


def read_columns(table: str, using: str = DEFAULT_DB_ALIAS) -> TableColumns | None:
    """Introspect ``table`` now: its columns, or None when it does not exist."""
    connection = connections[using]
    introspection = connection.introspection
    # In a transaction like every other read: should the connection break here, leaving
    # the block drops it, so the run can still say so on a new one.
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if table not in introspection.table_names(cursor):
            return None
        description = introspection.get_table_description(cursor, table)
        constraints = introspection.get_constraints(cursor, table)
    unique = {
        c["columns"][0]
        for c in constraints.values()
        if (c["unique"] or c["primary_key"]) and len(c["columns"]) == 1
    }
    primary = {
        c["columns"][0] for c in constraints.values() if c["primary_key"] and len(c["columns"]) == 1
    }
    found = TableColumns(table)
    for info in description:
        try:
            field_type = introspection.get_field_type(info.type_code, info)
        except KeyError:
            field_type = ""
        if isinstance(field_type, tuple):  # some backends add field parameters
            field_type = field_type[0]
        kind = _KINDS.get(field_type, OTHER)
        low = high = None
        if kind == INT:
            low, high = integer_range(connection, field_type)
        is_pk = info.name in primary or bool(getattr(info, "pk", False))
        auto = bool(getattr(info, "is_autofield", False)) or (
            is_pk and field_type in ("AutoField", "BigAutoField", "SmallAutoField")
        )
        default = getattr(info, "default", None)
        size = info.display_size if kind == TEXT and field_type != "TextField" else None
        found.columns[info.name] = Column(
            table=table,
            name=info.name,
            kind=kind,
            field_type=field_type,
            max_length=int(size) if size and int(size) > 0 else None,
            digits=info.precision if kind == DECIMAL else None,
            scale=info.scale if kind == DECIMAL else None,
            low=low,
            high=high,
            null=bool(info.null_ok),
            db_default=None if default is None else str(default),
            auto=auto,
            unique=info.name in unique,
            primary_key=is_pk,
        )
    return found


def integer_range(connection: Any, field_type: str) -> tuple[int | None, int | None]:
    """The smallest and largest whole number a column of this type holds.

    SQLite stores any 64-bit number in any integer column; the range of the
    declared type (smallint, integer...) is used there too, so a value fits the
    same way on every database.
    """
    ranges = BaseDatabaseOperations.integer_field_ranges
    if connection.vendor == "sqlite" and field_type in ranges:
        return ranges[field_type]
    try:
        return connection.ops.integer_field_range(field_type)
    except KeyError:
        return connection.ops.integer_field_range("BigIntegerField")


def model_columns(model: type[Model], using: str = DEFAULT_DB_ALIAS) -> TableColumns:
    """The columns of one of pfsync's own tables, from its model (no introspection needed)."""
    connection = connections[using]
    found = TableColumns(model._meta.db_table)
    for model_field in model._meta.concrete_fields:
        field_type = model_field.get_internal_type()
        kind = _KINDS.get(field_type, OTHER)
        low = high = None
        if kind == INT:
            low, high = integer_range(connection, field_type)
        found.columns[model_field.column] = Column(
            table=found.table,
            name=model_field.column,
            kind=kind,
            field_type=field_type,
            max_length=getattr(model_field, "max_length", None) if kind == TEXT else None,
            digits=getattr(model_field, "max_digits", None),
            scale=getattr(model_field, "decimal_places", None),
            low=low,
            high=high,
            null=model_field.null,
            unique=model_field.unique,
            primary_key=model_field.primary_key,
            auto=model_field.primary_key and kind == INT,
        )
    return found


@cache
def site_defaults(table: str) -> tuple[tuple[str, Any], ...]:
    """(column, default) for each column the site's own Django model for ``table`` fills.

    What the site's model writes into a column on INSERT when it is given
    nothing: its ``default`` (a callable, evaluated per row), ``auto_now`` or
    ``auto_now_add``, or Django's empty string for a NOT NULL text field (never
    for a UNIQUE one: a receiver must fill that). Empty when no model of the
    site maps the table.
    """
    for model in apps.get_models():
        if (
            model._meta.db_table != table
            or model._meta.app_label == "pfsync_app"
            or model._meta.proxy
        ):
            continue
        defaults = []
        for site_field in model._meta.concrete_fields:
            if site_field.primary_key or site_field.generated:
                continue
            default = default_of(site_field)
            if default is not None:
                defaults.append((site_field.column, default))
        return tuple(defaults)
    return ()


def default_of(site_field: models.Field) -> Any:
    """What a site's model writes into ``site_field`` when given nothing, or None."""
    if getattr(site_field, "auto_now", False) or getattr(site_field, "auto_now_add", False):
        is_date = isinstance(site_field, models.DateField) and not isinstance(
            site_field, models.DateTimeField
        )
        return date.today if is_date else timezone.now
    if site_field.has_default():
        return site_field.get_default
    text = isinstance(site_field, models.CharField | models.TextField | models.FileField)
    if text and not site_field.null and not site_field.unique:
        return ""
    return None
