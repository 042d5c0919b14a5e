"""Deterministic users and listings shaped as Atlas returns them, made from a seed and an index.

A listing is generated on demand from ``(seed, index)``, so 20,000 of them cost an
index each until one is changed. Special indexes give every edge case even in a
dozen listings: a studio, a listing without ``media``, one with an empty image
list, a price on request, a taken-down listing, a commercial unit, ``"27"`` bedrooms.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta

from pfsync_app.sandbox.locations import LISTING_LOCATION_IDS, LOCATIONS

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EPOCH = datetime(2023, 1, 1, tzinfo=UTC)

FIRST_NAMES = (
    "Ahmed", "Fatima", "Mohammed", "Aisha", "Omar", "Layla", "Rahul", "Priya", "James",
    "Sarah", "Olga", "Dmitry", "Maria", "Jose", "Hassan", "Noura", "Arjun", "Emma",
    "Khalid", "Mariam", "Ivan", "Sophie", "Yusuf", "Reem", "Daniel", "Hana",
)  # fmt: skip
LAST_NAMES = (
    "Al Mansoori", "Khan", "Sharma", "Smith", "Al Hashimi", "Petrova", "Santos", "Haddad",
    "Nair", "Johnson", "Al Falasi", "Ivanov", "Reyes", "Kapoor", "Mahmoud", "Brown",
    "Al Suwaidi", "Fernandes", "Abdullah", "Wilson",
)  # fmt: skip
NO_LAST_NAME_EVERY = 13

ROLES = {
    "agent": {"id": 4, "name": "Agent", "roleKey": "agent", "baseRoleKey": "agent"},
    "admin": {"id": 1, "name": "Admin", "roleKey": "admin", "baseRoleKey": "admin"},
    "finance": {"id": 6, "name": "Finance", "roleKey": "finance", "baseRoleKey": "finance"},
}

RESIDENTIAL_TYPES = ("apartment", "apartment", "apartment", "villa", "townhouse", "penthouse",
                     "duplex", "hotel-apartment")  # fmt: skip
COMMERCIAL_TYPES = ("office-space", "retail", "shop", "warehouse", "show-room")
TYPE_NAMES = {
    "apartment": ("Apartment", "شقة"),
    "villa": ("Villa", "فيلا"),
    "townhouse": ("Townhouse", "تاون هاوس"),
    "penthouse": ("Penthouse", "بنتهاوس"),
    "duplex": ("Duplex", "دوبلكس"),
    "hotel-apartment": ("Hotel Apartment", "شقة فندقية"),
    "office-space": ("Office Space", "مساحة مكتبية"),
    "retail": ("Retail Unit", "وحدة تجارية"),
    "shop": ("Shop", "محل"),
    "warehouse": ("Warehouse", "مستودع"),
    "show-room": ("Showroom", "صالة عرض"),
}
BEDROOMS_AR = {"studio": "استوديو", "1": "غرفة نوم واحدة", "2": "غرفتي نوم"}
HIGHLIGHTS = (
    ("Sea View", "إطلالة على البحر"),
    ("Burj Khalifa View", "إطلالة على برج خليفة"),
    ("Vacant on Transfer", "شاغرة عند التحويل"),
    ("Brand New", "جديدة كلياً"),
    ("Upgraded", "مُجددة بالكامل"),
    ("Prime Location", "موقع متميز"),
    ("Close to Metro", "بالقرب من المترو"),
    ("Chiller Free", "تكييف مجاني"),
)
DESCRIPTION_EN = (
    "Bright {what} in {where}, a few minutes from the Metro, schools and shops.",
    "The unit has a fitted kitchen, built-in wardrobes and a large balcony.",
    "Residents enjoy a shared pool, a gym, covered parking and 24-hour security.",
    "Call the agent today to arrange a viewing.",
)
DESCRIPTION_AR = (
    "{what} مشرقة في {where}، على بعد دقائق من المترو والمدارس والمحلات.",
    "تحتوي الوحدة على مطبخ مجهز وخزائن مدمجة وشرفة واسعة.",
    "يتمتع السكان بمسبح مشترك وصالة رياضية ومواقف مغطاة وأمن على مدار الساعة.",
    "اتصل بالوكيل اليوم لترتيب موعد للمعاينة.",
)
ORIGINAL_SIZES = ((1200, 800), (1280, 960), (1024, 768), (1600, 1067), (1080, 1440))
AMENITIES = ("central-ac", "built-in-wardrobes", "balcony", "shared-gym", "shared-pool",
             "covered-parking", "maids-room", "security", "view-of-water", "concierge")  # fmt: skip
VARIANT_WIDTHS = {"large": 1024, "medium": 640, "thumbnail": 320}


def iso(moment: datetime) -> str:
    """Atlas's timestamp format: UTC with a ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    """The inverse of :func:`iso`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ulid(random_bits: int, moment: datetime) -> str:
    """A 26-character ULID: 48 bits of milliseconds, 80 random bits, Crockford base32."""
    value = (int(moment.timestamp() * 1000) << 80) | (random_bits & (2**80 - 1))
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _mobile(rng: random.Random) -> str:
    return f"+9715{rng.choice('02568')}{rng.randrange(10**7):07d}"


