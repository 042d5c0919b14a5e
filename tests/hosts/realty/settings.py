"""Settings of the realty site: its own apps and tables, pfsync plugged in by its column map."""

from __future__ import annotations

import os
from pathlib import Path

from pfsync_app import conf as pfsync_conf
from project_settings.environment import Env, database_from_env

BASE_DIR = Path(__file__).resolve().parent
env = Env(os.environ)

SECRET_KEY = "realty-test-site"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "tests.hosts.realty",
    "pfsync_app",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.hosts.realty.urls"
DATABASES = {"default": database_from_env(env, BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "realty.Account"
USE_TZ = True
TIME_ZONE = "Asia/Dubai"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "/media/"
STORAGES = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}

# As README tells a host site: pfsync's settings from the variables that are set.
globals().update(pfsync_conf.settings_from_environment(os.environ))

# The column map (README.md, "Plugging into your schema", shows this one).
PFSYNC_HOST = {
    "user": {
        "table": "accounts_account",
        "columns": {
            "phone": "phone_number",
            "role": None,
            "pf_user_id": None,
            "pf_public_profile_id": None,
        },
        "defaults": {"is_realtor": True, "user_type": 2},
    },
    "property": {
        "table": "listings_listing",
        "columns": {
            "pf_id": None,
            "reference": None,
            "user": "owner_id",
            "title_ar": None,
            "description_ar": None,
            "category": None,
            "property_type": "kind",
            "status_type": "purpose",
            "price_period": None,
            "size": "sqft",
            "furnishing": None,
            "pf_updated_at": None,
            "created_at": None,
            "updated_at": "modified",
            "cover_image": "image",
            "location_name": "location",
        },
        "defaults": {"price": 0, "sqft": 0, "views": 0, "location": ""},
        "extra": {
            "permit_number": "compliance.listingAdvertisementNumber",
            "amenities": "amenities",
            "parking": "parkingSlots",
            "yearly_rent": "price.amounts.yearly",
        },
        "filled_by_receivers": ["slug"],
        "fallback_agent": "office",
    },
    "image": {
        "table": "listings_listingimage",
        "columns": {
            "property": "listing_id",
            "source_url": None,
            "position": None,
            "width": None,
            "height": None,
            "is_active": None,
            "created_at": None,
        },
    },
    "area": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"pfsync": {"handlers": ["console"], "level": "WARNING", "propagate": False}},
}
