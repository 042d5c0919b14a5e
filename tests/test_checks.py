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

ROOT = Path(__file__).resolve().parents[1]


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
    assert "HOST_SCHEMA.md" in messages[0].hint


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
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings_renamed_tables"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "pfsync.E002" in result.stdout
    assert "'listings_area'" in result.stdout


def test_settings_of_the_wrong_type_are_errors_naming_the_setting(settings):
    settings.PF_SYNC_CONCURRENCY = 0
    settings.IMAGE_DOWNLOAD_TIMEOUT = "ten"
    settings.PF_API_URL = "atlas.propertyfinder.com"
    messages = check_settings()
    texts = " ".join(m.msg for m in messages if m.id == "pfsync.E010")
    assert "PF_SYNC_CONCURRENCY" in texts
    assert "IMAGE_DOWNLOAD_TIMEOUT" in texts
    assert "PF_API_URL" in texts


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
