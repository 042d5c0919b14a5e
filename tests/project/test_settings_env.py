"""Settings come from the old service's environment variables, with clear errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from project_settings.environment import (
    Env,
    database_from_env,
    parse_database_url,
    parse_postgres_dsn,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_old_services_dsn_is_parsed_into_databases():
    db = parse_postgres_dsn(
        "host=localhost user=postgres password=pass dbname=postgres port=5432 sslmode=disable"
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["USER"], db["PASSWORD"], db["NAME"], db["PORT"]) == (
        "localhost",
        "postgres",
        "pass",
        "postgres",
        "5432",
    )
    assert db["OPTIONS"] == {"sslmode": "disable"}


def test_a_quoted_password_with_spaces_and_any_key_order_is_understood():
    db = parse_postgres_dsn(
        "sslmode=require dbname=site port=6432 password='p a\\'ss word' user=web host=db.internal"
    )
    assert db["PASSWORD"] == "p a'ss word"
    assert db["NAME"] == "site"
    assert db["PORT"] == "6432"
    assert db["OPTIONS"]["sslmode"] == "require"


@pytest.mark.parametrize(
    "dsn",
    ["host=localhost dbname='unterminated", "this is not a dsn", "host=x user=y"],
)
def test_an_unparseable_dsn_names_the_variable(dsn):
    with pytest.raises(ImproperlyConfigured, match="POSTGRES_DSN"):
        parse_postgres_dsn(dsn)


def test_database_url_wins_over_postgres_dsn(tmp_path):
    env = Env(
        {
            "DATABASE_URL": "postgres://u:p@dbhost:5433/fromurl",
            "POSTGRES_DSN": "host=other dbname=fromdsn",
        }
    )
    db = database_from_env(env, tmp_path)
    assert db["NAME"] == "fromurl"
    assert db["HOST"] == "dbhost"


def test_postgres_dsn_is_used_without_database_url(tmp_path):
    db = database_from_env(Env({"POSTGRES_DSN": "host=h dbname=fromdsn"}), tmp_path)
    assert db["NAME"] == "fromdsn"


def test_sqlite_in_the_project_folder_is_the_embedded_default(tmp_path):
    db = database_from_env(Env({}), tmp_path)
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(tmp_path / "db.sqlite3")


def test_a_database_url_with_an_unknown_scheme_is_refused():
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        parse_database_url("mongodb://x/y")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("IMAGE_DOWNLOAD_MAX_RETRIES", "three", "whole number"),
        ("IMAGE_DOWNLOAD_TIMEOUT", "10s", "number"),
        ("IMAGE_DOWNLOAD_RETRY_DELAY", "-1", "at least 0"),
        ("PF_IMAGE_MAX_BYTES", "1023", "at least 1024"),
        ("PF_API_URL", "ftp://atlas.example", "http(s) URL with a host"),
        ("PF_MEDIA_ALLOW_PRIVATE_HOSTS", "maybe", "true or false"),
        # Accepted once, then pf_sync hung pre-filling a connection pool of that size.
        ("PF_SYNC_CONCURRENCY", "1000000000", "at most 256"),
        # Accepted once, then "OverflowError: timestamp out of range" mid-run.
        ("PF_API_TIMEOUT", "1e308", "at most 3600"),
        ("IMAGE_DOWNLOAD_MAX_RETRIES", "1000000000", "at most 20"),
        ("PF_API_URL", "http://127.0.0.1:99999", "port from 1 to 65535"),
        ("PF_API_URL", "https://atlas.example/?x=1#frag", "must not have a query"),
        ("PF_WEBHOOK_SECRET", "s" * 33, "at most 32 characters"),
        ("PF_ADMIN_BASE_URL", "javascript:alert(1)", "http(s) URL"),
        # Variables the bundled project reads itself, outside pfsync's registry.
        ("TZ", "Mars/Olympus", "time zone name"),
        ("DEFAULT_FROM_EMAIL", "not an address", "e-mail address"),
    ],
)
def test_a_wrong_value_stops_start_up_with_one_sentence_naming_the_variable(name, value, words):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "POSTGRES_DSN")}
    env[name] = value
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [last] = result.stderr.strip().splitlines()
    assert last.startswith(f"pfsync: {name} "), last
    assert words in last, last


@pytest.mark.parametrize("zone", ["UTC", "Europe/London", "Asia/Dubai"])
def test_a_real_time_zone_is_taken(zone):
    assert Env({"TZ": zone}).time_zone("TZ", "Asia/Tashkent") == zone


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", "/etc/localtime", "Asia"])
def test_a_time_zone_django_would_stumble_on_is_refused(zone):
    with pytest.raises(ImproperlyConfigured) as refused:
        Env({"TZ": zone}).time_zone("TZ", "Asia/Tashkent")
    assert str(refused.value) == (
        f"TZ must be a time zone name such as Asia/Tashkent or UTC, got {zone!r}."
    )


def test_an_s3_endpoint_must_be_an_http_url():
    assert Env({}).url("AWS_S3_ENDPOINT_URL") is None
    assert Env({"X": "https://s3.example.com"}).url("X") == "https://s3.example.com"
    with pytest.raises(ImproperlyConfigured, match=r"^X must be an http"):
        Env({"X": "s3.example.com"}).url("X")


def test_the_sender_may_be_named():
    env = Env({"DEFAULT_FROM_EMAIL": "pfsync <pfsync@example.com>"})
    assert env.email("DEFAULT_FROM_EMAIL", "") == "pfsync <pfsync@example.com>"


def test_the_old_services_variables_reach_the_settings():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(
        {
            "POSTGRES_DSN": "host=db user=u password='a b' dbname=site port=5432",
            "MEDIA_ROOT": "/srv/media",
            "IMAGE_DOWNLOAD_MAX_RETRIES": "5",
            "IMAGE_DOWNLOAD_RETRY_DELAY": "1.5",
            "IMAGE_DOWNLOAD_TIMEOUT": "20",
            "REPORT_FILE": "/var/log/report.txt",
            "TZ": "Asia/Tashkent",
            "PF_API_URL": "https://atlas.example.test/",
        }
    )
    code = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['PASSWORD'], s.MEDIA_ROOT, s.IMAGE_DOWNLOAD_MAX_RETRIES,"
        " s.IMAGE_DOWNLOAD_RETRY_DELAY, s.IMAGE_DOWNLOAD_TIMEOUT, s.REPORT_FILE, s.TIME_ZONE,"
        " s.USE_TZ, s.PF_API_URL, sep='|')"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django;django.setup();{code}"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "project_settings.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split("|") == [
        "a b",
        "/srv/media",
        "5",
        "1.5",
        "20.0",
        "/var/log/report.txt",
        "Asia/Tashkent",
        "True",
        "https://atlas.example.test",
    ]
