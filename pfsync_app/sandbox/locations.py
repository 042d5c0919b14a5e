"""The sandbox's fixed Property Finder location tree: Dubai and a few Abu Dhabi areas."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxLocation:
    """One node of the location tree, with its parent and coordinates."""

    id: int
    type: str
    name: str
    name_ar: str
    parent_id: int | None
    lat: float
    lng: float


# (id, type, English name, Arabic name, parent id, lat, lng). Dubai Marina is 50 as in the
# spec's own example; the two "Maple 1" are the spec's example of why filter[parent] exists.
_ROWS: tuple[tuple[int, str, str, str, int | None, float, float], ...] = (
    (1, "CITY", "Dubai", "دبي", None, 25.204849, 55.270783),
    (2, "CITY", "Abu Dhabi", "أبوظبي", None, 24.453884, 54.377344),
    (50, "COMMUNITY", "Dubai Marina", "دبي مارينا", 1, 25.078367, 55.14041),
    (51, "COMMUNITY", "Downtown Dubai", "وسط مدينة دبي", 1, 25.194985, 55.278414),
    (52, "COMMUNITY", "Jumeirah Village Circle", "قرية جميرا الدائرية", 1, 25.059683, 55.209839),
    (53, "COMMUNITY", "Business Bay", "الخليج التجاري", 1, 25.185052, 55.262927),
    (54, "COMMUNITY", "Palm Jumeirah", "نخلة جميرا", 1, 25.112344, 55.138975),
    (55, "COMMUNITY", "Dubai Hills Estate", "دبي هيلز استيت", 1, 25.102814, 55.245136),
    (56, "COMMUNITY", "Jumeirah Lake Towers", "أبراج بحيرات جميرا", 1, 25.069312, 55.141387),
    (57, "COMMUNITY", "Arabian Ranches", "المرابع العربية", 1, 25.048531, 55.269672),
    (58, "COMMUNITY", "Al Barsha", "البرشاء", 1, 25.113497, 55.200802),
    (59, "COMMUNITY", "Deira", "ديرة", 1, 25.271139, 55.307485),
    (60, "COMMUNITY", "Dubai Silicon Oasis", "واحة دبي للسيليكون", 1, 25.118097, 55.383418),
    (61, "COMMUNITY", "Jumeirah Beach Residence", "جميرا بيتش ريزيدنس", 1, 25.077742, 55.13331),
    (62, "COMMUNITY", "DIFC", "مركز دبي المالي العالمي", 1, 25.211327, 55.280088),
    (63, "COMMUNITY", "Mirdif", "مردف", 1, 25.219451, 55.420837),
    (64, "COMMUNITY", "Dubai Creek Harbour", "مرسى خور دبي", 1, 25.19963, 55.34458),
    (65, "COMMUNITY", "Al Furjan", "الفرجان", 1, 25.026389, 55.150772),
    (66, "COMMUNITY", "Town Square", "تاون سكوير", 1, 25.008931, 55.296772),
    (67, "COMMUNITY", "Damac Hills", "داماك هيلز", 1, 25.025414, 55.251549),
    (68, "COMMUNITY", "International City", "المدينة العالمية", 1, 25.164582, 55.409363),
    (69, "COMMUNITY", "Motor City", "موتور سيتي", 1, 25.046822, 55.236183),
    (80, "COMMUNITY", "Al Reem Island", "جزيرة الريم", 2, 24.496708, 54.406536),
    (81, "COMMUNITY", "Saadiyat Island", "جزيرة السعديات", 2, 24.545753, 54.434341),
    (200, "TOWER", "Marina Gate 1", "مارينا جيت 1", 50, 25.086473, 55.147419),
    (201, "TOWER", "Princess Tower", "برج الأميرة", 50, 25.088685, 55.146946),
    (202, "TOWER", "Burj Khalifa", "برج خليفة", 51, 25.197197, 55.274376),
    (203, "TOWER", "The Address Residence Sky View", "العنوان سكاي فيو", 51, 25.200401, 55.281693),
    (204, "SUBCOMMUNITY", "District 10", "المنطقة 10", 52, 25.055112, 55.205681),
    (205, "TOWER", "Bay Square", "باي سكوير", 53, 25.188473, 55.279465),
    (206, "SUBCOMMUNITY", "Frond E", "سعفة E", 54, 25.121063, 55.137039),
    (207, "SUBCOMMUNITY", "Maple 1", "ميبل 1", 55, 25.108311, 55.258732),
    (208, "SUBCOMMUNITY", "Maple 1", "ميبل 1", 52, 25.061203, 55.213119),
    (209, "TOWER", "Lake Terrace", "ليك تراس", 56, 25.067733, 55.138969),
    (210, "SUBCOMMUNITY", "Saheel", "سهيل", 57, 25.052261, 55.263748),
    (211, "TOWER", "Creek Rise", "كريك رايز", 64, 25.205581, 55.349012),
    (212, "TOWER", "Sun Tower", "صن تاور", 80, 24.493111, 54.404781),
)

LOCATIONS: dict[int, SandboxLocation] = {row[0]: SandboxLocation(*row) for row in _ROWS}


def location_path(location_id: int) -> list[SandboxLocation]:
    """The nodes from the root city down to ``location_id`` itself."""
    path: list[SandboxLocation] = []
    current: int | None = location_id
    while current is not None:
        node = LOCATIONS[current]
        path.append(node)
        current = node.parent_id
    return path[::-1]


def location_json(location_id: int, *, arabic: bool = False) -> dict:
    """The location as ``GET /v1/locations`` shows it (spec schema ``Location``)."""
    node = LOCATIONS[location_id]

    def name(n: SandboxLocation) -> str:
        return n.name_ar if arabic else n.name

    return {
        "id": node.id,
        "type": node.type,
        "name": name(node),
        "coordinates": {"lat": node.lat, "lng": node.lng},
        "tree": [{"id": n.id, "type": n.type, "name": name(n)} for n in location_path(node.id)],
    }


# Where generated listings are: every Dubai community, tower and subcommunity.
LISTING_LOCATION_IDS: tuple[int, ...] = tuple(
    loc.id for loc in LOCATIONS.values() if loc.type != "CITY" and location_path(loc.id)[0].id == 1
)
