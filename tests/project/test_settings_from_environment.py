"""A host site takes pfsync's settings from the environment with one line (README, step 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from pfsync_app.conf import settings_from_environment

REPO = Path(__file__).resolve().parents[2]

# A host site's settings.py as README's install steps write it, and nothing of this repository's.
HOST_SETTINGS = """
import os

from pfsync_app.conf import settings_from_environment

SECRET_KEY = "a-host-site"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "pfsync_app"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {database!r}}}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

globals().update(settings_from_environment())
"""


def test_each_kind_is_read_from_its_variable_and_unset_or_blank_ones_are_left_out():
    values = settings_from_environment(
        {
            "PF_MEDIA_ALLOW_PRIVATE_HOSTS": "true",
            "PF_WEBHOOK_ALLOW_UNSIGNED": " off ",
            "PF_SYNC_CONCURRENCY": "4",
            "PF_API_TIMEOUT": "2.5",
            "PF_API_URL": "http://127.0.0.1:8765/",
            "PF_ALERT_EMAILS": "ops@example.com, dev@example.com",
            "PF_API_KEY": "key",
            "PF_WEBHOOK_SECRET": "   ",
            "PF_API_MAX_ATTEMPTS": "2",  # a Django setting only: no variable is read for it
            "HOME": "/root",
        }
    )
    assert values == {
        "PF_MEDIA_ALLOW_PRIVATE_HOSTS": True,
        "PF_WEBHOOK_ALLOW_UNSIGNED": False,
        "PF_SYNC_CONCURRENCY": 4,
        "PF_API_TIMEOUT": 2.5,
        "PF_API_URL": "http://127.0.0.1:8765",
        "PF_ALERT_EMAILS": ["ops@example.com", "dev@example.com"],
        "PF_API_KEY": "key",
    }
    assert settings_from_environment({}) == {}


URL_RULE = "an http(s) URL with a host, such as https://atlas.propertyfinder.com"


@pytest.mark.parametrize(
    ("name", "text", "sentence"),
    [
        (
            "PF_MEDIA_ALLOW_PRIVATE_HOSTS",
            "sure",
            "PF_MEDIA_ALLOW_PRIVATE_HOSTS must be true or false, got 'sure'.",
        ),
        (
            "PF_SYNC_CONCURRENCY",
            "many",
            "PF_SYNC_CONCURRENCY must be a whole number (for example 16), got 'many'.",
        ),
        ("PF_SYNC_CONCURRENCY", "0", "PF_SYNC_CONCURRENCY must be at least 1, got 0."),
        (
            "PF_API_URL",
            "atlas.example.com",
            f"PF_API_URL must be {URL_RULE}, got 'atlas.example.com'.",
        ),
        (
            "PF_ALERT_EMAILS",
            "ops@example.com, nobody",
            "PF_ALERT_EMAILS must be a list of e-mail addresses, "
            "got ['ops@example.com', 'nobody'].",
        ),
    ],
)
def test_a_value_that_does_not_read_stops_with_one_sentence_naming_the_variable(
    name, text, sentence
):
    with pytest.raises(ImproperlyConfigured) as raised:
        settings_from_environment({name: text})
    assert str(raised.value) == sentence


def host_site(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment of ``python -m django`` on a host site's settings module under
    ``tmp_path``, without any PF_* variable but ``variables``."""
    (tmp_path / "host_site_settings.py").write_text(
        HOST_SETTINGS.format(database=str(tmp_path / "db.sqlite3"))
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PF_", "PFSYNC_", "IMAGE_DOWNLOAD_"))
        and key not in ("REPORT_FILE", "DATABASE_URL", "POSTGRES_DSN")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    env["DJANGO_SETTINGS_MODULE"] = "host_site_settings"
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **variables}


def test_a_host_site_reads_the_variables_a_user_exports(tmp_path):
    env = host_site(
        tmp_path,
        PF_API_URL="http://127.0.0.1:8765",
        PF_MEDIA_ALLOW_PRIVATE_HOSTS="true",
        PF_WEBHOOK_SECRET="s3cret",
    )
    code = (
        "from pfsync_app.conf import pfsync_settings as s; "
        "print(s.PF_API_URL, s.PF_MEDIA_ALLOW_PRIVATE_HOSTS, s.PF_WEBHOOK_SECRET, "
        "s.PF_API_KEY == '')"
    )
    shown = subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    # The last line: newer Django shells first say what they imported.
    assert shown.stdout.splitlines()[-1].split() == [
        "http://127.0.0.1:8765",
        "True",
        "s3cret",
        "True",
    ]


def test_a_host_site_runs_pf_sandbox_before_it_has_any_key(tmp_path):
    command = [sys.executable, "-m", "django", "pf_sandbox", "--port", "0", "--listings", "2"]
    process = subprocess.Popen(
        [*command, "--users", "1"],
        env=host_site(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert set(lines) == {"PF_API_URL", "PF_API_KEY", "PF_API_SECRET"}
        assert lines["PF_API_KEY"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_importing_it_in_a_settings_module_does_not_read_django_settings(tmp_path):
    # A settings module that is not there: reading django.conf.settings would fail on it.
    code = (
        "from pfsync_app.conf import settings_from_environment; "
        "from django.conf import settings; "
        "values = settings_from_environment({'PF_SYNC_CONCURRENCY': '3'}); "
        "assert values == {'PF_SYNC_CONCURRENCY': 3}, values; "
        "assert not settings.configured"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "no_such_settings_module",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
