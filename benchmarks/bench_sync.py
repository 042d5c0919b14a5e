"""The fast-sync benchmark (issue 7): pf_sync against a sandbox with realistic latency.

Run by hand, not in CI::

    DATABASE_URL=postgres://pfsync@127.0.0.1:55432/h_bench .venv/bin/python benchmarks/bench_sync.py
    .venv/bin/python benchmarks/bench_sync.py --scenarios B,C --json-out bench.json
    .venv/bin/python benchmarks/bench_sync.py --quick --database-url sqlite   # seconds, no latency

Scenarios, each sync in its own child process (peak RSS is the sync's own) on an
emptied database and a fresh MEDIA_ROOT; the sandbox serves from this process:

- A: concurrency 1, incremental off (the old service's way), on ``--a-listings``
  listings, its time extrapolated linearly to ``--listings`` (labelled so);
- B: the defaults, on ``--listings`` x ``--images-per-listing``;
- C: B again with nothing changed (no download and no host write expected);
- E (optional): B again with ``--full`` (rewrites every listing, downloads nothing);
- D: the defaults at ``--d-listings`` x 1 image, and at ``--d-compare-listings`` (memory);
- P (optional): what decoding every image costs, on realistic photos (noisy 1-3 MB JPEGs of
  2000-4000 px made with Pillow, each sent at ``--p-image-mbps`` per connection): the same
  sync twice in one run, first with the bytes only sniffed (as before decoding), then decoded.

By default a throwaway database ``h_bench_<random>`` is created on the PostgreSQL
server of ``--database-url`` (or DATABASE_URL) and dropped at the end;
``--in-place`` uses that database itself and refuses one whose host tables
already hold rows. ``--database-url sqlite`` uses a throwaway SQLite file.
The benchmark empties its own database between scenarios; pfsync itself never deletes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SETTINGS_MODULE = "project_settings.settings"
HOST_WRITE_RE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
TABLE_KEYS = ("area", "user", "property", "image")
CHILD_TIMEOUT = 3600.0

# The keys of one row of the table (and of each scenario's JSON object).
ROW_KEYS = (
    "scenario",
    "label",
    "listings",
    "images_per_listing",
    "concurrency",
    "incremental",
    "extrapolated",
    "wall_s",
    "images_downloaded",
    "images_per_s",
    "queries",
    "queries_per_listing",
    "host_writes",
    "peak_rss_mb",
    "api_requests",
    "image_requests",
    "lower_bound_s",
    "vs_lower_bound",
    "listings_changed",
    "listings_unchanged",
    "errors",
)


@dataclass
class Workload:
    """What the sandbox serves and how slowly."""

    listings: int
    images_per_listing: int
    users: int = 20
    latency_ms: float = 150.0
    image_latency_ms: float = 200.0
    image_bytes: int = 100_000
    rate_limit: int | None = 650
    seed: int = 1
    photos: bool = False
    image_mbps: float | None = None


@dataclass
class Scenario:
    """One measured sync: its workload, its options and whether it runs on the previous state."""

    name: str
    label: str
    workload: Workload
    concurrency: int | None = None
    incremental: bool = True
    full: bool = False
    reuse_previous: bool = False
    scale_to: int | None = None  # extrapolate wall time linearly to this many listings
    decode: bool = True  # False: images only sniffed, as before pfsync decoded them


@dataclass
class Measurement:
    """One row of the table."""

    scenario: str
    label: str
    listings: int
    images_per_listing: int
    concurrency: int
    incremental: bool
    extrapolated: bool = False
    wall_s: float = 0.0
    images_downloaded: int = 0
    images_per_s: float = 0.0
    queries: int = 0
    queries_per_listing: float = 0.0
    host_writes: int = 0
    peak_rss_mb: float = 0.0
    api_requests: int = 0
    image_requests: int = 0
    lower_bound_s: float = 0.0
    vs_lower_bound: float = 0.0
    listings_changed: int = 0
    listings_unchanged: int = 0
    errors: int = 0
    measured: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# The child: one sync, measured
# ---------------------------------------------------------------------------


class QueryCounter:
    """A ``connection.execute_wrapper``: counts every statement and the writes to host tables."""

    def __init__(self, host_tables: list[str]) -> None:
        self.total = 0
        self.host_writes = 0
        self.by_kind: dict[str, int] = {}
        self.statements: list[str] | None = None  # kept only when asked (--sql-log)
        self._host_names = [f'"{name}"' for name in host_tables]

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.total += 1
        kind = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if HOST_WRITE_RE.match(sql) and any(name in sql for name in self._host_names):
            self.host_writes += 1
        if self.statements is not None:
            self.statements.append(" ".join(sql.split())[:200])
        return execute(sql, params, many, context)


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB.

    VmHWM belongs to the process's own address space. ru_maxrss would not do:
    Linux carries it across exec, so a child would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    # Elsewhere ru_maxrss is the best there is (kilobytes on Linux, bytes on macOS).
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def sniff_only() -> None:
    """Accept images by their leading bytes only, as pfsync did before it decoded them.

    The measured sync is otherwise the very same, so the difference with the
    decoded run is what decoding costs.
    """
    from pfsync_app.media import download
    from pfsync_app.media.decode import DecodedImage, require_image_start

    def sniffed(file: Any, *, max_pixels: int) -> DecodedImage:
        file.seek(0)
        return DecodedImage(require_image_start(file.read(16)), 0, 0)

    download.decode_image = sniffed


def child_main(config: dict[str, Any]) -> dict[str, Any]:
    """Run one sync in this process and return its measurements (printed as JSON)."""
    import django

    django.setup()
    from django.db import connection
    from django.db.backends.signals import connection_created

    from pfsync_app.conf import pfsync_settings
    from pfsync_app.jobs.sync import SyncOptions, run_sync

    host_tables = [pfsync_settings.PFSYNC_TABLES[key] for key in TABLE_KEYS]
    counter = QueryCounter(host_tables)

    def hook(sender: Any, connection: Any, **kwargs: Any) -> None:
        # Connections opened by other threads are counted too.
        if counter not in connection.execute_wrappers:
            connection.execute_wrappers.append(counter)

    connection_created.connect(hook, weak=False)
    if config.get("decode") is False:
        sniff_only()
    if config.get("sql_log"):
        counter.statements = []
    options = SyncOptions(
        concurrency=config["concurrency"],
        incremental=config["incremental"],
        full=config.get("full", False),
    )
    profiler = None
    if config.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = run_sync(options)
        wall = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(config["profile"])
    if counter.statements is not None:
        Path(config["sql_log"]).write_text("\n".join(counter.statements) + "\n")
    return {
        "wall_s": wall,
        "counters": result.counters,
        "exit_code": result.exit_code,
        "failures": result.failures[:5],
        "listings_received": result.listings_received,
        "listings_unchanged": result.listings_skipped_unchanged,
        "queries": counter.total,
        "queries_by_kind": counter.by_kind,
        "host_writes": counter.host_writes,
        "peak_rss_mb": peak_rss_mb(),
        "concurrency": options.concurrency or int(pfsync_settings.PF_SYNC_CONCURRENCY),
    }


# ---------------------------------------------------------------------------
# The database
# ---------------------------------------------------------------------------


class BenchDatabase:
    """The benchmark's own database: created (or checked) at start, emptied between scenarios."""

    def __init__(self, url: str | None, *, in_place: bool, keep: bool, workdir: Path) -> None:
        self.keep = keep
        self.created: str | None = None
        self.admin_url: str | None = None
        if not url or url == "sqlite":
            self.url = f"sqlite:///{workdir / 'bench.sqlite3'}"
            self.vendor = "sqlite"
        elif url.startswith("sqlite"):
            self.url, self.vendor = url, "sqlite"
        elif in_place:
            self.url, self.vendor = url, "postgresql"
        else:
            name = f"h_bench_{uuid.uuid4().hex[:8]}"
            self._create(url, name)
            self.url, self.vendor = _with_database(url, name), "postgresql"

    def _create(self, url: str, name: str) -> None:
        self.admin_url = url
        admin = _admin_connection(url)
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        self.created = name

    def setup(self) -> None:
        """Point Django at the database, refuse one with host rows, migrate it."""
        os.environ["DATABASE_URL"] = self.url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        existing = set(connection.introspection.table_names())
        for table in self.host_tables():
            if table in existing:
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT 1 FROM {connection.ops.quote_name(table)} LIMIT 1")
                    if cursor.fetchone():
                        raise SystemExit(
                            f"bench_sync: {table} in {_safe(self.url)} already has rows; "
                            "the benchmark empties its tables, so it runs only on an empty "
                            "database (leave out --in-place to get a throwaway one)"
                        )
        call_command("migrate", verbosity=0, interactive=False)

    @staticmethod
    def host_tables() -> list[str]:
        """The host tables pfsync writes into."""
        from pfsync_app.conf import pfsync_settings

        return [pfsync_settings.PFSYNC_TABLES[key] for key in TABLE_KEYS]

    def empty(self) -> None:
        """Empty the host tables and pfsync's tables (the benchmark's own database only)."""
        from django.apps import apps
        from django.db import connection

        tables = self.host_tables()
        for model in apps.get_app_config("pfsync_app").get_models():
            if model._meta.managed and model._meta.db_table not in tables:
                tables.append(model._meta.db_table)
        quoted = [connection.ops.quote_name(t) for t in tables]
        with connection.cursor() as cursor:
            if self.vendor == "postgresql":
                cursor.execute(f"TRUNCATE {', '.join(quoted)} RESTART IDENTITY CASCADE")
            else:
                with connection.constraint_checks_disabled():
                    for table in quoted:
                        cursor.execute(f"DELETE FROM {table}")

    def seed_areas(self) -> int:
        """One host area per sandbox location, linked, as a set-up site has them."""
        from pfsync_app.models import Area
        from pfsync_app.sandbox.locations import LOCATIONS

        Area.objects.bulk_create(
            [Area(name=loc.name, pf_location_id=loc.id) for loc in LOCATIONS.values()]
        )
        return len(LOCATIONS)

    def close(self) -> None:
        """Drop the throwaway database unless asked to keep it."""
        from django.db import connections

        connections.close_all()
        if self.created and not self.keep:
            admin = _admin_connection(self.admin_url or "")
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{self.created}"')
            admin.close()


