"""The pf_areas command: what it prints, and status 2 with one sentence for every mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Area, Property, SyncRun
from pfsync_app.sandbox import Sandbox
from pfsync_app.words import plural
from pfsync_app.writers.areas import unmapped_locations

pytestmark = pytest.mark.django_db
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def atlas(sandbox_settings: Sandbox, settings: Any) -> Sandbox:
    """The sandbox, with settings pointing at it and no retries of failed requests."""
    settings.PF_API_MAX_ATTEMPTS = 1
    return sandbox_settings


@pytest.fixture
def synced(atlas: Sandbox) -> Sandbox:
    """The sandbox after one pf_sync without images."""
    assert run_sync(SyncOptions(images=False)).exit_code == 0
    return atlas


def pf_areas(*args: str) -> str:
    """Run pf_areas in this process; what it printed."""
    out = StringIO()
    call_command("pf_areas", *args, stdout=out, stderr=StringIO(), no_color=True)
    return out.getvalue()


def refusal(*args: str) -> CommandError:
    """The CommandError pf_areas raises for these arguments."""
    with pytest.raises(CommandError) as caught:
        pf_areas(*args)
    return caught.value


def test_unmapped_json_lists_each_location_with_its_listings_and_sample_title(synced):
    rows = json.loads(pf_areas("unmapped", "--json"))

    assert rows == [row.as_dict() for row in unmapped_locations()]
    assert sum(row["listings"] for row in rows) == Property.objects.count()


def test_unmapped_table_shows_every_location_id_and_how_to_link_it(synced):
    out = pf_areas("unmapped")

    for row in unmapped_locations():
        assert f"{row.location_id:>10}  {row.listings:>8}  {row.sample_title}" in out
    assert "pf_areas link LOCATION_ID AREA_ID" in out


def test_unmapped_says_so_when_every_location_is_linked(db):
    assert "Every synced listing's location links an area." in pf_areas("unmapped")
    assert json.loads(pf_areas("unmapped", "--json")) == []


def test_search_prints_id_type_name_path_and_the_linking_area(atlas):
    area = Area.objects.create(name="Marina", pf_location_id=50)

    lines = pf_areas("search", "marina").splitlines()

    assert len(lines) == 2
    tower = next(line for line in lines if line.split()[0] == "200")
    community = next(line for line in lines if line.split()[0] == "50")
    assert "TOWER" in tower
    assert "Marina Gate 1" in tower
    assert "[Dubai > Dubai Marina > Marina Gate 1]" in tower
    assert tower.endswith("not linked")
    assert community.endswith(f"area {area.pk} 'Marina'")


def test_search_passes_type_and_parent_to_the_api(atlas):
    out = pf_areas(
        "search", "Maple", "--type", "subcommunity", "--parent", "Dubai, Dubai Hills Estate"
    )

    assert out.split()[0] == "207"
    assert len(out.splitlines()) == 1
    query = [r.query for r in atlas.requests if r.path == "/v1/locations"][-1]
    assert (query["filter[type]"], query["filter[parent]"]) == (
        "SUBCOMMUNITY",
        "Dubai, Dubai Hills Estate",
    )


def test_search_says_so_when_nothing_matches(atlas):
    assert pf_areas("search", "Atlantis") == "No Property Finder location matches 'Atlantis'.\n"


def test_search_with_one_character_stops_with_status_2_before_any_request(atlas):
    atlas.clear_requests()

    error = refusal("search", "a")

    assert error.returncode == 2
    assert "at least 2 characters" in str(error)
    assert atlas.requests == []


def test_search_with_one_character_exits_with_status_2_from_the_command_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "manage.py", "pf_areas", "search", "a"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
    )

    assert completed.returncode == 2
    assert "search text must have at least 2 characters" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_an_api_failure_stops_with_status_2_and_the_error_text_without_the_secret(atlas, settings):
    settings.PF_API_SECRET = "wrong-secret-value"

    error = refusal("search", "marina")

    assert error.returncode == 2
    assert str(error).startswith("Property Finder API: ")
    assert "wrong-secret-value" not in str(error)


def test_link_prints_how_many_properties_got_the_area(synced):
    waiting = {row.location_id: row.listings for row in unmapped_locations()}
    location_id = max(waiting, key=waiting.get)
    area = Area.objects.create(name="Somewhere")

    out = pf_areas("link", str(location_id), str(area.pk))

    assert f"Area {area.pk} 'Somewhere' now links location {location_id}." in out
    assert f"{plural(waiting[location_id], 'property')} got the area." in out
    assert Property.objects.filter(area_id=area.pk).count() == waiting[location_id]


def link_err(*args: str) -> tuple[str, str]:
    """pf_areas link in this process: what it printed on stdout and on stderr."""
    out, err = StringIO(), StringIO()
    call_command("pf_areas", "link", *args, stdout=out, stderr=err, no_color=True)
    return out.getvalue(), err.getvalue()


def test_linking_a_location_no_synced_listing_has_warns_and_keeps_the_link(synced):
    out, err = link_err("99999", "--create", "Nowhere")

    area = Area.objects.get(pf_location_id=99999)
    assert f"Created area {area.pk} 'Nowhere' now links location 99999." in out
    assert "0 properties got the area." in out
    assert err.splitlines() == [
        "warning: no synced listing has location 99999 yet; the link is kept for listings to "
        "come (check the id with pf_areas search if it was a typo)."
    ]
    run = SyncRun.objects.latest("pk")
    assert run.entries.filter(level="warning", action="area.unknown_location").count() == 1


def test_linking_a_location_of_synced_listings_gives_no_warning(synced):
    location_id = unmapped_locations()[0].location_id

    _, err = link_err(str(location_id), "--create", "Somewhere")

    assert err == ""


def test_link_create_prints_the_new_area(synced):
    out = pf_areas("link", "50", "--create", "Dubai Marina")

    area = Area.objects.get(pf_location_id=50)
    assert f"Created area {area.pk} 'Dubai Marina' now links location 50." in out


def test_link_create_removes_what_the_database_cannot_keep_from_the_name_and_says_so(synced):
    err = StringIO()
    call_command("pf_areas", "link", "50", "--create", "Dubai\x00 Marina\ud800", stdout=StringIO(),
                 stderr=err)  # fmt: skip

    assert Area.objects.get(pf_location_id=50).name == "Dubai Marina"
    assert err.getvalue().splitlines() == [
        "warning: the name had 1 NUL character, removed",
        "warning: the name had 1 lone surrogate, removed",
    ]


def test_a_second_link_of_the_same_location_stops_with_status_2(synced):
    first = Area.objects.create(name="First", pf_location_id=50)
    second = Area.objects.create(name="Second")

    error = refusal("link", "50", str(second.pk))

    assert error.returncode == 2
    assert str(error) == (
        f"location 50 is already linked to area {first.pk} 'First'; one location links one area."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("link", "50"), "give the AREA_ID to link to, or --create NAME for a new area."),
        (("link", "50", "1", "--create", "X"), "give either an AREA_ID or --create NAME"),
        (("link", "fifty", "1"), "location id must be a whole number, got 'fifty'."),
        (("link", "50", "424242"), "area 424242 does not exist."),
        (("link", "50", "--create", "  "), "--create needs a non-empty area name."),
    ],
)
def test_link_mistakes_stop_with_status_2_and_one_sentence(db, args, message):
    error = refusal(*args)

    assert error.returncode == 2
    assert message in str(error)
    assert not Area.objects.filter(pf_location_id=50).exists()


def test_link_force_reports_the_properties_that_lost_the_area(synced):
    area = Area.objects.create(name="Moving")
    pf_areas("link", "50", str(area.pk))

    out = pf_areas("link", "59", str(area.pk), "--force")

    assert "It no longer links location 50:" in out
    assert Area.objects.get(pk=area.pk).pf_location_id == 59


def test_automap_prints_the_proposals_and_links_nothing_without_apply(atlas):
    Area.objects.create(name="Dubai Marina")
    Area.objects.create(name="Maple 1")
    Area.objects.create(name="Atlantis")

    out = pf_areas("automap")

    assert "'Dubai Marina': location 50 COMMUNITY [Dubai > Dubai Marina]" in out
    assert "'Maple 1': ambiguous, 2 locations have that name (207, 208)" in out
    assert "'Atlantis': no location has that name" in out
    assert "1 of 3 unlinked areas matches exactly one location; run with --apply" in out
    assert not Area.objects.filter(pf_location_id__isnull=False).exists()


def test_automap_apply_links_and_prints_the_totals(synced):
    Area.objects.create(name="Dubai Marina")

    out = pf_areas("automap", "--apply")

    filled = Property.objects.filter(area__pf_location_id=50).count()
    assert Area.objects.get(name="Dubai Marina").pf_location_id == 50
    assert (
        f"Linked 1 area; {plural(filled, 'property')} got {'its' if filled == 1 else 'their'} area."
        in out
    )


def test_automap_shows_the_paths_of_ambiguous_candidates_at_verbosity_2(atlas):
    Area.objects.create(name="Maple 1")

    out = pf_areas("automap", "-v", "2")

    assert "207 [Dubai > Dubai Hills Estate > Maple 1]" in out
    assert "208 [Dubai > Jumeirah Village Circle > Maple 1]" in out
