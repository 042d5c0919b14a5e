"""The one rule that fits a value to its column: cut, clean, round, NULL or default, else refuse."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db.models.expressions import DatabaseDefault

from pfsync_app.exceptions import RowRefused
from pfsync_app.introspection import Column, TableColumns
from pfsync_app.writers.fit import comparable, fit_row, fit_value, literal_default

TITLE = Column("listings", "title", "text", "CharField", max_length=100, null=False)
NOTES = Column("listings", "notes", "text", "TextField")
PRICE = Column("listings", "price", "int", "IntegerField", low=-(2**31), high=2**31 - 1, null=False)
ROOMS = Column("listings", "rooms", "int", "SmallIntegerField", low=-32768, high=32767)
AMOUNT = Column("listings", "amount", "decimal", "DecimalField", digits=14, scale=2)
FLAG = Column("listings", "flag", "bool", "BooleanField", null=False)
WHEN = Column("listings", "seen", "datetime", "DateTimeField")
DATA = Column("listings", "data", "json", "JSONField", null=False)
PF_ID = Column("listings", "pf_id", "text", "CharField", max_length=26)


def fit(column, value, **options):
    warnings: list[str] = []
    return fit_value(column, value, warnings, **options), warnings


def test_text_longer_than_the_column_is_cut_to_its_length_with_a_warning():
    value, warnings = fit(TITLE, "x" * 300)
    assert value == "x" * 100
    assert warnings == ["listings.title was 300 characters, cut to 100"]


def test_nul_characters_and_lone_surrogates_are_removed_from_text_with_a_warning():
    value, warnings = fit(NOTES, "a\x00b\ud800c\udfffd")
    assert value == "abcd"
    assert warnings == [
        "listings.notes had 1 NUL character, removed",
        "listings.notes had 2 lone surrogates, removed",
    ]
    assert fit(NOTES, "Ünïcödé 🏠 شقة") == ("Ünïcödé 🏠 شقة", [])


def test_a_hundred_kilobytes_of_text_fit_a_text_column_whole():
    assert fit(NOTES, "y" * 100_000) == ("y" * 100_000, [])


@pytest.mark.parametrize(
    ("given", "stored"),
    [(Decimal("1234.5"), 1235), (Decimal("1234.49"), 1234), (2.5, 3), ("-2.5", -3), (7, 7)],
)
def test_a_number_for_an_integer_column_is_rounded_half_up(given, stored):
    value, warnings = fit(PRICE, given)
    assert value == stored
    assert bool(warnings) == (Decimal(str(given)) != stored)


def test_a_decimal_is_rounded_half_up_to_the_column_s_scale():
    assert fit(AMOUNT, Decimal("1.005")) == (
        Decimal("1.01"),
        ["listings.amount 1.005 was rounded to 1.01"],
    )
    assert fit(AMOUNT, Decimal("1250.5")) == (Decimal("1250.50"), [])


def test_a_number_beyond_the_column_becomes_null_when_the_column_allows_it():
    assert fit(AMOUNT, 10**15) == (
        None,
        ["listings.amount 1000000000000000 is out of range; stored as empty"],
    )
    assert fit(ROOMS, 40000)[0] is None


def test_a_number_beyond_a_not_null_column_takes_the_default_else_the_row_fails():
    assert fit(PRICE, 10**12, default=0) == (
        0,
        ["listings.price 1000000000000 is out of range; stored as the default 0"],
    )
    with pytest.raises(RowRefused) as refused:
        fit(PRICE, 10**12)
    assert (refused.value.table, refused.value.column) == ("listings", "price")
    assert str(refused.value).startswith("listings.price: the value 1000000000000 is out of range")


def test_no_value_for_a_not_null_column_takes_the_default_and_a_callable_default_is_called():
    assert fit(PRICE, None, default=0) == (0, [])
    assert fit(DATA, None, default=list) == ([], [])
    with pytest.raises(RowRefused, match="the value is empty, and the column is NOT NULL"):
        fit(PRICE, None, hint=" (give it a default)")


def test_a_not_null_column_with_a_database_default_takes_it():
    literal = Column("t", "views", "int", "IntegerField", null=False, db_default="0")
    assert fit(literal, None) == (0, [])
    expression = Column("t", "code", "text", "TextField", null=False, db_default="gen_code()")
    value, _ = fit(expression, None)
    assert isinstance(value, DatabaseDefault)
    assert comparable(expression, value) == "anything the database holds"


def test_a_default_that_does_not_fit_its_column_refuses_the_row_saying_so():
    with pytest.raises(RowRefused, match="its default 'none' does not fit"):
        fit(PRICE, None, default="none")


def test_ids_are_never_altered_a_record_whose_id_does_not_fit_fails():
    assert fit(PF_ID, "01J55KHZJ013SYP141BH5QD4YP", identifier=True) == (
        "01J55KHZJ013SYP141BH5QD4YP",
        [],
    )
    for bad in ("01J55\x00KHZJ013SYP141BH5QD4YP", "X" * 27, "id\ud800"):
        with pytest.raises(RowRefused, match="ids are never altered"):
            fit(PF_ID, bad, identifier=True)
    big = Column("users", "pf_user_id", "int", "IntegerField", low=-(2**31), high=2**31 - 1)
    with pytest.raises(RowRefused, match="pf_user_id"):
        fit(big, 2**40, identifier=True)


@pytest.mark.parametrize(
    ("given", "stored"), [(True, True), (0, False), ("yes", True), ("false", False)]
)
def test_true_and_false_are_read_from_what_means_them(given, stored):
    assert fit(FLAG, given) == (stored, [])


def test_dates_and_times_are_read_from_iso_text():
    assert fit(WHEN, "2026-01-19T10:00:00Z")[0] == datetime(2026, 1, 19, 10, tzinfo=UTC)
    assert fit(WHEN, "yesterday") == (
        None,
        ["listings.seen 'yesterday' is not a date and time; stored as empty"],
    )


def test_json_keeps_structure_and_loses_what_postgresql_refuses():
    assert fit(DATA, ["balcony", {"n": Decimal("2")}]) == (["balcony", {"n": 2}], [])
    value, warnings = fit(DATA, {"note": "a\x00b"})
    assert value == {"note": "ab"}
    assert warnings == ["listings.data had NUL characters or lone surrogates in its text, removed"]


def test_lists_and_objects_into_a_text_column_become_readable_text():
    assert fit(NOTES, ["balcony", "shared-pool"])[0] == "balcony, shared-pool"
    assert fit(NOTES, {"a": 1})[0] == '{"a": 1}'
    assert fit(NOTES, 12.5)[0] == "12.5"


HOSTILE = [
    "\x00",
    "\ud83d",
    "z" * 100_000,
    10**400,
    -(10**400),
    10**5000,
    math.inf,
    -math.inf,
    math.nan,
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("1e999999"),
    Decimal("-Infinity"),
    b"\x00bytes",
    object(),
    {"deep": [{"x": "\x00"}]},
    [math.nan],
    datetime.max,
    "",
    True,
]
COLUMNS = [TITLE, NOTES, PRICE, ROOMS, AMOUNT, FLAG, WHEN, DATA, PF_ID]


@pytest.mark.parametrize("column", COLUMNS, ids=lambda c: c.name)
@pytest.mark.parametrize(
    "value", HOSTILE, ids=[f"{type(v).__name__}{i}" for i, v in enumerate(HOSTILE)]
)
def test_any_hostile_value_is_fitted_or_refuses_its_row_and_raises_nothing_else(column, value):
    for identifier in (False, True):
        try:
            fitted, _ = fit(column, value, identifier=identifier)
        except RowRefused:
            continue
        if isinstance(fitted, str):
            assert "\x00" not in fitted
            fitted.encode("utf-8")
            assert column.max_length is None or len(fitted) <= column.max_length


def test_a_row_names_its_unknown_column_and_fits_the_others():
    columns = TableColumns("listings", {c.name: c for c in (TITLE, PRICE)})
    fitted = fit_row(columns, {"title": "t" * 120, "price": Decimal("9.5")})
    assert fitted.values == {"title": "t" * 100, "price": 10}
    assert len(fitted.warnings) == 2
    with pytest.raises(RowRefused, match=r"listings\.slug: the table has no such column"):
        fit_row(columns, {"slug": "x"})


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("0", Decimal(0)),
        ("''::character varying", ""),
        ("'it''s'::text", "it's"),
        ("false", False),
        ("(42)", Decimal(42)),
    ],
)
def test_simple_database_defaults_are_read_as_their_values(sql, value):
    assert literal_default(sql) == value
