"""Helpers of the fault suite: fast clients, convergence checks, scenario figures, real processes.

A fault scenario runs a sync against a sandbox with a fault switched on, checks
what the run reported, then ``Scenario.converge()`` clears the faults, checks
that nothing saved before was lost, runs a clean sync and checks the database
and the media folder hold exactly what Property Finder has: no duplicate rows,
no half-written or stray files. With ``PFSYNC_FAULT_SUMMARY`` set to a file,
each scenario appends one JSON line (scenario, converged, rows lost) for
``scripts/fault-suite-summary``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.db.models import Count

from pfsync_app.atlas import AtlasClient
from pfsync_app.conf import pfsync_settings
from pfsync_app.jobs.pipeline import Progress
from pfsync_app.jobs.sync import SyncOptions, SyncResult, run_sync
from pfsync_app.media.files import TEMP_DIR_NAME
from pfsync_app.models import Agent, Property, PropertyImage, ReportEntry, SyncRun
from pfsync_app.sandbox import Sandbox
from pfsync_app.sandbox.store import is_live

PROJECT_DIR = Path(__file__).resolve().parents[1]
SUMMARY_ENV = "PFSYNC_FAULT_SUMMARY"
SMALL = {"users": 5, "listings": 12, "images_per_listing": 2, "image_bytes": 2000, "seed": 1}


# ---------------------------------------------------------------------------
# A client that never waits for real
# ---------------------------------------------------------------------------


class FastClient(AtlasClient):
    """An Atlas client on a sandbox whose back-off sleeps are recorded, not slept.

    ``per_page`` makes the listings come in small pages, so a sandbox of a dozen
    listings has several pages to fail, drift or expire tokens between.
    """

    def __init__(self, sb: Sandbox, *, per_page: int = 100, **options: Any) -> None:
        self.waits: list[float] = []
        options.setdefault("timeout", float(pfsync_settings.PF_API_TIMEOUT))
        options.setdefault("max_attempts", 6)
        options.setdefault("max_retry_wait", 120.0)
        super().__init__(sb.url, sb.api_key, sb.api_secret, sleep=self.waits.append, **options)
        self.per_page = per_page

    def iter_listing_pages(self, per_page: int | None = None, **filters: Any):
        """Listing pages of ``self.per_page`` listings unless told otherwise."""
        return super().iter_listing_pages(per_page=per_page or self.per_page, **filters)


class OnFirstPage(Progress):
    """Progress that calls ``action`` once, when the first page of listings has arrived."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.done = False

    def total(self, name: str, total: int) -> None:
        """Fire on the first listings total (the first page is being synced)."""
        if name == "listings" and not self.done:
            self.done = True
            self.action()


# ---------------------------------------------------------------------------
# What the database and the media folder hold
# ---------------------------------------------------------------------------


def entries(run_id: int, *, level: str | None = None, action: str | None = None) -> list:
    """The report entries of a run, optionally of one level and/or action."""
    rows = ReportEntry.objects.filter(run_id=run_id)
    if level:
        rows = rows.filter(level=level)
    if action:
        rows = rows.filter(action=action)
    return list(rows.order_by("id"))


def messages(run_id: int, **filters: Any) -> str:
    """Every message of a run's entries (optionally filtered), one per line."""
    return "\n".join(f"{e.action}: {e.message}" for e in entries(run_id, **filters))


def snapshot() -> set[tuple]:
    """What is saved: properties by pf_id, active images with a file, users by PF id."""
    saved: set[tuple] = set(
        ("property", pf_id) for pf_id in Property.objects.values_list("pf_id", flat=True)
    )
    for pf_id, url, name in PropertyImage.objects.filter(is_active=True).values_list(
        "property__pf_id", "source_url", "image"
    ):
        if default_storage.exists(name):
            saved.add(("image", pf_id, url))
    saved.update(
        ("user", pf_user_id)
        for pf_user_id in Agent.objects.exclude(pf_user_id=None).values_list(
            "pf_user_id", flat=True
        )
    )
    return saved


def duplicate_rows() -> list[str]:
    """Duplicate pf_ids and (property, source_url) pairs with more than one active row."""
    found = [
        f"pf_id {row['pf_id']} x{row['n']}"
        for row in Property.objects.values("pf_id").annotate(n=Count("id")).filter(n__gt=1)
    ]
    found += [
        f"image {row['property_id']} {row['source_url']} x{row['n']}"
        for row in PropertyImage.objects.filter(is_active=True)
        .values("property_id", "source_url")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    ]
    return found


def media_root() -> Path:
    """The MEDIA_ROOT of this test."""
    return Path(settings.MEDIA_ROOT)


def stray_files() -> list[str]:
    """Files in the image folder that no image row references, and leftover temporary files."""
    root = media_root()
    referenced = set(PropertyImage.objects.values_list("image", flat=True))
    folder = root / pfsync_settings.PF_IMAGE_UPLOAD_DIR
    stray = [
        str(path.relative_to(root))
        for path in sorted(folder.rglob("*"))
        if path.is_file() and str(path.relative_to(root)) not in referenced
    ]
    stray += [str(p.relative_to(root)) for p in (root / TEMP_DIR_NAME).rglob("*") if p.is_file()]
    return stray


