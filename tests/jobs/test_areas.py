"""pf_areas' functions against the sandbox and the real database, after a real pf_sync."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from pfsync_app.atlas.errors import AtlasError
from pfsync_app.exceptions import AreaError
from pfsync_app.jobs import areas
from pfsync_app.jobs.clients import build_client
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Area, ListingState, Property
from pfsync_app.sandbox import Sandbox
from pfsync_app.writers.areas import unmapped_locations

pytestmark = pytest.mark.django_db


@pytest.fixture
def atlas(sandbox_settings: Sandbox, settings: Any) -> Sandbox:
    """The sandbox, with settings pointing at it and no retries of failed requests."""
    settings.PF_API_MAX_ATTEMPTS = 1
    return sandbox_settings


@pytest.fixture
def synced(atlas: Sandbox) -> Sandbox:
    """The sandbox after one pf_sync without images; no host area links any location yet."""
    result = run_sync(SyncOptions(images=False))
    assert result.exit_code == 0, result.failures
    return atlas


@pytest.fixture
def client(atlas: Sandbox) -> Any:
    """An Atlas client on the sandbox."""
    with build_client() as atlas:
        yield atlas


def listings_by_location(sandbox: Sandbox) -> dict[int, list[dict]]:
    """The sandbox's synced listings grouped by location id (the truth to compare with)."""
    synced_ids = set(Property.objects.values_list("pf_id", flat=True))
    grouped: dict[int, list[dict]] = defaultdict(list)
    for listing in sandbox.data.listings():
        if listing["id"] in synced_ids:
            grouped[listing["location"]["id"]].append(listing)
    return grouped


def location_searches(sandbox: Sandbox) -> list[dict[str, str]]:
    """The queries of the GET /v1/locations requests the sandbox received."""
    return [r.query for r in sandbox.requests if r.path == "/v1/locations"]


def area_of(location_id: int, sandbox: Sandbox) -> set[int | None]:
    """The area ids of the properties of the sandbox's listings at ``location_id``."""
    pf_ids = [listing["id"] for listing in listings_by_location(sandbox)[location_id]]
    return set(Property.objects.filter(pf_id__in=pf_ids).values_list("area_id", flat=True))


def busiest_location(sandbox: Sandbox) -> tuple[int, int]:
    """The location id with the most synced listings, and that number."""
    counts = Counter({loc: len(items) for loc, items in listings_by_location(sandbox).items()})
    return counts.most_common(1)[0]


# -- unmapped --------------------------------------------------------------------


def test_unmapped_lists_every_sandbox_location_with_its_number_of_listings(synced):
    expected = {loc: len(items) for loc, items in listings_by_location(synced).items()}

    rows = unmapped_locations()

    assert {row.location_id: row.listings for row in rows} == expected
    assert sum(row.listings for row in rows) == Property.objects.count() == 12


def test_unmapped_gives_a_title_of_a_listing_at_that_location_as_its_sample(synced):
    grouped = listings_by_location(synced)

    for row in unmapped_locations():
        assert row.sample_title in {item["title"]["en"] for item in grouped[row.location_id]}


def test_unmapped_lists_the_location_with_most_waiting_properties_first(synced):
    counts = [row.listings for row in unmapped_locations()]

    assert counts == sorted(counts, reverse=True)


def test_unmapped_leaves_out_locations_an_area_already_links(sandbox_settings):
    location_id = sandbox_settings.data.listings()[0]["location"]["id"]
    Area.objects.create(name="Linked before the sync", pf_location_id=location_id)
    assert run_sync(SyncOptions(images=False)).exit_code == 0

    rows = unmapped_locations()

    assert location_id not in {row.location_id for row in rows}
    assert sum(row.listings for row in rows) == Property.objects.filter(area=None).count()


def test_unmapped_is_empty_before_any_sync(db):
    assert unmapped_locations() == []


def test_unmapped_rows_turn_into_json_ready_dicts(synced):
    row = unmapped_locations()[0]

    assert row.as_dict() == {
        "location_id": row.location_id,
        "listings": row.listings,
        "sample_title": row.sample_title,
    }


# -- search ----------------------------------------------------------------------


def test_search_returns_the_sandbox_locations_with_their_tree_paths(client):
    found = {c.location.id: c for c in areas.search_locations(client, "marina")}

    assert set(found) == {50, 200}
    assert found[200].path == "Dubai > Dubai Marina > Marina Gate 1"
    assert found[50].path == "Dubai > Dubai Marina"
    assert found[200].location.type == "TOWER"
    assert found[200].area_id is None


