"""A site whose schema is not the default reaches a correct, converging pf_sync by settings alone.

The realty site (tests/hosts/realty) differs from the default schema in every
way a real site does: renamed columns, no areas table, NOT NULL columns pfsync
does not know, an integer price, a 100-character title, a main image column,
and an images table holding only the file and a thumbnail. It runs in its own
processes, with its own settings, migrations and database; what it holds is
read back with plain SQL.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from pfsync_app.sandbox.store import is_live
from tests.fixtures.faults import manage
from tests.fixtures.hosts import execute, host_database, refuse_deletes, rows, sync_json

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SETTINGS = "tests.hosts.realty.settings"
BARE = "tests.hosts.realty.settings_bare"
REALTORS = "tests.hosts.realty.settings_realtors"
LONG_TITLE = "Sea view " * 20  # 180 characters: the site's title column holds 100
UNKNOWN_AGENT = 999_999


@pytest.fixture
def realty(tmp_path):
    db = host_database(tmp_path, SETTINGS)
    yield db
    db.drop()


def whole(value) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_listing(raw: dict) -> dict:
    """What the realty site's listings row holds for a sandbox listing, by its map."""
    price = raw.get("price") or {}
    amount = None if price.get("onRequest") else (price.get("amounts") or {}).get(price.get("type"))
    return {
        "title": (raw.get("title") or {}).get("en", "")[:100],
        "price": 0 if amount is None else whole(amount),
        "sqft": whole(raw["size"]) if raw.get("size") is not None else 0,
        "kind": raw.get("type", "")[:30],
        "purpose": "" if not price.get("type") else ("sale" if price["type"] == "sale" else "rent"),
        "is_published": is_live(raw),
        "permit_number": raw["compliance"]["listingAdvertisementNumber"],
        "amenities": raw.get("amenities", []),
        "parking": raw.get("parkingSlots"),
        "yearly_rent": (price.get("amounts") or {}).get("yearly"),
        "views": 0,
    }


LISTING_COLUMNS = (
    "id",
    "owner_id",
    "title",
    "slug",
    "location",
    "price",
    "sqft",
    "kind",
    "purpose",
    "image",
    "permit_number",
    "amenities",
    "parking",
    "yearly_rent",
    "is_published",
    "views",
)


def listings(db) -> dict[str, dict]:
    """The site's listings rows by Property Finder id (kept by pfsync: the site has no column)."""
    found = rows(
        db,
        f"SELECT s.pf_id, {', '.join(f'l.{c}' for c in LISTING_COLUMNS)} FROM listings_listing l"
        " JOIN pfsync_app_listingstate s ON s.property_id = l.id",
        "pf_id",
        *LISTING_COLUMNS,
    )
    for row in found:
        row["is_published"] = bool(row["is_published"])
    return {row.pop("pf_id"): row for row in found}


def photos(db) -> dict[int, list[dict]]:
    """The site's photo rows with the facts pfsync keeps for them, by listing row id."""
    found: dict[int, list[dict]] = {}
    for row in rows(
        db,
        "SELECT i.id, i.listing_id, i.image, i.thumbnail, s.position, s.source_url, s.is_active"
        " FROM listings_listingimage i JOIN pfsync_app_imagestate s ON s.image_id = i.id"
        " ORDER BY i.listing_id, s.position, i.id",
        "id",
        "listing_id",
        "image",
        "thumbnail",
        "position",
        "source_url",
        "is_active",
    ):
        row["is_active"] = bool(row["is_active"])
        found.setdefault(row["listing_id"], []).append(row)
    return found


def owners(db) -> tuple[dict[int, int], int]:
    """Public profile id -> site account id (pfsync's links), and the office account's id."""
    links = dict(
        db.query(
            "SELECT pf_public_profile_id, agent_id FROM pfsync_app_agentlink"
            " WHERE pf_public_profile_id IS NOT NULL"
        )
    )
    [(office,)] = db.query("SELECT id FROM accounts_account WHERE username = 'office'")
    return links, office


