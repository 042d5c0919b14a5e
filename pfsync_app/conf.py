"""Every pfsync setting in one place: its name, kind, bounds, default and meaning.

Each setting is a Django setting of the same name as its environment variable
(the old service's names, ``PF_API_URL``, ``IMAGE_DOWNLOAD_TIMEOUT``..., are
kept). This registry is the one source: ``checks.check_settings`` validates
each setting with ``Setting.problem``, ``settings_from_environment`` reads the
environment by iterating it (for the bundled host project and for any host
site's ``settings.py``), and README's Configuration table is generated from it
(``scripts/readme-settings``). pfsync itself only ever reads Django settings,
through ``pfsync_settings``, so ``override_settings`` works in tests and a host
may set them any way it likes.

Importing this module does not read ``django.conf.settings`` (it is only read
when a setting is asked for), so a host's settings module may import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

DEFAULT_TABLES = {
    "area": "areas_area",
    "user": "users_user",
    "property": "properties_property",
    "image": "properties_propertyimage",
}

_URL_EXAMPLE = "https://www.example.com/admin/"

Kind = Literal["text", "url", "int", "float", "bool", "mapping", "emails", "host"]


@dataclass(frozen=True)
class Setting:
    """One pfsync setting: its name, default and meaning, and the values it accepts.

    ``help`` is the meaning as README.md shows it (Markdown). ``kind``, ``minimum``,
    ``maximum`` (with ``why_maximum``, where that bound comes from, said in the refusal
    and in README) and ``max_length`` (characters of text) are the rule ``problem``
    applies; ``blank``: the empty text is accepted (a ``url`` that may be unset).
    ``env``: the bundled host project reads it from the environment variable of the
    same name (otherwise it is a Django setting only). ``old_service``: the Go service had the same
    variable. ``secret``: never shown, not even in the sentence that says it is
    wrong.
    """

    name: str
    default: Any
    help: str
    kind: Kind = "text"
    minimum: int | float | None = None
    maximum: int | float | None = None
    why_maximum: str = ""
    max_length: int | None = None
    blank: bool = False
    secret: bool = False
    env: bool = True
    old_service: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this setting, as one sentence, or None."""
        got = f"got a value of type {type(value).__name__}" if self.secret else f"got {value!r}"
        if self.kind in ("int", "float"):
            if not _is_number(value, whole=self.kind == "int"):
                wanted = "a whole number" if self.kind == "int" else "a number"
                return f"{self.name} must be {wanted} (for example {_number(self.default)}), {got}."
            if isinstance(value, float) and not math.isfinite(value):
                return f"{self.name} must be a finite number, {got}."
            if self.minimum is not None and value < self.minimum:
                return f"{self.name} must be at least {_number(self.minimum)}, {got}."
            if self.maximum is not None and value > self.maximum:
                why = f" ({self.why_maximum})" if self.why_maximum else ""
                return f"{self.name} must be at most {_number(self.maximum)}{why}, {got}."
            return None
        if self.kind == "url" and isinstance(value, str):
            if self.blank and value == "":
                return None
            wrong_part = _url_part_problem(value)
            if wrong_part:
                return f"{self.name} {wrong_part}, {got}."
        too_long = self.max_length is not None and isinstance(value, str)
        if self.kind == "text" and too_long and len(value) > self.max_length:
            why = f" ({self.why_maximum})" if self.why_maximum else ""
            length = f"got {len(value)} characters"
            return f"{self.name} must be at most {self.max_length} characters{why}, {length}."
        rules = {
            "bool": ("true or false", lambda v: isinstance(v, bool)),
            "url": (
                f"an http(s) URL with a host, such as {self.default or _URL_EXAMPLE}",
                lambda v: (self.blank and v == "") or _is_http_url(v),
            ),
            "mapping": ("a dict of table names", _is_mapping_of_text),
            "emails": ("a list of e-mail addresses", _is_email_list),
            "host": ("a dict with an entry per host table", lambda v: isinstance(v, Mapping)),
            "text": ("text", lambda v: isinstance(v, str)),
        }
        expected, accepts = rules[self.kind]
        return None if accepts(value) else f"{self.name} must be {expected}, {got}."

    def current(self) -> Any:
        """The host's Django setting of this name, or the default when it sets none."""
        return getattr(settings, self.name, self.default)


