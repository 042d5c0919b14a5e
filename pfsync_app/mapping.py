"""Pure mapping: Atlas records in, the values of pfsync's fields out (the domain's rules).

Nothing here touches the database or the network, and nothing here knows the
host's columns: fitting a value to the real column (cutting a long title,
rounding a price for an integer column, NULL for an absurd one) is the
writers' one rule (``writers.fit``). Here a value the API gives that means
nothing (``bedrooms: "lots"``, a negative price) becomes empty with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pfsync_app.atlas import records
from pfsync_app.hostmap import resolve_path

#: The longest image URL pfsync keeps (its own tables' source_url columns).
MAX_IMAGE_URL = 1024
SALE = "sale"
# Values the spec documents; others are stored as given (the API keeps adding some) and noted.
KNOWN_VALUES = {
    "category": frozenset({"residential", "commercial"}),
    "furnishing": frozenset({"unfurnished", "semi-furnished", "furnished"}),
    "price_period": frozenset({"sale", "yearly", "monthly", "weekly", "daily"}),
}


@dataclass(frozen=True)
class ImageValues:
    """One image of a listing as the host stores it."""

    position: int
    source_url: str
    width: int | None
    height: int | None


@dataclass
class PropertyValues:
    """A listing mapped onto the host's property columns, plus what needs resolving."""

    pf_id: str
    fields: dict[str, Any]
    location_id: int | None
    assigned_to_id: int | None
    images: list[ImageValues]
    warnings: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # extra host column -> API value
    record: records.Listing | None = field(default=None, repr=False, compare=False)

    def fingerprint(self) -> str:
        """A digest of everything pfsync writes for this listing, to skip unchanged ones."""
        payload = {
            "fields": {k: _canonical(v) for k, v in sorted(self.fields.items())},
            "location": self.location_id,
            "agent": self.assigned_to_id,
            "images": [(i.position, i.source_url, i.width, i.height) for i in self.images],
        }
        if self.extras:
            payload["extras"] = self.extras
        encoded = json.dumps(
            payload, sort_keys=True, ensure_ascii=False, default=str, allow_nan=True
        ).encode("utf-8", "surrogatepass")
        return hashlib.sha256(encoded).hexdigest()


@dataclass
class UserValues:
    """A PF user mapped onto the host's user columns."""

    pf_user_id: int
    pf_public_profile_id: int | None
    fields: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # extra host column -> API value
    record: records.User | None = field(default=None, repr=False, compare=False)


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def text_of(value: Any) -> str:
    """A text field's value: the API's text, '' when it gives none."""
    return "" if value is None else str(value)


def room_count(value: str | None, zero_word: str, column: str, warnings: list[str]) -> int | None:
    """Bedrooms/bathrooms: 'studio'/'none' is 0, a number is itself, anything else NULL."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text == zero_word:
        return 0
    try:
        number = int(text)
    except ValueError:
        warnings.append(f"{column} {value!r} is not a number; stored as empty")
        return None
    if number < 0:
        warnings.append(f"{column} {number} is negative; stored as empty")
        return None
    return number


def amount(value: Any, column: str, warnings: list[str]) -> Decimal | None:
    """A price or size as a decimal; one that is not a number, or negative, is NULL."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(value)
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        warnings.append(f"{column} {value!r} is not a number; stored as empty")
        return None
    if not number.is_finite() or number < 0:
        warnings.append(f"{column} {value} is out of range; stored as empty")
        return None
    return number


def listing_price(price: records.Price | None, warnings: list[str]) -> tuple[Decimal | None, str]:
    """``price.amounts[price.type]`` (NULL when on request or absent) and the period."""
    if price is None or not price.type:
        return None, ""
    period = text_of(price.type)
    if price.on_request:
        return None, period
    given = (price.amounts or {}).get(price.type)
    return amount(given, "price", warnings), period


