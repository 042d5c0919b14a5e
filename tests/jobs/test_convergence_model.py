"""Any sequence of nights leaves the site showing what Property Finder shows (a model-based test).

Hypothesis drives a sandbox through random nights: listings added, removed, left
out for a night and brought back, taken down and put live again, edited; photos
added, removed, reordered and duplicated; agents reassigned; the store changing
between two pages of one fetch; fetches that fail half-way. After every sync,
nothing live was unpublished and no row or file was deleted; after every sync
whose fetch saw no change while it ran, the host tables equal the sandbox's live
listings under every mapping rule (``tests.fixtures.site``).

``scripts/test`` runs the ``default`` profile (bounded, about a minute); the
``long`` one by hand: ``scripts/test --hypothesis-profile=long
tests/jobs/test_convergence_model.py``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import transaction
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    rule,
    run_state_machine_as_test,
)

from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Property, PropertyImage
from pfsync_app.sandbox import Sandbox
from pfsync_app.sandbox.store import is_live
from tests.fixtures.faults import FastClient
from tests.fixtures.site import assert_database_equals_sandbox

pytestmark = pytest.mark.django_db

PER_PAGE = 3
ATTEMPTS = 6  # FastClient's attempts at one request
pick = st.integers(min_value=0, max_value=10_000)
# One change on Property Finder: (method of Nights, its arguments).
CHANGES = st.one_of(
    st.tuples(st.just("add_listing")),
    st.tuples(st.just("remove_listing"), pick),
    st.tuples(st.just("leave_out_for_a_night"), pick),
    st.tuples(st.just("bring_back_unchanged"), pick),
    st.tuples(st.just("take_down_or_put_back"), pick),
    st.tuples(st.just("edit"), pick, pick),
    st.tuples(st.just("add_photo"), pick),
    st.tuples(st.just("remove_photo"), pick, pick),
    st.tuples(st.just("reorder_or_duplicate_photos"), pick, st.lists(pick, min_size=1, max_size=5)),
    st.tuples(st.just("reassign_agent"), pick, pick),
    st.tuples(st.just("shift_pages_during_the_fetch"), pick, pick),
    st.tuples(st.just("fail_the_fetch_after_its_first_page")),
)


# Django 6.1 renamed transaction.savepoint() to savepoint_create() and deprecates the old name.
SAVEPOINT_CREATE = getattr(transaction, "savepoint_create", transaction.savepoint)


class Nights(RuleBasedStateMachine):
    """One sandbox and one host database through a random sequence of nights."""

    settings = None  # the test's pytest-django settings, set before each run
    media = Path()
    examples = itertools.count()
    nights = 0  # over all sequences
    compared = 0  # nights whose result was compared with the sandbox, over all sequences

    def __init__(self) -> None:
        super().__init__()
        number = next(Nights.examples)
        self.savepoint = SAVEPOINT_CREATE()
        Nights.settings.MEDIA_ROOT = Nights.media / f"example-{number}"
        self.sb = Sandbox(users=3, listings=5, images_per_listing=2, image_bytes=400, seed=number)
        self.sb.start()
        Nights.settings.PF_API_URL = self.sb.url
        Nights.settings.PF_API_KEY = self.sb.api_key
        Nights.settings.PF_API_SECRET = self.sb.api_secret
        self.moving = False  # the store changes during the next fetch
        self.failing = False  # the next fetch fails after its first page

    def teardown(self) -> None:
        self.sb.stop()
        transaction.savepoint_rollback(self.savepoint)

    # -- what the sandbox serves -------------------------------------------------------

    def served(self) -> list[str]:
        left_out = self.sb.faults.left_out()
        return [pf_id for pf_id in self.sb.data.listing_ids() if pf_id not in left_out]

    def choose(self, index: int, ids: list[str]) -> str:
        return ids[index % len(ids)]

    def with_images(self) -> list[str]:
        return [pf_id for pf_id in self.served() if images_of(self.sb, pf_id)]

    # -- Property Finder's side: the changes of one day -------------------------------

    def add_listing(self) -> None:
        self.sb.data.add_listing()

    def remove_listing(self, index: int) -> None:
        if len(self.served()) > 1:
            self.sb.data.remove_listing(self.choose(index, self.served()))

    def leave_out_for_a_night(self, index: int) -> None:
        if len(self.served()) > 1:
            self.sb.faults.leave_out(self.choose(index, self.served()))

    def bring_back_unchanged(self, index: int) -> None:
        if self.sb.faults.left_out():
            self.sb.faults.bring_back(self.choose(index, sorted(self.sb.faults.left_out())))

    def take_down_or_put_back(self, index: int) -> None:
        pf_id = self.choose(index, self.served())
        if is_live(self.sb.data.listing(pf_id)):
            self.sb.data.unpublish_listing(pf_id)
        else:
            self.sb.data.publish_listing(pf_id)

    def edit(self, index: int, value: int) -> None:
        pf_id = self.choose(index, self.served())
        changes = [
            {"price.type": "sale", "price.amounts.sale": 100_000 * (value + 1)},
            {"title.en": f"Edited title {value}"},
            {"bedrooms": str(value % 7)},
        ][value % 3]
        self.sb.data.update_listing(pf_id, **changes)

    def add_photo(self, index: int) -> None:
        self.sb.data.add_image(self.choose(index, self.served()))

    def remove_photo(self, index: int, position: int) -> None:
        if self.with_images():
            pf_id = self.choose(index, self.with_images())
            self.sb.data.remove_image(pf_id, position % len(images_of(self.sb, pf_id)))

    def reorder_or_duplicate_photos(self, index: int, order: list[int]) -> None:
        if self.with_images():
            pf_id = self.choose(index, self.with_images())
            count = len(images_of(self.sb, pf_id))
            self.sb.data.arrange_images(pf_id, [position % count for position in order])

    def reassign_agent(self, index: int, agent: int) -> None:
        profiles = [
            user["publicProfile"] for user in self.sb.data.users() if user.get("publicProfile")
        ]
        profile = profiles[agent % len(profiles)]
        self.sb.data.update_listing(
            self.choose(index, self.served()),
            assignedTo={"id": profile["id"], "name": profile.get("name", "")},
        )

    def shift_pages_during_the_fetch(self, index: int, how: int) -> None:
        if self.moving or len(self.served()) <= PER_PAGE:
            return
        victim = self.choose(index, self.served()[:PER_PAGE])

        def change() -> None:
            # Between pages 1 and 2: a listing already read goes and/or one comes, so the
            # later listings shift onto a page that was read already.
            if how % 3 in (0, 1) and victim in self.sb.data.listing_ids():
                self.sb.data.remove_listing(victim)  # unless a change of the day removed it
            if how % 3 in (0, 2):
                self.sb.data.add_listing()

        self.sb.faults.change_before_page(2, change)
        self.moving = True

    def fail_the_fetch_after_its_first_page(self) -> None:
        self.failing = True

    # -- pfsync's night ------------------------------------------------------------------

    @rule(changes=st.lists(CHANGES, max_size=4))
    def night(self, changes: list[tuple]) -> None:
        """A day's changes on Property Finder, then pfsync's night."""
        for name, *arguments in changes:
            getattr(self, name)(*arguments)
        before = snapshot()
        live_before = {raw["id"] for raw in self.sb.data.listings() if is_live(raw)}
        if self.failing:
            # Every attempt the client makes at page 2 fails: the fetch stops there.
            self.sb.faults.add("/v1/listings?page=2", "status", status=500, times=ATTEMPTS)
        client = FastClient(self.sb, per_page=PER_PAGE)
        try:
            result = run_sync(SyncOptions(), client=client)
        finally:
            client.close()
        Nights.nights += 1
        clean = not (self.moving or self.failing)
        self.sb.faults.take_page_change(2)  # a change for a page the fetch never reached
        while self.sb.faults.take("/v1/listings?page=2", ("status",)):
            pass  # attempts at a page the fetch never reached
        self.moving = self.failing = False

        after = snapshot()
        live_now = {raw["id"] for raw in self.sb.data.listings() if is_live(raw)}
        served = set(self.served())
        hidden = (before.published - after.published) & live_before & live_now & served
        assert not hidden, f"live listings were unpublished: {sorted(hidden)}"
        assert before.properties <= after.properties, "a property row was deleted"
        assert before.images <= after.images, "an image row was deleted"
        missing = [name for name in before.files if not default_storage.exists(name)]
        assert not missing, f"files were deleted: {missing}"
        if clean:
            assert result.exit_code == 0, result.failures
            assert_database_equals_sandbox(self.sb, gone=after.pf_ids - served)
            Nights.compared += 1


class Snapshot:
    """The host rows and files at one moment."""

    def __init__(self) -> None:
        rows = list(Property.objects.values_list("pk", "pf_id", "is_published"))
        self.properties = {pk for pk, _, _ in rows}
        self.pf_ids = {pf_id for _, pf_id, _ in rows}
        self.published = {pf_id for _, pf_id, published in rows if published}
        images = list(PropertyImage.objects.values_list("pk", "image"))
        self.images = {pk for pk, _ in images}
        self.files = {name for _, name in images}


def snapshot() -> Snapshot:
    """The host rows and files now."""
    return Snapshot()


def images_of(sb: Sandbox, pf_id: str) -> list:
    return (sb.data.listing(pf_id).get("media") or {}).get("images") or []


def test_any_sequence_of_nights_converges_and_never_hides_a_live_listing(settings, tmp_path):
    settings.PF_MEDIA_ALLOW_PRIVATE_HOSTS = True
    settings.PF_SYNC_MAX_UNPUBLISH_PERCENT = 100  # the circuit breaker has its own tests
    Nights.settings = settings
    Nights.media = tmp_path
    run_state_machine_as_test(Nights)
    print(
        f"{next(Nights.examples)} sequences, {Nights.nights} nights, "
        f"{Nights.compared} compared with the sandbox"
    )
    assert Nights.compared, "no night was compared with the sandbox"
