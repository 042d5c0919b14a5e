"""Atlas API payloads shaped exactly like the spec (atlas-openapi.json), and test helpers.

Field names come from the spec's schemas: ``response-combined-flat`` for a
listing, ``User`` for a user, ``Location`` for a location, ``pagination`` for
the pagination object and ``auth.token.response`` for a token.
"""

from __future__ import annotations

import copy
import math
import threading
from typing import Any

from pfsync_app.atlas import AtlasClient

BASE_URL = "https://atlas.test"
# The spec's lengths: apiKey 40 characters, apiSecret 32.
API_KEY = "pfk_live_0123456789abcdefghijklmnopq7Q9z"
API_SECRET = "s3cr3t-Zq8xWv2Lm5Np7Rt9Yb4Kd6Hj1"
TOKEN_URL = f"{BASE_URL}/v1/auth/token"
USERS_URL = f"{BASE_URL}/v1/users"
LISTINGS_URL = f"{BASE_URL}/v1/listings"
LOCATIONS_URL = f"{BASE_URL}/v1/locations"
WEBHOOKS_URL = f"{BASE_URL}/v1/webhooks"

assert len(API_KEY) == 40 and len(API_SECRET) == 32

LISTING: dict[str, Any] = {
    "id": "01JQ7X5V0C8YH0K3B3M2N4P6QR",
    "reference": "MHP-A-10442",
    "age": 4,
    "aiContentUsed": False,
    "amenities": ["balcony", "shared-pool", "central-ac", "covered-parking"],
    "assignedTo": {
        "id": 88123,
        "name": "Sara Haddad",
        "photos": {"thumbnail": "https://static.propertyfinder.test/agents/88123/thumb.jpg"},
    },
    "availableFrom": "2025-10-01",
    "bathrooms": "3",
    "bedrooms": "2",
    "category": "residential",
    "compliance": {
        "advertisementLicenseIssuanceDate": "2025-08-14T09:30:00Z",
        "listingAdvertisementNumber": "7123456789",
        "issuingClientLicenseNumber": "1234567",
        "type": "rera",
        "userConfirmedDataIsCorrect": True,
    },
    "createdAt": "2025-08-14T09:12:45Z",
    "createdBy": {"id": 5512, "name": "Omar Khalil", "photos": {"thumbnail": ""}},
    "ctsPriority": 0,
    "description": {
        "en": "Bright two-bedroom apartment with a large balcony overlooking the marina.",
        "ar": "شقة مشرقة من غرفتي نوم مع شرفة كبيرة تطل على المرسى.",
    },
    "developer": "Emaar",
    "finishingType": "fully-finished",
    "floorNumber": "14",
    "furnishingType": "semi-furnished",
    "hasGarden": False,
    "hasKitchen": True,
    "hasParkingOnSite": True,
    "location": {"id": 5002},
    "media": {
        "images": [
            {
                "original": {
                    "url": "https://images.propertyfinder.test/listings/01JQ7X5V/0-original.jpg",
                    "width": 2048,
                    "height": 1536,
                },
                "large": {
                    "url": "https://images.propertyfinder.test/listings/01JQ7X5V/0-large.jpg",
                    "width": 1280,
                    "height": 960,
                },
                "thumbnail": {
                    "url": "https://images.propertyfinder.test/listings/01JQ7X5V/0-thumb.jpg",
                    "width": 320,
                    "height": 240,
                },
            },
            {
                "original": {
                    "url": "https://images.propertyfinder.test/listings/01JQ7X5V/1-original.jpg",
                    "width": 1600,
                    "height": 1200,
                },
                "medium": {
                    "url": "https://images.propertyfinder.test/listings/01JQ7X5V/1-medium.jpg",
                    "width": 800,
                    "height": 600,
                },
            },
        ],
        "videos": {"default": "https://videos.propertyfinder.test/01JQ7X5V.mp4"},
    },
    "numberOfFloors": 32,
    "ownerName": "Private owner",
    "parkingSlots": 1,
    "pfCategoryId": 1,
    "pfTypeId": 1,
    "portals": {
        "propertyfinder": {
            "isLive": True,
            "name": "propertyfinder",
            "publishedAt": "2025-08-15T06:00:00Z",
        }
    },
    "price": {
        "type": "yearly",
        "amounts": {"yearly": 145000, "monthly": 12500},
        "numberOfCheques": 4,
        "onRequest": False,
        "paymentMethods": ["cash"],
        "utilitiesInclusive": False,
    },
    "projectStatus": "completed",
    "qualityScore": {"color": "green", "value": 86.5},
    "size": 1250.75,
    "state": {"stage": "live", "type": "live", "reasons": []},
    "title": {
        "en": "Marina view 2BR with balcony",
        "ar": "شقة غرفتين بإطلالة على المرسى",
    },
    "type": "apartment",
    "uaeEmirate": "dubai",
    "unitNumber": "1405",
    "updatedAt": "2025-09-20T11:04:09.512Z",
    "updatedBy": {"id": 5512, "name": "Omar Khalil", "photos": {"thumbnail": ""}},
    "verificationStatus": "approved",
}

