"""Fault scenarios of hostile records: values PostgreSQL or the ORM would refuse.

A user, listing or location whose values cannot be stored as they are is
fitted (text loses its NUL characters and lone surrogates, with a warning) or
fails alone, with one entry naming the record and the field; every other record
of its page, and every later page, is saved. Then the record is mended at the
source and the next run converges.
"""

from __future__ import annotations

import pytest

from pfsync_app.models import Agent, Property, SyncRun
from tests.fixtures.faults import Scenario, entries

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fault_scenario]


@pytest.fixture
def scenario(sandbox_settings):
    """A fault scenario on the small sandbox."""
    return Scenario(sandbox_settings)


def listing_ids(sb) -> list[str]:
    return [raw["id"] for raw in sb.data.listings()]


def test_a_nul_in_a_users_name_or_e_mail_is_removed_with_a_warning_and_every_listing_synced(
    scenario,
):
    sb = scenario.sb
    users = sb.data.users()
    first, second = users[0], users[1]
    sb.data.update_user(first["id"], firstName="Lay\x00la")
    sb.data.update_user(second["id"], email="agent\x00@example.com")

    result = scenario.sync(client=scenario.client(per_page=4))

    assert result.exit_code == 0, result.failures
    assert Agent.objects.get(pf_user_id=first["id"]).first_name == "Layla"
    assert Agent.objects.get(pf_user_id=second["id"]).email == "agent@example.com"
    warned = [e for e in entries(result.run_id, level="warning") if "NUL" in e.message]
    assert {e.pf_id for e in warned} == {str(first["id"]), str(second["id"])}
    assert Property.objects.count() == len(sb.data.listings())
    sb.data.update_user(first["id"], firstName="Layla")
    sb.data.update_user(second["id"], email="agent@example.com")
    scenario.converge()


def test_a_listing_whose_id_holds_a_nul_fails_alone_and_its_page_and_later_pages_are_synced(
    scenario,
):
    sb = scenario.sb
    ids = listing_ids(sb)
    sb.data.update_listing(ids[1], id="BAD\x00ID")

    result = scenario.sync(client=scenario.client(per_page=4))

    assert result.exit_code == 1
    run = SyncRun.objects.get(pk=result.run_id)
    assert run.status == SyncRun.Status.FINISHED_WITH_ERRORS
    [error] = entries(result.run_id, level="error")
    assert error.pf_id == "BADID"
    assert "field id" in error.message and "NUL" in error.message
    assert set(Property.objects.values_list("pf_id", flat=True)) == set(ids) - {ids[1]}
    # Its id is no stored listing's: it is seen, so no property is unpublished for it.
    assert result.counters.get("properties_unpublished", 0) == 0
    sb.data.update_listing(ids[1], id=ids[1])
    scenario.converge()
