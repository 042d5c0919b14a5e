"""System checks find a drifted host schema (by id, with a hint) and stay quiet otherwise."""

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from pfsync_app.checks import check_host_schema, check_settings
from pfsync_app.hostmap import read_host_map
from pfsync_app.models import Agent
from pfsync_app.writers.fit import forget_columns

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


# ---------------------------------------------------------------------------
# The column map (PFSYNC_HOST) against the real columns
# ---------------------------------------------------------------------------


def checked(host: dict) -> list:
    return check_host_schema("default", read_host_map(host))


@pytest.fixture
def views_column():
    """A NOT NULL column without a default that pfsync knows nothing of, on the property table."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE properties_property ADD COLUMN views integer NOT NULL")
    forget_columns()
    yield "views"
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE properties_property DROP COLUMN views")
    forget_columns()


def test_a_not_null_column_nobody_fills_is_an_error_naming_it_until_the_map_gives_a_default(
    views_column,
):
    [error] = [m for m in checked({}) if m.level >= 40]
    assert error.id == "pfsync.E004"
    assert error.msg.startswith(
        "Column properties_property.views (integer NOT NULL) has no default"
    )
    assert "PFSYNC_HOST['property']['defaults']" in error.hint
    assert "before_property_save" in error.hint
    assert 'README.md, section "Plugging into your schema"' in error.hint
    assert [m for m in checked({"property": {"defaults": {"views": 0}}}) if m.level >= 40] == []


def test_a_column_receivers_fill_is_no_error_but_a_warning_while_no_receiver_is_connected(
    views_column,
):
    messages = checked({"property": {"filled_by_receivers": ["views"]}})
    assert [m.id for m in messages] == ["pfsync.W007"]
    assert "no receiver is connected to before_property_save" in messages[0].msg


def test_a_default_for_a_unique_column_is_refused():
    [error] = checked({"user": {"defaults": {"username": "agent"}}})
    assert error.id == "pfsync.E006"
    assert "users_user.username is UNIQUE" in error.msg
    assert "filled_by_receivers" in error.hint


def test_a_mapped_column_that_cannot_hold_the_value_is_an_error():
    [error] = checked({"property": {"columns": {"title": "bedrooms", "bedrooms": None}}})
    assert error.id == "pfsync.E005"
    assert error.msg.startswith(
        "Column properties_property.bedrooms (smallint) cannot hold pfsync's 'title', which is text"
    )


def test_a_column_shorter_than_what_pfsync_writes_is_a_warning_saying_what_happens():
    [warning] = checked({"property": {"columns": {"title": "reference", "reference": None}}})
    assert warning.id == "pfsync.W004"
    assert warning.msg == (
        "Column properties_property.reference holds 64 characters and pfsync may write 255 into "
        "it ('title'): longer values are cut, with a warning."
    )


def test_a_fact_the_site_has_no_column_for_is_said_once_with_what_it_loses():
    [warning] = checked({"property": {"columns": {"is_published": None}}})
    assert warning.id == "pfsync.W005"
    assert "cannot be hidden on the site" in warning.msg


def test_a_missing_extra_column_and_a_fallback_agent_nobody_is_are_errors():
    messages = checked(
        {
            "property": {
                "extra": {"permit_number": "compliance.listingAdvertisementNumber"},
                "fallback_agent": "nobody",
            }
        }
    )
    assert [m.id for m in messages] == ["pfsync.E003", "pfsync.E007"]
    assert "properties_property.permit_number, named in PFSYNC_HOST['property']['extra']" in (
        messages[0].msg
    )
    assert "'nobody', and no host user in users_user has that username" in messages[1].msg
    Agent.objects.create(username="nobody", password="!")
    assert checked({"property": {"fallback_agent": "nobody"}}) == []


def test_mistakes_in_the_column_map_are_one_sentence_each(settings):
    settings.PFSYNC_HOST = {
        "listing": {},
        "area": None,
        "property": {
            "colums": {},
            "columns": {"titel": "title", "id": None, "title": "headline", "reference": "headline"},
            "fallback_agent": True,
        },
        "image": None,
    }
    messages = [m.msg for m in check_settings() if m.id == "pfsync.E010"]
    assert messages == [
        "PFSYNC_HOST has an unknown table 'listing'; use area, user, property, image.",
        "PFSYNC_HOST['property'] has an unknown key 'colums'; use table, columns, defaults, "
        "extra, filled_by_receivers, fallback_agent.",
        "PFSYNC_HOST['property']['columns'] names 'titel', which is not a pfsync field of the "
        "property table (its fields: id, pf_id, reference, user, area, title, title_ar, "
        "description, description_ar, category, property_type, status_type, price, "
        "price_period, bedrooms, bathrooms, size, furnishing, is_published, pf_updated_at, "
        "created_at, updated_at, cover_image, location_name).",
        "PFSYNC_HOST['property']['columns']['id'] cannot be None: pfsync cannot work without it.",
        "PFSYNC_HOST['property']['columns'] puts both 'reference' and 'title' into column "
        "'headline'; one column holds one field.",
        "PFSYNC_HOST['property']['fallback_agent'] must be a username or a user id, got True.",
        "PFSYNC_HOST['image'] cannot be None: pfsync cannot work without this table.",
    ]


def test_pf_schema_prints_each_field_s_column_and_type_and_what_a_site_could_add():
    out = StringIO()
    call_command("pf_schema", stdout=out)
    text = out.getvalue()
    assert "property: properties_property" in text
    assert re.search(r"\n  title +->  title +varchar\(255\) NOT NULL", text)
    assert re.search(r"\n  cover_image +->  - +not written", text)
    assert "cover_image = models.CharField(blank=True, default='', max_length=255)" in text
    out = StringIO()
    call_command("pf_schema", "--json", stdout=out)
    [prop] = [t for t in json.loads(out.getvalue()) if t["key"] == "property"]
    assert prop["table"] == "properties_property" and prop["exists"]


@pytest.fixture
def renamed_references():
    """A site's images and listings tables whose references have their own names (realty's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE site_photo (id bigint PRIMARY KEY, image varchar(100) NOT NULL, "
            "listing_id bigint NOT NULL REFERENCES properties_property (id))"
        )
        cursor.execute(
            "CREATE TABLE site_listing (id bigint PRIMARY KEY, "
            "owner_id bigint NOT NULL REFERENCES users_user (id))"
        )
    forget_columns()
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE site_photo")
        cursor.execute("DROP TABLE site_listing")
    forget_columns()


