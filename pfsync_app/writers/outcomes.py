"""What a writer did with one user or listing: created, updated or unchanged, and how."""

from __future__ import annotations

from dataclasses import dataclass, field

CREATED = "created"


UPDATED = "updated"


UNCHANGED = "unchanged"


@dataclass
class UserOutcome:
    """What saving one user did."""

    action: str
    agent_id: int | None
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ListingOutcome:
    """What saving one listing did."""

    action: str
    property_id: int
    changes: list[str] = field(default_factory=list)
    images_added: int = 0
    images_replaced: int = 0
    images_deactivated: int = 0
    area_id: int | None = None
