"""Every command that cannot use its database or its media says so in one sentence, exit 2.

Each command runs as a real ``manage.py`` process, as cron runs it, against a
stopped database (a PostgreSQL URL to a port nobody listens on), an unmigrated
one (created empty on the test server, or a fresh SQLite file) and a media
folder that cannot be written. The commands that need no database keep working
without one.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db.utils import OperationalError, ProgrammingError

from pfsync_app.conf import SETTINGS
from pfsync_app.database import missing_table
from pfsync_app.sandbox import Sandbox
from tests.fixtures.faults import PROJECT_DIR, ProcessDatabase, manage, start
from tests.fixtures.sandbox import SMALL
from tests.project.test_settings_registry import BAD_TEXT, WRONG_VALUES

# Every command and subcommand that uses the database.
DATABASE_COMMANDS = [
    ("pf_sync",),
    ("pf_sync", "--dry-run"),
    ("pf_check",),
    ("pf_repair",),
    ("pf_report",),
    ("pf_report", "--run", "1"),
    ("pf_report", "--check"),
    ("pf_areas", "unmapped"),
    ("pf_areas", "link", "1", "2"),
    ("pf_areas", "automap"),
    ("pf_webhooks", "process"),
    ("pf_schema",),
]
# pf_schema reports missing host tables as its answer; it needs none of pfsync's tables.
NEED_PFSYNC_TABLES = [args for args in DATABASE_COMMANDS if args[0] != "pf_schema"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class StoppedDatabase:
    """What manage.py needs of a database (ProcessDatabase's shape) for one that is down."""

    folder: Path
    url: str
    settings_module: str = "project_settings.settings"


def assert_one_sentence(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit status 2 and exactly one line on stderr, containing each of ``expected``."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(**SMALL) as running:
        yield running


@pytest.fixture
def stopped(tmp_path):
    port = free_port()
    return StoppedDatabase(tmp_path, f"postgres://pfsync:secret@127.0.0.1:{port}/pfsync"), port


@pytest.fixture
def unmigrated(tmp_path):
    db = ProcessDatabase(tmp_path / "unmigrated", migrate=False)
    yield db
    db.drop()


@pytest.fixture(scope="module")
def synced(tmp_path_factory, sandbox):
    """A migrated database holding the sandbox's listings and images (files in its media)."""
    db = ProcessDatabase(tmp_path_factory.mktemp("synced"))
    result = manage(db, "pf_sync", "-v", "0", sb=sandbox)
    assert result.returncode == 0, result.stderr
    yield db
    db.drop()


@pytest.mark.parametrize("args", DATABASE_COMMANDS, ids=" ".join)
def test_a_stopped_database_is_one_sentence_naming_where_it_is(stopped, sandbox, args):
    db, port = stopped
    result = manage(db, *args, sb=sandbox)
    assert_one_sentence(result, "cannot connect to the database", f"127.0.0.1:{port}/pfsync")


@pytest.mark.parametrize("args", NEED_PFSYNC_TABLES, ids=" ".join)
def test_an_unmigrated_database_says_run_migrate(unmigrated, sandbox, args):
    result = manage(unmigrated, *args, sb=sandbox)
    assert_one_sentence(result, "pfsync's table", "run python manage.py migrate")


def test_pf_schema_on_an_unmigrated_database_shows_the_missing_host_tables(unmigrated):
    result = manage(unmigrated, "pf_schema")
    assert result.returncode == 0, result.stderr
    assert "Table properties_property does not exist." in result.stdout


@pytest.fixture(scope="module")
def no_areas(synced, tmp_path_factory):
    """The synced database with the host's areas table dropped (a map naming a wrong table)."""
    db = synced.clone(tmp_path_factory.mktemp("no-areas"))
    db.execute("DROP TABLE areas_area" + (" CASCADE" if db.vendor == "postgresql" else ""))
    yield db
    db.drop()


@pytest.mark.parametrize(
    "args",
    [
        ("pf_sync",),
        ("pf_check",),
        ("pf_repair",),
        ("pf_areas", "unmapped"),
        ("pf_areas", "link", "1", "2"),
        ("pf_areas", "automap"),
    ],
    ids=" ".join,
)
def test_a_host_table_missing_after_migrate_names_the_table_and_the_map(no_areas, sandbox, args):
    result = manage(no_areas, *args, sb=sandbox)
    assert_one_sentence(result, "'areas_area'", "PFSYNC_HOST", "pf_schema")


@pytest.mark.parametrize(
    "args",
    [("pf_sync",), ("pf_repair",), ("pf_check",)],
    ids=" ".join,
)
def test_a_media_folder_that_cannot_be_written_stops_before_any_work(synced, sandbox, args):
    blocker = synced.folder / "not-a-folder"
    blocker.write_text("a file where the media folder should be")
    media = blocker / "media"
    result = manage(synced, *args, sb=sandbox, MEDIA_ROOT=str(media))
    if args[0] == "pf_check":
        # Read-only: it cannot find a single file, so the folder itself is wrong.
        found = synced.query("SELECT COUNT(*) FROM properties_propertyimage WHERE is_active")
        assert_one_sentence(
            result, f"0 of {found[0][0]} files found under MEDIA_ROOT={media}", "is MEDIA_ROOT"
        )
    else:
        assert_one_sentence(result, f"the media folder {media} cannot be written", "MEDIA_ROOT")


def test_pf_repair_on_an_unwritable_media_folder_asks_nothing_of_anyone(synced, sandbox):
    blocker = synced.folder / "blocked"
    blocker.write_text("not a folder")
    sandbox.clear_requests()
    result = manage(synced, "pf_repair", sb=sandbox, MEDIA_ROOT=str(blocker / "media"))
    assert_one_sentence(result, "cannot be written")
    assert "Failed to repair" not in result.stdout
    assert sandbox.requests == []


# -- commands that need no database -------------------------------------------


def test_pf_areas_search_works_without_a_database(stopped, sandbox):
    db, _ = stopped
    name = sandbox.data.locations()[0]["name"]
    result = manage(db, "pf_areas", "search", name[:4], sb=sandbox)
    assert result.returncode == 0, result.stderr
    assert name in result.stdout
    assert "link unknown" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("pf_webhooks", "list"),
        ("pf_webhooks", "subscribe", "--url", "http://127.0.0.1:9/pf/webhook/"),
        ("pf_webhooks", "unsubscribe", "listing.published"),
    ],
    ids=" ".join,
)
def test_webhook_subscriptions_are_managed_without_a_database(stopped, sandbox, args):
    db, _ = stopped
    result = manage(db, *args, sb=sandbox)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_pf_sandbox_starts_without_a_database(stopped):
    db, _ = stopped
    process = start(db, "pf_sandbox", "--port", "0", "--listings", "2")
    try:
        first = process.stdout.readline()
        assert first.startswith("PF_API_URL=http://127.0.0.1:"), process.stderr.read()
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- a reader that stops reading ----------------------------------------------


