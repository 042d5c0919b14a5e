"""The site shows what Property Finder shows, whatever the night brings (issue 15's cases)."""

from __future__ import annotations

import pytest

from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Property, PropertyImage, ReportEntry
from pfsync_app.sandbox import Sandbox
from pfsync_app.sandbox.store import is_live
from tests.fixtures.faults import FastClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def sb(sandbox_settings: Sandbox) -> Sandbox:
    """The small sandbox (12 listings), pfsync pointed at it."""
    return sandbox_settings


def night(sb: Sandbox, per_page: int = 5, **options):
    """One pf_sync with small listing pages; its result."""
    client = FastClient(sb, per_page=per_page)
    try:
        return run_sync(SyncOptions(**options), client=client)
    finally:
        client.close()


def published() -> set[str]:
    return set(Property.objects.filter(is_published=True).values_list("pf_id", flat=True))


def live_in(sb: Sandbox) -> set[str]:
    return {raw["id"] for raw in sb.data.listings() if is_live(raw)}


def actions(run_id: int, action: str) -> list[ReportEntry]:
    return list(ReportEntry.objects.filter(run_id=run_id, action=action))


# -- paging drift ------------------------------------------------------------------


def test_a_live_listing_shifted_to_an_already_read_page_is_found_again_not_unpublished(sb):
    assert night(sb).exit_code == 0
    order = [raw["id"] for raw in sb.data.listings()]
    taken_down, shifted = order[0], order[5]

    def drift() -> None:
        # Between page 1 and page 2: one listing goes, one comes; the total stays the same
        # and listing 6 moves onto page 1, which was read already.
        sb.data.remove_listing(taken_down)
        sb.data.add_listing()

    sb.faults.change_before_page(2, drift)
    result = night(sb)

    assert result.exit_code == 0, result.failures
    assert shifted in published(), "a live listing was hidden by paging drift"
    assert result.listings_found_again == 1
    [confirmed] = actions(result.run_id, "unpublish.confirmed")
    assert "found 1 still live" in confirmed.message
    # The listing taken down was read on page 1 before it went: the next night confirms it.
    assert night(sb).listings_confirmed_gone == 1
    assert taken_down not in published()
    assert published() == live_in(sb)


def test_paging_drift_over_150_listings_unpublishes_only_what_is_gone(settings):
    settings.PF_SYNC_MAX_UNPUBLISH_PERCENT = 10
    with Sandbox(users=3, listings=150, images_per_listing=0, seed=3) as sb:
        settings.PF_API_URL, settings.PF_API_KEY = sb.url, sb.api_key
        settings.PF_API_SECRET = sb.api_secret
        assert night(sb, per_page=20).exit_code == 0
        order = [raw["id"] for raw in sb.data.listings()]

        def drift() -> None:
            for pf_id in order[:3]:
                sb.data.remove_listing(pf_id)
            for _ in range(3):
                sb.data.add_listing()

        sb.faults.change_before_page(3, drift)
        result = night(sb, per_page=20)

        assert result.exit_code == 0, result.failures
        # The three that moved onto a page already read were found again, none unpublished.
        assert result.listings_found_again == 3
        assert result.counters["properties_unpublished"] == 0
        assert published() == live_in(sb) | set(order[:3])
        # The next night confirms the three that went (2% of 150, within the 10% limit).
        again = night(sb, per_page=20)
        assert (again.listings_confirmed_gone, again.counters["properties_unpublished"]) == (3, 3)
        assert published() == live_in(sb)


def test_a_failed_look_up_unpublishes_nothing(sb):
    assert night(sb).exit_code == 0
    gone = sb.data.listing_ids()[3]
    sb.data.remove_listing(gone)
    sb.faults.add("/v1/listings?filter%5Bids%5D", "status", status=500, times=None)

    result = night(sb)

    assert gone in published()
    assert "nothing was unpublished" in result.unpublish_note
    sb.faults.clear()
    night(sb)
    assert gone not in published()


