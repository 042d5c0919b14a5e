"""pf_sync's summary says what failed and why, with where to see all of it."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import call_command

from pfsync_app.jobs.sync import SyncOptions, SyncResult
from pfsync_app.management.commands.pf_sync import Command
from pfsync_app.models import Property, ReportEntry
from pfsync_app.writers import areas

pytestmark = pytest.mark.django_db(transaction=True)


def with_images(sb) -> list[dict]:
    """The sandbox's raw listings that have at least one image."""
    return [raw for raw in sb.data.listings() if (raw.get("media") or {}).get("images")]


def first_url(raw: dict) -> str:
    return raw["media"]["images"][0]["original"]["url"]


def sync(*args: str) -> tuple[str, int]:
    """pf_sync's stdout and exit status."""
    out = StringIO()
    try:
        call_command("pf_sync", *args, stdout=out, stderr=StringIO())
    except SystemExit as exited:
        return out.getvalue(), int(exited.code)
    return out.getvalue(), 0


def test_failed_images_are_listed_by_cause_with_listing_and_url_and_where_to_see_all(
    sandbox_settings,
):
    sb = sandbox_settings
    listings = with_images(sb)
    gone = [first_url(raw) for raw in listings[:2]]
    forbidden = first_url(listings[2])
    for url in gone:
        sb.faults.add_image(url, "404", times=None)
    sb.faults.add_image(forbidden, "403", times=None)

    text, status = sync()

    assert status == 1
    lines = text.splitlines()
    assert "  3 images failed: 2 HTTP 404, 1 HTTP 403" in lines
    assert f"    HTTP 404: listing {listings[0]['id']}: {gone[0]}" in lines
    assert f"    HTTP 404: listing {listings[1]['id']}: {gone[1]}" in lines
    assert f"    HTTP 403: listing {listings[2]['id']}: {forbidden}" in lines
    run_id = ReportEntry.objects.get(url=forbidden).run_id
    assert (
        f"  All entries: python manage.py pf_report --run {run_id} (or run {run_id} in the admin)"
        in (lines)
    )


def test_a_new_listings_failed_images_link_the_property_it_became(sandbox_settings):
    sb = sandbox_settings
    raw = with_images(sb)[0]
    sb.faults.add_image(first_url(raw), "404", times=None)

    sync()

    entry = ReportEntry.objects.get(action="image.failed")
    assert (entry.reason, entry.http_status, entry.url) == ("http_status", 404, first_url(raw))
    assert entry.object_type == "property"
    assert entry.object_id == Property.objects.get(pf_id=raw["id"]).pk


def test_the_json_summary_groups_failures_by_cause(sandbox_settings):
    sb = sandbox_settings
    sb.faults.add_image(first_url(with_images(sb)[0]), "404", times=None)

    text, status = sync("--json")

    assert status == 1
    by_cause = json.loads(text)["failures_by_cause"]
    assert by_cause["total"] == 1
    [group] = by_cause["groups"]
    assert (group["what"], group["count"]) == ("images failed", 1)
    assert [(c["label"], c["count"]) for c in group["causes"]] == [("HTTP 404", 1)]


def test_a_report_file_that_cannot_be_written_is_printed_with_the_failures(
    sandbox_settings, settings, tmp_path
):
    settings.REPORT_FILE = str(tmp_path)  # a folder where the file should be

    text, status = sync("--no-images")

    assert status == 1
    lines = text.splitlines()
    assert "  1 report file line not written: is a folder" in lines
    assert f"    is a folder: report file {tmp_path}: Is a directory" in lines


def test_a_clean_run_lists_no_failures(sandbox_settings):
    text, status = sync()

    assert status == 0
    assert not [line for line in text.splitlines() if re.match(r"\s+\d+ [a-z ]+ failed", line)]
    assert "All entries" not in text


def test_on_a_site_without_areas_the_unmapped_line_uses_pf_areas_words(monkeypatch):
    # pf_areas unmapped says "unnamed locations" on such a site; it counts every synced
    # listing's location, the line this run's listings' only. The host map is read once per
    # process (the models are built from it), so the site's kind is patched here.
    monkeypatch.setattr(areas, "has_areas", lambda: False)
    result = SyncResult(run_id=None, counters={}, exit_code=0, unmapped_locations={7: 2, 8: 1})
    command = Command(stdout=StringIO(), stderr=StringIO())

    command.print_summary(result, SyncOptions(), verbosity=1)

    lines = command.stdout._out.getvalue().splitlines()
    assert (
        "  2 unnamed locations in this run's listings (python manage.py pf_areas unmapped):"
        in lines
    )


def test_unmapped_locations_past_twenty_end_with_how_many_more():
    result = SyncResult(
        run_id=None,
        counters={},
        exit_code=0,
        unmapped_locations={location: 100 - location for location in range(1, 30)},
    )
    command = Command(stdout=StringIO(), stderr=StringIO())

    command.print_summary(result, SyncOptions(), verbosity=1)

    lines = command.stdout._out.getvalue().splitlines()
    assert (
        "  29 unmapped locations in this run's listings (python manage.py pf_areas unmapped):"
        in lines
    )
    listed = [line for line in lines if line.startswith("    location ")]
    assert len(listed) == 20
    assert listed[0] == "    location 1: 99 listings"
    assert lines[lines.index(listed[-1]) + 1] == "    and 9 more"


def test_a_listing_back_from_one_night_away_is_counted_republished_in_text_and_json(
    sandbox_settings,
):
    sb = sandbox_settings
    pf_id = sb.data.listing_ids()[0]
    sync()
    sb.faults.leave_out(pf_id)
    sync()
    sb.faults.bring_back(pf_id)

    text, status = sync()

    assert status == 0
    assert f"  {'Properties republished:':<24}1" in text.splitlines()
    sb.faults.leave_out(pf_id)
    sync()
    sb.faults.bring_back(pf_id)
    text, _ = sync("--json")
    assert json.loads(text)["counters"]["properties_republished"] == 1


def test_a_dry_run_says_so_in_its_header_and_names_the_agent_a_real_run_would_create(
    sandbox_settings,
):
    sb = sandbox_settings
    call_command("pf_sync", "--no-images", stdout=StringIO(), stderr=StringIO())
    profile = sb.data.user(sb.data.add_user())["publicProfile"]["id"]
    moved = sb.data.listings()[0]["id"]
    sb.data.update_listing(moved, **{"assignedTo.id": profile})
    before = Property.objects.get(pf_id=moved).user_id

    out, status = sync("--dry-run", "--no-images")

    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "DRY RUN: what a sync would change (nothing is written):"
    [changed] = [line for line in lines if line.startswith(f"  listing {moved}: ")]
    assert f"user_id: {before} → (a new agent: PF public profile {profile})" in changed
    header = next(line for line in lines if line.startswith("Dry run finished"))
    assert re.fullmatch(r"Dry run finished \(run \d+\): nothing was written or downloaded", header)
    assert "  Would update properties:    1" in lines
    assert "  Would create users:         1" in lines
    assert not any(line.startswith(("Sync finished", "  Properties updated")) for line in lines)
    assert Property.objects.get(pf_id=moved).user_id == before
