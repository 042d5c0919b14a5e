"""One rule per pfsync setting: the environment reader, the system check and README agree.

Every case is drawn from the registry (pfsync_app/conf.py), so a new setting is covered
the moment it is declared.
"""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from pfsync_app.checks import check_settings
from pfsync_app.conf import SETTINGS, Setting
from project_settings.environment import Env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "readme-settings"

NUMBERS = [s for s in SETTINGS if s.kind in ("int", "float")]
FROM_ENV = [s for s in SETTINGS if s.env]

# Environment text each kind refuses, with the value it reads as: the check must word the
# same value exactly as the reader does.
BAD_TEXT = {
    "int": [("three", "three"), ("1.5", "1.5"), ("1e3", "1e3")],
    "float": [("ten", "ten"), ("10s", "10s"), ("nan", math.nan), ("inf", math.inf)],
    "bool": [("maybe", "maybe"), ("2", "2")],
    "url": [
        ("ftp://atlas.example", "ftp://atlas.example"),
        ("atlas.propertyfinder.com", "atlas.propertyfinder.com"),
        ("https://", "https://"),
        ("http://[::1", "http://[::1"),
    ],
    "text": [],
    "emails": [("ops@example.com, not an address", ["ops@example.com", "not an address"])],
}
# Python values a host's settings.py might hold that each kind refuses.
WRONG_VALUES = {
    "int": [None, True, 16.0, "16"],
    "float": [None, True, "10", -math.inf],
    "bool": [None, 1, "true"],
    "url": [None, 5, "mailto:someone@example.com"],
    "text": [None, 5, b"bytes"],
    "mapping": [None, ["areas_area"], {"area": 1}],
    "emails": ["ops@example.com", [5], ["not an address"]],
    "host": [None, ["user"], "listings_listing"],
}


def name_of(setting: Setting) -> str:
    return setting.name


def errors(settings, name, value):
    """The pfsync.E010 errors with one setting set to ``value``."""
    setattr(settings, name, value)
    return [m for m in check_settings() if m.id == "pfsync.E010"]


def read(setting, text):
    return Env({setting.name: text}).setting(setting)


def just_below(setting):
    """The minimum minus one and, for decimal numbers, the nearest number below it."""
    if setting.kind == "int":
        return [setting.minimum - 1]
    return [float(setting.minimum - 1), math.nextafter(setting.minimum, -math.inf)]


def as_env_text(value):
    if value is None:  # not set
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else repr(value)


@pytest.mark.parametrize("setting", SETTINGS, ids=name_of)
def test_every_default_obeys_its_own_rule(setting):
    assert setting.problem(setting.default) is None


@pytest.mark.parametrize("setting", NUMBERS, ids=name_of)
def test_every_number_has_a_minimum_its_default_is_not_below(setting):
    assert setting.minimum is not None
    assert setting.default >= setting.minimum


def just_above(setting):
    """The maximum plus one and, for decimal numbers, the nearest number above it."""
    if setting.kind == "int":
        return [setting.maximum + 1]
    return [float(setting.maximum + 1), math.nextafter(setting.maximum, math.inf)]


def at_most(setting, above):
    shown = setting.maximum if setting.kind == "int" else f"{setting.maximum:g}"
    return f"{setting.name} must be at most {shown} ({setting.why_maximum}), got {above!r}."


@pytest.mark.parametrize("setting", NUMBERS, ids=name_of)
def test_every_number_has_a_maximum_its_default_is_not_above_and_says_why(setting):
    assert setting.maximum is not None
    assert setting.minimum <= setting.default <= setting.maximum
    assert setting.why_maximum


@pytest.mark.parametrize("setting", NUMBERS, ids=name_of)
def test_the_check_accepts_each_maximum_and_refuses_just_above_it(settings, setting):
    assert errors(settings, setting.name, setting.maximum) == []
    for above in just_above(setting):
        [error] = errors(settings, setting.name, above)
        assert error.msg == at_most(setting, above)


