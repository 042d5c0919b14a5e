"""Host rows read tolerantly: one value Django cannot convert fails its row, not the page.

SQLite lets any text into a numeric column (``update properties_property set
price='n/a'``), and a text column may hold what a JSON field cannot decode. Django's
converters then raise (``TypeError: argument must be int or float``) for the whole
query, and a page of listings read in bulk would stop the run. ``read_rows`` reads
the page in bulk and, only when that fails, row by row: a row with an unreadable
column comes back with that column as None (so the writer, comparing, writes it over
when pfsync owns the column) and one ``UnreadableCell`` naming table, row and column.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, router
from django.db.models.sql.constants import SINGLE

#: What Django's converters raise for a value they cannot convert.
CONVERT_ERRORS = (TypeError, ValueError, ArithmeticError, ValidationError)

_NUMBERS = {
    "DecimalField",
    "FloatField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
    "AutoField",
    "BigAutoField",
    "ForeignKey",
}
_DATES = {"DateField", "DateTimeField", "TimeField", "DurationField"}


@dataclass(frozen=True)
class UnreadableCell:
    """One host value Django cannot convert: ``table`` row ``pk``, ``column`` holds ``raw``."""

    table: str
    pk: Any
    column: str
    raw: Any
    what: str  # "is not a number", "is not JSON", ...

    @property
    def message(self) -> str:
        """``properties_property row 2, column price: 'n/a' is not a number``."""
        return f"{self.table} row {self.pk}, column {self.column}: {self.raw!r} {self.what}"


def read_rows(
    model: type[models.Model], keys: Iterable[Any], field_name: str = "pk"
) -> tuple[dict[Any, models.Model], list[UnreadableCell]]:
    """The rows whose ``field_name`` is in ``keys``, by that value, and what could not be read.

    Like ``in_bulk``; a row holding a value Django cannot convert is still returned,
    with that field None, and named in the list.
    """
    keys = list(keys)
    manager = model._base_manager
    try:
        return manager.in_bulk(keys, field_name=field_name), []
    except CONVERT_ERRORS:
        pass
    pks = dict(manager.filter(**{f"{field_name}__in": keys}).values_list("pk", field_name))
    found: dict[Any, models.Model] = {}
    unreadable: list[UnreadableCell] = []
    for pk, key in pks.items():
        row, cells = _read_one(model, pk)
        found[key] = row
        unreadable.extend(cells)
    return found, unreadable


def _read_one(model: type[models.Model], pk: Any) -> tuple[models.Model, list[UnreadableCell]]:
    manager = model._base_manager
    try:
        return manager.get(pk=pk), []
    except CONVERT_ERRORS:
        pass
    fields = model._meta.concrete_fields
    bad = []
    for field in fields:
        try:
            manager.filter(pk=pk).values_list(field.attname, flat=True).first()
        except CONVERT_ERRORS:
            bad.append(field)
    good = [f.attname for f in fields if f not in bad]
    held = manager.filter(pk=pk).values(*good).get()
    using = router.db_for_read(model)
    row = model.from_db(using, [f.attname for f in fields], [held.get(f.attname) for f in fields])
    return row, [_cell(model, pk, field, using) for field in bad]


def _cell(model: type[models.Model], pk: Any, field: models.Field, using: str) -> UnreadableCell:
    # The raw value: the compiler's own row, before Django's converters run.
    query = model._base_manager.using(using).filter(pk=pk).values_list(field.attname).query
    fetched = query.get_compiler(using).execute_sql(SINGLE)
    raw = fetched[0] if fetched else None
    kind = field.get_internal_type()
    if kind in _NUMBERS:
        what = "is not a number"
    elif kind == "JSONField":
        what = "is not JSON"
    elif kind in _DATES:
        what = "is not a date or time"
    else:
        what = "cannot be read"
    return UnreadableCell(model._meta.db_table, pk, field.column, raw, what)


def read_all(rows: models.QuerySet) -> tuple[list[models.Model], list[UnreadableCell]]:
    """The rows of ``rows``, as ``list(rows)``, and what could not be read (see ``read_rows``)."""
    try:
        return list(rows), []
    except CONVERT_ERRORS:
        pass
    found: list[models.Model] = []
    unreadable: list[UnreadableCell] = []
    for pk in rows.values_list("pk", flat=True):
        row, cells = _read_one(rows.model, pk)
        found.append(row)
        unreadable.extend(cells)
    return found, unreadable
