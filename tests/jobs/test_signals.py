"""The site's code hooks in through signals: in the row's transaction, never on a dry run."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
from django.conf import settings

from pfsync_app import signals
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Agent, ImageFile, ListingState, Property, PropertyImage, ReportEntry

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def connected(signal, receiver):
    signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver)


def stored_files() -> set[str]:
    root = settings.MEDIA_ROOT
    return {
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    }


def test_a_receiver_that_sets_the_owner_lands_with_the_row(sandbox_settings):
    owner = Agent.objects.create(username="owner", password="!", email="owner@site.example")
    seen = []

    def set_owner(sender, values, created, listing, **kwargs):
        assert sender is Property
        if created:
            values["user_id"] = owner.pk
        seen.append((listing.id, created))

    with connected(signals.before_property_save, set_owner):
        result = run_sync(SyncOptions())

    assert result.exit_code == 0, result.failures
    count = Property.objects.count()
    assert count == len(sandbox_settings.data.listings())
    assert set(Property.objects.values_list("user_id", flat=True)) == {owner.pk}
    assert sorted(seen) == sorted(
        (pf_id, True) for pf_id in Property.objects.values_list("pf_id", flat=True)
    )


def test_a_receiver_that_raises_fails_only_its_listing_and_leaves_nothing_of_it(sandbox_settings):
    sb = sandbox_settings
    doomed = next(raw["id"] for raw in sb.data.listings() if (raw.get("media") or {}).get("images"))

    def refuse(sender, image_id, listing, **kwargs):
        if listing.id == doomed:
            raise RuntimeError("the thumbnail service is down")

    with connected(signals.after_image_save, refuse):
        result = run_sync(SyncOptions())

    assert result.exit_code == 1
    [error] = ReportEntry.objects.filter(run_id=result.run_id, level="error")
    assert error.pf_id == doomed
    assert error.message == (
        f"the after_image_save receiver {__name__}."
        "test_a_receiver_that_raises_fails_only_its_listing_and_leaves_nothing_of_it.<locals>."
        "refuse failed: RuntimeError: the thumbnail service is down"
    )
    assert not Property.objects.filter(pf_id=doomed).exists()
    assert not ListingState.objects.filter(pf_id=doomed).exists()
    others = {raw["id"] for raw in sb.data.listings()} - {doomed}
    assert set(Property.objects.values_list("pf_id", flat=True)) == others
    # The listing's rows rolled back with its files: no image row, no checksum, no stray file.
    referenced = set(PropertyImage.objects.values_list("image", flat=True))
    assert stored_files() == referenced
    assert set(ImageFile.objects.values_list("name", flat=True)) == referenced

    again = run_sync(SyncOptions())

    assert again.exit_code == 0, again.failures
    assert Property.objects.filter(pf_id=doomed).exists()
    assert again.counters["properties_created"] == 1


def test_image_and_user_receivers_see_each_row_they_may_complete(sandbox_settings):
    images, users = [], []

    def on_image(sender, values, created, image_id, property_id, image, **kwargs):
        images.append((created, image_id, property_id, image.position, values.get("image")))

    def on_user(sender, values, created, user, **kwargs):
        values["last_name"] = (values.get("last_name") or "") + " (PF)"
        users.append(user.id)

    with (
        connected(signals.before_image_save, on_image),
        connected(signals.before_user_save, on_user),
    ):
        run_sync(SyncOptions())

    assert len(images) == PropertyImage.objects.count()
    assert {(created, image_id) for created, image_id, *_ in images} == {(True, None)}
    assert all(name.startswith("property_images/") for *_, name in images)
    assert sorted(users) == sorted(u["id"] for u in sandbox_settings.data.users())
    assert all(last.endswith(" (PF)") for last in Agent.objects.values_list("last_name", flat=True))


def test_no_signal_is_sent_on_a_dry_run(sandbox_settings):
    sent = []

    def count(sender, **kwargs):
        sent.append(sender)

    every = [getattr(signals, name) for name in dir(signals) if name.endswith("_save")]
    for signal in every:
        signal.connect(count, weak=False)
    try:
        result = run_sync(SyncOptions(dry_run=True))
    finally:
        for signal in every:
            signal.disconnect(count)

    assert result.counters["properties_created"] > 0
    assert sent == []
    assert Property.objects.count() == 0