def _admin_connection(url: str) -> Any:
    """An autocommit connection to the server of ``url``: its database, else ``postgres``."""
    import psycopg2

    problem = None
    for candidate in (url, _with_database(url, "postgres")):
        try:
            connection = psycopg2.connect(_dsn(candidate))
        except psycopg2.OperationalError as exc:
            problem = exc
            continue
        connection.autocommit = True
        return connection
    raise SystemExit(f"bench_sync: cannot connect to the server of {_safe(url)}: {problem}")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _dsn(url: str) -> str:
    """A libpq URL (postgres://), whatever scheme alias Django's URL used."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


# ---------------------------------------------------------------------------
# The parent: sandbox, scenarios, table
# ---------------------------------------------------------------------------


def run_child(config: dict[str, Any], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run one scenario's sync in a fresh interpreter; its JSON result."""
    with open(log, "w") as stderr:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child"],
            input=json.dumps(config),
            capture_output=False,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=str(ROOT),
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"bench_sync: the sync child failed ({done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_sandbox(workload: Workload) -> Any:
    """A started sandbox serving ``workload``."""
    from pfsync_app.sandbox import Sandbox
    from pfsync_app.sandbox.images import PHOTO_SIZES, _photo

    w = workload
    sandbox = Sandbox(
        users=w.users,
        listings=w.listings,
        images_per_listing=w.images_per_listing,
        seed=w.seed,
        latency_ms=w.latency_ms,
        image_latency_ms=w.image_latency_ms,
        image_bytes=w.image_bytes,
        rate_limit=w.rate_limit,
    )
    if w.photos:
        # Made before the clock runs: the first requests must not wait for Pillow.
        for index in range(len(PHOTO_SIZES)):
            _photo(index)
        sandbox.faults.photos = True
    sandbox.faults.image_mbps = w.image_mbps
    return sandbox.start()