def wrong_files(sb: Sandbox) -> list[str]:
    """Active image rows whose file is missing or differs from what the sandbox serves."""
    wrong = []
    for name, url in PropertyImage.objects.filter(is_active=True).values_list(
        "image", "source_url"
    ):
        path = media_root() / name
        # A listing gone from the sandbox keeps its rows (unpublished); its file must exist.
        served = sb.data.image_bytes(url) if sb.data.image_size(url) else None
        if not path.is_file() or (served is not None and path.read_bytes() != served):
            wrong.append(name)
    return wrong


def assert_complete(sb: Sandbox) -> None:
    """The database and media folder hold exactly the sandbox's listings, users and images."""
    listings = sb.data.listings()
    assert duplicate_rows() == []
    published = dict(Property.objects.values_list("pf_id", "is_published"))
    assert {raw["id"]: is_live(raw) for raw in listings}.items() <= published.items()
    # Listings gone from Property Finder stay as rows, unpublished: pfsync never deletes.
    assert not any(published[pf_id] for pf_id in set(published) - {r["id"] for r in listings})
    assert set(Agent.objects.exclude(pf_user_id=None).values_list("pf_user_id", flat=True)) >= {
        u["id"] for u in sb.data.users()
    }
    by_pf_id: dict[str, list[tuple[int, str]]] = {}
    for pf_id, position, url in PropertyImage.objects.filter(is_active=True).values_list(
        "property__pf_id", "position", "source_url"
    ):
        by_pf_id.setdefault(pf_id, []).append((position, url))
    for raw in listings:
        images = ((raw.get("media") or {}).get("images")) or []
        want = [(i, image["original"]["url"]) for i, image in enumerate(images)]
        assert sorted(by_pf_id.get(raw["id"], [])) == want, raw["id"]
    assert wrong_files(sb) == []
    assert stray_files() == []


# ---------------------------------------------------------------------------
# Scenarios and their figures
# ---------------------------------------------------------------------------


class Scenario:
    """One fault scenario on a sandbox: checkpoints of what is saved, then convergence."""

    def __init__(self, sb: Sandbox, name: str = "") -> None:
        self.sb = sb
        self.name = name or os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        self.saved: set[tuple] = set()
        self.lost: set[tuple] = set()
        self.clients: list[FastClient] = []

    def client(self, **options: Any) -> FastClient:
        """A FastClient on the sandbox, closed when the scenario converges."""
        client = FastClient(self.sb, **options)
        self.clients.append(client)
        return client

    def baseline(self, limit: int = 4) -> SyncResult:
        """A healthy sync of the first ``limit`` listings: rows that must survive the fault."""
        result = run_sync(SyncOptions(limit=limit), client=self.client())
        assert result.exit_code == 0, result.failures
        self.checkpoint()
        return result

    def sync(self, options: SyncOptions | None = None, **kwargs: Any) -> SyncResult:
        """A sync with a fresh FastClient (unless one is given), then a checkpoint."""
        kwargs.setdefault("client", self.client())
        try:
            return run_sync(options or SyncOptions(), **kwargs)
        finally:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Note what is saved now; whatever was saved before and is gone now is lost."""
        now = snapshot()
        self.lost |= self.saved - now
        self.saved |= now

    def converge(self, **options: Any) -> SyncResult:
        """Clear the faults, run a clean sync and check the complete state; record the figures."""
        converged = False
        try:
            self.checkpoint()
            self.sb.faults.clear()
            self.sb.faults.latency_ms = 0
            self.sb.faults.image_latency_ms = 0
            result = run_sync(SyncOptions(**options), client=self.client())
            self.checkpoint()
            assert result.exit_code == 0, result.failures
            assert_complete(self.sb)
            assert self.lost == set()
            converged = True
            return result
        finally:
            for client in self.clients:
                client.close()
            record_scenario(self.name, converged, len(self.lost))


def record_scenario(name: str, converged: bool, rows_lost: int) -> None:
    """Append one scenario's figures to the PFSYNC_FAULT_SUMMARY file, when it is set."""
    target = os.environ.get(SUMMARY_ENV)
    if not target:
        return
    name = name or os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    line = json.dumps({"scenario": name, "converged": converged, "rows_lost": rows_lost})
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


# ---------------------------------------------------------------------------
# Storage that fails
# ---------------------------------------------------------------------------


class FullDiskStorage(FileSystemStorage):
    """A FileSystemStorage on a full disk: every save fails with ENOSPC."""

    def _save(self, name: str, content: Any) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


class FillingDiskStorage(FileSystemStorage):
    """A FileSystemStorage whose disk fills up: saves after the first FILL_AFTER fail."""

    FILL_AFTER = 5
    saved = 0

    def _save(self, name: str, content: Any) -> str:
        if type(self).saved >= self.FILL_AFTER:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        type(self).saved += 1
        return super()._save(name, content)


# ---------------------------------------------------------------------------
# Real processes on a database of their own
# ---------------------------------------------------------------------------


