"""The demo host's tables are the default map, read back through the database itself."""

import re
from pathlib import Path

import pytest
from django.db import connection

from pfsync_app import checks
from pfsync_app.hostmap import DERIVED, FIELDS

pytestmark = pytest.mark.django_db

# column: (PostgreSQL type, NOT NULL)
USER_EXTRA = {
    "phone": ("character varying(32)", True),
    "role": ("character varying(32)", True),
    "pf_user_id": ("integer", False),
    "pf_public_profile_id": ("integer", False),
}
ABSTRACT_USER = {
    "id": ("bigint", True),
    "password": ("character varying(128)", True),
    "last_login": ("timestamp with time zone", False),
    "is_superuser": ("boolean", True),
    "username": ("character varying(150)", True),
    "first_name": ("character varying(150)", True),
    "last_name": ("character varying(150)", True),
    "email": ("character varying(254)", True),
    "is_staff": ("boolean", True),
    "is_active": ("boolean", True),
    "date_joined": ("timestamp with time zone", True),
}
EXPECTED = {
    "areas_area": {
        "id": ("bigint", True),
        "name": ("character varying(255)", True),
        "pf_location_id": ("integer", False),
    },
    "users_user": {**ABSTRACT_USER, **USER_EXTRA},
    "properties_property": {
        "id": ("bigint", True),
        "pf_id": ("character varying(64)", False),
        "reference": ("character varying(64)", True),
        "user_id": ("bigint", False),
        "area_id": ("bigint", False),
        "title": ("character varying(255)", True),
        "title_ar": ("character varying(255)", True),
        "description": ("text", True),
        "description_ar": ("text", True),
        "category": ("character varying(32)", True),
        "property_type": ("character varying(32)", True),
        "status_type": ("character varying(16)", True),
        "price": ("numeric(14,2)", False),
        "price_period": ("character varying(16)", True),
        "bedrooms": ("smallint", False),
        "bathrooms": ("smallint", False),
        "size": ("numeric(12,2)", False),
        "furnishing": ("character varying(32)", True),
        "is_published": ("boolean", True),
        "pf_updated_at": ("timestamp with time zone", False),
        "created_at": ("timestamp with time zone", True),
        "updated_at": ("timestamp with time zone", True),
    },
    "properties_propertyimage": {
        "id": ("bigint", True),
        "property_id": ("bigint", True),
        "image": ("character varying(255)", True),
        "source_url": ("character varying(1024)", True),
        "position": ("integer", True),
        "width": ("integer", False),
        "height": ("integer", False),
        "is_active": ("boolean", True),
        "created_at": ("timestamp with time zone", True),
    },
}
UNIQUE = {
    "areas_area": {"pf_location_id"},
    "users_user": {"username", "pf_user_id", "pf_public_profile_id"},
    "properties_property": {"pf_id"},
    "properties_propertyimage": set(),
}
FOREIGN_KEYS = {
    ("properties_property", "user_id"): "users_user",
    ("properties_property", "area_id"): "areas_area",
    ("properties_propertyimage", "property_id"): "properties_property",
}
# Defaults the contract names ("NOT NULL default ''", "default false"...).
DEFAULTS = {
    ("users_user", "phone"): "''",
    ("users_user", "role"): "''",
    ("properties_property", "reference"): "''",
    ("properties_property", "is_published"): "false",
    ("properties_propertyimage", "position"): "0",
    ("properties_propertyimage", "is_active"): "true",
    ("properties_propertyimage", "source_url"): "''",
}


def pg_columns(table):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT column_name, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid)
            FROM information_schema.columns c
            JOIN pg_attribute a ON a.attrelid = %s::regclass AND a.attname = c.column_name
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.table_name = %s
            """,
            [table, table],
        )
        return {name: (type_, notnull, default) for name, type_, notnull, default in cursor}


def constraints(table):
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, table)


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_each_host_table_has_exactly_the_contracted_columns(table):
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, table)
    by_name = {column.name: column for column in description}
    assert set(by_name) == set(EXPECTED[table])
    for name, (_, not_null) in EXPECTED[table].items():
        assert by_name[name].null_ok is (not not_null), f"{table}.{name} nullability"
    if connection.vendor == "postgresql":
        actual = pg_columns(table)
        for name, (pg_type, not_null) in EXPECTED[table].items():
            assert actual[name][0] == pg_type, f"{table}.{name} type"
            assert actual[name][1] is not_null


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_unique_columns_and_primary_key_are_as_contracted(table):
    found = constraints(table)
    unique_single = {
        c["columns"][0]
        for c in found.values()
        if c["unique"] and not c["primary_key"] and len(c["columns"]) == 1
    }
    assert unique_single == UNIQUE[table]
    primary = [c["columns"] for c in found.values() if c["primary_key"]]
    assert primary == [["id"]]


@pytest.mark.parametrize(("table", "column"), sorted(FOREIGN_KEYS))
def test_foreign_keys_point_at_the_contracted_tables(table, column):
    found = constraints(table)
    targets = {
        c["foreign_key"][0] for c in found.values() if c["foreign_key"] and c["columns"] == [column]
    }
    assert targets == {FOREIGN_KEYS[(table, column)]}


def test_not_null_text_columns_default_to_empty_in_the_database_itself():
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA table_info(properties_property)")
            defaults = {row[1]: row[4] for row in cursor.fetchall()}
        assert defaults["reference"] == "''"
        return
    for (table, column), expected in DEFAULTS.items():
        default = pg_columns(table)[column][2]
        assert default is not None and default.split("::")[0] == expected, (table, column, default)


def readme_section(title: str) -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index(f"\n## {title}\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_readme_ships_every_column_of_the_default_map_and_pfsync_s_own_fields():
    section = readme_section("Plugging into your schema")
    for key, fields in FIELDS.items():
        for field in fields:
            name = field.default_column if field.role != DERIVED else field.name
            assert f"`{name}`" in section, (key, name)


def test_readme_explains_every_check_id():
    ids = re.findall(r"^- (pfsync\.[EW]\d{3})", checks.__doc__, re.MULTILINE)
    assert len(ids) == 15
    section = readme_section("Plugging into your schema")
    for check_id in ids:
        assert f"| `{check_id}` |" in section, check_id