@pytest.mark.parametrize("setting", [s for s in NUMBERS if s.env], ids=name_of)
def test_the_environment_reader_draws_each_maximum_where_the_check_does(settings, setting):
    assert read(setting, repr(setting.maximum)) == setting.maximum
    for above in just_above(setting):
        with pytest.raises(ImproperlyConfigured) as refused:
            read(setting, repr(above))
        assert str(refused.value) == at_most(setting, above)


@pytest.mark.parametrize("setting", [s for s in NUMBERS if s.kind == "float"], ids=name_of)
@pytest.mark.parametrize("value", [1e308, math.inf, -math.inf, math.nan])
def test_no_time_or_share_is_beyond_any_clock(settings, setting, value):
    [error] = errors(settings, setting.name, value)
    assert error.msg.startswith(f"{setting.name} must be ")


def test_the_time_settings_are_at_most_an_hour():
    seconds = [s for s in SETTINGS if s.kind == "float" and "seconds" in s.help]
    assert {s.name for s in seconds} >= {
        "PF_API_TIMEOUT",
        "PF_API_MAX_RETRY_WAIT",
        "IMAGE_DOWNLOAD_RETRY_DELAY",
        "IMAGE_DOWNLOAD_TIMEOUT",
    }
    assert all(s.maximum == 3600 for s in seconds)


@pytest.mark.parametrize("setting", NUMBERS, ids=name_of)
def test_the_check_accepts_each_minimum_and_refuses_just_below_it(settings, setting):
    assert errors(settings, setting.name, setting.minimum) == []
    for below in just_below(setting):
        [error] = errors(settings, setting.name, below)
        assert error.msg == f"{setting.name} must be at least {setting.minimum}, got {below!r}."
        assert setting.name in error.hint


@pytest.mark.parametrize("setting", [s for s in NUMBERS if s.env], ids=name_of)
def test_the_environment_reader_draws_each_minimum_where_the_check_does(settings, setting):
    assert read(setting, repr(setting.minimum)) == setting.minimum
    for below in just_below(setting):
        with pytest.raises(ImproperlyConfigured) as refused:
            read(setting, repr(below))
        [error] = errors(settings, setting.name, below)
        assert str(refused.value) == error.msg


@pytest.mark.parametrize(
    ("setting", "text", "value"),
    [(s, text, value) for s in FROM_ENV for text, value in BAD_TEXT[s.kind]],
    ids=lambda case: case.name if isinstance(case, Setting) else str(case),
)
def test_text_the_environment_reader_refuses_is_worded_as_the_check_words_it(
    settings, setting, text, value
):
    with pytest.raises(ImproperlyConfigured) as refused:
        read(setting, text)
    [error] = errors(settings, setting.name, value)
    assert str(refused.value) == error.msg
    assert error.msg.startswith(f"{setting.name} must be ")


@pytest.mark.parametrize("setting", FROM_ENV, ids=name_of)
def test_every_setting_from_the_environment_reads_its_default_back(setting):
    assert read(setting, as_env_text(setting.default)) == setting.default
    assert Env({}).setting(setting) == setting.default


@pytest.mark.parametrize(
    ("setting", "value"),
    [(s, value) for s in SETTINGS for value in WRONG_VALUES[s.kind]],
    ids=lambda case: case.name if isinstance(case, Setting) else repr(case),
)
def test_a_wrong_value_in_the_django_settings_is_one_error_naming_the_setting(
    settings, setting, value
):
    [error] = errors(settings, setting.name, value)
    assert error.msg.startswith(f"{setting.name} must be ")
    assert setting.name in error.hint


def test_every_setting_wrong_at_once_is_one_error_each(settings):
    for setting in SETTINGS:
        setattr(settings, setting.name, WRONG_VALUES[setting.kind][-1])
    messages = [m for m in check_settings() if m.id == "pfsync.E010"]
    assert [m.msg.split()[0] for m in messages] == [s.name for s in SETTINGS]
    assert all(s.name in m.hint for s, m in zip(SETTINGS, messages, strict=True))