USER: dict[str, Any] = {
    "id": 40211,
    "firstName": "Sara",
    "lastName": "Haddad",
    "email": "sara.haddad@agency.test",
    "mobile": "+971501234567",
    "status": "active",
    "callTracking": None,
    "role": {
        "id": 3,
        "name": "Agent",
        "roleKey": "agent",
        "baseRoleKey": "agent",
        "isCustom": False,
    },
    "publicProfile": {
        "id": 88123,
        "name": "Sara Haddad",
        "email": "sara@agency.test",
        "phone": "+971501234567",
        "bio": {"primary": "Marina specialist.", "secondary": None},
        "position": {"primary": "Senior agent", "secondary": None},
        "imageVariants": None,
        "verification": {"status": "verified", "requestDate": "2024-02-01T08:00:00Z"},
        "compliances": [],
        "isSuperAgent": True,
    },
    "createdAt": "2024-01-15T07:45:00Z",
}

LOCATION: dict[str, Any] = {
    "id": 5002,
    "type": "TOWER",
    "name": "Marina Gate 1",
    "tree": [
        {"id": 1, "type": "CITY", "name": "Dubai"},
        {"id": 50, "type": "COMMUNITY", "name": "Dubai Marina"},
        {"id": 5002, "type": "TOWER", "name": "Marina Gate 1"},
    ],
    "coordinates": {"lat": 25.087965, "lng": 55.147874},
}


def listing_json(**changes: Any) -> dict[str, Any]:
    """A fresh copy of ``LISTING`` with top-level ``changes`` (a value of ... removes the key)."""
    return _changed(LISTING, changes)


def user_json(**changes: Any) -> dict[str, Any]:
    """A fresh copy of ``USER`` with top-level ``changes`` (a value of ... removes the key)."""
    return _changed(USER, changes)


def location_json(**changes: Any) -> dict[str, Any]:
    """A fresh copy of ``LOCATION`` with top-level ``changes``."""
    return _changed(LOCATION, changes)


def _changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def page_body(
    items: list[Any],
    *,
    key: str = "results",
    page: int = 1,
    per_page: int = 100,
    total: int | None = None,
    total_pages: int | None = None,
    next_page: int | type[Ellipsis] | None = ...,
) -> dict[str, Any]:
    """A list answer with the spec's pagination object (``nextPage`` derived unless given)."""
    total = len(items) if total is None else total
    if total_pages is None:
        total_pages = math.ceil(total / per_page) if total else 0
    if next_page is ...:
        next_page = page + 1 if page < total_pages else None
    return {
        key: items,
        "pagination": {
            "total": total,
            "page": page,
            "perPage": per_page,
            "totalPages": total_pages,
            "nextPage": next_page,
            "prevPage": page - 1 if page > 1 else None,
        },
    }


def token_body(token: str = "eyJhbGciOiJSUzI1NiJ9.tok-1", expires_in: int = 1800) -> dict:
    """A ``POST /v1/auth/token`` answer."""
    return {"accessToken": token, "tokenType": "Bearer", "expiresIn": expires_in}


def problem(title: str, detail: str, type_: str) -> dict[str, str]:
    """A problem+json error body as the spec describes it."""
    return {"title": title, "detail": detail, "type": type_}


PROBLEM_JSON = "application/problem+json"
CDN_BLOCK_PAGE = (
    "<!DOCTYPE html><html><head><title>Access denied</title></head>"
    "<body><h1>Request blocked</h1><p>Reference #18.4f2d1602</p></body></html>"
)


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it; records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def make_client(clock: FakeClock, **options: Any) -> AtlasClient:
    """An ``AtlasClient`` on ``BASE_URL`` whose time and sleeps are ``clock``'s."""
    return AtlasClient(BASE_URL, API_KEY, API_SECRET, clock=clock, sleep=clock.sleep, **options)
