"""The Docker image's steps, run here as scripts (no Docker engine on these machines)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pfsync_app.management.scheduler import next_run

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def clean_env(tmp_path, **extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PF_", "DATABASE_URL", "POSTGRES_DSN", "DJANGO_"))
    }
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "STATIC_ROOT": str(tmp_path / "static"),
        }
    )
    env.update(extra)
    return env


def run(args, env, **kwargs):
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kwargs
    )


def test_every_run_step_of_the_dockerfile_is_a_script_in_docker():
    steps = re.findall(r"^RUN (.+)$", DOCKERFILE, re.MULTILINE)
    assert steps
    for step in steps:
        words = [w for w in step.split("&&")[0].split() if not re.match(r"^[A-Z_]+=", w)]
        first = words[0]
        assert first.startswith("docker/") or first == "groupadd", step
        if first.startswith("docker/"):
            assert (ROOT / first).is_file() and os.access(ROOT / first, os.X_OK)


def test_the_image_is_multi_stage_slim_non_root_in_tashkent_time():
    assert len(re.findall(r"^FROM python:3\.\d+-slim", DOCKERFILE, re.MULTILINE)) == 2
    assert re.search(r"^USER pfsync$", DOCKERFILE, re.MULTILINE)
    assert "TZ=Asia/Tashkent" in DOCKERFILE
    assert re.search(r'^VOLUME \["/mhp/media", "/var/log/pfsync"\]', DOCKERFILE, re.MULTILINE)
    final_stage = DOCKERFILE.split("\nFROM ")[-1]
    assert "COPY tests" not in final_stage and "build-essential" not in final_stage


@pytest.mark.slow
def test_the_install_step_builds_a_working_environment(tmp_path):
    venv = tmp_path / "venv"
    result = run(["docker/install.sh", str(venv), str(ROOT)], clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "pfsync 0." in result.stdout
    check = run(
        [
            str(venv / "bin/python"),
            "-c",
            "import pfsync_app.atlas, pfsync_app.management.scheduler, apscheduler, storages, tqdm",
        ],
        clean_env(tmp_path),
    )
    assert check.returncode == 0, check.stderr


def test_static_files_for_the_admin_are_collected(tmp_path):
    result = run(["docker/collectstatic.sh"], clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "admin" / "css" / "base.css").is_file()


def test_the_entrypoints_start_up_checks_pass_on_a_migrated_database(tmp_path):
    env = clean_env(tmp_path)
    assert run([sys.executable, "manage.py", "migrate", "-v0"], env).returncode == 0
    result = run(["docker/entrypoint.sh", "check"], env)
    assert result.returncode == 0, result.stderr
    assert "start-up checks passed" in result.stdout


def test_the_entrypoint_stops_on_pending_migrations_with_one_sentence(tmp_path):
    result = run(["docker/entrypoint.sh", "check"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "migrations are pending" in result.stderr


def test_the_entrypoint_stops_on_a_bad_setting_naming_the_variable(tmp_path):
    result = run(
        ["docker/entrypoint.sh", "check"], clean_env(tmp_path, IMAGE_DOWNLOAD_TIMEOUT="soon")
    )
    assert result.returncode != 0
    assert "IMAGE_DOWNLOAD_TIMEOUT" in result.stderr.strip().splitlines()[-1]


def test_the_entrypoint_runs_a_one_off_command(tmp_path):
    env = clean_env(tmp_path)
    run([sys.executable, "manage.py", "migrate", "-v0"], env)
    result = run(["docker/entrypoint.sh", "pf_check"], env)
    assert result.returncode == 0, result.stderr
    assert "No missing images found" in result.stdout


def test_the_scheduler_fires_daily_at_midnight_tashkent():
    tz = ZoneInfo("Asia/Tashkent")
    fire = next_run(
        "0 0 * * *", "Asia/Tashkent", datetime(2026, 1, 19, 19, 30, tzinfo=ZoneInfo("UTC"))
    )
    assert fire == datetime(2026, 1, 21, 0, 0, tzinfo=tz)
    fire = next_run(
        "0 0 * * *", "Asia/Tashkent", datetime(2026, 1, 19, 18, 59, tzinfo=ZoneInfo("UTC"))
    )
    assert fire == datetime(2026, 1, 20, 0, 0, tzinfo=tz)


def test_the_scheduler_refuses_a_bad_schedule_with_one_sentence():
    result = run(
        [
            sys.executable,
            "-m",
            "pfsync_app.management.scheduler",
            "--schedule",
            "every night",
            "--print-next",
        ],
        os.environ.copy(),
    )
    assert result.returncode != 0
    assert "PF_SYNC_SCHEDULE must be a crontab expression" in result.stderr


def site_database(tmp_path):
    """A database as the agency's site has it: host tables made by the site's own apps."""
    env = clean_env(tmp_path)
    assert run([sys.executable, "manage.py", "migrate", "-v0"], env).returncode == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        # The site's migrations have other names; pfsync was never installed there.
        db.execute("UPDATE django_migrations SET app = 'agency_site' WHERE app = 'host'")
        db.execute("DELETE FROM django_migrations WHERE app = 'pfsync_app'")
        for (table,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'pfsync_app_%'"
        ).fetchall():
            db.execute(f'DROP TABLE "{table}"')
    return env


def test_the_image_runs_standalone_against_the_sites_own_database(tmp_path):
    env = site_database(tmp_path)
    env.update({"PFSYNC_STANDALONE": "true", "PF_MIGRATE_ON_START": "true"})
    result = run(["docker/entrypoint.sh", "check"], env)
    assert result.returncode == 0, result.stderr
    assert "start-up checks passed" in result.stdout
    one_off = run(["docker/entrypoint.sh", "pf_check"], env)
    assert one_off.returncode == 0, one_off.stderr


def test_the_scheduler_passes_sigterm_on_to_the_run_in_progress(tmp_path):
    import signal
    import threading
    import time

    from pfsync_app.management import scheduler

    # A stand-in for manage.py: it notes the SIGTERM it gets, then ends as pf_sync does (2).
    noted, ready = tmp_path / "got-sigterm", tmp_path / "ready"
    fake = tmp_path / "manage.py"
    fake.write_text(
        "import signal, sys, time\n"
        "def stop(signum, frame):\n"
        f"    open({str(noted)!r}, 'w').write('yes')\n"
        "    sys.exit(2)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"open({str(ready)!r}, 'w').write('yes')\n"
        "time.sleep(60)\n"
    )
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(scheduler.run_command(fake, [])))
    worker.start()
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert scheduler.pass_on_sigterm(signal.SIGTERM) == 1
    worker.join(timeout=20)

    assert result == [2]
    assert noted.read_text() == "yes"
    assert not scheduler._running