def measure(
    scenario: Scenario,
    sandbox: Any,
    db: BenchDatabase,
    media: Path,
    workdir: Path,
    sql_log_dir: Path | None = None,
    profile_dir: Path | None = None,
) -> Measurement:
    """Run the scenario's sync against ``sandbox`` in a child process; build its row."""
    from django.db import connections

    w = scenario.workload
    if not scenario.reuse_previous:
        db.empty()
        db.seed_areas()
        shutil.rmtree(media, ignore_errors=True)
    media.mkdir(parents=True, exist_ok=True)
    connections.close_all()
    sandbox.clear_requests()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "DATABASE_URL": db.url,
        "MEDIA_ROOT": str(media),
        "MEDIA_STORAGE": "filesystem",
        "REPORT_FILE": "",
        "PF_API_URL": sandbox.url,
        "PF_API_KEY": sandbox.api_key,
        "PF_API_SECRET": sandbox.api_secret,
        "PF_MEDIA_ALLOW_PRIVATE_HOSTS": "true",
        "PF_API_REQUESTS_PER_MINUTE": str(w.rate_limit or 650),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    }
    config = {
        "concurrency": scenario.concurrency,
        "incremental": scenario.incremental,
        "full": scenario.full,
        "decode": scenario.decode,
    }
    if sql_log_dir is not None:
        config["sql_log"] = str(sql_log_dir / f"sql-{scenario.name}.log")
    if profile_dir is not None:
        config["profile"] = str(profile_dir / f"profile-{scenario.name}.pstats")
    data = run_child(config, env, workdir / f"child-{scenario.name}.log")
    requests = sandbox.requests
    image_requests = sum(1 for r in requests if r.path.startswith("/images/"))
    api_requests = len(requests) - image_requests
    counters = data["counters"]
    concurrency = int(data["concurrency"])
    downloaded = int(counters.get("images_downloaded", 0))
    unchanged = int(data["listings_unchanged"])
    changed = int(data["listings_received"]) - unchanged
    wall = float(data["wall_s"])
    # With a link speed set, sending each image's bytes takes time too.
    transfer = 0.0
    if w.image_mbps:
        sent = sum(
            len(sandbox.data.image_bytes(r.path)) for r in requests if r.path.startswith("/images/")
        )
        transfer = sent * 8 / (w.image_mbps * 1_000_000)
    lower = (
        image_requests * w.image_latency_ms / 1000 + transfer
    ) / concurrency + api_requests * w.latency_ms / 1000
    row = Measurement(
        scenario=scenario.name,
        label=scenario.label,
        listings=w.listings,
        images_per_listing=w.images_per_listing,
        concurrency=concurrency,
        incremental=scenario.incremental,
        wall_s=wall,
        images_downloaded=downloaded,
        images_per_s=downloaded / wall if wall else 0.0,
        queries=int(data["queries"]),
        queries_per_listing=data["queries"] / max(changed if changed else unchanged, 1),
        host_writes=int(data["host_writes"]),
        peak_rss_mb=float(data["peak_rss_mb"]),
        api_requests=api_requests,
        image_requests=image_requests,
        lower_bound_s=lower,
        vs_lower_bound=wall / lower if lower else 0.0,
        listings_changed=changed,
        listings_unchanged=unchanged,
        errors=int(counters.get("errors", 0)),
        measured={"queries_by_kind": data["queries_by_kind"], "failures": data["failures"]},
    )
    if scenario.scale_to and scenario.scale_to != w.listings:
        factor = scenario.scale_to / w.listings
        row.measured.update(wall_s=wall, listings=w.listings, lower_bound_s=lower)
        row.extrapolated = True
        row.listings = scenario.scale_to
        row.wall_s = wall * factor
        row.lower_bound_s = lower * factor
        row.images_downloaded = round(downloaded * factor)
        row.api_requests = round(api_requests * factor)
        row.image_requests = round(image_requests * factor)
        row.queries = round(row.queries * factor)
    return row