# -- a bad photo ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["no_url", "no_original", "bad_size"])
def test_a_listing_with_one_bad_photo_is_saved_with_its_other_fields_and_images(sb, how):
    assert night(sb).exit_code == 0
    pf_id = next(raw["id"] for raw in sb.data.listings() if len(raw["media"]["images"]) >= 2)
    sb.data.break_image(pf_id, 1, how)
    sb.data.update_listing(pf_id, **{"price.amounts.sale": 1234567, "price.type": "sale"})
    new_id = sb.data.add_listing()
    sb.data.break_image(new_id, 0, how)

    result = night(sb)

    assert Property.objects.get(pf_id=pf_id).price == 1234567
    assert Property.objects.filter(pf_id=new_id).exists(), "the new listing was not created"
    warnings = [e.message for e in actions(result.run_id, "listing.warning") if e.pf_id == pf_id]
    assert any(message.startswith("image 1 skipped: media.images[1]") for message in warnings)
    assert not actions(result.run_id, "listing.duplicate"), "a false paging warning"
    assert not actions(result.run_id, "listing.invalid")
    kept = PropertyImage.objects.filter(property__pf_id=pf_id, is_active=True)
    assert 1 not in set(kept.values_list("position", flat=True))
    assert kept.exists()


# -- the same photo twice ----------------------------------------------------------


def active_urls(pf_id: str) -> list[str]:
    """The source URLs of a property's active images, in position order."""
    rows = PropertyImage.objects.filter(property__pf_id=pf_id, is_active=True).order_by("position")
    return list(rows.values_list("source_url", flat=True))


def served_urls(sb: Sandbox, pf_id: str) -> list[str]:
    return [image["original"]["url"] for image in sb.data.listing(pf_id)["media"]["images"]]


def test_the_same_photo_twice_keeps_its_exact_order_after_updates_and_full(sb):
    pf_id = sb.data.listing_ids()[0]
    sb.data.arrange_images(pf_id, [0, 1, 0])
    a, b, _ = served_urls(sb, pf_id)

    assert night(sb).exit_code == 0
    assert active_urls(pf_id) == [a, b, a]
    positions = PropertyImage.objects.filter(property__pf_id=pf_id, is_active=True)
    assert sorted(positions.values_list("position", flat=True)) == [0, 1, 2]

    sb.data.update_listing(pf_id, **{"title.en": "A new title"})
    assert night(sb).exit_code == 0
    assert active_urls(pf_id) == [a, b, a], "an update scrambled the photos"

    assert night(sb, full=True).exit_code == 0
    assert active_urls(pf_id) == [a, b, a], "--full scrambled the photos"

    sb.data.arrange_images(pf_id, [1, 0, 2, 1])
    assert night(sb).exit_code == 0
    assert active_urls(pf_id) == [b, a, a, b]
    rows = PropertyImage.objects.filter(property__pf_id=pf_id)
    assert rows.count() >= 4, "no image row is ever deleted"


# -- a listing that comes back -------------------------------------------------------


def test_a_listing_left_out_for_one_night_is_published_again_when_it_comes_back(sb):
    pf_id = sorted(live_in(sb))[0]
    assert night(sb).exit_code == 0
    served = sb.data.listing(pf_id)

    sb.faults.leave_out(pf_id)
    gone = night(sb)
    assert gone.counters["properties_unpublished"] == 1
    assert pf_id not in published()

    sb.faults.bring_back(pf_id)
    assert sb.data.listing(pf_id) == served, "the listing must come back byte-identical"
    back = night(sb)

    assert back.exit_code == 0, back.failures
    assert pf_id in published(), "a listing that came back stayed unpublished"
    assert back.counters["properties_republished"] == 1
    [entry] = actions(back.run_id, "property.republished")
    assert entry.pf_id == pf_id
    # Every other listing still agrees with its rows: skipped, not written again.
    assert back.listings_skipped_unchanged == back.listings_received - 1
    again = night(sb)
    assert again.counters["properties_republished"] == 0
    assert again.listings_skipped_unchanged == again.listings_received


def test_a_property_edited_on_the_site_is_written_again_on_the_next_night(sb):
    pf_id = sorted(live_in(sb))[0]
    assert night(sb).exit_code == 0
    listing_title = Property.objects.get(pf_id=pf_id).title
    Property.objects.filter(pf_id=pf_id).update(title="Edited by hand")
    image = PropertyImage.objects.filter(property__pf_id=pf_id, is_active=True).first()
    PropertyImage.objects.filter(pk=image.pk).update(is_active=False)

    result = night(sb)

    assert Property.objects.get(pf_id=pf_id).title == listing_title
    assert PropertyImage.objects.get(pk=image.pk).is_active
    assert result.listings_skipped_unchanged == result.listings_received - 1
