"""The column map in effect, table by table, as pf_schema prints it.

For each host table: every pfsync field and where it goes (the host column
and its real type, pfsync's own table, or nowhere), the extra columns and
their API paths, the defaults and the columns receivers fill; and for the
fields the host has no column for, the Django model fields a site could add
to its own model (ready to paste), as ``inspectdb`` does for a whole table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, models
from django.db.utils import DatabaseError

from pfsync_app.hostmap import FIELDS, KEPT, REF, HostMap, host_map
from pfsync_app.introspection import TableColumns, read_columns, site_defaults

#: Where pfsync keeps each kept field when the host has no column for it.
KEPT_IN = {
    ("property", "pf_id"): "pfsync_app_listingstate",
    ("user", "pf_user_id"): "pfsync_app_agentlink",
    ("user", "pf_public_profile_id"): "pfsync_app_agentlink",
    **{
        ("image", name): "pfsync_app_imagestate"
        for name in ("source_url", "position", "width", "height", "is_active")
    },
}
_REFERENCED = {"user": "user", "area": "area", "property": "property"}


@dataclass
class FieldLine:
    """One pfsync field of a table: where it goes, and the column's real type."""

    name: str
    column: str | None
    type: str  # the real column's type, "missing", "kept in <table>" or "not written"
    meaning: str


@dataclass
class TableReport:
    """What pf_schema says about one host table."""

    key: str
    table: str | None
    exists: bool = True
    fields: list[FieldLine] = field(default_factory=list)
    extra: list[tuple[str, str, str]] = field(default_factory=list)  # column, path, type
    defaults: list[tuple[str, str]] = field(default_factory=list)  # column, value as text
    receivers: list[str] = field(default_factory=list)
    paste: list[str] = field(default_factory=list)  # model fields a site could add

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "key": self.key,
            "table": self.table,
            "exists": self.exists,
            "fields": [vars(line) for line in self.fields],
            "extra": [{"column": c, "path": p, "type": t} for c, p, t in self.extra],
            "defaults": dict(self.defaults),
            "filled_by_receivers": self.receivers,
            "model_fields_to_add": self.paste,
        }


def schema_report(using: str = DEFAULT_DB_ALIAS, host: HostMap | None = None) -> list[TableReport]:
    """The map in effect for each host table, compared with the database ``using``."""
    host = host or host_map()
    reports = []
    for key in FIELDS:
        table = host[key]
        report = TableReport(key, table.table)
        reports.append(report)
        if not table.present:
            report.exists = False
            report.paste = [_paste_line(key, host, name) for name in _names(key)]
            continue
        try:
            columns = read_columns(table.table, using)
        except DatabaseError:
            columns = None
        report.exists = columns is not None
        columns = columns or TableColumns(table.table)
        site = dict(site_defaults(table.table))
        for host_field in FIELDS[key]:
            column = table.column(host_field.name)
            if column is None:
                kind = (
                    f"kept in {KEPT_IN[(key, host_field.name)]}"
                    if host_field.role == KEPT
                    else "not written"
                )
            elif column in columns:
                kind = columns[column].describe()
            else:
                kind = "missing"
            report.fields.append(FieldLine(host_field.name, column, kind, host_field.meaning))
            if column is None or column not in columns:
                report.paste.append(_paste_line(key, host, host_field.name))
        for column, path in table.extra.items():
            real = columns.get(column)
            report.extra.append((column, path, real.describe() if real else "missing"))
        filled = set(table.mapped().values()) | set(table.extra)
        unfilled = {column: value for column, value in site.items() if column not in filled}
        for column, value in {**unfilled, **table.defaults}.items():
            source = "map" if column in table.defaults else "site's model"
            report.defaults.append((column, f"{_value_text(value)} ({source})"))
        report.receivers = list(table.filled_by_receivers)
    return reports


def _names(key: str) -> list[str]:
    return [f.name for f in FIELDS[key] if f.name != "id"]


def _value_text(value: Any) -> str:
    """A default as pf_schema shows it: ``0``, ``''``, ``django.utils.timezone.now``."""
    owner = getattr(value, "__self__", None)
    if isinstance(owner, models.Field) and owner.has_default():
        value = owner.default  # the site's field.get_default: show the default itself
    if callable(value):
        name = getattr(value, "__qualname__", None) or repr(value)
        return f"{getattr(value, '__module__', '')}.{name}".lstrip(".")
    return repr(value)


def _paste_line(key: str, host: HostMap, name: str) -> str:
    """The Django model field a site could add to hold pfsync's field ``name``."""
    host_field = next(f for f in FIELDS[key] if f.name == name)
    if host_field.kind == REF:
        target = _model_label(host[host_field.to].table) or f"<your {host_field.to} model>"
        null = "" if name == "property" else "null=True, blank=True, "
        on_delete = "models.CASCADE" if name == "property" else "models.SET_NULL"
        return f"{name} = models.ForeignKey({target!r}, {null}on_delete={on_delete})"
    _, path, args, kwargs = host_field.build().deconstruct()
    parts = [repr(arg) for arg in args]
    for option, value in sorted(kwargs.items()):
        if option == "primary_key":
            continue
        text = (
            f"{value.__module__.rsplit('.', 1)[-1]}.{value.__name__}"
            if callable(value)
            else (repr(value))
        )
        parts.append(f"{option}={text}")
    return f"{name} = models.{path.rsplit('.', 1)[-1]}({', '.join(parts)})"


def _model_label(table: str | None) -> str | None:
    """``app_label.Model`` of the site's own model for ``table``, if one maps it."""
    for model in apps.get_models():
        if model._meta.db_table == table and model._meta.app_label != "pfsync_app":
            return model._meta.label
    return None