def make_user(seed: int, index: int) -> dict:
    """User ``index`` as ``GET /v1/users`` shows it (spec schema ``User``)."""
    rng = random.Random(f"{seed}:user:{index}")
    first = rng.choice(FIRST_NAMES)
    last = None if index % NO_LAST_NAME_EVERY == 12 else rng.choice(LAST_NAMES)
    role_key = "admin" if index % 7 == 0 else ("finance" if index % 9 == 8 else "agent")
    slug = f"{first}.{last or index}".lower().replace(" ", "")
    email = f"{slug}{index}@sandbox-realty.ae"
    created = EPOCH + timedelta(days=rng.randrange(700), seconds=rng.randrange(86400))
    # Some agents keep their phone only on the public profile, as the old service saw.
    mobile = None if index % 5 == 3 else _mobile(rng)
    user = {
        "id": 50_000 + index,
        "firstName": first,
        "lastName": last,
        "email": email,
        "mobile": mobile,
        "status": "inactive" if index % 11 == 10 else "active",
        "callTracking": None,
        "role": {**ROLES[role_key], "isCustom": False},
        "createdAt": iso(created),
    }
    if role_key == "agent":
        user["publicProfile"] = make_public_profile(rng, index, first, last, email, mobile)
    return user


def make_public_profile(
    rng: random.Random, index: int, first: str, last: str | None, email: str, mobile: str | None
) -> dict:
    """The public profile of agent ``index``; its id is what listings' ``assignedTo.id`` holds."""
    profile_id = 210_000 + index
    phone = mobile or _mobile(rng)
    return {
        "id": profile_id,
        "name": f"{first} {last}" if last else first,
        "email": email.replace("@", ".public@"),
        "phone": phone,
        "phoneSecondary": _mobile(rng),
        "whatsappPhone": phone,
        "bio": {
            "primary": f"{first} has helped Dubai families find homes since {2010 + index % 12}.",
            "secondary": "وكيل عقاري معتمد في دبي.",
        },
        "position": {"primary": "Property Consultant", "secondary": "مستشار عقاري"},
        "linkedinAddress": f"https://www.linkedin.com/in/sandbox-agent-{profile_id}",
        "imageVariants": None,
        "verification": {
            "status": "verified" if index % 4 else "pending",
            "requestDate": iso(EPOCH + timedelta(days=30 + index)),
        },
        "compliances": [
            {
                "id": profile_id,
                "type": "brn",
                "value": f"{rng.randrange(10**4, 10**5)}",
                "status": "active",
                "expiryDate": iso(datetime(2026, 12, 31, tzinfo=UTC)),
                "reason": None,
                "createdAt": iso(EPOCH),
            }
        ],
        "isSuperAgent": index % 6 == 1,
    }


def make_image(rng: random.Random, base_url: str, listing_id: str, extension: str) -> dict:
    """One ``media.images`` entry with its variants, all served by the sandbox's image host."""
    width, height = rng.choice(ORIGINAL_SIZES)
    name = uuid.UUID(int=rng.getrandbits(128), version=4)
    prefix = f"{base_url}/images/{listing_id}/{name}"
    image = {"original": {"url": f"{prefix}.{extension}", "width": width, "height": height}}
    for variant, variant_width in VARIANT_WIDTHS.items():
        image[variant] = {
            "url": f"{prefix}-{variant}.{extension}",
            "width": variant_width,
            "height": round(height * variant_width / width),
        }
    return image


def _bedrooms(rng: random.Random, index: int, property_type: str) -> str:
    if index % 500 == 10:
        return "27"  # added to the enum in the 2025-09-19 changelog
    if property_type in ("villa", "townhouse"):
        return rng.choice(("3", "4", "5"))
    if index % 50 == 1 or (property_type == "apartment" and rng.random() < 0.15):
        return "studio"
    return rng.choice(("1", "1", "2", "2", "3", "4"))


def _price(rng: random.Random, index: int, category: str, bedrooms: str) -> dict:
    if index % 50 in (0, 2, 3) or (index % 50 > 12 and rng.random() < 0.4):
        kind = "sale"
    elif index % 50 == 9 or rng.random() < 0.1:
        kind = "monthly"
    else:
        kind = "yearly"
    rooms = 0 if bedrooms == "studio" else min(int(bedrooms), 6)
    base = {"sale": 650_000, "yearly": 45_000, "monthly": 5_500}[kind]
    amount = int(
        base * (1 + rooms) * rng.uniform(0.8, 1.6) * (1.3 if category == "commercial" else 1)
    )
    price = {"type": kind, "amounts": {kind: round(amount, -3 if kind == "sale" else -2)}}
    if index % 50 == 5:
        price["onRequest"] = True
        price["amounts"] = {}
    return price