def test_search_names_the_host_area_that_already_links_a_location(client):
    area = Area.objects.create(name="Marina", pf_location_id=50)

    found = {c.location.id: c for c in areas.search_locations(client, "Dubai Marina")}

    assert (found[50].area_id, found[50].area_name) == (area.pk, "Marina")


def test_search_narrows_by_a_parent_path_as_pf_areas_prints_it(client, atlas):
    both = areas.search_locations(client, "Maple 1")
    one = areas.search_locations(client, "Maple 1", parent="Dubai > Dubai Hills Estate")

    assert sorted(c.location.id for c in both) == [207, 208]
    assert [c.location.id for c in one] == [207]
    assert location_searches(atlas)[-1]["filter[parent]"] == "Dubai, Dubai Hills Estate"


def test_search_narrows_by_location_type_in_any_case(client):
    found = areas.search_locations(client, "Dubai", type="city")

    assert [c.location.id for c in found] == [1]


def test_search_text_shorter_than_two_characters_is_refused_before_any_request(client, atlas):
    atlas.clear_requests()

    with pytest.raises(AreaError, match="at least 2 characters"):
        areas.search_locations(client, " a ")

    assert atlas.requests == []


def test_search_with_an_unknown_location_type_is_refused(client):
    with pytest.raises(AreaError, match="'BUILDING' is not one the API knows"):
        areas.search_locations(client, "Dubai", type="BUILDING")


def test_a_location_path_ends_with_the_location_even_when_the_tree_stops_at_its_parent():
    from pfsync_app.atlas.records import Location, LocationNode

    location = Location(
        id=200,
        type="TOWER",
        name="Marina Gate 1",
        path=(LocationNode(1, "CITY", "Dubai"), LocationNode(50, "COMMUNITY", "Dubai Marina")),
        lat=None,
        lng=None,
    )

    assert areas.location_path(location) == "Dubai > Dubai Marina > Marina Gate 1"


# -- link ------------------------------------------------------------------------


def test_link_gives_the_waiting_properties_the_area_at_once(synced):
    location_id, count = busiest_location(synced)
    area = Area.objects.create(name="Somewhere")

    result = areas.link_location(location_id, area.pk)

    assert result.properties_filled == count
    assert Area.objects.get(pk=area.pk).pf_location_id == location_id
    assert area_of(location_id, synced) == {area.pk}
    assert location_id not in {row.location_id for row in unmapped_locations()}


def test_link_touches_no_property_of_another_location(synced):
    location_id, count = busiest_location(synced)
    area = Area.objects.create(name="Somewhere")

    areas.link_location(location_id, area.pk)

    assert Property.objects.filter(area_id=area.pk).count() == count
    assert Property.objects.filter(area=None).count() == 12 - count


def test_a_second_link_of_the_same_location_is_refused(synced):
    location_id, _ = busiest_location(synced)
    first = Area.objects.create(name="First")
    second = Area.objects.create(name="Second")
    areas.link_location(location_id, first.pk)

    with pytest.raises(AreaError, match=f"already linked to area {first.pk} 'First'"):
        areas.link_location(location_id, second.pk, force=True)

    assert Area.objects.get(pk=second.pk).pf_location_id is None
    assert area_of(location_id, synced) == {first.pk}


def test_linking_the_same_area_again_reports_it_is_already_linked(synced):
    location_id, _ = busiest_location(synced)
    area = Area.objects.create(name="Somewhere")
    areas.link_location(location_id, area.pk)

    again = areas.link_location(location_id, area.pk)

    assert again.already_linked
    assert again.properties_filled == 0


def test_link_of_an_area_that_links_another_location_needs_force(synced):
    grouped = listings_by_location(synced)
    old, new = sorted(grouped, key=lambda loc: (-len(grouped[loc]), loc))[:2]
    area = Area.objects.create(name="Moving")
    areas.link_location(old, area.pk)

    with pytest.raises(AreaError, match=f"already links location {old}; use --force"):
        areas.link_location(new, area.pk)
    result = areas.link_location(new, area.pk, force=True)

    assert result.previous_location_id == old
    assert result.properties_cleared == len(grouped[old])
    assert result.properties_filled == len(grouped[new])
    assert area_of(old, synced) == {None}
    assert area_of(new, synced) == {area.pk}