def assert_site_matches(db, sb, media: Path) -> None:
    """Every listing of the sandbox is in the site's own tables, as the map says."""
    site = listings(db)
    raws = {raw["id"]: raw for raw in sb.data.listings()}
    assert set(site) == set(raws)
    links, office = owners(db)
    by_listing = photos(db)
    for pf_id, raw in raws.items():
        row = site[pf_id]
        for column, value in expected_listing(raw).items():
            assert row[column] == value, (pf_id, column)
        agent = (raw.get("assignedTo") or {}).get("id")
        assert row["owner_id"] == links.get(agent, office), pf_id
        assert row["slug"].endswith(pf_id.lower())
        wanted = [img["original"]["url"] for img in (raw.get("media") or {}).get("images") or []]
        active = [p for p in by_listing.get(row["id"], []) if p["is_active"]]
        assert [p["source_url"] for p in active] == wanted, pf_id
        assert [p["position"] for p in active] == list(range(len(wanted)))
        # The main image column holds the first photo's file (the site's default '' without).
        assert row["image"] == (active[0]["image"] if active else "")
        for photo in active:
            assert (media / photo["image"]).read_bytes() == sb.data.image_bytes(photo["source_url"])
            assert photo["thumbnail"].startswith("listings/thumbs/")
            assert (media / photo["thumbnail"]).stat().st_size > 0


def counters(summary: dict) -> dict[str, int]:
    names = ("properties_created", "properties_updated", "images_downloaded", "users_created")
    return {name: summary["counters"][name] for name in names} | {
        "users_updated": summary["counters"]["users_updated"],
        "images_deactivated": summary["counters"]["images_deactivated"],
    }


