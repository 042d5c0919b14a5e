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
    [url] = [s for s in SETTINGS if s.kind == "url"]
    assert read(url, "https://atlas.example.test/") == "https://atlas.example.test"


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