def test_link_to_an_area_that_does_not_exist_is_refused(synced):
    with pytest.raises(AreaError, match="area 999999 does not exist"):
        areas.link_location(50, 999999)

    assert not Area.objects.filter(pf_location_id=50).exists()


@pytest.mark.parametrize(
    ("location_id", "message"),
    [("abc", "location id must be a whole number"), (0, "location id must be a positive")],
)
def test_link_with_a_bad_location_id_is_refused(db, location_id, message):
    area = Area.objects.create(name="Somewhere")

    with pytest.raises(AreaError, match=message):
        areas.link_location(location_id, area.pk)


def test_link_needs_either_an_area_or_a_name_to_create(db):
    with pytest.raises(AreaError, match="either an AREA_ID or --create NAME"):
        areas.link_location(50)
    with pytest.raises(AreaError, match="either an AREA_ID or --create NAME"):
        areas.link_location(50, 1, create_name="Dubai Marina")


def test_link_create_inserts_an_area_and_gives_it_the_waiting_properties(synced):
    location_id, count = busiest_location(synced)

    result = areas.link_location(location_id, create_name="  New   Area ")

    area = Area.objects.get(pk=result.area_id)
    assert result.created
    assert (area.name, area.pf_location_id) == ("New Area", location_id)
    assert result.properties_filled == count
    assert area_of(location_id, synced) == {area.pk}


def test_link_create_refuses_a_name_another_area_has_unless_forced(synced):
    existing = Area.objects.create(name="Dubai Marina")

    with pytest.raises(AreaError, match=f"pf_areas link 50 {existing.pk}"):
        areas.link_location(50, create_name="dubai marina")
    result = areas.link_location(50, create_name="dubai marina", force=True)

    assert result.area_id != existing.pk
    assert Area.objects.filter(name__iexact="dubai marina").count() == 2


def test_link_create_of_a_location_another_area_links_inserts_nothing(synced):
    Area.objects.create(name="Dubai Marina", pf_location_id=50)

    with pytest.raises(AreaError, match="location 50 is already linked"):
        areas.link_location(50, create_name="Marina again")

    assert not Area.objects.filter(name="Marina again").exists()


def test_the_next_sync_keeps_the_area_a_link_gave(synced):
    location_id, count = busiest_location(synced)
    area = Area.objects.create(name="Somewhere")
    areas.link_location(location_id, area.pk)

    assert run_sync(SyncOptions(images=False, full=True)).exit_code == 0

    assert area_of(location_id, synced) == {area.pk}
    assert ListingState.objects.filter(location_id=location_id).count() == count


# -- automap ---------------------------------------------------------------------


def make_automap_areas() -> dict[str, Area]:
    """Unlinked areas for each verdict automap can give, plus one linked area."""
    Area.objects.create(name="Tower", pf_location_id=202)
    names = ["dubai  marina", "Maple 1", "Atlantis Nowhere", "Burj Khalifa", "X"]
    return {name: Area.objects.create(name=name) for name in names}


def test_automap_proposes_only_single_exact_matches_and_writes_nothing(client, atlas):
    made = make_automap_areas()

    proposals = {p.area_name: p for p in areas.automap(client)}

    assert {name: p.status for name, p in proposals.items()} == {
        "dubai  marina": areas.MATCH,
        "Maple 1": areas.AMBIGUOUS,
        "Atlantis Nowhere": areas.NO_MATCH,
        "Burj Khalifa": areas.TAKEN,
        "X": areas.UNSEARCHABLE,
    }
    assert proposals["dubai  marina"].location.id == 50
    assert proposals["dubai  marina"].path == "Dubai > Dubai Marina"
    assert sorted(loc.id for loc in proposals["Maple 1"].candidates) == [207, 208]
    assert proposals["Burj Khalifa"].taken_by == Area.objects.get(name="Tower").pk
    assert not any(p.linked for p in proposals.values())
    assert (
        Area.objects.filter(pk__in=[a.pk for a in made.values()], pf_location_id=None).count() == 5
    )
    assert Area.objects.filter(pf_location_id__isnull=False).count() == 1


def test_automap_searches_once_per_unlinked_area(client, atlas):
    make_automap_areas()
    atlas.clear_requests()

    areas.automap(client)

    searched = sorted(query["search"] for query in location_searches(atlas))
    assert searched == ["Atlantis Nowhere", "Burj Khalifa", "Maple 1", "dubai marina"]


