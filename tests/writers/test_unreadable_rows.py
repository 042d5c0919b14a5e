"""A host row holding a value Django cannot convert fails its listing alone (attack 1).

SQLite lets any text into a numeric column: ``price='n/a'`` made Django's decimal
converter raise for the whole page and pf_sync stopped, every night. The listing
fails with one entry naming table, row and column, the other listings are synced,
and the row is written over with the listing's price: the next run converges.
PostgreSQL refuses the value in the first place (asserted, so the premise holds).
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import DataError

from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Agent, Property, ReportEntry
from pfsync_app.writers.rows import read_all, read_rows

pytestmark = pytest.mark.django_db(transaction=True)


def corrupt_price(pk: int) -> bool:
    """Set the row's price to 'n/a' by raw SQL; False when the database refuses it."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE properties_property SET price = 'n/a' WHERE id = %s", [pk])
    except DataError:
        return False
    return True


def test_a_price_that_is_not_a_number_fails_that_listing_and_the_next_run_converges(
    sandbox_settings,
):
    first = run_sync(SyncOptions(images=False))
    assert first.exit_code == 0, first.failures
    bad = Property.objects.exclude(price=None).order_by("pk").first()
    stored = bad.price

    if not corrupt_price(bad.pk):
        assert connection.vendor == "postgresql"  # a numeric column holds no text there
        return

    result = run_sync(SyncOptions(images=False))

    assert result.exit_code == 1
    failed = ReportEntry.objects.filter(run_id=result.run_id, level="error")
    assert [(e.pf_id, e.message) for e in failed] == [
        (bad.pf_id, f"properties_property row {bad.pk}, column price: 'n/a' is not a number")
    ]
    assert result.failures == [
        f"listing {bad.pf_id}: properties_property row {bad.pk}, column price: "
        "'n/a' is not a number"
    ]
    # The others were read and compared as usual (unchanged), the bad row written over.
    assert Property.objects.get(pk=bad.pk).price == stored
    again = run_sync(SyncOptions(images=False))
    assert again.exit_code == 0, again.failures
    assert again.counters.get("properties_updated", 0) == 0


def test_read_rows_names_the_value_and_returns_the_row_with_it_as_none(sandbox_settings):
    run_sync(SyncOptions(images=False))
    rows = list(Property.objects.exclude(price=None).order_by("pk")[:3])
    if not corrupt_price(rows[1].pk):
        assert connection.vendor == "postgresql"
        return

    found, cells = read_rows(Property, [p.pf_id for p in rows], field_name="pf_id")

    assert sorted(found) == sorted(p.pf_id for p in rows)
    assert found[rows[1].pf_id].price is None
    assert found[rows[1].pf_id].title == rows[1].title
    assert found[rows[0].pf_id].price == rows[0].price
    assert [c.message for c in cells] == [
        f"properties_property row {rows[1].pk}, column price: 'n/a' is not a number"
    ]


def test_read_all_returns_every_row_and_names_the_value(sandbox_settings):
    # read_all serves image rows; on SQLite only a converted column (a decimal) can fail.
    run_sync(SyncOptions(images=False))
    rows = list(Property.objects.exclude(price=None).order_by("pk")[:3])
    if not corrupt_price(rows[2].pk):
        assert connection.vendor == "postgresql"
        return

    found, cells = read_all(Property.objects.filter(pk__in=[p.pk for p in rows]))

    assert sorted(p.pk for p in found) == [p.pk for p in rows]
    assert [p.price for p in sorted(found, key=lambda p: p.pk)] == [
        rows[0].price,
        rows[1].price,
        None,
    ]
    assert [(c.table, c.pk, c.column, c.raw) for c in cells] == [
        ("properties_property", rows[2].pk, "price", "n/a")
    ]


def test_a_user_row_holding_a_value_its_converter_refuses_fails_that_user_alone(
    sandbox_settings, monkeypatch
):
    # The bundled host's users table has no column SQLite fills with what Django cannot
    # convert, so the phone column is given a converter that refuses one value.
    first = run_sync(SyncOptions(only="users"))
    assert first.exit_code == 0, first.failures
    agent = Agent.objects.exclude(pf_user_id=None).exclude(phone="").order_by("pk").first()
    phone = agent.phone
    Agent.objects.filter(pk=agent.pk).update(phone="BAD")

    def refuse(value, expression, connection):
        if value == "BAD":
            raise ValueError("not a phone")
        return value

    monkeypatch.setattr(Agent._meta.get_field("phone"), "from_db_value", refuse, raising=False)

    result = run_sync(SyncOptions(only="users"))

    assert result.failures == [
        f"user {agent.pf_user_id}: users_user row {agent.pk}, column phone: 'BAD' cannot be read"
    ]
    assert Agent.objects.get(pk=agent.pk).phone == phone
    again = run_sync(SyncOptions(only="users"))
    assert again.exit_code == 0, again.failures