def _is_number(value: Any, *, whole: bool) -> bool:
    """Whether ``value`` is an int (``whole``) or an int or float; a bool is neither."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if whole else isinstance(value, int | float)


def _number(value: float) -> str:
    """A number as a person writes it: 1024, 0.1, 30 (not 30.0)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _is_http_url(value: Any) -> bool:
    """Whether ``value`` is an http or https URL that names a host."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _url_part_problem(value: str) -> str | None:
    """What part of an http(s) URL pfsync cannot use, as the end of a sentence, or None.

    A port must be 1 to 65535 (urllib3 otherwise fails every attempt with InvalidURL); a
    query or fragment would end up in the middle of every API path joined on, and user
    credentials in the URL would be sent and logged. Scheme and host are ``_is_http_url``'s.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, or a port that is not 0-65535
        if _is_http_url_without_port(value):
            return "must have a port from 1 to 65535"
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # the kind's own sentence says it
    if port == 0:
        return "must have a port from 1 to 65535"
    if parts.query or "?" in value.split("#", 1)[0]:
        return "must not have a query (the part from '?')"
    if "#" in value:
        return "must not have a fragment (the part from '#')"
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password (the part before '@')"
    return None


def _is_http_url_without_port(value: str) -> bool:
    """Whether ``value`` is an http(s) URL with a host once its port is left aside."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


def _is_email_list(value: Any) -> bool:
    """Whether ``value`` is None (not set) or a list or tuple of e-mail addresses."""
    if value is None:
        return True
    if not isinstance(value, list | tuple):
        return False
    try:
        for address in value:
            if not isinstance(address, str):
                return False
            validate_email(address)
    except ValidationError:
        return False
    return True


def _is_mapping_of_text(value: Any) -> bool:
    """Whether ``value`` is a mapping whose values are all strings."""
    return isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())


# Seconds any time setting may be at most: an hour. Larger values only stall a run (and
# values near float's limit overflow the clock: "timestamp out of range").
MAX_SECONDS = 3600.0
WHY_MAX_SECONDS = "an hour; longer only stalls the run"
# Attempts per request or image: with the wait doubling, the 20th attempt waits 2**18 times
# the first wait, so more attempts never come.
WHY_MAX_ATTEMPTS = "with the wait doubling after each attempt, later ones never come"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "PF_API_URL",
        "https://atlas.propertyfinder.com",
        "base URL of the Atlas API. Unset or empty: this default, the real Atlas (the old "
        "service had no default)",
        kind="url",
        old_service=True,
    ),
    Setting("PF_API_KEY", "", "Atlas API key", old_service=True),
    Setting("PF_API_SECRET", "", "Atlas API secret", secret=True, old_service=True),
    Setting(
        "PF_API_TIMEOUT",
        30.0,
        "seconds one API request may take in total (connecting, the headers and the whole body)",
        kind="float",
        minimum=0.1,
        maximum=MAX_SECONDS,
        why_maximum=WHY_MAX_SECONDS,
    ),
    Setting(
        "PF_API_REQUESTS_PER_MINUTE",
        650,
        "pfsync's own cap on API requests per minute (Property Finder's default limit is 650)",
        kind="int",
        minimum=1,
        maximum=6500,
        why_maximum="ten times Property Finder's default limit of 650 a minute",
    ),
    Setting(
        "PF_API_TOKEN_REQUESTS_PER_MINUTE",
        60,
        "pfsync's own cap on token requests per minute",
        kind="int",
        minimum=1,
        env=False,
        maximum=650,
        why_maximum="a token request counts against the limit of 650 API requests a minute",
    ),
    Setting(
        "PF_API_MAX_ATTEMPTS",
        6,
        "attempts per API request before giving up",
        kind="int",
        minimum=1,
        env=False,
        maximum=20,
        why_maximum=WHY_MAX_ATTEMPTS,
    ),
    Setting(
        "PF_API_MAX_RETRY_WAIT",
        120.0,
        "seconds of back-off per API request, at most",
        kind="float",
        minimum=0,
        env=False,
        maximum=MAX_SECONDS,
        why_maximum=WHY_MAX_SECONDS,
    ),
    Setting(
        "IMAGE_DOWNLOAD_MAX_RETRIES",
        3,
        "attempts per image in total",
        kind="int",
        minimum=1,
        old_service=True,
        maximum=20,
        why_maximum=WHY_MAX_ATTEMPTS,
    ),
    Setting(
        "IMAGE_DOWNLOAD_RETRY_DELAY",
        2.0,
        "seconds before the second attempt; the wait doubles after each further attempt, "
        "up to a minute (or this delay, when longer)",
        kind="float",
        minimum=0,
        old_service=True,
        maximum=MAX_SECONDS,
        why_maximum=WHY_MAX_SECONDS,
    ),
    Setting(
        "IMAGE_DOWNLOAD_TIMEOUT",
        10.0,
        "seconds one image attempt may take in total (connecting and the whole body)",
        kind="float",
        minimum=0.1,
        old_service=True,
        maximum=MAX_SECONDS,
        why_maximum=WHY_MAX_SECONDS,
    ),
    Setting(
        "PF_IMAGE_MAX_BYTES",
        25 * 1024 * 1024,
        "largest image accepted, in bytes (the default is 25 MiB)",
        kind="int",
        minimum=1024,
        maximum=1024**3,
        why_maximum="1 GiB: an image is held in memory whole while it is checked",
    ),
    Setting(
        "PF_IMAGE_MAX_PIXELS",
        50_000_000,
        "most pixels (width x height, read from the header before decoding) an image may "
        "declare; larger ones are refused as `too_many_pixels`. Pillow's own limit "
        "(`Image.MAX_IMAGE_PIXELS`, about 179 million pixels refused) applies as well",
        kind="int",
        minimum=1,
        maximum=2 * 89_478_485,
        why_maximum="Pillow refuses larger images itself",
    ),
    Setting(
        "PF_IMAGE_UPLOAD_DIR",
        "property_images",
        "storage folder for downloaded images",
        env=False,
    ),
    Setting(
        "PF_MEDIA_ALLOW_PRIVATE_HOSTS",
        False,
        "allow image URLs on `http` and on private or loopback addresses. **Sandbox and tests "
        "only**; otherwise only `https` on public addresses is fetched",
        kind="bool",
    ),
    Setting(
        "PF_SYNC_CONCURRENCY",
        16,
        "image downloads in flight at once (pf_sync and pf_repair; `--concurrency` overrides)",
        kind="int",
        minimum=1,
        maximum=256,
        why_maximum="the API allows 650 requests a minute, so more downloads at once gain nothing "
        "and each holds a connection and a thread",
    ),
    Setting(
        "PF_SYNC_MAX_UNPUBLISH_PERCENT",
        10.0,
        "most published properties one run may unpublish, in percent "
        "(`--allow-mass-unpublish` overrides)",
        kind="float",
        minimum=0,
        maximum=100,
        why_maximum="a percentage",
    ),
    Setting(
        "PF_REPORT_MAX_ENTRIES",
        2000,
        "report entries kept per run; a warning entry says how many more there were",
        kind="int",
        minimum=0,
        env=False,
        maximum=1_000_000,
        why_maximum="a run's report is held in memory and stored in one row",
    ),
    Setting(
        "REPORT_FILE",
        "",
        "the daily report file; one line per pf_sync run is appended. Empty: no file "
        "(the Docker image sets `/var/log/pfsync/report.txt`)",
        old_service=True,
    ),
    Setting(
        "PF_WEBHOOK_SECRET",
        "",
        "secret for the `X-Signature` HMAC of webhook events",
        secret=True,
        max_length=32,
        why_maximum="Property Finder's limit",
    ),
    Setting(
        "PF_WEBHOOK_ALLOW_UNSIGNED",
        False,
        "accept webhook events without a signature when no secret is set",
        kind="bool",
    ),
    Setting(
        "PF_ALERT_EMAILS",
        None,
        "who is e-mailed after a nightly pf_sync that could not run, had errors or unpublished "
        "anything: a list in `settings.py`, comma-separated in the environment. Not set: "
        "Django's `ADMINS`; an empty list: no e-mail. Sent with Django's e-mail settings "
        "(`EMAIL_HOST`, `DEFAULT_FROM_EMAIL`...)",
        kind="emails",
    ),
    Setting(
        "PF_ALERT_MIN_ERRORS",
        1,
        "errors a nightly pf_sync must reach before it is e-mailed about (0: every nightly run)",
        kind="int",
        minimum=0,
        maximum=1_000_000,
        why_maximum="more errors than a run can have records",
    ),
    Setting(
        "PF_ADMIN_BASE_URL",
        "",
        "the Django admin's address as people open it, e.g. `https://www.example.com/admin/`; "
        "alert e-mails link each run under it. Empty: the e-mail names the run instead",
        kind="url",
        blank=True,
    ),
    Setting(
        "PF_SYNC_MAX_AGE_HOURS",
        26.0,
        "hours after the last successful nightly pf_sync before the health view and "
        "`pf_report --check` say unhealthy",
        kind="float",
        minimum=1,
        maximum=24 * 366,
        why_maximum="a year",
    ),
    Setting(
        "PF_HEALTH_TOKEN",
        "",
        "token the health view requires (`Authorization: Bearer ...` or `?token=...`). Empty: "
        "the health view is open",
        secret=True,
    ),
    Setting(
        "PFSYNC_TABLES",
        DEFAULT_TABLES,
        "names of the host tables pfsync writes into, by key; name only those that differ",
        kind="mapping",
        env=False,
    ),
    Setting(
        "PFSYNC_HOST",
        {},
        "the column map: per host table its name, which column holds each pfsync field (or "
        "`None`), defaults, extra columns, the fallback agent (see [Plugging into your "
        "schema](#plugging-into-your-schema)). A `table` named here wins over `PFSYNC_TABLES`",
        kind="host",
        env=False,
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def setting_named(name: str) -> Setting:
    """The registry's entry for ``name`` (its bounds, for a command-line option that overrides
    it); KeyError for a name pfsync does not have."""
    return _BY_NAME[name]


class PfsyncSettings:
    """Read pfsync settings from Django settings, falling back to the defaults above."""

    def __getattr__(self, name: str) -> Any:
        try:
            setting = _BY_NAME[name]
        except KeyError:
            raise AttributeError(f"pfsync has no setting {name!r}") from None
        value = setting.current()
        if name == "PFSYNC_TABLES":
            return {**DEFAULT_TABLES, **(value or {})}
        if name == "PFSYNC_HOST":
            return value or {}
        return value


pfsync_settings = PfsyncSettings()

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def yes_or_no(text: str) -> bool | None:
    """True or False for the usual yes/no words (true/false, 1/0, yes/no, on/off), else None."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _as_number(kind: type[int] | type[float]) -> Callable[[str], Any]:
    """A reader that turns text into ``kind``, or leaves it as text for the rule to name."""

    def read(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            return text

    return read


# How a variable's text becomes each kind of setting. Text that does not read as the kind
# stays text, so Setting.problem words the mistake exactly as the system check does.
_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "text": str,
    "url": str,
    "int": _as_number(int),
    "float": _as_number(float),
    "bool": lambda text: text if (answer := yes_or_no(text)) is None else answer,
    "emails": lambda text: [part.strip() for part in text.split(",") if part.strip()],
}


