"""Records with values the database would refuse are fitted by the one rule and saved."""

from __future__ import annotations

import pytest

from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Agent, Property, ReportEntry

pytestmark = pytest.mark.django_db(transaction=True)


def warnings_of(run_id: int, pf_id: str) -> list[str]:
    return list(
        ReportEntry.objects.filter(run_id=run_id, level="warning", pf_id=pf_id).values_list(
            "message", flat=True
        )
    )


def test_a_user_whose_name_and_e_mail_hold_nul_characters_is_saved_without_them(
    sandbox_settings,
):
    sb = sandbox_settings
    user = sb.data.users()[0]
    sb.data.update_user(user["id"], firstName="La\x00yla", email="la\x00yla@agency.example")

    result = run_sync(SyncOptions(only="users"))

    assert result.exit_code == 0, result.failures
    agent = Agent.objects.get(pf_user_id=user["id"])
    assert (agent.first_name, agent.email) == ("Layla", "layla@agency.example")
    assert agent.username == "layla"
    warned = warnings_of(result.run_id, str(user["id"]))
    assert "users_user.first_name had 1 NUL character, removed" in warned
    assert "users_user.email had 1 NUL character, removed" in warned


def test_a_listing_whose_texts_hold_nul_characters_is_saved_and_its_neighbours_too(
    sandbox_settings,
):
    sb = sandbox_settings
    ids = [raw["id"] for raw in sb.data.listings()]
    sb.data.update_listing(ids[0], **{"title.en": "Sea view\x00", "description.ar": "\x00"})

    result = run_sync(SyncOptions())

    assert result.exit_code == 0, result.failures
    saved = Property.objects.get(pf_id=ids[0])
    assert (saved.title, saved.description_ar) == ("Sea view", "")
    assert Property.objects.count() == len(ids)
    warned = " ".join(warnings_of(result.run_id, ids[0]))
    assert "properties_property.title had 1 NUL character, removed" in warned
    assert "properties_property.description_ar had 1 NUL character, removed" in warned
