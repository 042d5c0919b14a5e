"""Bad input: odd API data, command-line mistakes and settings mistakes.

Bad data in one listing or user is one report entry for that item and never
stops the run; a command-line or settings mistake is one sentence, before any
work starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Agent, Property, ReportEntry, SyncRun
from pfsync_app.sandbox import REMOVE
from tests.fixtures.faults import PROJECT_DIR, FastClient, entries

pytestmark = pytest.mark.django_db(transaction=True)


def sync(sb, **options):
    """A sync of the sandbox with a client that never sleeps."""
    client = FastClient(sb)
    try:
        return run_sync(SyncOptions(**options), client=client)
    finally:
        client.close()


def by_pf_id(run_id: int, pf_id: str, level: str | None = None) -> list[str]:
    """Messages of a run's entries about one item."""
    return [e.message for e in entries(run_id, level=level) if e.pf_id == str(pf_id)]


def test_listings_with_wrong_types_or_missing_fields_are_each_reported_and_the_rest_saved(
    sandbox_settings,
):
    sb = sandbox_settings
    ids = [raw["id"] for raw in sb.data.listings()]
    sb.data.update_listing(ids[0], **{"bedrooms": {"count": 2}})
    sb.data.update_listing(ids[1], **{"price.amounts.sale": "a lot", "price.type": "sale"})
    sb.data.update_listing(ids[2], **{"location": "Dubai Marina"})
    sb.data.update_listing(ids[3], **{"media.images": "not a list"})
    sb.data.update_listing(ids[4], **{"id": REMOVE})

    result = sync(sb)

    assert result.exit_code == 1
    assert "bedrooms" in by_pf_id(result.run_id, ids[0], "error")[0]
    assert "price.amounts.sale" in by_pf_id(result.run_id, ids[1], "error")[0]
    assert "location" in by_pf_id(result.run_id, ids[2], "error")[0]
    assert "media.images" in by_pf_id(result.run_id, ids[3], "error")[0]
    nameless = entries(result.run_id, level="error", action="listing.invalid")
    assert any(e.pf_id == "" and "id" in e.message for e in nameless)
    assert len(nameless) == 5
    assert set(Property.objects.values_list("pf_id", flat=True)) == set(ids[5:])
    # A listing the run could not name might be any published one: nothing is unpublished.
    assert result.counters["properties_unpublished"] == 0
    assert SyncRun.objects.get(pk=result.run_id).status == SyncRun.Status.FINISHED_WITH_ERRORS


def test_unknown_values_long_texts_and_absurd_prices_are_fitted_saved_and_warned(
    sandbox_settings,
):
    sb = sandbox_settings
    ids = [raw["id"] for raw in sb.data.listings()]
    sb.data.update_listing(ids[0], **{"category": "spaceport", "furnishingType": "half"})
    sb.data.update_listing(ids[1], **{"title.en": "T" * 300, "reference": "R" * 80})
    sb.data.update_listing(ids[2], **{"price.type": "sale", "price.amounts.sale": 10**15})
    sb.data.update_listing(ids[3], **{"price.type": "sale", "price.amounts.sale": -250})
    sb.data.update_listing(ids[4], **{"bedrooms": "lots", "bathrooms": "40000"})
    sb.data.update_listing(ids[5], **{"price.type": "fortnightly"})

    result = sync(sb)

    assert result.exit_code == 0, result.failures
    assert Property.objects.count() == len(ids)
    first = Property.objects.get(pf_id=ids[0])
    assert (first.category, first.furnishing) == ("spaceport", "half")
    warned = " ".join(by_pf_id(result.run_id, ids[0], "warning"))
    assert "category 'spaceport'" in warned and "furnishing 'half'" in warned
    second = Property.objects.get(pf_id=ids[1])
    assert (second.title, second.reference) == ("T" * 255, "R" * 64)
    warned = " ".join(by_pf_id(result.run_id, ids[1], "warning"))
    assert "title was 300 characters, cut to 255" in warned and "reference was 80" in warned
    for pf_id in ids[2:4]:
        assert Property.objects.get(pf_id=pf_id).price is None
        assert "price" in " ".join(by_pf_id(result.run_id, pf_id, "warning"))
    fifth = Property.objects.get(pf_id=ids[4])
    assert (fifth.bedrooms, fifth.bathrooms) == (None, None)
    assert len(by_pf_id(result.run_id, ids[4], "warning")) == 2
    assert "price_period 'fortnightly'" in " ".join(by_pf_id(result.run_id, ids[5], "warning"))
    assert Property.objects.get(pf_id=ids[5]).price_period == "fortnightly"


def test_users_with_wrong_types_long_names_or_shared_e_mails_are_reported_and_the_rest_saved(
    sandbox_settings,
):
    sb = sandbox_settings
    users = sb.data.users()
    sb.data.update_user(users[0]["id"], firstName=12345)
    sb.data.update_user(users[1]["id"], lastName="L" * 200)
    sb.data.update_user(users[2]["id"], email=users[3]["email"])
    sb.data.update_user(users[4]["id"], **{"publicProfile.id": "not a number"})

    result = sync(sb, only="users")

    assert result.exit_code == 1
    assert "firstName" in by_pf_id(result.run_id, users[0]["id"], "error")[0]
    assert "publicProfile.id" in by_pf_id(result.run_id, users[4]["id"], "error")[0]
    assert Agent.objects.get(pf_user_id=users[1]["id"]).last_name == "L" * 150
    assert "last_name was 200" in by_pf_id(result.run_id, users[1]["id"], "warning")[0]
    shared = [e for e in entries(result.run_id, level="warning") if "also the e-mail" in e.message]
    assert len(shared) == 1 and users[3]["email"] in shared[0].message
    assert Agent.objects.filter(email=users[3]["email"]).count() == 2
    assert not Agent.objects.filter(pf_user_id=users[0]["id"]).exists()