def setting_from_text(setting: Setting, text: str) -> Any:
    """``setting``'s value from the text of its environment variable (stripped, not blank).

    Raises ImproperlyConfigured with ``Setting.problem``'s sentence when the text does not
    read as the setting's kind or is out of its bounds, e.g. "PF_SYNC_CONCURRENCY must be a
    whole number (for example 16), got 'many'." A URL loses a trailing slash (the old
    service accepted one; the API paths are joined on without it).
    """
    value = _FROM_TEXT[setting.kind](text)
    problem = setting.problem(value)
    if problem:
        raise ImproperlyConfigured(problem)
    return value.rstrip("/") if setting.kind == "url" else value


def settings_from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """pfsync's settings from the environment variables of the same names, for ``settings.py``.

    Returns {setting name: value} for each setting of the registry read from the environment
    (README's "pfsync's settings" tables, not the "Django settings only" one) whose variable
    is set and not blank; the others are left out, so pfsync uses their defaults or what
    ``settings.py`` sets after it. Text is read by kind: a number, a yes/no word
    (true/false, 1/0, yes/no, on/off), an http(s) URL, a comma-separated list of e-mail
    addresses (``PF_ALERT_EMAILS``). A value that does not read, or is out of bounds, raises
    ImproperlyConfigured with one sentence naming the variable, so a typo stops every command
    at start-up. A host site's ``settings.py``::

        from pfsync_app.conf import settings_from_environment

        globals().update(settings_from_environment())

    Reads only ``environ`` (``os.environ`` by default), never ``django.conf.settings``.
    """
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        text = environ.get(setting.name)
        if setting.env and text is not None and text.strip():
            values[setting.name] = setting_from_text(setting, text.strip())
    return values
