"""The one rule that makes a value fit its column, for every table pfsync writes.

pfsync reads the real columns of the host's tables (their type, length,
precision, nullability and defaults: ``table_columns``) and fits each value
before it is written (``fit_row``):

- text is cleaned of NUL characters and lone surrogates (which PostgreSQL or
  the driver refuse) and cut to the column's length;
- a number is rounded half-up to the column's scale (to a whole number for an
  integer column);
- a value out of the column's range, one that cannot be converted, or a NULL
  (a price on request) becomes NULL when the column is nullable, else the
  default (the map's, else the site's model's, else the database's);
- only when none of that is possible does the row fail, with ``RowRefused``
  naming the table and column; the run goes on.

Each fitted value that differs from the one given is reported as a warning.
Identifiers (a listing or user id) are never altered: one that does not fit
fails its row. The rule is total: no value makes it raise anything but
``RowRefused``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models.expressions import DatabaseDefault, RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from pfsync_app.exceptions import RowRefused
from pfsync_app.introspection import (
    BOOL,
    DATE,
    DATETIME,
    DECIMAL,
    FLOAT,
    INT,
    JSON,
    TEXT,
    Column,
    TableColumns,
    read_columns,
)
from pfsync_app.words import plural

_SURROGATES = re.compile("[\ud800-\udfff]")
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})

_cache: dict[tuple[str, str], TableColumns | None] = {}


def forget_columns() -> None:
    """Read the tables' columns again on next use (a job starts; a test altered a table)."""
    _cache.clear()


def table_columns(table: str, using: str = DEFAULT_DB_ALIAS) -> TableColumns | None:
    """The real columns of ``table`` (read once per process until ``forget_columns``).

    None when the table does not exist.
    """
    key = (using, table)
    if key not in _cache:
        _cache[key] = read_columns(table, using)
    return _cache[key]


# ---------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------


class _Unfit(Exception):
    """A value that cannot be converted to the column's kind (why: the message)."""


_NO_DEFAULT = object()


@dataclass
class Fitted:
    """Values fitted to their columns, and a warning for each one that was changed."""

    values: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def fit_row(
    columns: TableColumns,
    values: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    identifiers: frozenset[str] | set[str] = frozenset(),
    hint: str = "",
) -> Fitted:
    """Fit every value of one row to its column (by column name); RowRefused when one cannot.

    ``defaults`` (column -> value, or a callable giving one) replace a NULL in a
    NOT NULL column; ``identifiers`` name the columns whose values are never
    altered; ``hint`` ends the sentence of a refusal (where to add a default).
    """
    fitted = Fitted({})
    for name, value in values.items():
        column = columns.get(name)
        if column is None:
            raise RowRefused(columns.table, name, "the table has no such column")
        fitted.values[name] = fit_value(
            column,
            value,
            fitted.warnings,
            default=(defaults or {}).get(name, _NO_DEFAULT),
            identifier=name in identifiers,
            hint=hint,
        )
    return fitted


def fit_value(
    column: Column,
    value: Any,
    warnings: list[str],
    *,
    default: Any = _NO_DEFAULT,
    identifier: bool = False,
    hint: str = "",
) -> Any:
    """One value fitted to ``column`` (warnings appended), or RowRefused."""
    if hasattr(value, "resolve_expression"):
        return value  # a database expression (DEFAULT) is the database's to fit
    if value is None:
        # An empty identifier is no value at all (a listing without images has no cover).
        why = "is empty"
    else:
        try:
            result, notes = _convert(column, value)
        except _Unfit as exc:
            why = str(exc)
            result, notes = None, []
        except Exception as exc:  # the rule is total: any value converts or is refused
            why = f"cannot be read ({type(exc).__name__})"
            result, notes = None, []
        else:
            if identifier and notes:
                raise RowRefused(
                    column.table,
                    column.name,
                    f"the id {_shown(value)} cannot be stored as it is ({notes[0]}); ids are never "
                    "altered, so this record is not saved",
                )
            warnings.extend(f"{column.label} {note}" for note in notes)
            return result
        if identifier:
            raise RowRefused(
                column.table,
                column.name,
                f"the id {_shown(value)} {why}; ids are never altered, so this record is not saved",
            )
        warnings.append(f"{column.label} {_shown(value)} {why}")
    return _empty(column, value, why, warnings, default, hint)