def manage_py(*args: str) -> subprocess.CompletedProcess:
    """Run manage.py in a real process (no database work happens before these errors)."""
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "manage.py"), *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (["--only", "nobody"], "--only", "invalid choice: 'nobody'"),
        (["--limit", "0"], "--limit", "expected a number of at least 1, got 0"),
        (["--limit", "abc"], "--limit", "expected a whole number, got 'abc'"),
        (["--concurrency", "-3"], "--concurrency", "expected a number of at least 1, got -3"),
        (["--frobnicate"], "--frobnicate", "unrecognized arguments"),
        (["--listing", "  "], "--listing", "expected a pf_id, got nothing"),
        (["pf_check", "--property", ""], "--property", "expected a pf_id, got nothing"),
        (["pf_repair", "--property", " "], "--property", "expected a pf_id, got nothing"),
    ],
)
def test_a_command_line_mistake_is_one_sentence_naming_the_option_and_status_2(args, option, says):
    command, *rest = args if args[0].startswith("pf_") else ["pf_sync", *args]
    result = manage_py(command, *rest)

    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"manage.py {command}: error: ")
    assert option in last and says in last
    assert "Traceback" not in result.stderr


def test_a_listing_id_that_does_not_exist_is_one_sentence_and_status_2(sandbox_settings):
    with pytest.raises(CommandError) as info:
        call_command(
            "pf_sync", "--listing", "NO-SUCH-LISTING", stdout=StringIO(), stderr=StringIO()
        )
    assert info.value.returncode == 2
    assert str(info.value) == (
        "pf_sync could not run: listing NO-SUCH-LISTING does not exist on Property Finder "
        "(or is not visible to this API key)"
    )


def test_a_listing_whose_record_cannot_be_read_is_named_with_its_field_not_called_missing(
    sandbox_settings,
):
    listing_id = sandbox_settings.data.listing_ids()[0]
    sandbox_settings.data.update_listing(listing_id, reference=["X-1"])
    with pytest.raises(CommandError) as info:
        call_command("pf_sync", "--listing", listing_id, stdout=StringIO(), stderr=StringIO())
    assert info.value.returncode == 2
    assert str(info.value).startswith(
        "pf_sync could not run: Property Finder's record cannot be read: "
        f"listing {listing_id} field reference: "
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PF_SYNC_CONCURRENCY", 0),
        ("IMAGE_DOWNLOAD_TIMEOUT", "ten"),
        ("PF_API_URL", "ftp://atlas.example"),
    ],
)
def test_a_settings_mistake_stops_run_sync_before_any_work(sandbox_settings, settings, name, value):
    setattr(settings, name, value)
    sandbox_settings.clear_requests()

    with pytest.raises(SyncAborted, match=rf"^{name} must be "):
        run_sync(SyncOptions())

    assert sandbox_settings.requests == []
    # Recorded as a run that could not start, as pf_check and pf_repair do: no work, no entry.
    run = SyncRun.objects.get()
    assert (run.command, run.status) == ("pf_sync", SyncRun.Status.FAILED)
    assert run.message.startswith(f"{name} must be ")
    assert not ReportEntry.objects.exists()


@pytest.mark.slow
def test_a_settings_mistake_is_caught_by_the_system_checks_before_pf_sync_starts(tmp_path):
    # A Django-only setting, as a host site sets it: the environment reader never sees it.
    (tmp_path / "host_settings.py").write_text(
        "from project_settings.settings import *  # noqa: F403\nPF_API_MAX_ATTEMPTS = 0\n"
    )
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "manage.py"), "pf_sync"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "host_settings",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT_DIR)]),
        },
    )
    # One sentence and exit status 2, as for a variable, not a system-check block and 1.
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "CommandError: pf_sync could not run: PF_API_MAX_ATTEMPTS must be at least 1, got 0. "
        "Set PF_API_MAX_ATTEMPTS in the Django settings."
    ]


def test_a_new_agent_whose_usual_usernames_are_taken_still_gets_a_unique_one():
    from pfsync_app.mapping import UserValues
    from pfsync_app.models import Agent
    from pfsync_app.writers.users import save_user

    for username in ("layla", "layla-pf77"):
        Agent.objects.create(username=username, password="!", email=f"{username}@other.example")
    fields = {
        "first_name": "Layla",
        "last_name": "H",
        "email": "layla@agency.example",
        "phone": "",
        "role": "agent",
    }
    outcome = save_user(UserValues(pf_user_id=77, pf_public_profile_id=None, fields=fields))
    assert outcome.action == "created"
    assert Agent.objects.get(pf_user_id=77).username == "layla-pf77-2"


def test_the_failure_lines_of_hostile_ids_hold_nothing_a_terminal_cannot_print(sandbox_settings):
    sb = sandbox_settings
    ids = [raw["id"] for raw in sb.data.listings()]
    sb.data.update_listing(ids[0], **{"id": "A\ud800B", "bedrooms": [2]})
    sb.data.update_listing(ids[1], id="C\x00D")
    sb.data.update_listing(ids[2], id="E\udfffF")

    result = sync(sb)

    assert result.exit_code == 1
    assert len(result.failures) == 3
    for line in result.failures:
        line.encode("utf-8")  # a lone surrogate would raise here, as printing it would
        assert "\x00" not in line
    assert Property.objects.count() == len(ids) - 3
