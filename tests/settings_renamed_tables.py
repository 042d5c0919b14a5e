"""The host project's settings with one host table renamed through PFSYNC_TABLES."""

from project_settings.settings import *  # noqa: F403

PFSYNC_TABLES = {"area": "listings_area"}