def _empty(
    column: Column, value: Any, why: str, warnings: list[str], default: Any, hint: str
) -> Any:
    """What a column gets for no value: NULL, else a default, else the row is refused."""
    if column.null:
        if value is not None:
            warnings[-1] += "; stored as empty"
        return None
    if default is not _NO_DEFAULT:
        try:
            given = default() if callable(default) else default
            result, _ = _convert(column, given)
        except Exception as exc:
            raise RowRefused(
                column.table,
                column.name,
                f"the value {why.removeprefix('is ')}, and its default {_shown(default)} does "
                f"not fit the column ({exc})",
            ) from None
        if value is not None:
            warnings[-1] += f"; stored as the default {_shown(result)}"
        return result
    if column.has_db_default:
        literal = literal_default(column.db_default)
        result = database_default(column)
        if literal is not _NO_DEFAULT:
            try:
                result, _ = _convert(column, literal)
            except Exception:
                result = database_default(column)
        if value is not None:
            warnings[-1] += "; stored as the column's database default"
        return result
    empty = "the value is empty" if value is None else f"the value {_shown(value)} {why}"
    raise RowRefused(
        column.table,
        column.name,
        f"{empty}, and the column is NOT NULL without a default{hint}",
    )


def database_default(column: Column) -> DatabaseDefault:
    """The column's own default, as an expression: DEFAULT in an INSERT or UPDATE."""
    # The SQL comes from the database's own catalogue, not from any input.
    sql = (column.db_default or "NULL").replace("%", "%%")
    return DatabaseDefault(RawSQL(sql, ()))  # noqa: S611


def literal_default(sql: str | None) -> Any:
    """The Python value of a simple SQL default (``0``, ``''::character varying``, ``false``)."""
    if sql is None:
        return _NO_DEFAULT
    text = re.sub(r"::[\w\s\"]+(\([\d,\s]*\))?$", "", sql.strip()).strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    try:
        return Decimal(text)
    except InvalidOperation:
        return _NO_DEFAULT


def _shown(value: Any) -> str:
    """A value as a message shows it: short, one line, no NUL."""
    try:
        text = repr(value[:100]) if isinstance(value, str) else str(value)[:100]
    except Exception:  # a number of more digits than str() allows, say
        text = f"a {type(value).__name__} that cannot be shown"
    text = clean_text(text)[0].replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def clean_text(text: str) -> tuple[str, list[str]]:
    """Text without NUL characters and lone surrogates, and what was removed."""
    notes = []
    if "\x00" in text:
        notes.append(f"had {plural(text.count(chr(0)), 'NUL character')}, removed")
        text = text.replace("\x00", "")
    surrogates = _SURROGATES.findall(text)
    if surrogates:
        notes.append(f"had {plural(len(surrogates), 'lone surrogate')}, removed")
        text = _SURROGATES.sub("", text)
    return text, notes


def _convert(column: Column, value: Any) -> tuple[Any, list[str]]:
    """``value`` in the column's kind and size, with notes of what changed; _Unfit if it can't."""
    converter = _CONVERTERS.get(column.kind, _other)
    return converter(column, value)


def _text(column: Column, value: Any) -> tuple[str, list[str]]:
    text = _as_text(value)
    text, notes = clean_text(text)
    limit = column.max_length
    if limit is not None and len(text) > limit:
        notes.append(f"was {len(text)} characters, cut to {limit}")
        text = text[:limit]
    return text, notes


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        # Plain digits, unless that would be a number of a million digits (1E+999999).
        return f"{value:f}" if value.is_finite() and abs(value.adjusted()) < 100 else str(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple) and all(
        isinstance(item, str | int | float | Decimal) and not isinstance(item, bool)
        for item in value
    ):
        return ", ".join(_as_text(item) for item in value)
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def _number(value: Any) -> Decimal:
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Unfit("is not a finite number")
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise _Unfit("is not a number") from None
    else:
        raise _Unfit("is not a number")
    if not number.is_finite():
        raise _Unfit("is not a finite number")
    return number


def _rounded(number: Decimal, scale: int) -> Decimal:
    try:
        return number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise _Unfit("is out of range") from None


