"""Pure mapping: Atlas records in, host row values out (HOST_SCHEMA.md's rules).

Nothing here touches the database or the network. Values that do not fit the
host's columns are made to fit and reported as warnings, never as failures: a
title longer than 255 characters is cut, an absurd price becomes NULL.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pfsync_app.atlas import records

# Column limits of HOST_SCHEMA.md.
PROPERTY_TEXT_LIMITS = {
    "pf_id": 64,
    "reference": 64,
    "title": 255,
    "title_ar": 255,
    "category": 32,
    "property_type": 32,
    "status_type": 16,
    "price_period": 16,
    "furnishing": 32,
}
USER_TEXT_LIMITS = {
    "first_name": 150,
    "last_name": 150,
    "email": 254,
    "phone": 32,
    "role": 32,
}
SMALLINT_MAX = 32767
# numeric(14,2) and numeric(12,2)
PRICE_MAX = Decimal("999999999999.99")
SIZE_MAX = Decimal("9999999999.99")
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

    def fingerprint(self) -> str:
        """A digest of everything pfsync writes for this listing, to skip unchanged ones."""
        payload = {
            "fields": {k: _canonical(v) for k, v in sorted(self.fields.items())},
            "location": self.location_id,
            "agent": self.assigned_to_id,
            "images": [(i.position, i.source_url, i.width, i.height) for i in self.images],
        }
        encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(encoded).hexdigest()


@dataclass
class UserValues:
    """A PF user mapped onto the host's user columns."""

    pf_user_id: int
    pf_public_profile_id: int | None
    fields: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def fit_text(value: str | None, limit: int | None, column: str, warnings: list[str]) -> str:
    """The text cut to the column's length (with a warning when cut); None becomes ''."""
    text = "" if value is None else str(value)
    if limit is not None and len(text) > limit:
        warnings.append(f"{column} was {len(text)} characters, cut to {limit}")
        text = text[:limit]
    return text


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
    if not 0 <= number <= SMALLINT_MAX:
        warnings.append(f"{column} {number} is out of range; stored as empty")
        return None
    return number


def bounded_decimal(
    value: Any, maximum: Decimal, column: str, warnings: list[str]
) -> Decimal | None:
    """A non-negative decimal that fits the column, rounded to cents; else NULL and a warning."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        warnings.append(f"{column} {value!r} is not a number; stored as empty")
        return None
    if not number.is_finite() or number < 0 or number > maximum:
        warnings.append(f"{column} {value} is out of range; stored as empty")
        return None
    return number


def listing_price(price: records.Price | None, warnings: list[str]) -> tuple[Decimal | None, str]:
    """``price.amounts[price.type]`` (NULL when on request or absent) and the period."""
    if price is None or not price.type:
        return None, ""
    period = fit_text(price.type, PROPERTY_TEXT_LIMITS["price_period"], "price_period", warnings)
    if price.on_request:
        return None, period
    amount = (price.amounts or {}).get(price.type)
    return bounded_decimal(amount, PRICE_MAX, "price", warnings), period


def map_listing(listing: records.Listing) -> PropertyValues:
    """Map one Atlas listing onto the host's property columns."""
    warnings: list[str] = []

    def text(value: str | None, column: str) -> str:
        return fit_text(value, PROPERTY_TEXT_LIMITS.get(column), column, warnings)

    price, price_period = listing_price(listing.price, warnings)
    price_type = listing.price.type if listing.price else None
    status_type = "" if not price_type else (SALE if price_type == SALE else "rent")
    fields = {
        "reference": text(listing.reference, "reference"),
        "title": text(listing.title_en, "title"),
        "title_ar": text(listing.title_ar, "title_ar"),
        "description": text(listing.description_en, "description"),
        "description_ar": text(listing.description_ar, "description_ar"),
        "category": text(listing.category, "category"),
        "property_type": text(listing.property_type, "property_type"),
        "status_type": status_type,
        "price": price,
        "price_period": price_period,
        "bedrooms": room_count(listing.bedrooms, "studio", "bedrooms", warnings),
        "bathrooms": room_count(listing.bathrooms, "none", "bathrooms", warnings),
        "size": bounded_decimal(listing.size, SIZE_MAX, "size", warnings),
        "furnishing": text(listing.furnishing_type, "furnishing"),
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
        if len(image.url) > 1024:
            warnings.append(f"image {image.position} URL is longer than 1024 characters; skipped")
            continue
        images.append(ImageValues(image.position, image.url, image.width, image.height))
    return PropertyValues(
        pf_id=listing.id,
        fields=fields,
        location_id=listing.location_id,
        assigned_to_id=listing.assigned_to_id,
        images=images,
        warnings=warnings,
    )


def map_user(user: records.User) -> UserValues:
    """Map one Atlas user onto the host's user columns."""
    warnings: list[str] = []
    profile = user.public_profile
    phone = user.mobile or (profile.phone if profile else None)
    fields = {
        "first_name": fit_text(
            user.first_name, USER_TEXT_LIMITS["first_name"], "first_name", warnings
        ),
        "last_name": fit_text(user.last_name, USER_TEXT_LIMITS["last_name"], "last_name", warnings),
        "email": fit_text((user.email or "").strip(), USER_TEXT_LIMITS["email"], "email", warnings),
        "phone": fit_text(phone, USER_TEXT_LIMITS["phone"], "phone", warnings),
        "role": fit_text(user.base_role_key, USER_TEXT_LIMITS["role"], "role", warnings),
    }
    return UserValues(
        pf_user_id=user.id,
        pf_public_profile_id=profile.id if profile else None,
        fields=fields,
        warnings=warnings,
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