def build_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios asked for, in the order A, B, C, D."""
    wanted = {s.strip().upper() for s in args.scenarios.split(",") if s.strip()}
    unknown = wanted - {"A", "B", "C", "D", "E", "P"}
    if unknown:
        raise SystemExit(
            f"bench_sync: unknown scenario(s) {', '.join(sorted(unknown))}; use A-E or P"
        )

    def workload(listings: int, images: int, **changes: Any) -> Workload:
        base = Workload(
            listings=listings,
            images_per_listing=images,
            latency_ms=args.latency_ms,
            image_latency_ms=args.image_latency_ms,
            image_bytes=args.image_bytes,
            rate_limit=args.rate_limit or None,
            users=args.users,
        )
        for name, value in changes.items():
            setattr(base, name, value)
        return base

    out: list[Scenario] = []
    if "A" in wanted:
        a = min(args.a_listings, args.listings)
        label = "A old way" + (f" (extrapolated from {a})" if a != args.listings else "")
        out.append(
            Scenario(
                "A", label, workload(a, args.images_per_listing), 1, False, scale_to=args.listings
            )
        )
    if wanted & {"B", "C", "E"}:
        out.append(Scenario("B", "B defaults", workload(args.listings, args.images_per_listing)))
    if "C" in wanted:
        out.append(
            Scenario(
                "C",
                "C unchanged rerun",
                workload(args.listings, args.images_per_listing),
                reuse_previous=True,
            )
        )
    if "E" in wanted:
        out.append(
            Scenario(
                "E",
                "E --full rerun",
                workload(args.listings, args.images_per_listing),
                full=True,
                reuse_previous=True,
            )
        )
    if "D" in wanted:
        latency = args.d_image_latency_ms
        for count in sorted({args.d_compare_listings, args.d_listings}):
            out.append(
                Scenario(
                    f"D{count}",
                    f"D memory at {count}",
                    workload(count, 1, image_latency_ms=latency),
                )
            )
    if "P" in wanted:
        photos = workload(
            args.p_listings,
            args.p_images_per_listing,
            photos=True,
            image_mbps=args.p_image_mbps or None,
        )
        out.append(Scenario("P0", "P photos, sniffed only", photos, decode=False))
        out.append(Scenario("P1", "P photos, decoded", photos))
    return out


def check_targets(rows: dict[str, Measurement], d_listings: int) -> dict[str, Any]:
    """Each target of issue 7 that the scenarios run allow to judge: value and whether met."""
    targets: dict[str, Any] = {}
    a, b, c = rows.get("A"), rows.get("B"), rows.get("C")
    if a and b:
        speedup = a.wall_s / b.wall_s if b.wall_s else 0.0
        targets["B_10x_faster_than_A"] = {"value": round(speedup, 1), "met": speedup >= 10}
    if b:
        targets["B_within_1.5x_lower_bound"] = {
            "value": round(b.vs_lower_bound, 2),
            "met": b.vs_lower_bound <= 1.5,
        }
        targets["B_at_most_10_queries_per_changed_listing"] = {
            "value": round(b.queries_per_listing, 2),
            "met": b.queries_per_listing <= 10,
        }
    if b and c:
        share = c.wall_s / b.wall_s if b.wall_s else 0.0
        targets["C_under_5pct_of_B"] = {"value": round(100 * share, 2), "met": share < 0.05}
        targets["C_no_downloads_no_host_writes"] = {
            "value": {"images": c.image_requests, "host_writes": c.host_writes},
            "met": c.image_requests == 0 and c.images_downloaded == 0 and c.host_writes == 0,
        }
        targets["C_at_most_0.1_queries_per_unchanged_listing"] = {
            "value": round(c.queries_per_listing, 3),
            "met": c.queries_per_listing <= 0.1,
        }
    e = rows.get("E")
    if e:
        targets["E_full_rewrite_downloads_nothing"] = {
            "value": e.image_requests,
            "met": e.image_requests == 0 and e.images_downloaded == 0,
        }
    sniffed, decoded = rows.get("P0"), rows.get("P1")
    if decoded:
        targets["P_decoded_within_1.5x_lower_bound"] = {
            "value": round(decoded.vs_lower_bound, 2),
            "met": decoded.vs_lower_bound <= 1.5,
        }
    if sniffed and decoded:
        targets["P_images_per_s_sniffed_then_decoded"] = {
            "value": f"{sniffed.images_per_s:.1f} -> {decoded.images_per_s:.1f}",
            "met": decoded.images_downloaded == sniffed.images_downloaded > 0,
        }
    d_rows = sorted((r for k, r in rows.items() if k.startswith("D")), key=lambda r: r.listings)
    if d_rows:
        big = d_rows[-1]
        targets["D_peak_rss_under_200MB"] = {
            "value": round(big.peak_rss_mb, 1),
            "met": big.peak_rss_mb < 200 and big.listings >= d_listings,
        }
    if len(d_rows) >= 2:
        small, big = d_rows[0], d_rows[-1]
        growth = big.peak_rss_mb - small.peak_rss_mb
        # "Not growing with the account": 4x the listings may cost at most a few MB more.
        targets["D_rss_flat_with_listings"] = {
            "value": f"{small.peak_rss_mb:.1f} MB at {small.listings}, "
            f"{big.peak_rss_mb:.1f} MB at {big.listings}",
            "met": growth < 15,
        }
    return targets


def format_table(rows: list[Measurement]) -> str:
    """The rows as a fixed-width text table."""
    headers = (
        "scenario",
        "listings",
        "conc",
        "wall s",
        "img/s",
        "queries",
        "q/listing",
        "host writes",
        "peak RSS MB",
        "API req",
        "img req",
        "lower bound s",
        "x bound",
    )
    lines = []
    for r in rows:
        lines.append(
            (
                r.label,
                f"{r.listings}x{r.images_per_listing}",
                str(r.concurrency),
                f"{r.wall_s:.1f}" + ("*" if r.extrapolated else ""),
                f"{r.images_per_s:.1f}",
                str(r.queries) + ("*" if r.extrapolated else ""),
                f"{r.queries_per_listing:.2f}",
                str(r.host_writes),
                f"{r.peak_rss_mb:.0f}",
                str(r.api_requests),
                str(r.image_requests),
                f"{r.lower_bound_s:.1f}",
                f"{r.vs_lower_bound:.2f}",
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    out = [" | ".join(h.ljust(widths[i]) for i, h in enumerate(headers))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(c.ljust(widths[i]) for i, c in enumerate(line)) for line in lines]
    if any(r.extrapolated for r in rows):
        out.append("* extrapolated linearly from the sample size in the scenario's label")
    return "\n".join(out)


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        version = cursor.fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "database": f"{connection.vendor} {version}",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listings", type=int, default=1000)
    parser.add_argument("--images-per-listing", type=int, default=5)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--scenarios", default="A,B,C,D", help="Comma-separated, of A-E and P.")
    parser.add_argument("--a-listings", type=int, default=200, help="A's sample size.")
    parser.add_argument("--d-listings", type=int, default=20_000)
    parser.add_argument("--d-compare-listings", type=int, default=5_000)
    parser.add_argument("--latency-ms", type=float, default=150.0, help="API latency.")
    parser.add_argument("--image-latency-ms", type=float, default=200.0)
    parser.add_argument("--d-image-latency-ms", type=float, default=None)
    parser.add_argument("--image-bytes", type=int, default=100_000)
    parser.add_argument("--rate-limit", type=int, default=650, help="0 for none.")
    parser.add_argument("--p-listings", type=int, default=100, help="P's listings.")
    parser.add_argument("--p-images-per-listing", type=int, default=5)
    parser.add_argument(
        "--p-image-mbps",
        type=float,
        default=100.0,
        help="P's link speed per image connection, megabits a second (0: unlimited).",
    )
    parser.add_argument("--quick", action="store_true", help="Tiny sizes, no latency (smoke).")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--in-place", action="store_true", help="Use that database itself.")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument(
        "--sql-log", type=Path, default=None, help="Folder for each scenario's SQL statements."
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="Folder for each sync's cProfile stats."
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.listings, args.images_per_listing, args.users = 6, 2, 3
        args.a_listings, args.d_listings, args.d_compare_listings = 3, 12, 6
        args.latency_ms = args.image_latency_ms = 0.0
        args.image_bytes, args.rate_limit = 2_000, 0
        args.p_listings, args.p_images_per_listing, args.p_image_mbps = 3, 2, 0.0
    if args.d_image_latency_ms is None:
        args.d_image_latency_ms = args.image_latency_ms
    for name in ("listings", "images_per_listing", "a_listings", "d_listings", "p_listings"):
        if getattr(args, name) < 1:
            raise SystemExit(f"bench_sync: --{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and the JSON; 0 even when a target is missed."""
    args = parse_args(argv)
    if args.child:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
        print(json.dumps(child_main(json.loads(sys.stdin.read()))))
        return 0
    scenarios = build_scenarios(args)
    workdir = Path(tempfile.mkdtemp(prefix="pfsync-bench-"))
    db = BenchDatabase(
        args.database_url, in_place=args.in_place, keep=args.keep_database, workdir=workdir
    )
    rows: dict[str, Measurement] = {}
    try:
        db.setup()
        info = machine()
        media = workdir / "media"
        sandbox = None
        try:
            for scenario in scenarios:
                print(f"running {scenario.label} ...", file=sys.stderr, flush=True)
                # C reruns B against the very same sandbox: same URLs, same data.
                if sandbox is None or not scenario.reuse_previous:
                    if sandbox is not None:
                        sandbox.stop()
                    sandbox = start_sandbox(scenario.workload)
                rows[scenario.name] = measure(
                    scenario, sandbox, db, media, workdir, args.sql_log, args.profile
                )
        finally:
            if sandbox is not None:
                sandbox.stop()
        report = {
            "machine": info,
            "settings": {
                "api_latency_ms": args.latency_ms,
                "image_latency_ms": args.image_latency_ms,
                "image_bytes": args.image_bytes,
                "rate_limit": args.rate_limit or None,
                "photo_image_mbps": args.p_image_mbps or None,
                "quick": args.quick,
            },
            "scenarios": {
                k: {name: getattr(r, name) for name in ROW_KEYS} | {"measured": r.measured}
                for k, r in rows.items()
            },
            "targets": check_targets(rows, args.d_listings),
        }
    finally:
        db.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"machine: {info['cpus']} CPUs, Python {info['python']}, {info['database']}; "
        f"API {args.latency_ms:g} ms, images {args.image_latency_ms:g} ms x "
        f"{args.image_bytes} bytes, rate limit {args.rate_limit or 'none'}/min"
    )
    print(format_table(list(rows.values())))
    if "P0" in rows and "P1" in rows:
        sniffed, decoded = rows["P0"], rows["P1"]
        print(
            f"decoding, same run: {sniffed.images_per_s:.1f} images/s sniffed only, "
            f"{decoded.images_per_s:.1f} images/s decoded ({decoded.images_downloaded} photos; "
            f"network lower bound {decoded.lower_bound_s:.1f} s, decoded run "
            f"{decoded.vs_lower_bound:.2f}x of it)"
        )
    for name, target in report["targets"].items():
        print(f"{'met   ' if target['met'] else 'MISSED'} {name}: {target['value']}")
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


__all__ = ["ROW_KEYS", "Measurement", "QueryCounter", "Scenario", "Workload", "main"]

if __name__ == "__main__":
    sys.exit(main())