def extra_values(raw: Mapping[str, Any] | None, extra: Mapping[str, str]) -> dict[str, Any]:
    """The values of the map's extra columns: column -> the API record's value at its path."""
    return {column: resolve_path(raw, path) for column, path in extra.items()}


def map_listing(listing: records.Listing, extra: Mapping[str, str] | None = None) -> PropertyValues:
    """Map one Atlas listing onto pfsync's property fields (and the map's ``extra`` columns)."""
    warnings: list[str] = []

    price, price_period = listing_price(listing.price, warnings)
    price_type = listing.price.type if listing.price else None
    status_type = "" if not price_type else (SALE if price_type == SALE else "rent")
    fields = {
        "reference": text_of(listing.reference),
        "title": text_of(listing.title_en),
        "title_ar": text_of(listing.title_ar),
        "description": text_of(listing.description_en),
        "description_ar": text_of(listing.description_ar),
        "category": text_of(listing.category),
        "property_type": text_of(listing.property_type),
        "status_type": status_type,
        "price": price,
        "price_period": price_period,
        "bedrooms": room_count(listing.bedrooms, "studio", "bedrooms", warnings),
        "bathrooms": room_count(listing.bathrooms, "none", "bathrooms", warnings),
        "size": amount(listing.size, "size", warnings),
        "furnishing": text_of(listing.furnishing_type),
        "is_published": bool(listing.is_live),
        "pf_updated_at": listing.updated_at,
    }
    for column, known in KNOWN_VALUES.items():
        value = fields[column]
        if value and value not in known:
            warnings.append(f"{column} {value!r} is not a value the API documents; stored as given")
    for problem in listing.image_problems:
        warnings.append(f"image {problem.position} skipped: {problem.field}: {problem.message}")
    images = []
    for image in listing.images:
        if not image.url:
            continue
        if len(image.url) > MAX_IMAGE_URL:
            warnings.append(
                f"image {image.position} URL is longer than {MAX_IMAGE_URL} characters; skipped"
            )
            continue
        images.append(ImageValues(image.position, image.url, image.width, image.height))
    return PropertyValues(
        pf_id=listing.id,
        fields=fields,
        location_id=listing.location_id,
        assigned_to_id=listing.assigned_to_id,
        images=images,
        warnings=warnings,
        extras=extra_values(listing.raw, extra or {}),
        record=listing,
    )


def map_user(user: records.User, extra: Mapping[str, str] | None = None) -> UserValues:
    """Map one Atlas user onto pfsync's user fields (and the map's ``extra`` columns)."""
    profile = user.public_profile
    phone = user.mobile or (profile.phone if profile else None)
    fields = {
        "first_name": text_of(user.first_name),
        "last_name": text_of(user.last_name),
        "email": text_of(user.email).strip(),
        "phone": text_of(phone),
        "role": text_of(user.base_role_key),
    }
    return UserValues(
        pf_user_id=user.id,
        pf_public_profile_id=profile.id if profile else None,
        fields=fields,
        extras=extra_values(user.raw, extra or {}),
        record=user,
    )


Change = tuple[Any, Any]


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Change]:
    """The fields of ``new`` whose value differs from ``old``'s: name -> (before, after).

    The one comparison of what pfsync wrote with what it would write: writers
    update exactly these columns, and ``render_changes`` shows them.
    """
    return {
        name: (old.get(name), value)
        for name, value in new.items()
        if _comparable(old.get(name)) != _comparable(value)
    }


def render_changes(changed: dict[str, Change]) -> list[str]:
    """Changed fields for --dry-run and report entries: ``price: 1500000 → 1450000``."""
    return [
        f"{name}: {_short(before)} → {_short(after)}" for name, (before, after) in changed.items()
    ]


def _comparable(value: Any) -> Any:
    # Decimals compare by value (1.50 == 1.5); a float only equals the Decimal of its text.
    return Decimal(str(value)) if isinstance(value, float) else value


def _short(value: Any) -> str:
    if isinstance(value, Decimal):
        value = value.normalize()
        text = f"{value:f}"
    else:
        text = "" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
