"""Reading the host's settings from the environment, with one clear sentence per mistake.

The old Go service's variables keep working unchanged (``POSTGRES_DSN`` in libpq
keyword form, ``IMAGE_DOWNLOAD_TIMEOUT``...). Every reader here raises
``ImproperlyConfigured`` naming the variable and what it expected, so a typo in
a cron environment stops start-up instead of running with a silent default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

from pfsync_app.conf import Setting, _is_http_url, setting_from_text, yes_or_no

# libpq keywords that map onto Django's DATABASES keys; the rest go to OPTIONS.
_DSN_KEYS = {
    "dbname": "NAME",
    "user": "USER",
    "password": "PASSWORD",
    "host": "HOST",
    "port": "PORT",
}

_QUOTED = re.compile(r'"[^"]*"')

SUPPORTED_ENGINES = ("django.db.backends.postgresql", "django.db.backends.sqlite3")


class Env:
    """Typed reads of environment variables that fail with a sentence naming the variable."""

    def __init__(self, environ_: Mapping[str, str]):
        self.environ = environ_

    def raw(self, name: str) -> str | None:
        """The variable's value, or None when unset or blank."""
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def str(self, name: str, default: str = "") -> str:
        """A string variable."""
        value = self.raw(name)
        return default if value is None else value

    def bool(self, name: str, default: bool = False) -> bool:
        """A yes/no variable: true/false, 1/0, yes/no, on/off."""
        value = self.raw(name)
        if value is None:
            return default
        answer = yes_or_no(value)
        if answer is None:
            raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}.")
        return answer

    def setting(self, setting: Setting) -> Any:
        """A pfsync setting from the variable of its name, or its default when unset.

        The reading is pfsync's own (``pfsync_app.conf.setting_from_text``), the one
        ``settings_from_environment`` applies for host sites.
        """
        text = self.raw(setting.name)
        return setting.default if text is None else setting_from_text(setting, text)

    def time_zone(self, name: str, default: str) -> str:
        """An IANA time zone name such as ``Asia/Tashkent`` (Django's TIME_ZONE).

        Refused unless zoneinfo knows it and, where the system has /usr/share/zoneinfo,
        that folder has it too: Django checks there at start and otherwise fails with
        "ValueError: Incorrect timezone setting" and a traceback.
        """
        value = self.str(name, default)
        if not _known_time_zone(value):
            raise ImproperlyConfigured(
                f"{name} must be a time zone name such as {default} or UTC, got {value!r}."
            )
        return value

    def email(self, name: str, default: str) -> str:
        """An e-mail address, bare or as ``Name <address>``."""
        value = self.str(name, default)
        _, address = parseaddr(value)
        try:
            validate_email(address)
        except ValidationError:
            raise ImproperlyConfigured(
                f"{name} must be an e-mail address such as pfsync@example.com, got {value!r}."
            ) from None
        return value

    def url(self, name: str) -> str | None:
        """An http(s) URL with a host, or None when unset."""
        value = self.raw(name)
        if value is not None and not _is_http_url(value):
            raise ImproperlyConfigured(
                f"{name} must be an http(s) URL with a host, such as "
                f"https://s3.example.com, got {value!r}."
            )
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of a fixed set of words."""
        value = self.str(name, default).lower()
        if value not in choices:
            raise ImproperlyConfigured(
                f"{name} must be one of {', '.join(choices)}, got {self.raw(name)!r}."
            )
        return value


def _known_time_zone(name: str) -> bool:
    """Whether ``name`` is a time zone both zoneinfo and Django's start-up check accept."""
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):  # e.g. "../x", "Mars/Olympus"
        return False
    root = Path("/usr/share/zoneinfo")
    return not root.exists() or root.joinpath(*name.split("/")).exists()


