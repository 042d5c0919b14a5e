"""What a writer did with one user or listing: created, updated or unchanged, and how."""

from __future__ import annotations

from dataclasses import dataclass, field

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"


@dataclass
class UserOutcome:
    """What saving one user did (or, on a dry run, would do)."""

    action: str
    agent_id: int | None
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ListingOutcome:
    """What saving one listing did (or, on a dry run, would do: the images counts are planned).

    ``property_id`` is None only for a listing a dry run would create.
    """

    action: str
    property_id: int | None
    changes: list[str] = field(default_factory=list)
    images_added: int = 0
    images_replaced: int = 0
    images_deactivated: int = 0
    area_id: int | None = None
    warnings: list[str] = field(default_factory=list)  # values fitted to their columns
    republished: bool = False  # an unpublished property is published again
