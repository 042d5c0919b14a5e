"""Every pfsync setting in one place: its name, default and meaning.

Each setting is a Django setting of the same name as the environment variable
the old service used (``PF_API_URL``, ``IMAGE_DOWNLOAD_TIMEOUT``...). The host
project fills them from the environment (see ``project_settings/settings.py``);
pfsync itself only ever reads Django settings, through ``pfsync_settings``, so
``override_settings`` works in tests and a host may set them any way it likes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

DEFAULT_TABLES = {
    "area": "areas_area",
    "user": "users_user",
    "property": "properties_property",
    "image": "properties_propertyimage",
}


@dataclass(frozen=True)
class Setting:
    """One pfsync setting: its Django/environment name, default and meaning."""

    name: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("PF_API_URL", "https://atlas.propertyfinder.com", "Base URL of the Atlas API."),
    Setting("PF_API_KEY", "", "Atlas API key (POST /v1/auth/token apiKey)."),
    Setting("PF_API_SECRET", "", "Atlas API secret. Never logged."),
    Setting("PF_API_TIMEOUT", 30.0, "Seconds allowed for one API request (connect and read)."),
    Setting("PF_API_REQUESTS_PER_MINUTE", 650, "Client-side cap on API requests a minute."),
    Setting("PF_API_TOKEN_REQUESTS_PER_MINUTE", 60, "Client-side cap on token requests a minute."),
    Setting("PF_API_MAX_ATTEMPTS", 6, "Attempts per API request before giving up."),
    Setting("PF_API_MAX_RETRY_WAIT", 120.0, "Seconds of back-off per API request, at most."),
    Setting("IMAGE_DOWNLOAD_MAX_RETRIES", 3, "Attempts per image download."),
    Setting("IMAGE_DOWNLOAD_RETRY_DELAY", 2.0, "First back-off between image attempts, seconds."),
    Setting("IMAGE_DOWNLOAD_TIMEOUT", 10.0, "Seconds one image attempt may take in total."),
    Setting("PF_IMAGE_MAX_BYTES", 25 * 1024 * 1024, "Largest image accepted, in bytes."),
    Setting("PF_IMAGE_UPLOAD_DIR", "property_images", "Storage folder for downloaded images."),
    Setting(
        "PF_MEDIA_ALLOW_PRIVATE_HOSTS",
        False,
        "Allow image URLs on http and private/loopback addresses (sandbox and tests only).",
    ),
    Setting("PF_SYNC_CONCURRENCY", 16, "Image downloads in flight at once."),
    Setting(
        "PF_SYNC_MAX_UNPUBLISH_PERCENT",
        10.0,
        "Most published properties one run may unpublish, in percent.",
    ),
    Setting("PF_REPORT_MAX_ENTRIES", 2000, "Report entries kept per run; a note says when cut."),
    Setting("REPORT_FILE", "", "Daily report file; empty to write none."),
    Setting("PF_WEBHOOK_SECRET", "", "Secret for the X-Signature HMAC of webhook events."),
    Setting(
        "PF_WEBHOOK_ALLOW_UNSIGNED",
        False,
        "Accept webhook events without a signature when no secret is set.",
    ),
    Setting("PFSYNC_TABLES", DEFAULT_TABLES, "Names of the host tables pfsync writes into."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


class PfsyncSettings:
    """Read pfsync settings from Django settings, falling back to the defaults above."""

    def __getattr__(self, name: str) -> Any:
        try:
            setting = _BY_NAME[name]
        except KeyError:
            raise AttributeError(f"pfsync has no setting {name!r}") from None
        value = getattr(settings, name, setting.default)
        if name == "PFSYNC_TABLES":
            return {**DEFAULT_TABLES, **(value or {})}
        return value


pfsync_settings = PfsyncSettings()


def table_name(key: str) -> str:
    """The host table for ``key`` (area, user, property, image), honouring PFSYNC_TABLES."""
    return pfsync_settings.PFSYNC_TABLES[key]