def parse_postgres_dsn(dsn: str) -> dict[str, Any]:
    """Turn a libpq keyword DSN (``host=... dbname=...``) into a Django DATABASES entry."""
    from psycopg2.extensions import parse_dsn

    try:
        params = parse_dsn(dsn)
    except Exception as exc:  # psycopg2 raises ProgrammingError with libpq's own words
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # libpq quotes the words it stumbled on; with "password=two words" one is the password.
        reason = _QUOTED.sub(lambda m: m[0] if m[0] == '"="' else '"..."', reason)
        raise ImproperlyConfigured(
            "POSTGRES_DSN must be a libpq connection string like "
            "'host=localhost user=postgres password=pass dbname=postgres port=5432 "
            f"sslmode=disable' (libpq said: {reason})."
        ) from None
    if "dbname" not in params:
        raise ImproperlyConfigured("POSTGRES_DSN must name the database with dbname=...")
    database: dict[str, Any] = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}
    for key, value in params.items():
        if key in _DSN_KEYS:
            database[_DSN_KEYS[key]] = value
        else:
            database["OPTIONS"][key] = value
    if "PORT" in database and not str(database["PORT"]).isdigit():
        raise ImproperlyConfigured(
            f"POSTGRES_DSN has port={database['PORT']!r}; the port must be a number."
        )
    return database


def parse_database_url(url: str) -> dict[str, Any]:
    """Turn a DATABASE_URL (``postgres://user:pass@host:5432/name``) into a DATABASES entry."""
    try:
        database = environ.Env.db_url_config(url)
    except Exception as exc:
        raise ImproperlyConfigured(
            "DATABASE_URL must be a URL like postgres://user:password@host:5432/dbname "
            f"or sqlite:///path/to/db.sqlite3 ({exc})."
        ) from None
    if database.get("ENGINE") not in SUPPORTED_ENGINES:
        raise ImproperlyConfigured(
            f"DATABASE_URL must start with postgres:// or sqlite://, got {url.split(':', 1)[0]!r}."
        )
    if database["ENGINE"] == "django.db.backends.postgresql" and not database.get("NAME"):
        raise ImproperlyConfigured("DATABASE_URL must name the database after the last '/'.")
    return database


def database_from_env(env: Env, base_dir: Path) -> dict[str, Any]:
    """DATABASE_URL wins, then POSTGRES_DSN, then an SQLite file in the project folder."""
    url = env.raw("DATABASE_URL")
    if url:
        database = parse_database_url(url)
    else:
        dsn = env.raw("POSTGRES_DSN")
        if dsn:
            database = parse_postgres_dsn(dsn)
        else:
            database = {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(base_dir / "db.sqlite3"),
            }
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # pf_sync writes from one thread while others read; wait instead of failing at once.
        options = database.setdefault("OPTIONS", {})
        options.setdefault("timeout", 30)
        # Take the write lock when a transaction starts, so two processes never both
        # read-then-write (pfsync's run lock relies on it on SQLite).
        options.setdefault("transaction_mode", "IMMEDIATE")
    else:
        database.setdefault("CONN_HEALTH_CHECKS", True)
    return database


# Django's EMAIL_* settings as the OPTIONS of a MAILERS entry (Django 6.1), per backend.
_SMTP_OPTIONS = {
    "EMAIL_HOST": "host",
    "EMAIL_PORT": "port",
    "EMAIL_HOST_USER": "username",
    "EMAIL_HOST_PASSWORD": "password",
    "EMAIL_USE_TLS": "use_tls",
    "EMAIL_USE_SSL": "use_ssl",
    "EMAIL_TIMEOUT": "timeout",
    "EMAIL_SSL_KEYFILE": "ssl_keyfile",
    "EMAIL_SSL_CERTFILE": "ssl_certfile",
}
_BACKEND_OPTIONS = {
    "django.core.mail.backends.smtp.EmailBackend": _SMTP_OPTIONS,
    "django.core.mail.backends.filebased.EmailBackend": {"EMAIL_FILE_PATH": "file_path"},
}
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def mailers_from_email_settings(email: dict[str, Any]) -> dict[str, Any]:
    """Django 6.1's MAILERS for the EMAIL_* settings ``email`` (django-environ's e-mail URL
    settings; empty: SMTP on localhost port 25, Django's old defaults).

    Django 6.1 deprecates the EMAIL_* settings for MAILERS ({alias: {"BACKEND", "OPTIONS"}});
    the default mailer gets the options its backend takes and nothing else, since a backend
    refuses options it does not know. Empty values are left out (the backend's defaults).
    """
    backend = email.get("EMAIL_BACKEND") or SMTP_BACKEND
    options = {
        option: email[name]
        for name, option in _BACKEND_OPTIONS.get(backend, {}).items()
        if email.get(name) not in (None, "")
    }
    if backend == SMTP_BACKEND:
        options.setdefault("host", "localhost")
        options.setdefault("port", 25)
    return {"default": {"BACKEND": backend, "OPTIONS": options}}