class ProcessDatabase:
    """A migrated database for manage.py subprocesses: an SQLite file, or a PostgreSQL database.

    On PostgreSQL (when the tests run on it) a database is created on the same
    server and dropped by ``drop()``; elsewhere a temporary SQLite file is used.
    ``clone()`` copies a migrated one cheaply (a file copy, or CREATE DATABASE
    ... TEMPLATE).
    """

    def __init__(self, folder: Path, *, template: ProcessDatabase | None = None) -> None:
        self.vendor = connection.vendor
        self.folder = folder
        if self.vendor == "postgresql":
            self.params = dict(connection.settings_dict)
            self.name = f"pfsync_proc_{uuid.uuid4().hex[:12]}"
            clause = f" TEMPLATE {template.name}" if template else ""
            self._admin(f"CREATE DATABASE {self.name}{clause}")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / f"db-{uuid.uuid4().hex[:8]}.sqlite3"
            if template is not None:
                shutil.copyfile(template.path, self.path)
        if template is None:
            result = manage(self, "migrate", "--no-input", "-v", "0", timeout=180)
            assert result.returncode == 0, result.stderr

    @property
    def url(self) -> str:
        """DATABASE_URL for the subprocesses."""
        if self.vendor != "postgresql":
            return f"sqlite:///{self.path}"
        p = self.params
        auth = p["USER"] + (f":{p['PASSWORD']}" if p.get("PASSWORD") else "")
        return f"postgres://{auth}@{p['HOST'] or '127.0.0.1'}:{p['PORT'] or 5432}/{self.name}"

    def clone(self, folder: Path) -> ProcessDatabase:
        """A fresh copy of this migrated database."""
        return ProcessDatabase(folder, template=self)

    def _connect(self, dbname: str | None = None) -> Any:
        if self.vendor != "postgresql":
            return sqlite3.connect(self.path, timeout=30)
        import psycopg2

        p = self.params
        conn = psycopg2.connect(
            dbname=dbname or self.name,
            user=p["USER"],
            password=p.get("PASSWORD") or None,
            host=p["HOST"] or "127.0.0.1",
            port=p["PORT"] or 5432,
        )
        conn.autocommit = True
        return conn

    def _admin(self, sql: str) -> None:
        conn = self._connect("postgres")
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
        finally:
            conn.close()

    def query(self, sql: str) -> list[tuple]:
        """Rows of one SELECT on this database."""
        conn = self._connect()
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            rows = cursor.fetchall()
            cursor.close()
            return rows
        finally:
            conn.close()

    def terminate_other_sessions(self) -> int:
        """PostgreSQL: end every other session on this database (the database goes away)."""
        rows = self.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )
        return len(rows)

    def drop(self) -> None:
        """Remove the database."""
        if self.vendor == "postgresql":
            self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        else:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def process_env(db: ProcessDatabase, sb: Sandbox | None = None, **extra: str) -> dict[str, str]:
    """The environment of a manage.py subprocess on ``db`` (and the sandbox ``sb``)."""
    env = dict(os.environ)
    env.pop(SUMMARY_ENV, None)
    env.update(
        DATABASE_URL=db.url,
        DJANGO_SETTINGS_MODULE="project_settings.settings",
        MEDIA_ROOT=str(db.folder / "media"),
        REPORT_FILE="",
        PF_WEBHOOK_SECRET="process-test-webhook-secret",
        LOG_LEVEL="warning",
        IMAGE_DOWNLOAD_RETRY_DELAY="0.01",
        IMAGE_DOWNLOAD_TIMEOUT="5",
        PYTHONUNBUFFERED="1",
    )
    if sb is not None:
        env.update(
            PF_API_URL=sb.url,
            PF_API_KEY=sb.api_key,
            PF_API_SECRET=sb.api_secret,
            PF_MEDIA_ALLOW_PRIVATE_HOSTS="true",
        )
    env.update(extra)
    return env


def start(db: ProcessDatabase, *args: str, sb: Sandbox | None = None, **extra: str):
    """Start ``manage.py *args`` in a real process (stdout and stderr captured as text)."""
    return subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "manage.py"), *args],
        cwd=PROJECT_DIR,
        env=process_env(db, sb, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def manage(
    db: ProcessDatabase, *args: str, sb: Sandbox | None = None, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess:
    """Run ``manage.py *args`` in a real process to the end."""
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "manage.py"), *args],
        cwd=PROJECT_DIR,
        env=process_env(db, sb, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(condition: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``condition`` every 20 ms until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@contextmanager
def process_database(folder: Path, template: ProcessDatabase) -> Iterator[ProcessDatabase]:
    """A clone of ``template`` for one test, dropped afterwards."""
    db = template.clone(folder)
    try:
        yield db
    finally:
        db.drop()


def run_status(db: ProcessDatabase) -> list[tuple[int, str]]:
    """(id, status) of every pf_sync run recorded in ``db``, oldest first."""
    return db.query(f"SELECT id, status FROM {SyncRun._meta.db_table} ORDER BY id")
