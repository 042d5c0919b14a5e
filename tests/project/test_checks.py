"""System checks find a drifted host schema (by id, with a hint) and stay quiet otherwise."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from pfsync_app.checks import check_host_schema, check_settings

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def ids(messages):
    return [m.id for m in messages]


def test_the_schema_check_is_silent_on_the_contracted_schema():
    assert check_host_schema("default") == []
    call_command("check", databases=["default"])


def test_a_missing_table_is_reported_with_its_id_and_a_hint():
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE areas_area RENAME TO areas_area_old")
    try:
        messages = check_host_schema("default")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE areas_area_old RENAME TO areas_area")
    assert ids(messages) == ["pfsync.E002"]
    assert "'areas_area'" in messages[0].msg
    assert "PFSYNC_TABLES['area']" in messages[0].hint


def test_a_missing_column_is_reported_with_its_id_and_a_hint():
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE properties_propertyimage RENAME COLUMN source_url TO source_link"
        )
    try:
        messages = check_host_schema("default")
        with pytest.raises(SystemCheckError, match=r"pfsync.E003"):
            call_command("check", databases=["default"])
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE properties_propertyimage RENAME COLUMN source_link TO source_url"
            )
    assert ids(messages) == ["pfsync.E003"]
    assert "properties_propertyimage.source_url" in messages[0].msg
    assert 'README.md, section "Plugging into your schema"' in messages[0].hint
    assert "HOST_SCHEMA.md" not in messages[0].hint


def test_table_names_follow_the_pfsync_tables_setting(tmp_path):
    script = (
        "import django; django.setup();"
        "from django.core.management import call_command;"
        "call_command('migrate', verbosity=0, skip_checks=True);"
        "from pfsync_app.checks import check_host_schema;"
        "print([(m.id, m.msg) for m in check_host_schema()])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "POSTGRES_DSN")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env["DJANGO_SETTINGS_MODULE"] = "tests.fixtures.settings_renamed_tables"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "pfsync.E002" in result.stdout
    assert "'listings_area'" in result.stdout


def test_settings_of_the_wrong_type_are_one_error_each_naming_the_setting(settings):
    settings.PF_SYNC_CONCURRENCY = 0
    settings.IMAGE_DOWNLOAD_TIMEOUT = "ten"
    settings.PF_API_URL = "atlas.propertyfinder.com"
    messages = [m for m in check_settings() if m.id == "pfsync.E010"]
    assert [m.msg for m in messages] == [
        "PF_API_URL must be an http(s) URL with a host, such as "
        "https://atlas.propertyfinder.com, got 'atlas.propertyfinder.com'.",
        "IMAGE_DOWNLOAD_TIMEOUT must be a number (for example 10), got 'ten'.",
        "PF_SYNC_CONCURRENCY must be at least 1, got 0.",
    ]
    assert [m.hint for m in messages] == [
        f"Set {name} in the environment or the Django settings."
        for name in ("PF_API_URL", "IMAGE_DOWNLOAD_TIMEOUT", "PF_SYNC_CONCURRENCY")
    ]


def test_an_image_cap_below_1024_bytes_is_an_error_as_it_is_in_the_environment(settings):
    settings.PF_IMAGE_MAX_BYTES = 1024
    assert check_settings() == []
    settings.PF_IMAGE_MAX_BYTES = 1023
    assert [m.msg for m in check_settings()] == [
        "PF_IMAGE_MAX_BYTES must be at least 1024, got 1023."
    ]


def test_a_django_only_setting_is_named_with_the_django_settings_in_its_hint(settings):
    settings.PF_API_MAX_ATTEMPTS = 0
    [message] = check_settings()
    assert message.id == "pfsync.E010"
    assert message.hint == "Set PF_API_MAX_ATTEMPTS in the Django settings."


def test_pfsync_tables_that_is_not_a_dict_is_one_error_without_a_keys_error(settings):
    settings.PFSYNC_TABLES = ["areas_area"]
    assert [m.msg for m in check_settings()] == [
        "PFSYNC_TABLES must be a dict of table names, got ['areas_area']."
    ]


def test_pfsync_tables_with_an_unknown_key_is_still_an_error(settings):
    settings.PFSYNC_TABLES = {"listing": "listings_listing"}
    [message] = check_settings()
    assert (message.id, message.msg) == ("pfsync.E010", "PFSYNC_TABLES has unknown keys: listing.")


def test_a_webhook_url_without_a_secret_is_a_deploy_warning(settings):
    from pfsync_app.checks import check_webhook_secret

    settings.PF_WEBHOOK_SECRET = ""
    settings.PF_WEBHOOK_ALLOW_UNSIGNED = False
    assert ids(check_webhook_secret()) == ["pfsync.W002"]
    assert "refused" in check_webhook_secret()[0].msg
    settings.PF_WEBHOOK_SECRET = "s3cret-value"
    assert check_webhook_secret() == []


def test_accepting_unsigned_webhooks_warns_on_every_command(settings):
    settings.PF_WEBHOOK_SECRET = ""
    settings.PF_WEBHOOK_ALLOW_UNSIGNED = True
    messages = [m for m in check_settings() if m.id == "pfsync.W002"]
    assert len(messages) == 1 and "without any signature" in messages[0].msg
