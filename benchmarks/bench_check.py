#!/usr/bin/env python
"""Benchmark of pf_check: how long checking 100,000 image rows takes (run by hand, not in CI).

    .venv/bin/python benchmarks/bench_check.py                 # SQLite in a temporary file
    DATABASE_URL=postgres://pfsync@127.0.0.1:55432/h_check \\
        .venv/bin/python benchmarks/bench_check.py --verify    # PostgreSQL, and --verify too

Creates a fresh database (Django's test database machinery: ``<name>_bench``,
dropped at the end), 100,000 image rows of 5,000 Property Finder properties
and a small file for each in a temporary MEDIA_ROOT, except a few deliberately
missing or empty ones; then runs the check exactly as ``pf_check`` does and
prints the wall time, rows per second and the peak RSS during the check, as a
table and as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
IMAGES_PER_PROPERTY = 20
BATCH = 5000
CONTENT = b"\xff\xd8\xff\xe0pfsync-benchmark"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class PeakRss:
    """Samples RSS every few milliseconds in a thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def setup_django(media_root: Path, sqlite_file: Path) -> None:
    sys.path.insert(0, str(PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project_settings.settings")
    os.environ["MEDIA_ROOT"] = str(media_root)
    import django
    from django.conf import settings

    django.setup()
    database = settings.DATABASES["default"]
    test = database.setdefault("TEST", {})
    if database["ENGINE"].endswith("sqlite3"):
        test["NAME"] = str(sqlite_file)  # a real file: an in-memory database would flatter us
    else:
        test["NAME"] = f"{database['NAME']}_bench"
    settings.REPORT_FILE = ""


def create_rows(rows: int, media_root: Path, verify: bool) -> dict[str, set[int]]:
    """The properties, image rows and files; returns the ids made missing, empty and corrupt."""
    from django.utils import timezone

    from pfsync_app.models import ImageFile, Property, PropertyImage

    now = timezone.now()
    folder = media_root / "property_images"
    folder.mkdir(parents=True)
    properties = Property.objects.bulk_create(
        Property(pf_id=f"BENCH{i:08d}", created_at=now, updated_at=now, is_published=True)
        for i in range((rows + IMAGES_PER_PROPERTY - 1) // IMAGES_PER_PROPERTY)
    )
    expected: dict[str, set[int]] = {"missing": set(), "empty": set(), "corrupt": set()}
    digest = hashlib.sha256(CONTENT).hexdigest()
    for start in range(0, rows, BATCH):
        batch = [
            PropertyImage(
                property_id=properties[i // IMAGES_PER_PROPERTY].pk,
                image=f"property_images/{i:07d}.jpg",
                source_url=f"https://images.example/{i}.jpg",
                position=i % IMAGES_PER_PROPERTY,
                is_active=True,
                created_at=now,
            )
            for i in range(start, min(rows, start + BATCH))
        ]
        created = PropertyImage.objects.bulk_create(batch)
        checksums = []
        for offset, row in enumerate(created):
            i = start + offset
            path = folder / f"{i:07d}.jpg"
            if i % 10_000 == 0:
                expected["missing"].add(row.pk)
                continue
            if i % 10_000 == 1:
                path.write_bytes(b"")
                expected["empty"].add(row.pk)
                continue
            if i % 10_000 == 2:
                path.write_bytes(CONTENT[:-1] + b"!")
                expected["corrupt"].add(row.pk)
            else:
                path.write_bytes(CONTENT)
            if verify:
                checksums.append(
                    ImageFile(image_id=row.pk, name=row.image, size=len(CONTENT), sha256=digest)
                )
        ImageFile.objects.bulk_create(checksums)
    return expected


def run_check(verify: bool) -> dict:
    from pfsync_app.jobs.check import check_images

    with PeakRss() as rss:
        started = time.perf_counter()
        result = check_images(verify=verify)
        wall = time.perf_counter() - started
    return {"result": result, "wall": wall, "peak_rss": rss.peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000, help="image rows (100,000)")
    parser.add_argument("--verify", action="store_true", help="also time pf_check --verify")
    args = parser.parse_args()

    temp = Path(tempfile.mkdtemp(prefix="pfsync-bench-"))
    media_root = temp / "media"
    setup_django(media_root, temp / "bench.sqlite3")
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        started = time.perf_counter()
        expected = create_rows(args.rows, media_root, args.verify)
        setup_seconds = time.perf_counter() - started
        rss_before = rss_bytes()
        runs = {"pf_check": run_check(verify=False)}
        if args.verify:
            runs["pf_check --verify"] = run_check(verify=True)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(temp, ignore_errors=True)

    report = {
        "database": connection.vendor,
        "rows": args.rows,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "setup_seconds": round(setup_seconds, 2),
        "rss_before_check_mib": round(rss_before / 2**20, 1),
        "runs": {},
    }
    failures = []
    for name, run in runs.items():
        result = run["result"]
        found = {reason: set() for reason in expected}
        for item in result.missing:
            found[item.reason].add(item.image_id)
        want = dict(expected) if name.endswith("--verify") else {**expected, "corrupt": set()}
        if found != want or result.checked != args.rows:
            failures.append(f"{name} found {result.reasons()} of {result.checked} rows")
        report["runs"][name] = {
            "checked": result.checked,
            "found": result.reasons(),
            "wall_seconds": round(run["wall"], 3),
            "rows_per_second": round(result.checked / run["wall"]),
            "peak_rss_mib": round(run["peak_rss"] / 2**20, 1),
        }

    print(f"pf_check benchmark: {args.rows:,} image rows on {report['database']}, ", end="")
    print(f"{report['cpus']} CPUs (setup {report['setup_seconds']} s)")
    header = f"{'run':<20} {'wall time (s)':>13} {'rows/s':>10} {'peak RSS (MiB)':>15}  found"
    print(header)
    print("-" * len(header))
    for name, run in report["runs"].items():
        found = ", ".join(f"{n} {r}" for r, n in run["found"].items())
        print(
            f"{name:<20} {run['wall_seconds']:>13.3f} {run['rows_per_second']:>10,} "
            f"{run['peak_rss_mib']:>15.1f}  {found}"
        )
    print(json.dumps(report))
    for failure in failures:
        print(f"WRONG RESULT: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
