"""One host table as the writers use it: the map, the real columns, reading, comparing, writing.

``host_table(key)`` is the one way the writers see a host table. Values go in
and out keyed by *host column*, so what a row holds (``read``), what a listing
would write (``fit``), what differs (``changes``) and what is written
(``insert`` and ``update``) are the same dicts, whatever names the site gave
its columns. Fields the host has no column for are not in them: each writer
keeps those (the *kept* facts) in pfsync's own tables.

INSERT and UPDATE name exactly the columns pfsync decided on: the mapped
fields, the map's extra columns, the defaults of the columns it does not fill
(the map's, else those of the site's own Django model for the table), and
whatever the site's ``before_*`` receivers added. Everything else gets the
database's default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, router
from django.db.models.sql import UpdateQuery
from django.db.models.sql.constants import ROW_COUNT
from django.dispatch import Signal

from pfsync_app import models as pfsync_models
from pfsync_app.exceptions import ReceiverFailed, RowRefused, first_line
from pfsync_app.hostmap import FIELDS, README_SECTION, REF, TableMap, host_map, resolve_path
from pfsync_app.introspection import JSON, TableColumns, site_defaults
from pfsync_app.mapping import Change, changed_fields
from pfsync_app.writers.fit import Fitted, comparable, fit_row, table_columns

_MODELS = {"area": "Area", "user": "Agent", "property": "Property", "image": "PropertyImage"}


class HostTable:
    """One host table: its model, its map, its real columns and how rows are written."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.map: TableMap = host_map()[key]
        self.model: type[models.Model] = getattr(pfsync_models, _MODELS[key])
        self._write_fields: dict[str, models.Field] = {}
        self._sqlite_seen: TableColumns | None = None
        self._sqlite_columns: TableColumns | None = None

    # -- what the map says ---------------------------------------------------

    @property
    def table(self) -> str:
        """The table's name in the database."""
        return self.model._meta.db_table

    @property
    def present(self) -> bool:
        """Whether the site has this table at all (only areas may be absent)."""
        return self.map.present

    def column(self, name: str) -> str | None:
        """The host column of pfsync field ``name``, or None when the host has none."""
        return self.map.column(name) if self.present else None

    def holds(self, name: str) -> bool:
        """Whether a host column holds pfsync field ``name``."""
        return self.map.holds(name)

    def kept(self, name: str) -> bool:
        """Whether pfsync keeps field ``name`` in its own table (the host has no column)."""
        return self.map.kept(name)

    def attname(self, name: str) -> str:
        """The model attribute holding pfsync field ``name`` (``user_id`` for the agent)."""
        return self.model._meta.get_field(name).attname

    def columns(self, using: str = DEFAULT_DB_ALIAS) -> TableColumns:
        """The table's real columns (introspected once per job)."""
        found = table_columns(self.table, using)
        if found is None:
            raise RowRefused(self.table, "*", "the table does not exist")
        if connections[using].vendor != "sqlite":
            return found
        if self._sqlite_seen is not found:
            self._sqlite_seen, self._sqlite_columns = found, self._declared(found)
        return self._sqlite_columns

    def _declared(self, found: TableColumns) -> TableColumns:
        """SQLite's columns with pfsync's declared precision where SQLite keeps none.

        SQLite stores a ``decimal`` column without its digits, yet Django reads
        it back through the model field's precision: a value beyond it could
        be written but not read.
        """
        columns = dict(found.columns)
        for host in FIELDS[self.key]:
            column = self.column(host.name)
            real = columns.get(column) if column else None
            if real is None or real.kind != "decimal" or real.digits is not None:
                continue
            declared = self.model._meta.get_field(host.name)
            columns[column] = replace(
                real, digits=declared.max_digits, scale=declared.decimal_places
            )
        return TableColumns(found.table, columns)

    @property
    def hint(self) -> str:
        """The end of a refusal's sentence: where a default goes."""
        return f" (give it one in PFSYNC_HOST[{self.key!r}]['defaults']; {README_SECTION})"

    # -- values ----------------------------------------------------------------

    def to_columns(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """pfsync field values as host column values (fields without a column left out)."""
        values = {}
        for name, value in fields.items():
            column = self.column(name)
            if column is not None:
                values[column] = value
        return values

    def extra_values(self, record: Mapping[str, Any] | None) -> dict[str, Any]:
        """The map's extra columns, filled from the API record's dotted paths."""
        return {column: resolve_path(record, path) for column, path in self.map.extra.items()}

    def read(self, row: models.Model, names: Iterable[str] | None = None) -> dict[str, Any]:
        """What a row holds, by host column: pfsync's mapped fields and the extra columns."""
        values = {}
        for host in FIELDS[self.key]:
            column = self.column(host.name)
            if column is None or (names is not None and host.name not in names):
                continue
            attname = f"{host.name}_id" if host.kind == REF else host.name
            values[column] = getattr(row, attname)
        if names is None:
            columns = self.columns() if self.map.extra else None
            for column in self.map.extra:
                value = getattr(row, pfsync_models.extra_field_name(column))
                found = columns.get(column)
                if isinstance(value, str) and found is not None and found.kind == JSON:
                    # The driver hands a JSON column over as its text (Django decodes it
                    # in JSONField, which an extra column is not): compared undecoded,
                    # every listing with a list in one looked changed every night.
                    value = _json_or_text(value)
                values[column] = value
        return values

    def fit(
        self,
        values: Mapping[str, Any],
        *,
        identifiers: Iterable[str] = (),
        using: str = DEFAULT_DB_ALIAS,
    ) -> Fitted:
        """Values fitted to the real columns (``writers.fit``'s rule); RowRefused when one can't."""
        return fit_row(
            self.columns(using),
            values,
            defaults={**self.site_defaults(), **self.map.defaults},
            identifiers={self.column(name) for name in identifiers} - {None},
            hint=self.hint,
        )

    def changes(
        self, current: Mapping[str, Any], target: Mapping[str, Any], using: str = DEFAULT_DB_ALIAS
    ) -> dict[str, Change]:
        """The columns of ``target`` whose value differs from what the row holds."""
        columns = self.columns(using)
        return changed_fields(
            {name: comparable(columns.get(name), current.get(name)) for name in target},
            {name: comparable(columns.get(name), value) for name, value in target.items()},
        )

    # -- defaults for what pfsync does not fill ----------------------------------

    def site_defaults(self) -> dict[str, Any]:
        """Defaults of the columns the site's own Django model for this table gives one.

        Column -> value or callable. What the site's model would write for a
        column on INSERT: its ``default``, ``auto_now(_add)``, or Django's empty
        string for a NOT NULL text field (never for a UNIQUE one: a receiver must
        fill that). Empty when no model of the site maps the table.
        """
        return dict(site_defaults(self.table))

    def insert_defaults(self, written: Iterable[str], using: str = DEFAULT_DB_ALIAS) -> dict:
        """Defaults for the columns an INSERT would otherwise leave out, evaluated now."""
        columns = self.columns(using)
        taken = set(written)
        result = {}
        for column, default in {**self.site_defaults(), **self.map.defaults}.items():
            if column in taken or column not in columns or columns[column].primary_key:
                continue
            result[column] = default() if callable(default) else default
        for column in self.map.filled_by_receivers:
            if column not in taken and column not in result and column in columns:
                result[column] = None
        return result

    # -- writing ---------------------------------------------------------------

    def _write_field(self, column: str) -> models.Field:
        """A field that writes ``column`` as given (the values are fitted already)."""
        found = self._write_fields.get(column)
        if found is None:
            found = pfsync_models.HostColumnField(null=True)
            found.set_attributes_from_name(f"pfsync_write_{len(self._write_fields)}")
            found.column = column
            found.model = self.model
            self._write_fields[column] = found
        return found

    def insert(self, rows: list[dict[str, Any]], using: str | None = None) -> list[int]:
        """INSERT rows (column -> value, fitted) naming only their columns; their new ids."""
        using = using or router.db_for_write(self.model)
        manager = self.model._base_manager.db_manager(using)
        # Rows naming the same columns go in one statement.
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, row in enumerate(rows):
            groups.setdefault(tuple(row), []).append(index)
        found: dict[int, int] = {}
        can_bulk = connections[using].features.can_return_rows_from_bulk_insert
        pk = self.model._meta.pk
        for names, indexes in groups.items():
            fields = [self._write_field(name) for name in names]
            batches = [indexes[i : i + 100] for i in range(0, len(indexes), 100)]
            if not can_bulk:
                batches = [[index] for index in indexes]
            for batch in batches:
                objs = []
                for index in batch:
                    obj = self.model()
                    for name, write in zip(names, fields, strict=True):
                        setattr(obj, write.attname, rows[index][name])
                    objs.append(obj)
                returned = manager._insert(objs, fields=fields, returning_fields=[pk], using=using)
                for index, values in zip(batch, returned, strict=True):
                    found[index] = values[0]
        return [found[index] for index in range(len(rows))]

    def update(
        self, pks: Iterable[int], values: Mapping[str, Any], using: str | None = None
    ) -> int:
        """UPDATE these rows' columns (column -> value, fitted); how many rows changed."""
        pks = list(pks)
        if not pks or not values:
            return 0
        using = using or router.db_for_write(self.model)
        query = self.model._base_manager.db_manager(using).filter(pk__in=pks).query
        update = query.chain(UpdateQuery)
        update.add_update_fields(
            [(self._write_field(column), None, value) for column, value in values.items()]
        )
        update.clear_select_clause()
        return update.get_compiler(using).execute_sql(ROW_COUNT)


@cache
def host_table(key: str) -> HostTable:
    """The writers' view of host table ``key`` (area, user, property, image)."""
    return HostTable(key)


def send_signal(signal: Signal, name: str, sender: Any, **kwargs: Any) -> None:
    """Send a pfsync signal; a receiver that raises fails the row (ReceiverFailed), not the run."""
    for receiver, response in signal.send_robust(sender, **kwargs):
        if isinstance(response, Exception):
            who = getattr(receiver, "__qualname__", None) or repr(receiver)
            module = getattr(receiver, "__module__", "")
            raise ReceiverFailed(
                f"the {name} receiver {module}.{who} failed: {type(response).__name__}: "
                f"{first_line(response)}"
            ) from response


def _json_or_text(text: str) -> Any:
    """A JSON column's text decoded; text that is not JSON (SQLite allows it) as it is."""
    try:
        return json.loads(text)
    except ValueError:
        return text