def test_a_not_null_reference_under_another_name_is_hinted_as_pfsync_s_field(renamed_references):
    photo = {"table": "site_photo", "columns": {"source_url": None}}
    [listing_id] = [
        m for m in checked({"image": photo}) if m.id == "pfsync.E004" and "listing_id" in m.msg
    ]
    assert "properties_property, which pfsync maps as 'property'" in listing_id.hint
    assert "PFSYNC_HOST['image']['columns']['property'] = 'listing_id'" in listing_id.hint
    assert "defaults" not in listing_id.hint
    [missing] = [m for m in checked({"image": photo}) if "site_photo.property_id" in m.msg]
    assert missing.id == "pfsync.E003"
    assert "PFSYNC_HOST['image']['columns']['property'] = 'listing_id'" in missing.hint

    [owner_id] = [
        m
        for m in checked({"property": {"table": "site_listing"}})
        if m.id == "pfsync.E004" and "owner_id" in m.msg
    ]
    assert "PFSYNC_HOST['property']['columns']['user'] = 'owner_id'" in owner_id.hint

    mapped = {**photo, "columns": {"source_url": None, "property": "listing_id"}}
    assert [m for m in checked({"image": mapped}) if "listing_id" in m.msg] == []


def test_a_missing_areas_table_hints_that_a_site_without_one_maps_it_to_none():
    [error] = checked({"area": {"table": "site_areas"}})
    assert error.id == "pfsync.E002"
    assert "PFSYNC_HOST['area'] = None" in error.hint
    assert [m for m in checked({"area": None}) if m.level >= 40] == []


def test_a_missing_user_table_hint_names_the_auth_user_model_s_table(monkeypatch):
    """A site whose AUTH_USER_MODEL is not users_user is told the table to name."""
    from types import SimpleNamespace

    account = SimpleNamespace(_meta=SimpleNamespace(db_table="site_account", label="site.Account"))
    monkeypatch.setattr("pfsync_app.checks.get_user_model", lambda: account)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE users_user RENAME TO {account._meta.db_table}")
    try:
        [error] = [m for m in checked({}) if m.id == "pfsync.E002"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {account._meta.db_table} RENAME TO users_user")
    assert "'users_user' (user) does not exist" in error.msg
    assert (
        "the site's AUTH_USER_MODEL (site.Account) is table 'site_account': "
        "PFSYNC_HOST['user']['table'] = 'site_account'"
    ) in error.hint
