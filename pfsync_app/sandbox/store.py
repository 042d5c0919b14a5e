"""The sandbox's data: users, listings and their images, readable and changeable while it serves.

Generated listings stay a (seed, index) pair until something changes them; a changed
or added listing is kept whole. Every change bumps the listing's ``updatedAt`` and
tells the listener (the webhook hub) which event Atlas would send.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pfsync_app.sandbox import generate
from pfsync_app.sandbox.images import photo, render_image
from pfsync_app.sandbox.locations import LOCATIONS, location_json


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()
"""Value for a dotted key in ``update_listing``/``update_user`` that deletes the key."""

# Listener signature: (event type, entity type, entity id, payload).
Listener = Callable[[str, str, str, dict], None]
HIDDEN_STAGES = ("draft", "archived")


def apply_changes(target: dict, changes: Mapping[str, Any]) -> None:
    """Set dotted keys (``"price.amounts.sale"``, ``"media.images.0"``; ``__`` works as ``.``)."""
    for dotted, value in changes.items():
        keys = dotted.replace("__", ".").split(".")
        node: Any = target
        for key in keys[:-1]:
            if isinstance(node, list):
                node = node[int(key)]
            else:
                if not isinstance(node.get(key, {}), dict | list):
                    raise ValueError(f"cannot set {dotted!r}: {key!r} is not an object")
                node = node.setdefault(key, {})
        last = keys[-1]
        if isinstance(node, list):
            if value is REMOVE:
                node.pop(int(last))
            else:
                node[int(last)] = copy.deepcopy(value)
        elif value is REMOVE:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)


def is_live(listing: Mapping[str, Any]) -> bool:
    """Live on Property Finder: ``portals.propertyfinder.isLive``, else the state stage."""
    portal = (listing.get("portals") or {}).get("propertyfinder") or {}
    if "isLive" in portal:
        return bool(portal["isLive"])
    return (listing.get("state") or {}).get("stage") == "live"


#: The pixels of an image the API gives no width and height for.
UNSIZED = (800, 600)


class SandboxData:
    """Thread-safe store of the sandbox's users, listings, images and locations."""

    def __init__(
        self,
        *,
        seed: int,
        users: int,
        listings: int,
        images_per_listing: int,
        base_url: str,
        image_size: Callable[[], int],
        photos: Callable[[], bool] = lambda: False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.seed = seed
        self.images_per_listing = images_per_listing
        self.base_url = base_url
        self._image_size = image_size
        self._photos = photos
        self._now = now
        self._lock = threading.RLock()
        self._listener: Listener | None = None
        self._users: dict[int, dict] = {}
        for index in range(users):
            user = generate.make_user(seed, index)
            self._users[user["id"]] = user
        self._next_user = users
        # Listings point at public profiles as they were at start, so generating a
        # listing again gives the same dict whatever happened to users since.
        self._agents = [
            {"id": u["publicProfile"]["id"], "name": u["publicProfile"]["name"]}
            for u in self._users.values()
            if u.get("publicProfile")
        ]
        self._order: list[str] = []
        self._generated: dict[str, int] = {}
        for index in range(listings):
            listing_id, _ = generate.listing_identity(seed, index)
            self._order.append(listing_id)
            self._generated[listing_id] = index
        self._changed: dict[str, dict] = {}
        self._aliases: dict[str, str] = {}  # a served record's own id -> its key (serve_records)
        self._hidden: set[str] = set()
        self._next_listing = listings
        self._added_images = 0

    def set_listener(self, listener: Listener | None) -> None:
        """Who hears of changes (the webhook hub)."""
        self._listener = listener

    # --- reading

    def _get(self, listing_id: str) -> dict:
        if listing_id in self._changed:
            return self._changed[listing_id]
        if listing_id in self._generated:
            return generate.make_listing(
                self.seed,
                self._generated[listing_id],
                self.base_url,
                self.images_per_listing,
                self._agents,
            )
        raise KeyError(f"no listing {listing_id!r} in the sandbox")

    def _copy(self, listing_id: str) -> dict:
        listing = self._get(listing_id)
        # A generated dict is already new; a stored one must not leak to callers.
        return copy.deepcopy(listing) if listing_id in self._changed else listing

    def listing(self, listing_id: str) -> dict:
        """A copy of one listing, as the API shows it."""
        with self._lock:
            return self._copy(listing_id)

    def listing_ids(self, *, include_hidden: bool = True) -> list[str]:
        """Listing ids in API order; without drafts and archived ones unless asked."""
        with self._lock:
            if include_hidden or not self._hidden:
                return list(self._order)
            return [i for i in self._order if i not in self._hidden]

    def listings(self) -> list[dict]:
        """Copies of every listing in API order (drafts and archived ones included)."""
        with self._lock:
            return [self._copy(i) for i in self._order]

    def listings_by_id(self, ids: Iterable[str]) -> list[dict]:
        """Copies of the listings with these ids that exist, in the order given."""
        with self._lock:
            return [self._copy(i) for i in ids if i in self._changed or i in self._generated]

    def users(self) -> list[dict]:
        """Copies of every user in API order."""
        with self._lock:
            return copy.deepcopy(list(self._users.values()))

    def user(self, user_id: int) -> dict:
        """A copy of one user."""
        with self._lock:
            return copy.deepcopy(self._user(user_id))

    def _user(self, user_id: int) -> dict:
        try:
            return self._users[user_id]
        except KeyError:
            raise KeyError(f"no user {user_id!r} in the sandbox") from None

    def locations(self, *, arabic: bool = False) -> list[dict]:
        """Every location the sandbox knows, as ``GET /v1/locations`` shows them."""
        return [location_json(i, arabic=arabic) for i in LOCATIONS]

    # --- images

    def image_size(self, url: str) -> tuple[int, int] | None:
        """Width and height of the image served at ``url`` (a URL or a path), or None."""
        path = urlsplit(url).path
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "images":
            return None
        full = self.base_url + path
        with self._lock:
            try:
                listing = self._get(parts[2])
            except KeyError:
                return None
            try:
                for image in (listing.get("media") or {}).get("images") or []:
                    for variant in image.values():
                        if isinstance(variant, dict) and variant.get("url") == full:
                            # An image whose size the API leaves out is still a picture.
                            width, height = variant.get("width"), variant.get("height")
                            return _pixels(width, UNSIZED[0]), _pixels(height, UNSIZED[1])
            except (AttributeError, TypeError):
                return None  # a hostile record (serve_records) names no image it can serve
        return None

    def image_bytes(self, url: str) -> bytes:
        """Exactly the bytes the image host serves for ``url`` (when no fault is set)."""
        size = self.image_size(url)
        if size is None:
            raise KeyError(f"the sandbox serves no image at {url!r}")
        path = urlsplit(url).path
        if self._photos():
            return photo(path)
        return render_image(path, self._image_size(), *size)

    # --- changing listings

    def _editable(self, listing_id: str) -> dict:
        if listing_id not in self._changed:
            self._changed[listing_id] = self._get(listing_id)
        return self._changed[listing_id]

    def _touch(self, listing: dict) -> None:
        now = self._now().replace(microsecond=0)
        previous = generate.parse_iso(listing["updatedAt"]) if listing.get("updatedAt") else None
        # Strictly newer, even for two changes within one second.
        if previous is not None and now <= previous:
            now = previous + timedelta(seconds=1)
        listing["updatedAt"] = generate.iso(now)

    def _after_change(self, listing_id: str, listing: dict | None, was_live: bool) -> None:
        if listing is not None:
            stage = (listing.get("state") or {}).get("stage")
            if stage in HIDDEN_STAGES:
                self._hidden.add(listing_id)
            else:
                self._hidden.discard(listing_id)
        now_live = listing is not None and is_live(listing)
        if now_live:
            self._emit("listing.published", "listing", listing_id, {})
        elif was_live:
            self._emit("listing.unpublished", "listing", listing_id, {})

    def _emit(self, event_type: str, entity_type: str, entity_id: str, payload: dict) -> None:
        if self._listener is not None:
            self._listener(event_type, entity_type, entity_id, payload)

    def update_listing(
        self, listing_id: str, edit: Callable[[dict], Any] | None = None, /, **changes: Any
    ) -> dict:
        """Change a listing by dotted keys and/or a function that edits its dict; returns a copy."""
        with self._lock:
            listing = self._editable(listing_id)
            was_live = is_live(listing)
            if edit is not None:
                edit(listing)
            apply_changes(listing, changes)
            self._touch(listing)
            self._after_change(listing_id, listing, was_live)
            return copy.deepcopy(listing)

    def publish_listing(self, listing_id: str) -> dict:
        """Make a listing live on Property Finder (sends ``listing.published``)."""
        return self.update_listing(
            listing_id,
            **{
                "portals.propertyfinder.isLive": True,
                "portals.propertyfinder.publishedAt": generate.iso(self._now()),
                "state": {"type": "live", "stage": "live"},
            },
        )

    def unpublish_listing(self, listing_id: str) -> dict:
        """Take a listing down (sends ``listing.unpublished``); the API still lists it."""
        return self.update_listing(
            listing_id,
            **{
                "portals.propertyfinder.isLive": False,
                "portals.propertyfinder.publishedAt": REMOVE,
                "state": {"type": "takendown", "stage": "takendown"},
            },
        )

    def add_listing(self, **overrides: Any) -> str:
        """Add a new listing at the end of the API order; dotted overrides; returns its id."""
        with self._lock:
            index = self._next_listing
            self._next_listing += 1
            listing = generate.make_listing(
                self.seed, index, self.base_url, self.images_per_listing, self._agents
            )
            now = generate.iso(self._now())
            listing["createdAt"] = listing["updatedAt"] = now
            apply_changes(listing, overrides)
            listing_id = listing["id"]
            if listing_id in self._changed or listing_id in self._generated:
                raise ValueError(f"a listing with id {listing_id!r} already exists")
            self._changed[listing_id] = listing
            self._order.append(listing_id)
            self._after_change(listing_id, listing, was_live=False)
            return listing_id

    def remove_listing(self, listing_id: str) -> None:
        """Remove a listing: the API stops returning it and its images answer 404."""
        with self._lock:
            was_live = is_live(self._get(listing_id))
            self._order.remove(listing_id)
            self._changed.pop(listing_id, None)
            self._generated.pop(listing_id, None)
            self._hidden.discard(listing_id)
            self._after_change(listing_id, None, was_live)

    def _images(self, listing: dict) -> list[dict]:
        media = listing.setdefault("media", {})
        return media.setdefault("images", [])

    def _new_image(self, listing_id: str) -> dict:
        self._added_images += 1
        rng = random.Random(f"{self.seed}:added-image:{self._added_images}")
        extension = "png" if self._added_images % 3 == 0 else "jpg"
        return generate.make_image(rng, self.base_url, listing_id, extension)

    def add_image(self, listing_id: str) -> str:
        """Append a new image to a listing; returns its original URL."""
        with self._lock:
            image = self._new_image(listing_id)

            def append(listing: dict) -> None:
                self._images(listing).append(image)

            self.update_listing(listing_id, append)
            return image["original"]["url"]

    def remove_image(self, listing_id: str, position: int) -> None:
        """Remove the image at ``position`` (its URL then answers 404)."""
        with self._lock:
            self._check_position(listing_id, position)
            self.update_listing(listing_id, lambda listing: self._images(listing).pop(position))

    def rotate_image_url(self, listing_id: str, position: int) -> str:
        """Give the image at ``position`` new URLs, as Property Finder does; returns the new one."""
        with self._lock:
            self._check_position(listing_id, position)
            old = self._get(listing_id)["media"]["images"][position]
            fresh = self._new_image(listing_id)
            # Same picture size, new address: only the URLs change.
            for variant, value in fresh.items():
                if variant in old:
                    value["width"], value["height"] = old[variant]["width"], old[variant]["height"]

            def replace(listing: dict) -> None:
                self._images(listing)[position] = fresh

            self.update_listing(listing_id, replace)
            return fresh["original"]["url"]

    def arrange_images(self, listing_id: str, order: list[int]) -> None:
        """Set ``media.images`` to the current items at ``order`` (reorder, drop, duplicate).

        ``arrange_images(id, [0, 1, 0])`` makes photos ``[a, b]`` into ``[a, b, a]``:
        the same item, URL included, at two positions, as real feeds sometimes send.
        """
        with self._lock:
            for position in order:
                self._check_position(listing_id, position)

            def arrange(listing: dict) -> None:
                current = self._images(listing)
                listing["media"]["images"] = [copy.deepcopy(current[i]) for i in order]

            self.update_listing(listing_id, arrange)

    def break_image(self, listing_id: str, position: int, how: str) -> None:
        """Damage the item at ``position`` of ``media.images`` as real feeds sometimes do.

        ``how``: ``no_url`` (``original`` without a URL), ``no_original`` (only other
        variants), ``bad_size`` (a width that is not a number). The schema allows all three.
        """
        breakers = {
            "no_url": lambda image: image["original"].pop("url", None),
            "no_original": lambda image: image.pop("original", None),
            "bad_size": lambda image: image["original"].update(width="wide"),
        }
        if how not in breakers:
            raise ValueError(f"unknown image damage {how!r}; use one of {', '.join(breakers)}")
        with self._lock:
            self._check_position(listing_id, position)
            self.update_listing(
                listing_id, lambda listing: breakers[how](self._images(listing)[position])
            )

    def _check_position(self, listing_id: str, position: int) -> None:
        images = (self._get(listing_id).get("media") or {}).get("images") or []
        if not 0 <= position < len(images):
            raise IndexError(
                f"listing {listing_id!r} has {len(images)} images; there is no position {position}"
            )

    # --- hostile records

    def serve_records(
        self, *, users: list[Any] | None = None, listings: list[Any] | None = None
    ) -> list[str]:
        """Serve exactly these JSON values as the API's users and listings, in this order.

        The knob of the hostile-record tests: any value is served as given (a NUL
        or a lone surrogate in a text, a list where an id belongs, a record missing
        its id, two records with one id). Listing ``i`` is kept under the key
        ``raw-i`` (the keys are returned, in order); ``raw_image_url(key, n)`` is
        an image the sandbox serves when the listing's ``media.images`` names it.
        ``None`` leaves that kind as it is. No webhook events are sent.
        """
        with self._lock:
            keys: list[str] = []
            if users is not None:
                # Keyed by position: a hostile user may have no id, or one no dict can hold.
                self._users = {index: copy.deepcopy(raw) for index, raw in enumerate(users)}
            if listings is not None:
                keys = [f"raw-{index}" for index in range(len(listings))]
                self._order = list(keys)
                self._generated = {}
                self._hidden = set()
                self._changed = {
                    key: copy.deepcopy(raw) for key, raw in zip(keys, listings, strict=True)
                }
                # filter[ids] finds a served listing by its own id too (the first one with it).
                self._aliases = {}
                for key, raw in zip(keys, listings, strict=True):
                    listing_id = raw.get("id") if isinstance(raw, dict) else None
                    if isinstance(listing_id, str):
                        self._aliases.setdefault(listing_id, key)
            return keys

    def resolve_ids(self, wanted: Iterable[str]) -> list[str]:
        """The keys of the listings with these ids (a served record's own id included)."""
        with self._lock:
            present = set(self._order)
            keys = (i if i in present else self._aliases.get(i) for i in wanted)
            return list(dict.fromkeys(key for key in keys if key in present))

    def raw_image_url(self, key: str, number: int) -> str:
        """The URL of image ``number`` of the served record ``key`` (see ``serve_records``)."""
        return f"{self.base_url}/images/{key}/{number}.jpg"

    # --- changing users

    def update_user(self, user_id: int, **changes: Any) -> dict:
        """Change a user by dotted keys; sends ``user.updated`` (and activated/deactivated)."""
        with self._lock:
            user = self._user(user_id)
            before = copy.deepcopy(user)
            apply_changes(user, changes)
            diff = [
                {
                    "fieldName": key.replace("__", "."),
                    "oldValue": _as_text(_dig(before, key)),
                    "newValue": _as_text(_dig(user, key)),
                }
                for key in changes
            ]
            self._emit(
                "user.updated", "user", str(user_id), {"email": user["email"], "changes": diff}
            )
            if before.get("status") != user.get("status") and user.get("status") in (
                "active",
                "inactive",
            ):
                event = "user.activated" if user["status"] == "active" else "user.deactivated"
                self._emit(event, "user", str(user_id), {"email": user["email"]})
            return copy.deepcopy(user)

    def add_user(self, **overrides: Any) -> int:
        """Add a user (an agent with a public profile unless overridden); returns its id."""
        with self._lock:
            index = self._next_user
            self._next_user += 1
            user = generate.make_user(self.seed, index)
            if "publicProfile" not in user and "role" not in overrides:
                rng = random.Random(f"{self.seed}:added-user:{index}")
                user["role"] = {**generate.ROLES["agent"], "isCustom": False}
                user["publicProfile"] = generate.make_public_profile(
                    rng, index, user["firstName"], user["lastName"], user["email"], user["mobile"]
                )
            apply_changes(user, overrides)
            if user["id"] in self._users:
                raise ValueError(f"a user with id {user['id']!r} already exists")
            self._users[user["id"]] = user
            self._emit("user.created", "user", str(user["id"]), {"email": user["email"]})
            return user["id"]

    def entity_exists(self, entity_type: str, entity_id: str) -> bool:
        """Whether a listing or user with this id is in the store."""
        with self._lock:
            if entity_type == "listing":
                return entity_id in self._changed or entity_id in self._generated
            return entity_id.isdigit() and int(entity_id) in self._users


def _pixels(value: Any, unsized: int) -> int:
    """An image side the API gives as a size to render; ``unsized`` for none or an absurd one."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 10_000:
        return int(value)
    return unsized


def _dig(node: Any, dotted: str) -> Any:
    for key in dotted.replace("__", ".").split("."):
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            return None
    return node


def _as_text(value: Any) -> str:
    if value is None or value is REMOVE:
        return ""
    return value if isinstance(value, str) else str(value)