def test_automap_apply_links_the_matches_and_fills_their_properties(client, synced):
    make_automap_areas()
    waiting = len(listings_by_location(synced).get(50, []))

    proposals = {p.area_name: p for p in areas.automap(client, apply=True)}

    marina = Area.objects.get(name="dubai  marina")
    assert marina.pf_location_id == 50
    assert proposals["dubai  marina"].linked
    assert proposals["dubai  marina"].properties_filled == waiting
    assert Area.objects.get(name="Maple 1").pf_location_id is None
    assert Area.objects.get(name="Burj Khalifa").pf_location_id is None


def test_automap_leaves_two_same_named_areas_for_a_human_to_choose(client):
    first = Area.objects.create(name="Deira")
    second = Area.objects.create(name="DEIRA")

    proposals = areas.automap(client, apply=True)

    assert [p.status for p in proposals] == [areas.DUPLICATE, areas.DUPLICATE]
    assert not Area.objects.filter(pk__in=[first.pk, second.pk], pf_location_id=59).exists()


def test_automap_links_nothing_when_a_search_fails_half_way(client, atlas):
    Area.objects.create(name="Deira")
    Area.objects.create(name="Mirdif")
    atlas.faults.add("/v1/locations?search=Mirdif", "status", status=403)

    with pytest.raises(AtlasError):
        areas.automap(client, apply=True)

    assert not Area.objects.filter(pf_location_id__isnull=False).exists()


def test_automap_with_every_area_linked_proposes_nothing(client):
    Area.objects.create(name="Dubai Marina", pf_location_id=50)

    assert areas.automap(client) == []


def test_a_link_is_a_recorded_pf_areas_run_with_one_entry(synced):
    from pfsync_app.models import SyncRun

    location_id = unmapped_locations()[0].location_id
    area = Area.objects.create(name="Recorded")
    areas.link_location(location_id, area.pk)
    run = SyncRun.objects.get(command="pf_areas")
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.message == "linked 1 of 1 location"
    entry = run.entries.get()
    assert (entry.action, entry.pf_id) == ("area.linked", str(location_id))


def test_a_refused_link_ends_its_run_as_failed_with_the_sentence(synced):
    from pfsync_app.models import SyncRun

    with pytest.raises(AreaError, match="area 999999 does not exist"):
        areas.link_location(unmapped_locations()[0].location_id, 999999)
    run = SyncRun.objects.get(command="pf_areas")
    assert run.status == SyncRun.Status.FAILED
    assert "area 999999 does not exist" in run.message


class HostileLocations:
    """An Atlas client whose location search answers hostile records (ids, names)."""

    def __init__(self, found: dict[str, list[Any]]) -> None:
        self.found = found

    def search_locations(self, text: str, **filters: Any) -> list[Any]:
        return self.found.get(text, [])


def location(location_id: int, name: str) -> Any:
    from pfsync_app.atlas.records import Location

    return Location(id=location_id, type="COMMUNITY", name=name, path=(), lat=None, lng=None)


def test_automap_refuses_alone_a_location_whose_id_no_area_can_hold_and_links_the_rest(db):
    Area.objects.create(name="Deira")
    Area.objects.create(name="Mirdif")
    client = HostileLocations(
        {"Deira": [location(10**12, "Deira")], "Mirdif": [location(60, "Mirdif")]}
    )

    proposals = {p.area_name: p for p in areas.automap(client, apply=True)}

    assert proposals["Mirdif"].linked
    assert Area.objects.get(name="Mirdif").pf_location_id == 60
    assert not proposals["Deira"].linked
    assert "location id 1000000000000 cannot be stored" in proposals["Deira"].error
    assert Area.objects.get(name="Deira").pf_location_id is None


def test_a_link_of_a_location_id_beyond_the_column_is_one_sentence(db):
    area = Area.objects.create(name="Somewhere")

    with pytest.raises(AreaError, match=r"^location id 10000000000000 cannot be stored"):
        areas.link_location(10**13, area.pk)


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_a_new_area_named_with_text_the_database_refuses_is_created_without_it(synced, bad):
    result = areas.link_location(50, create_name=f"Dubai{bad} Marina")

    assert result.area_name == "Dubai Marina"
    assert Area.objects.get(pf_location_id=50).name == "Dubai Marina"
