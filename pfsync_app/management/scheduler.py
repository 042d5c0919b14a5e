"""A small in-container scheduler: runs pf_sync on a cron schedule in the configured time zone.

The Docker image's default process. APScheduler does the calendar arithmetic
(time zones, DST, missed runs); each run is ``manage.py pf_sync`` in a child
process so a crash or a leak in one run never takes the scheduler down, and
its output goes straight to the container log.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pfsync_app.reports.logs import LOG_TIME_FORMAT

logger = logging.getLogger("pfsync.scheduler")

DEFAULT_SCHEDULE = "0 0 * * *"


def build_trigger(schedule: str, tz: str):
    """An APScheduler cron trigger from a five-field crontab expression."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(schedule, timezone=ZoneInfo(tz))
    except ValueError as exc:
        raise SystemExit(
            f"PF_SYNC_SCHEDULE must be a crontab expression like '0 0 * * *', got {schedule!r} "
            f"({exc})."
        ) from None


def next_run(schedule: str, tz: str, now: datetime | None = None) -> datetime:
    """When the schedule fires next after ``now``."""
    trigger = build_trigger(schedule, tz)
    now = now or datetime.now(ZoneInfo(tz))
    return trigger.get_next_fire_time(None, now)


# The commands running now: a SIGTERM to the scheduler is passed on to them.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def run_command(manage: Path, args: list[str]) -> int:
    """Run one ``manage.py`` command as a child process; its output goes to our stdout."""
    logger.info("starting: manage.py %s", " ".join(args))
    process = subprocess.Popen([sys.executable, str(manage), *args])
    with _running_lock:
        _running.add(process)
    try:
        returncode = process.wait()
    finally:
        with _running_lock:
            _running.discard(process)
    logger.info("finished: manage.py %s (exit status %s)", " ".join(args), returncode)
    return returncode


def pass_on_sigterm(signum: int) -> int:
    """Send ``signum`` to every command running now; how many were running.

    ``docker stop`` sends SIGTERM to the container's first process, the scheduler:
    passed on, a pf_sync ends its run as interrupted, gives the lock back and
    removes its temporary files before the container's grace period ends.
    """
    with _running_lock:
        children = list(_running)
    for child in children:
        logger.info("passing signal %d on to pid %d", signum, child.pid)
        child.send_signal(signum)
    return len(children)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, then print the next run or run the schedule forever."""
    parser = argparse.ArgumentParser(description="Run pf_sync on a schedule.")
    parser.add_argument("--schedule", default=os.environ.get("PF_SYNC_SCHEDULE", DEFAULT_SCHEDULE))
    parser.add_argument("--tz", default=os.environ.get("TZ", "Asia/Tashkent"))
    parser.add_argument(
        "--manage", default=str(Path(__file__).resolve().parent.parent / "manage.py")
    )
    parser.add_argument(
        "--print-next", action="store_true", help="Print the next run time and exit."
    )
    parser.add_argument("command", nargs="*", default=["pf_sync"])
    options = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        datefmt=LOG_TIME_FORMAT,
    )
    if options.print_next:
        print(next_run(options.schedule, options.tz).isoformat())
        return 0
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(timezone=ZoneInfo(options.tz))
    scheduler.add_job(
        run_command,
        build_trigger(options.schedule, options.tz),
        args=[Path(options.manage), options.command],
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )
    logger.info(
        "pf_sync scheduled '%s' (%s); next run %s",
        options.schedule,
        options.tz,
        next_run(options.schedule, options.tz).isoformat(),
    )

    def stop(signum: int, frame: object) -> None:
        pass_on_sigterm(signum)
        # Waits for the run in progress, which is ending its record now.
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        logger.info("scheduler stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