def test_a_pipe_closed_early_ends_the_command_quietly(synced):
    process = start(synced, "pf_report", "--days", "3650")
    process.stdout.readline()
    process.stdout.close()  # as `| head -1` does
    process.wait(timeout=60)
    stderr = process.stderr.read()
    assert process.returncode == 0, stderr
    assert stderr == ""


# -- settings -------------------------------------------------------------------

FROM_ENV = [s for s in SETTINGS if s.env and BAD_TEXT.get(s.kind)]


@pytest.mark.parametrize("setting", FROM_ENV, ids=lambda s: s.name)
def test_a_wrong_variable_is_one_sentence_and_exit_2(synced, setting):
    text, _ = BAD_TEXT[setting.kind][0]
    result = manage(synced, "pf_report", **{setting.name: text})
    line = assert_one_sentence(result, setting.name)
    assert "SystemCheckError" not in line


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_a_wrong_django_setting_is_one_sentence_and_exit_2(synced, tmp_path, setting):
    value = WRONG_VALUES[setting.kind][-1]
    module = tmp_path / "wrong_settings.py"
    module.write_text(
        f"from math import inf\nfrom {synced.settings_module} import *  # noqa: F403\n"
        f"{setting.name} = {value!r}\n"
    )
    result = manage(
        synced,
        "pf_report",
        DJANGO_SETTINGS_MODULE="wrong_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(PROJECT_DIR)]),
    )
    line = assert_one_sentence(result, f"pf_report could not run: {setting.name} must be ")
    assert "System check identified" not in result.stderr
    assert line.endswith(f"Set {setting.name} in the environment or the Django settings.") or (
        line.endswith(f"Set {setting.name} in the Django settings.")
    )


# -- migrate ----------------------------------------------------------------------


def test_migrate_applies_pending_migrations_without_warning_that_they_are_pending(unmigrated):
    result = manage(unmigrated, "migrate", "--no-input", "-v", "0")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


def test_check_still_says_migrations_are_pending_before_migrate(unmigrated):
    result = manage(unmigrated, "check", "--database", "default")
    assert "pfsync.W003" in result.stderr


# -- the classifier ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("no such table: pfsync_app_syncrun", "pfsync_app_syncrun"),
        ('relation "areas_area" does not exist\nLINE 1: SELECT ...', "areas_area"),
        ('relation "public.users_user" does not exist', "users_user"),
        ("connection refused", None),
    ],
)
def test_the_missing_table_is_read_from_sqlite_and_postgresql_errors(text, table):
    assert missing_table(OperationalError(text)) == table


def test_the_missing_table_is_found_behind_the_error_that_replaced_it():
    try:
        try:
            raise ProgrammingError('relation "pfsync_app_syncrun" does not exist')
        except ProgrammingError:
            raise RuntimeError('cursor "_django_curs_1" does not exist') from None
    except RuntimeError as replaced:
        # "from None" hides the context from tracebacks, not from __context__.
        assert missing_table(replaced) == "pfsync_app_syncrun"