def test_the_realty_site_syncs_by_its_column_map_and_converges_without_a_delete(realty, sandbox):
    sb, db = sandbox, realty
    media = db.folder / "media"
    ids = [raw["id"] for raw in sb.data.listings()]
    sb.data.update_listing(ids[0], **{"title.en": LONG_TITLE})
    sb.data.update_listing(ids[1], **{"assignedTo.id": UNKNOWN_AGENT})

    check = manage(db, "check", "--database", "default")
    assert check.returncode == 0, check.stderr
    assert "ERRORS" not in check.stderr
    assert "(pfsync.W004) Column listings_listing.title holds 100 characters" in check.stderr
    assert "(pfsync.W005) listings_listingimage has no column for pfsync's 'is_active'" in (
        check.stderr
    )
    refuse_deletes(db)
    with pytest.raises(Exception, match="DELETE"):
        execute(db, "DELETE FROM accounts_account WHERE username = 'office'")

    first = sync_json(db, sb)

    assert first["exit_code"] == 0, first["failures"]
    assert first["counters"]["properties_created"] == len(ids)
    assert first["counters"]["users_created"] == len(sb.data.users())
    assert_site_matches(db, sb, media)
    [(cut,)] = db.query(
        "SELECT message FROM pfsync_app_reportentry WHERE level = 'warning'"
        " AND message LIKE 'listings_listing.title was 180 characters, cut to 100%'"
    )
    assert cut
    [(fallback,)] = db.query(
        "SELECT message FROM pfsync_app_reportentry WHERE action = 'agent.fallback'"
    )
    assert "1 listing names an agent" in fallback and "'office'" in fallback
    accounts = rows(
        db,
        "SELECT a.user_type, a.is_realtor, a.is_owner, a.password FROM accounts_account a"
        " JOIN pfsync_app_agentlink k ON k.agent_id = a.id",
        "user_type",
        "is_realtor",
        "is_owner",
        "password",
    )
    assert len(accounts) == len(sb.data.users())
    assert all(
        (a["user_type"], bool(a["is_realtor"]), bool(a["is_owner"])) == (2, True, False)
        and a["password"].startswith("!")
        for a in accounts
    )

    second = sync_json(db, sb)

    assert counters(second) == dict.fromkeys(counters(second), 0)
    assert second["listings_unchanged"] == len(ids)

    location = sb.data.listing(ids[2])["location"]["id"]
    unnamed = manage(db, "pf_areas", "unmapped")
    assert f"{location:>10}" in unnamed.stdout
    assert "name it: pf_areas link LOCATION_ID --name TEXT" in unnamed.stdout
    automap = manage(db, "pf_areas", "automap", sb=sb)
    assert automap.returncode == 2
    assert automap.stderr.strip() == (
        "CommandError: automap (which matches host area names) needs a host areas table, and "
        "PFSYNC_HOST['area'] says this site has none; link locations to names instead: "
        'pf_areas link PF_LOCATION_ID --name TEXT (README.md, section "Plugging into your '
        'schema").'
    )
    named = manage(db, "pf_areas", "link", str(location), "--name", "Dubai Marina")
    assert named.returncode == 0, named.stderr
    assert f"Location {location} is now named 'Dubai Marina'." in named.stdout
    other = next(
        sb.data.listing(pf)["location"]["id"]
        for pf in ids
        if sb.data.listing(pf)["location"]["id"] != location
    )
    [found] = [loc for loc in sb.data.locations() if loc["id"] == other]
    picked = manage(db, "pf_areas", "link", str(other), "--search", found["name"], sb=sb)
    assert picked.returncode == 0, picked.stderr
    assert f"Location {other} is now named '{found['name']}'." in picked.stdout
    search = manage(db, "pf_areas", "search", found["name"], sb=sb)
    assert f"named '{found['name']}'" in search.stdout
    site = listings(db)
    same_place = [pf for pf in ids if sb.data.listing(pf)["location"]["id"] == location]
    assert {site[pf]["location"] for pf in same_place} == {"Dubai Marina"}
    named_other = [pf for pf in ids if sb.data.listing(pf)["location"]["id"] == other]
    assert {site[pf]["location"] for pf in named_other} == {found["name"]}
    assert {site[pf]["location"] for pf in set(ids) - set(same_place) - set(named_other)} <= {""}

    priced = next(pf for pf in ids[3:] if (sb.data.listing(pf)["price"].get("amounts")))
    kind = sb.data.listing(priced)["price"]["type"]
    sb.data.update_listing(priced, **{f"price.amounts.{kind}": 123456.5})
    pictured = next(
        pf
        for pf in ids[3:]
        if pf != priced and len((sb.data.listing(pf).get("media") or {}).get("images") or []) == 2
    )
    sb.data.remove_image(pictured, 1)
    photos_before = sum(len(p) for p in photos(db).values())

    third = sync_json(db, sb)

    assert third["exit_code"] == 0, third["failures"]
    assert counters(third) == {
        "properties_created": 0,
        "properties_updated": 2,
        "images_downloaded": 0,
        "users_created": 0,
        "users_updated": 0,
        "images_deactivated": 1,
    }
    assert listings(db)[priced]["price"] == 123457
    # The site's photo row stays (pfsync never deletes); pfsync knows it is inactive.
    assert sum(len(p) for p in photos(db).values()) == photos_before
    assert_site_matches(db, sb, media)
    assert listings(db)[ids[2]]["location"] == "Dubai Marina"

    fourth = sync_json(db, sb)

    assert counters(fourth) == dict.fromkeys(counters(fourth), 0)

    # A listing gone from Property Finder is unpublished on the site (its row stays).
    gone = ids[-1]
    sb.data.remove_listing(gone)
    fifth = sync_json(db, sb)
    assert fifth["counters"]["properties_unpublished"] == 1
    assert listings(db)[gone]["is_published"] is False

    # pf_check finds a lost photo through the facts pfsync keeps; pf_repair brings it back.
    # The first photo of a listing: its file is also the listing's main image column.
    photo = next(
        p for ps in photos(db).values() for p in ps if p["is_active"] and p["position"] == 0
    )
    covered = next(pf for pf, row in listings(db).items() if row["id"] == photo["listing_id"])
    assert listings(db)[covered]["image"] == photo["image"]
    (media / photo["image"]).unlink()
    check_images = manage(db, "pf_check", "--json")
    assert check_images.returncode == 1, check_images.stderr
    report = json.loads(check_images.stdout)
    assert [(m["image_id"], m["reason"]) for m in report["missing"]] == [(photo["id"], "missing")]
    assert report["checked"] == sum(1 for ps in photos(db).values() for p in ps if p["is_active"])
    repair = manage(db, "pf_repair", sb=sb)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    [repaired] = [p for ps in photos(db).values() for p in ps if p["id"] == photo["id"]]
    assert repaired["image"] != photo["image"]
    assert (media / repaired["image"]).read_bytes() == sb.data.image_bytes(photo["source_url"])
    assert listings(db)[covered]["image"] == repaired["image"]  # in the same transaction

    if db.vendor == "postgresql":
        [(deleted,)] = db.query("SELECT coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables")
        assert deleted == 0


