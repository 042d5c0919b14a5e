"""Tolerant parsers of Atlas's JSON into the typed ``records``.

Tolerant means: unknown enum values are kept as the API's strings (the
changelog keeps adding some, like bedrooms "21".."30"), nullable fields become
None, and missing optional objects (``media``, ``price``, ``portals``,
``assignedTo``, ``publicProfile``...) simply leave their fields empty. A record
that cannot be read at all (no ``id``, a field of the wrong type) becomes a
``RecordError`` on its page, naming the record and the field, and the rest of
the page goes on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from .errors import MalformedResponseError
from .records import (
    ImageProblem,
    InvalidRecord,
    Listing,
    ListingImage,
    Location,
    LocationNode,
    Page,
    Price,
    PublicProfile,
    RecordError,
    User,
    Webhook,
)

__all__ = [
    "parse_datetime",
    "parse_listing",
    "parse_location",
    "parse_page",
    "parse_user",
    "parse_webhook",
]

T = TypeVar("T")

_INTEGER_TEXT = re.compile(r"-?\d+")


# ---------------------------------------------------------------------------
# Field readers: each names the field it could not read.


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _obj(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    """The object at ``key``, or None when it is missing or null."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRecord(path, f"expected an object, got {_type_name(value)}")
    return value


def _str(
    data: Mapping[str, Any] | None, key: str, path: str, *, numbers: bool = False
) -> str | None:
    """The string at ``key`` (None when missing or null); ``numbers`` also accepts 3 for "3"."""
    if data is None:
        return None
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidRecord(path, f"expected a string, got {_type_name(value)} {value!r}")


def _int(data: Mapping[str, Any] | None, key: str, path: str) -> int | None:
    """The integer at ``key``; a string of digits is accepted too."""
    if data is None:
        return None
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # A full match, not str.isdigit(): "--5" or "²" would pass that and make int() raise a
    # ValueError that escapes parse_page and loses the whole page.
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        return int(value)
    raise InvalidRecord(path, f"expected an integer, got {_type_name(value)} {value!r}")


def _decimal(data: Mapping[str, Any] | None, key: str, path: str) -> Decimal | None:
    """The number at ``key`` as an exact Decimal (floats via their shortest repr)."""
    if data is None:
        return None
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRecord(path, f"expected a number, got {_type_name(value)} {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRecord(path, f"expected a number, got {value!r}") from None
    if not number.is_finite():
        raise InvalidRecord(path, f"expected a finite number, got {value!r}")
    return number


def _float(data: Mapping[str, Any] | None, key: str, path: str) -> float | None:
    """The number at ``key`` as a float."""
    number = _decimal(data, key, path)
    if number is None:
        return None
    result = float(number)
    if math.isinf(result):
        raise InvalidRecord(path, f"number out of range: {number}")
    return result


def _bool(data: Mapping[str, Any] | None, key: str, path: str) -> bool | None:
    """The boolean at ``key``."""
    if data is None:
        return None
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidRecord(path, f"expected true or false, got {_type_name(value)} {value!r}")


def parse_datetime(value: Any, path: str) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC when the API gives no offset)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRecord(path, f"expected a date-time string, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRecord(path, f"not an ISO 8601 date-time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _datetime(data: Mapping[str, Any] | None, key: str, path: str) -> datetime | None:
    return None if data is None else parse_datetime(data.get(key), path)


def _record_id(raw: Any) -> str | None:
    """The record's ``id`` as text for error reports, if it has a usable one."""
    if isinstance(raw, Mapping):
        value = raw.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value)
    return None


