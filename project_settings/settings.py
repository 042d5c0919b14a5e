"""Settings of the host project that plays the real estate site.

Everything comes from the environment (and an optional ``.env`` file next to
``manage.py``); ``.env.example`` documents each variable. The old service's
variable names work unchanged.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import django
import environ

from pfsync_app import conf as pfsync_conf
from pfsync_app.reports.logs import LOG_TIME_FORMAT
from project_settings.environment import Env, database_from_env, mailers_from_email_settings

BASE_DIR = Path(__file__).resolve().parent.parent

# A .env file is optional; real environment variables win over it.
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

env = Env(os.environ)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", "pfsync-local-development-key-not-for-production")
DEBUG = env.bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [
    h.strip()
    for h in env.str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "project_settings.host",
    "pfsync_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project_settings.urls"

# PFSYNC_STANDALONE=true runs pfsync alone against the real site's database (the
# Docker image does): only pfsync's own app is installed, so the stand-in host app
# and the admin never meet the site's own migration history. The site itself shows
# pfsync's admin by adding pfsync_app to its own INSTALLED_APPS.
PFSYNC_STANDALONE = env.bool("PFSYNC_STANDALONE", False)
if PFSYNC_STANDALONE:
    INSTALLED_APPS = ["pfsync_app"]
    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
    ]
    ROOT_URLCONF = "project_settings.urls_standalone"
WSGI_APPLICATION = "project_settings.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_env(env, BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if not PFSYNC_STANDALONE:
    AUTH_USER_MODEL = "host.User"

TIME_ZONE = env.time_zone("TZ", "Asia/Tashkent")
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_URL = env.str("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", str(BASE_DIR / "media"))).resolve()

# The admin's CSS and JavaScript with DEBUG off, as a real deployment serves them: WhiteNoise
# (the demo extra) answers /static/ from the apps' static folders (WHITENOISE_USE_FINDERS), so
# `manage.py runserver` needs no collectstatic. pfsync_app itself does not depend on it, and
# the Docker image (standalone: no admin) is installed without it.
SERVE_STATIC = not PFSYNC_STANDALONE and importlib.util.find_spec("whitenoise") is not None
if SERVE_STATIC:
    INSTALLED_APPS.insert(
        INSTALLED_APPS.index("django.contrib.staticfiles"), "whitenoise.runserver_nostatic"
    )
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "project_settings.host.static.StaticFilesMiddleware",
    )
    WHITENOISE_USE_FINDERS = True

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# MEDIA_STORAGE=s3 puts media on S3-compatible object storage (django-storages),
# configured with the usual AWS_* variables; pfsync only ever uses the storage API.
MEDIA_STORAGE = env.choice("MEDIA_STORAGE", "filesystem", ("filesystem", "s3"))
if MEDIA_STORAGE == "s3":
    AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", "")
    if not AWS_STORAGE_BUCKET_NAME:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("MEDIA_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME.")
    AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", "") or None
    AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", "") or None
    AWS_S3_ENDPOINT_URL = env.url("AWS_S3_ENDPOINT_URL")
    AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", "") or None
    AWS_LOCATION = env.str("AWS_LOCATION", "")
    AWS_QUERYSTRING_AUTH = env.bool("AWS_QUERYSTRING_AUTH", True)
    AWS_S3_FILE_OVERWRITE = False
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage"}

# pfsync: every setting its registry marks as read from the environment and set there, held
# to the same rule as pfsync's system check (pfsync_app/conf.py documents each one), as the
# README tells a host site to do. pfsync falls back to the defaults of the others.
globals().update(pfsync_conf.settings_from_environment(os.environ))

# E-mail, for pfsync's alerts: EMAIL_URL such as smtp+tls://user:password@smtp.example.com:587
# (django-environ's e-mail URLs). Unset: Django's defaults, SMTP on localhost port 25.
# Django 6.1 and newer take them as MAILERS, which deprecates the EMAIL_* settings.
email_settings: dict = {}
if env.raw("EMAIL_URL"):
    try:
        email_settings = environ.Env.email_url_config(env.raw("EMAIL_URL"))
    except Exception as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "EMAIL_URL must be an e-mail URL like smtp+tls://user:password@smtp.example.com:587 "
            f"({exc})."
        ) from None
if django.VERSION >= (6, 1):
    MAILERS = mailers_from_email_settings(email_settings)
else:
    globals().update(email_settings)
DEFAULT_FROM_EMAIL = env.email("DEFAULT_FROM_EMAIL", "webmaster@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Logging: one line per event with the run id; LOG_FORMAT=json for JSON lines.
LOG_FORMAT = env.choice("LOG_FORMAT", "text", ("text", "json"))
LOG_LEVEL = env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "run": {"()": "pfsync_app.reports.logs.RunContextFilter"},
        "redact": {"()": "pfsync_app.reports.logs.RedactingFilter"},
    },
    "formatters": {
        # LOG_TIME_FORMAT: the timestamps of the progress lines between the log records.
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [run %(run_id)s] %(message)s",
            "datefmt": LOG_TIME_FORMAT,
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(run_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["run", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "pfsync": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