def test_without_its_defaults_and_fallback_check_names_each_column_and_pf_sync_writes_nothing(
    tmp_path, sandbox
):
    db = host_database(tmp_path, BARE)
    try:
        check = manage(db, "check", "--database", "default")
        assert check.returncode != 0
        assert "(pfsync.E004) Column accounts_account.user_type" in check.stderr
        assert "(pfsync.E004) Column listings_listing.views" in check.stderr
        assert "PFSYNC_HOST['property']['defaults']" in check.stderr
        # pfsync may have nothing for these; the site's first pf_sync would fail such listings.
        assert "(pfsync.W006) Column listings_listing.owner_id" in check.stderr
        assert "(pfsync.W006) Column listings_listing.price" in check.stderr
        assert "HOST_SCHEMA" not in check.stderr

        sync = manage(db, "pf_sync", sb=sandbox)

        assert sync.returncode == 2
        assert "pf_sync could not run: Column accounts_account.user_type" in sync.stderr
        assert db.query("SELECT count(*) FROM listings_listing") == [(0,)]
        assert db.query("SELECT count(*) FROM accounts_account") == [(1,)]  # the office
    finally:
        db.drop()


@pytest.mark.parametrize(
    "settings_module",
    [SETTINGS, "tests.fixtures.settings_renamed_tables"],
    ids=["column-map", "renamed-tables"],
)
def test_makemigrations_stays_clean_and_writes_nothing_into_the_package(tmp_path, settings_module):
    migrations = Path(__file__).resolve().parents[2] / "pfsync_app" / "migrations"
    before = sorted(p.name for p in migrations.iterdir())
    env = {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    db = SimpleNamespace(url=env["DATABASE_URL"], folder=tmp_path, settings_module=settings_module)

    checked = manage(db, "makemigrations", "--check", "--dry-run", **env)
    written = manage(db, "makemigrations", "pfsync_app", **env)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No changes detected" in checked.stdout
    assert written.returncode == 0, written.stderr
    assert "No changes detected in app 'pfsync_app'" in written.stdout
    assert sorted(p.name for p in migrations.iterdir()) == before


def test_agents_kept_in_a_separate_realtors_table_are_synced_without_auth_columns(
    tmp_path, sandbox
):
    sb = sandbox
    db = host_database(tmp_path, REALTORS)
    try:
        check = manage(db, "check", "--database", "default")
        assert check.returncode == 0, check.stderr

        first = sync_json(db, sb)

        assert first["exit_code"] == 0, first["failures"]
        realtors = rows(
            db,
            "SELECT r.id, r.first_name, r.email, r.phone, k.pf_user_id, k.pf_public_profile_id"
            " FROM realty_realtor r JOIN pfsync_app_agentlink k ON k.agent_id = r.id",
            "id",
            "first_name",
            "email",
            "phone",
            "pf_user_id",
            "pf_public_profile_id",
        )
        users = {user["id"]: user for user in sb.data.users()}
        assert {r["pf_user_id"] for r in realtors} == set(users)
        for realtor in realtors:
            user = users[realtor["pf_user_id"]]
            assert (realtor["first_name"], realtor["email"]) == (user["firstName"], user["email"])
        # The site's users are untouched: only its office account, owner of every listing.
        assert db.query("SELECT username FROM accounts_account") == [("office",)]
        by_profile = {r["pf_public_profile_id"]: r["id"] for r in realtors}
        site = listings(db)
        [(office,)] = db.query("SELECT id FROM accounts_account")
        for raw in sb.data.listings():
            row = site[raw["id"]]
            assert row["owner_id"] == office
            [(realtor_id,)] = db.query(
                f"SELECT realtor_id FROM listings_listing WHERE id = {row['id']}"
            )
            assert realtor_id == by_profile[raw["assignedTo"]["id"]]

        second = sync_json(db, sb)

        assert counters(second) == dict.fromkeys(counters(second), 0)
    finally:
        db.drop()