def test_the_secrets_are_the_api_and_webhook_secrets_and_the_health_token():
    assert {s.name for s in SETTINGS if s.secret} == {
        "PF_API_SECRET",
        "PF_WEBHOOK_SECRET",
        "PF_HEALTH_TOKEN",
    }


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.secret], ids=name_of)
def test_a_secret_that_is_wrong_is_not_shown_in_the_error(settings, setting):
    [error] = errors(settings, setting.name, b"hunter2-secret")
    assert error.msg == f"{setting.name} must be text, got a value of type bytes."


def test_the_environment_reader_drops_a_trailing_slash_from_the_api_url():
    url = next(s for s in SETTINGS if s.name == "PF_API_URL")
    assert read(url, "https://atlas.example.test/") == "https://atlas.example.test"


URL_PARTS = [
    ("http://127.0.0.1:99999", "must have a port from 1 to 65535"),
    ("http://127.0.0.1:0", "must have a port from 1 to 65535"),
    ("http://127.0.0.1:port", "must have a port from 1 to 65535"),
    ("https://atlas.example/?x=1#frag", "must not have a query (the part from '?')"),
    ("https://atlas.example/?", "must not have a query (the part from '?')"),
    ("https://atlas.example/#frag", "must not have a fragment (the part from '#')"),
    (
        "https://key:secret@atlas.example",
        "must not hold a user name or password (the part before '@')",
    ),
]
URLS = [s for s in SETTINGS if s.kind == "url"]


@pytest.mark.parametrize(("text", "words"), URL_PARTS)
@pytest.mark.parametrize("setting", URLS, ids=name_of)
def test_a_url_part_pfsync_cannot_use_is_named_by_reader_and_check_alike(
    settings, setting, text, words
):
    with pytest.raises(ImproperlyConfigured) as refused:
        read(setting, text)
    [error] = errors(settings, setting.name, text)
    assert str(refused.value) == error.msg == f"{setting.name} {words}, got {text!r}."


def test_the_admin_link_is_an_http_url_or_unset(settings):
    [admin] = [s for s in URLS if s.name == "PF_ADMIN_BASE_URL"]
    assert admin.problem("") is None
    assert read(admin, "https://www.example.com/admin/") == "https://www.example.com/admin"
    for text in ("javascript:alert(1)", "www.example.com/admin"):
        assert admin.problem(text) == (
            "PF_ADMIN_BASE_URL must be an http(s) URL with a host, such as "
            f"https://www.example.com/admin/, got {text!r}."
        )


def test_the_api_url_empty_is_the_documented_default():
    [api] = [s for s in URLS if s.name == "PF_API_URL"]
    assert Env({"PF_API_URL": ""}).setting(api) == api.default
    assert "Unset or empty: this default" in api.help


def test_the_webhook_secret_is_at_most_32_characters_and_never_shown(settings):
    assert errors(settings, "PF_WEBHOOK_SECRET", "s" * 32) == []
    [error] = errors(settings, "PF_WEBHOOK_SECRET", "s" * 33)
    assert error.msg == (
        "PF_WEBHOOK_SECRET must be at most 32 characters (Property Finder's limit), "
        "got 33 characters."
    )


def test_readmes_settings_rows_are_what_the_registry_generates():
    # Run as a person runs it, so the script's mode and interpreter line are tested too.
    result = subprocess.run([str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (
        "README.md's pfsync settings are out of date: run scripts/readme-settings. " + result.stderr
    )


def test_readme_lists_each_pfsync_setting_once_in_the_generated_block():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("<!-- BEGIN pfsync settings") : readme.index("<!-- END pfsync")]
    for setting in SETTINGS:
        assert block.count(f"| `{setting.name}` |") == 1, setting.name
        assert f"| `{setting.name}` |" not in readme.replace(block, ""), setting.name


def test_the_readme_check_fails_on_a_stale_row_and_the_script_rewrites_it(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    original = readme.read_text()
    row = "| `PF_SYNC_CONCURRENCY` | `16` |"
    assert row in original
    readme.write_text(original.replace(row, "| `PF_SYNC_CONCURRENCY` | `8` |"))

    command = [sys.executable, str(SCRIPT), "--readme", str(readme)]
    check = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1
    assert "run scripts/readme-settings" in check.stderr

    subprocess.run(command, check=True, timeout=60)
    assert readme.read_text() == original