def _require_mapping(raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidRecord("(record)", f"expected an object, got {_type_name(raw)}")
    return raw


# ---------------------------------------------------------------------------
# Record parsers


def parse_listing(raw: Any) -> tuple[Listing, list[RecordError]]:
    """A ``Listing``, unreadable image items in ``image_problems``; raises ``InvalidRecord``."""
    data = _require_mapping(raw)
    listing_id = _str(data, "id", "id", numbers=True)
    if not listing_id:
        raise InvalidRecord("id", "missing")

    title = _obj(data, "title", "title")
    description = _obj(data, "description", "description")
    state = _obj(data, "state", "state")
    state_type = _str(state, "type", "state.type")
    state_stage = _str(state, "stage", "state.stage")
    portals = _obj(data, "portals", "portals")
    propertyfinder = _obj(portals, "propertyfinder", "portals.propertyfinder") if portals else None
    is_live = _bool(propertyfinder, "isLive", "portals.propertyfinder.isLive")
    if is_live is None and (state_type is not None or state_stage is not None):
        is_live = state_type == "live" or state_stage == "live"

    images, image_problems = _parse_images(data)
    listing = Listing(
        id=listing_id,
        reference=_str(data, "reference", "reference", numbers=True),
        title_en=_str(title, "en", "title.en"),
        title_ar=_str(title, "ar", "title.ar"),
        description_en=_str(description, "en", "description.en"),
        description_ar=_str(description, "ar", "description.ar"),
        category=_str(data, "category", "category"),
        property_type=_str(data, "type", "type"),
        bedrooms=_str(data, "bedrooms", "bedrooms", numbers=True),
        bathrooms=_str(data, "bathrooms", "bathrooms", numbers=True),
        size=_decimal(data, "size", "size"),
        furnishing_type=_str(data, "furnishingType", "furnishingType"),
        price=_parse_price(_obj(data, "price", "price")),
        location_id=_int(_obj(data, "location", "location"), "id", "location.id"),
        assigned_to_id=_int(_obj(data, "assignedTo", "assignedTo"), "id", "assignedTo.id"),
        is_live=is_live,
        state_type=state_type,
        state_stage=state_stage,
        created_at=_datetime(data, "createdAt", "createdAt"),
        updated_at=_datetime(data, "updatedAt", "updatedAt"),
        images=images,
        raw=dict(data),
        image_problems=tuple(image_problems),
    )
    return listing, []


def _parse_price(price: Mapping[str, Any] | None) -> Price | None:
    if price is None:
        return None
    amounts: dict[str, Decimal] = {}
    for period in _obj(price, "amounts", "price.amounts") or {}:
        amount = _decimal(price["amounts"], period, f"price.amounts.{period}")
        if amount is not None:
            amounts[str(period)] = amount
    return Price(
        type=_str(price, "type", "price.type"),
        amounts=amounts,
        on_request=bool(_bool(price, "onRequest", "price.onRequest")),
    )


def _parse_images(data: Mapping[str, Any]) -> tuple[tuple[ListingImage, ...], list[ImageProblem]]:
    """The original variant of every image; an unreadable item is left out and described.

    A bad image item never costs the listing: its other fields and images are read.
    """
    media = _obj(data, "media", "media")
    raw_images = media.get("images") if media else None
    if raw_images is None:
        return (), []
    if not isinstance(raw_images, list):
        raise InvalidRecord("media.images", f"expected a list, got {_type_name(raw_images)}")
    images: list[ListingImage] = []
    problems: list[ImageProblem] = []
    # The position is the index in media.images even when an image before it
    # is skipped, so a listing's positions stay stable from one run to the next.
    for position, raw_image in enumerate(raw_images):
        path = f"media.images[{position}].original"
        try:
            image = _require_mapping(raw_image)
            original = _obj(image, "original", path)
            url = _str(original, "url", f"{path}.url")
            if not url:
                raise InvalidRecord(f"{path}.url", "image has no original URL")
            images.append(
                ListingImage(
                    position=position,
                    url=url,
                    width=_int(original, "width", f"{path}.width"),
                    height=_int(original, "height", f"{path}.height"),
                )
            )
        except InvalidRecord as exc:
            field_path = path if exc.field == "(record)" else exc.field
            problems.append(ImageProblem(position, field_path, exc.message))
    return tuple(images), problems


def parse_user(raw: Any) -> tuple[User, list[RecordError]]:
    """A ``User``; raises ``InvalidRecord`` (also for a ``publicProfile`` without ``id``)."""
    data = _require_mapping(raw)
    user_id = _int(data, "id", "id")
    if user_id is None:
        raise InvalidRecord("id", "missing")
    profile = _obj(data, "publicProfile", "publicProfile")
    public_profile = None
    if profile is not None:
        profile_id = _int(profile, "id", "publicProfile.id")
        if profile_id is None:
            raise InvalidRecord("publicProfile.id", "missing")
        public_profile = PublicProfile(
            id=profile_id,
            name=_str(profile, "name", "publicProfile.name"),
            email=_str(profile, "email", "publicProfile.email"),
            phone=_str(profile, "phone", "publicProfile.phone"),
        )
    user = User(
        id=user_id,
        first_name=_str(data, "firstName", "firstName"),
        last_name=_str(data, "lastName", "lastName"),
        email=_str(data, "email", "email"),
        mobile=_str(data, "mobile", "mobile"),
        status=_str(data, "status", "status"),
        base_role_key=_str(_obj(data, "role", "role"), "baseRoleKey", "role.baseRoleKey"),
        public_profile=public_profile,
        created_at=_datetime(data, "createdAt", "createdAt"),
        raw=dict(data),
    )
    return user, []


def parse_location(raw: Any) -> tuple[Location, list[RecordError]]:
    """A ``Location`` with its ``tree`` as ``path``; raises ``InvalidRecord``."""
    data = _require_mapping(raw)
    location_id = _int(data, "id", "id")
    if location_id is None:
        raise InvalidRecord("id", "missing")
    tree = data.get("tree")
    if tree is None:
        tree = []
    if not isinstance(tree, list):
        raise InvalidRecord("tree", f"expected a list, got {_type_name(tree)}")
    path: list[LocationNode] = []
    for index, raw_node in enumerate(tree):
        where = f"tree[{index}]"
        if not isinstance(raw_node, Mapping):
            raise InvalidRecord(where, f"expected an object, got {_type_name(raw_node)}")
        node_id = _int(raw_node, "id", f"{where}.id")
        if node_id is None:
            raise InvalidRecord(f"{where}.id", "missing")
        path.append(
            LocationNode(
                id=node_id,
                type=_str(raw_node, "type", f"{where}.type"),
                name=_str(raw_node, "name", f"{where}.name"),
            )
        )
    coordinates = _obj(data, "coordinates", "coordinates")
    location = Location(
        id=location_id,
        type=_str(data, "type", "type"),
        name=_str(data, "name", "name"),
        path=tuple(path),
        lat=_float(coordinates, "lat", "coordinates.lat"),
        lng=_float(coordinates, "lng", "coordinates.lng"),
    )
    return location, []


def parse_webhook(raw: Any) -> Webhook:
    """A ``Webhook`` subscription; raises ``InvalidRecord``."""
    data = _require_mapping(raw)
    event_id = _str(data, "eventId", "eventId")
    if not event_id:
        raise InvalidRecord("eventId", "missing")
    return Webhook(
        event_id=event_id,
        url=_str(data, "url", "url"),
        created_at=_datetime(data, "createdAt", "createdAt"),
        raw=dict(data),
    )


# ---------------------------------------------------------------------------
# Pages

Parser = Callable[[Any], tuple[T, list[RecordError]]]


def parse_page(
    body: Any,
    *,
    kind: str,
    items_key: str,
    parser: Parser[T],
    url: str,
    requested_page: int,
    requested_per_page: int,
) -> Page[T]:
    """A ``Page`` of records from a list answer; raises ``MalformedResponseError`` if not one."""
    if not isinstance(body, Mapping):
        raise MalformedResponseError(
            f"Atlas answer from {url} is not a JSON object but {_type_name(body)}", url=url
        )
    raw_items = body.get(items_key)
    if not isinstance(raw_items, list):
        problem = "has no" if items_key not in body else f"has a {_type_name(raw_items)} as"
        raise MalformedResponseError(
            f"Atlas answer from {url} {problem} '{items_key}' list of {kind}s", url=url
        )
    pagination = body.get("pagination")
    if not isinstance(pagination, Mapping):
        problem = "has no" if pagination is None else "has a malformed"
        raise MalformedResponseError(f"Atlas answer from {url} {problem} 'pagination'", url=url)

    def number(key: str, default: int | None) -> int | None:
        try:
            value = _int(pagination, key, f"pagination.{key}")
        except InvalidRecord as exc:
            raise MalformedResponseError(
                f"Atlas answer from {url} has a bad {exc.field}: {exc.message}", url=url
            ) from None
        return default if value is None else value

    items: list[T] = []
    errors: list[RecordError] = []
    for index, raw in enumerate(raw_items):
        try:
            record, record_errors = parser(raw)
        except InvalidRecord as exc:
            field_path = f"{items_key}[{index}]" if exc.field == "(record)" else exc.field
            errors.append(RecordError(kind, _record_id(raw), field_path, exc.message))
        else:
            items.append(record)
            errors.extend(record_errors)

    return Page(
        items=items,
        errors=errors,
        page=number("page", requested_page) or requested_page,
        per_page=number("perPage", requested_per_page) or requested_per_page,
        total=number("total", len(raw_items)) or 0,
        total_pages=number("totalPages", 0) or 0,
        next_page=number("nextPage", None),
        url=url,
    )
