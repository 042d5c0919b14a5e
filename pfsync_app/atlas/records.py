"""Typed, immutable records of what Atlas returns (``parsing`` reads them from its JSON).

Fields the API may leave out or null are None here; enum values are kept as
the API's own strings, since the changelog keeps adding some. A record that
could not be read at all becomes a ``RecordError`` on its page instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

__all__ = [
    "ImageProblem",
    "InvalidRecord",
    "Listing",
    "ListingImage",
    "Location",
    "LocationNode",
    "Page",
    "Price",
    "PublicProfile",
    "RecordError",
    "User",
    "Webhook",
]

T = TypeVar("T")


@dataclass(frozen=True)
class RecordError:
    """A record (or part of one) that could not be read, and why.

    ``kind`` is ``listing``, ``user`` or ``location`` for a record left out of
    its page, or ``image`` for one image left out of a listing that was kept
    (``record_id`` is then the listing's id).
    """

    kind: str
    record_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        who = f"{self.kind} {self.record_id}" if self.record_id is not None else self.kind
        where = f" field {self.field}" if self.field else ""
        return f"{who}{where}: {self.message}"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a paginated Atlas answer: its parsed items, the bad ones, and its position."""

    items: list[T]
    errors: list[RecordError]
    page: int
    per_page: int
    total: int
    total_pages: int
    next_page: int | None
    url: str = ""


@dataclass(frozen=True)
class Price:
    """A listing's price: ``type`` (sale, yearly, monthly...) and the amount per period."""

    type: str | None
    amounts: dict[str, Decimal]
    on_request: bool

    @property
    def amount(self) -> Decimal | None:
        """The amount for the price's own ``type`` (``amounts[type]``), if any."""
        return self.amounts.get(self.type) if self.type else None


@dataclass(frozen=True)
class ListingImage:
    """The ``original`` variant of ``media.images[position]``."""

    position: int
    url: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class ImageProblem:
    """An item of ``media.images`` that could not be read (no ``original``, no URL, a bad size).

    The listing is read without it; ``position`` is the item's index in ``media.images``.
    """

    position: int
    field: str
    message: str


@dataclass(frozen=True)
class Listing:
    """A Property Finder listing (``GET /v1/listings`` ``results[]``)."""

    id: str
    reference: str | None
    title_en: str | None
    title_ar: str | None
    description_en: str | None
    description_ar: str | None
    category: str | None
    property_type: str | None
    bedrooms: str | None
    bathrooms: str | None
    size: Decimal | None
    furnishing_type: str | None
    price: Price | None
    location_id: int | None
    assigned_to_id: int | None
    is_live: bool | None
    state_type: str | None
    state_stage: str | None
    created_at: datetime | None
    updated_at: datetime | None
    images: tuple[ListingImage, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)
    #: Items of media.images left out because they could not be read; the listing is still whole.
    image_problems: tuple[ImageProblem, ...] = ()


@dataclass(frozen=True)
class PublicProfile:
    """A user's public (agent) profile; listings point at its ``id`` via ``assignedTo.id``."""

    id: int
    name: str | None
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class User:
    """A user of the client's Property Finder account (``GET /v1/users`` ``data[]``)."""

    id: int
    first_name: str | None
    last_name: str | None
    email: str | None
    mobile: str | None
    status: str | None
    base_role_key: str | None
    public_profile: PublicProfile | None
    created_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class LocationNode:
    """One step of a location's ``tree`` (its ancestors, country/emirate first)."""

    id: int
    type: str | None
    name: str | None


@dataclass(frozen=True)
class Location:
    """A Property Finder location (``GET /v1/locations`` ``data[]``)."""

    id: int
    type: str | None
    name: str | None
    path: tuple[LocationNode, ...]
    lat: float | None
    lng: float | None


@dataclass(frozen=True)
class Webhook:
    """An event subscription (``GET``/``POST /v1/webhooks``)."""

    event_id: str
    url: str | None
    created_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)


class InvalidRecord(ValueError):
    """A record field could not be read; ``field`` is its dotted path in the record."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