def _int(column: Column, value: Any) -> tuple[int, list[str]]:
    number = _number(value)
    rounded = _rounded(number, 0)
    notes = [] if rounded == number else [f"{_shown(value)} was rounded to {rounded}"]
    whole = int(rounded)
    if (column.low is not None and whole < column.low) or (
        column.high is not None and whole > column.high
    ):
        raise _Unfit("is out of range")
    return whole, notes


def _decimal(column: Column, value: Any) -> tuple[Decimal, list[str]]:
    number = _number(value)
    rounded = number if column.scale is None else _rounded(number, column.scale)
    if column.digits is not None:
        limit = Decimal(10) ** (column.digits - (column.scale or 0))
        if abs(rounded) >= limit:
            raise _Unfit("is out of range")
    notes = [] if rounded == number else [f"{_shown(value)} was rounded to {rounded}"]
    return rounded, notes


def _float(column: Column, value: Any) -> tuple[float, list[str]]:
    number = float(_number(value))
    if not math.isfinite(number):
        raise _Unfit("is out of range")
    return number, []


def _bool(column: Column, value: Any) -> tuple[bool, list[str]]:
    if isinstance(value, bool):
        return value, []
    if isinstance(value, int) and value in (0, 1):
        return bool(value), []
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE, []
    raise _Unfit("is not true or false")


def _datetime(column: Column, value: Any) -> tuple[datetime, list[str]]:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = parse_datetime(value.strip().replace("Z", "+00:00"))
        if moment is None:
            day = parse_date(value.strip())
            if day is None:
                raise _Unfit("is not a date and time")
            moment = datetime(day.year, day.month, day.day)
    else:
        raise _Unfit("is not a date and time")
    if timezone.is_naive(moment):
        # As Django reads a naive datetime: in the site's time zone.
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment, []


def _date(column: Column, value: Any) -> tuple[date, list[str]]:
    if isinstance(value, datetime):
        return value.date(), []
    if isinstance(value, date):
        return value, []
    if isinstance(value, str):
        day = parse_date(value.strip()[:10])
        if day is not None:
            return day, []
    raise _Unfit("is not a date")


def _json(column: Column, value: Any) -> tuple[Any, list[str]]:
    removed: list[str] = []

    def cleaned(node: Any) -> Any:
        if isinstance(node, str):
            text, found = clean_text(node)
            removed.extend(found)
            return text
        if isinstance(node, Mapping):
            return {cleaned(str(k)): cleaned(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [cleaned(item) for item in node]
        if isinstance(node, Decimal):
            number = float(node)  # beyond a float's range it is infinite, refused below
            if not math.isfinite(number):
                raise _Unfit("holds a number that is not finite")
            exact = abs(number) < 2**53 and node == node.to_integral_value()
            return int(node) if exact else number
        if isinstance(node, float) and not math.isfinite(node):
            raise _Unfit("holds a number that is not finite")
        if node is None or isinstance(node, bool | int | float):
            return node
        return _as_text(node)

    result = cleaned(value)
    json.dumps(result, allow_nan=False)  # proves it is JSON
    notes = ["had NUL characters or lone surrogates in its text, removed"] if removed else []
    return result, notes


def _other(column: Column, value: Any) -> tuple[Any, list[str]]:
    if isinstance(value, str):
        return clean_text(value)
    return value, []


_CONVERTERS: dict[str, Callable[[Column, Any], tuple[Any, list[str]]]] = {
    TEXT: _text,
    INT: _int,
    DECIMAL: _decimal,
    FLOAT: _float,
    BOOL: _bool,
    DATETIME: _datetime,
    DATE: _date,
    JSON: _json,
}


def comparable(column: Column | None, value: Any) -> Any:
    """A value in the form two readings of one column compare in (for what changed).

    A database default is not known here, so it never counts as a change.
    """
    if value is None or column is None:
        return value
    if isinstance(value, DatabaseDefault):
        return _UNKNOWN
    try:
        result, _ = _convert(column, value)
    except Exception:
        return value
    if column.kind == JSON:
        return json.dumps(result, sort_keys=True)
    if isinstance(result, Decimal):
        return result.normalize()
    return result


class _Unknown:
    """Equal to anything: a value only the database knows (its DEFAULT)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "DEFAULT"


_UNKNOWN = _Unknown()