def _add_compliance_and_amenities(
    listing: dict, seed: int, index: int, commercial: bool, created: datetime
) -> None:
    """The permit (``compliance``), ``amenities`` and ``parkingSlots`` a listing carries.

    Drawn from a generator of their own, so the rest of the listing is what it
    was before they were added.
    """
    rng = random.Random(f"{seed}:listing-extra:{index}")
    listing["compliance"] = {
        "type": "rera",
        "listingAdvertisementNumber": f"{rng.randrange(10**9, 10**10)}",
        "advertisementLicenseIssuanceDate": iso(created),
        "userConfirmedDataIsCorrect": True,
    }
    if index % 20 != 13:
        listing["amenities"] = sorted(rng.sample(AMENITIES, rng.randrange(1, 6)))
    if not commercial or index % 2:
        listing["parkingSlots"] = rng.randrange(0, 4)


def listing_identity(seed: int, index: int) -> tuple[str, datetime]:
    """Listing ``index``'s id and creation time, cheap enough to list 20,000 at start."""
    digest = hashlib.sha256(f"{seed}:listing-id:{index}".encode()).digest()
    days, seconds = int.from_bytes(digest[:4]) % 900, int.from_bytes(digest[4:8]) % 86400
    created = EPOCH + timedelta(days=days, seconds=seconds)
    return ulid(int.from_bytes(digest[8:18]), created), created


def make_listing(seed: int, index: int, base_url: str, images: int, agents: list[dict]) -> dict:
    """Listing ``index`` as ``GET /v1/listings`` shows it (schema ``response-combined-flat``)."""
    listing_id, created = listing_identity(seed, index)
    rng = random.Random(f"{seed}:listing:{index}")
    updated = created + timedelta(days=rng.randrange(60), seconds=rng.randrange(86400))
    commercial = index % 50 == 4 or (index % 50 > 12 and rng.random() < 0.12)
    category = "commercial" if commercial else "residential"
    if index % 50 == 2:
        property_type = "villa"
    elif commercial:
        property_type = rng.choice(COMMERCIAL_TYPES)
    elif index % 50 in (0, 1):
        property_type = "apartment"
    else:
        property_type = rng.choice(RESIDENTIAL_TYPES)
    location = LOCATIONS[rng.choice(LISTING_LOCATION_IDS)]
    type_en, type_ar = TYPE_NAMES[property_type]
    highlight_en, highlight_ar = rng.choice(HIGHLIGHTS)
    listing: dict = {"id": listing_id, "reference": f"SBX-{seed}-{index:06d}"}
    bedrooms = None if commercial else _bedrooms(rng, index, property_type)
    price = _price(rng, index, category, bedrooms or "studio")
    purpose_en, purpose_ar = (
        ("for Sale", "للبيع") if price["type"] == "sale" else ("for Rent", "للإيجار")
    )
    if bedrooms is None:
        title_en = f"{type_en} {purpose_en} in {location.name} | {highlight_en}"
        title_ar = f"{type_ar} {purpose_ar} في {location.name_ar} | {highlight_ar}"
    else:
        beds_en = "Studio" if bedrooms == "studio" else f"{bedrooms} Bedroom"
        beds_ar = BEDROOMS_AR.get(bedrooms, f"{bedrooms} غرف نوم")
        title_en = f"{beds_en} {type_en} {purpose_en} in {location.name} | {highlight_en}"
        title_ar = f"{type_ar} {beds_ar} {purpose_ar} في {location.name_ar} | {highlight_ar}"
    listing["title"] = {"en": title_en, "ar": title_ar}
    what_en, what_ar = type_en.lower(), type_ar
    listing["description"] = {
        "en": " ".join(DESCRIPTION_EN).format(what=what_en, where=location.name),
        "ar": " ".join(DESCRIPTION_AR).format(what=what_ar, where=location.name_ar),
    }
    listing["category"] = category
    listing["type"] = property_type
    if bedrooms is not None:
        listing["bedrooms"] = bedrooms
    listing["bathrooms"] = "none" if index % 50 == 11 else rng.choice(("1", "2", "2", "3", "4"))
    rooms = int(bedrooms) if bedrooms and bedrooms.isdigit() else 0
    listing["size"] = round(rng.uniform(350, 900) * (1 + min(rooms, 8) * 0.6), 1)
    listing["furnishingType"] = rng.choice(("furnished", "unfurnished", "semi-furnished"))
    listing["price"] = price
    listing["location"] = {"id": location.id}
    listing["uaeEmirate"] = "dubai"
    _add_compliance_and_amenities(listing, seed, index, commercial, created)
    if agents:
        agent = agents[rng.randrange(len(agents))]
        listing["assignedTo"] = {"id": agent["id"], "name": agent["name"]}
    live = index % 50 != 6
    listing["portals"] = {
        "propertyfinder": {"isLive": live, **({"publishedAt": iso(updated)} if live else {})}
    }
    stage = "live" if live else "takendown"
    listing["state"] = {"type": stage, "stage": stage}
    listing["createdAt"] = iso(created)
    listing["updatedAt"] = iso(updated)
    if index % 20 == 7:
        return listing  # no "media" key at all
    extensions = ("jpg", "jpg", "png")
    count = 0 if index % 20 == 11 else images
    listing["media"] = {
        "images": [
            make_image(rng, base_url, listing_id, extensions[(index + i) % 3]) for i in range(count)
        ]
    }
    return listing
