"""Progress for the commands: a bar on a terminal, timestamped log lines under cron."""

from __future__ import annotations

import time
from typing import IO

from django.utils import timezone

from pfsync_app.jobs.pipeline import Progress
from pfsync_app.reports.logs import LOG_TIME_FORMAT


class TerminalProgress(Progress):
    """One tqdm bar per stage (users, listings, images)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.bars: dict = {}

    def stage(self, name: str, total: int | None = None) -> None:
        from tqdm import tqdm

        if name not in self.bars:
            self.bars[name] = tqdm(
                total=total or None,
                desc=f"{name:<8}",
                unit="",
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
            )

    def total(self, name: str, total: int) -> None:
        bar = self.bars.get(name)
        if bar is None:
            self.stage(name, total)
            return
        if name == "images":
            bar.total = (bar.total or 0) + total
        else:
            bar.total = total
        bar.refresh()

    def advance(self, name: str, count: int = 1) -> None:
        bar = self.bars.get(name)
        if bar is not None:
            bar.update(count)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


class LogProgress(Progress):
    """Plain timestamped lines, at most one every ``interval`` seconds per stage."""

    def __init__(self, stream: IO[str], interval: float = 10.0) -> None:
        self.stream = stream
        self.interval = interval
        self.done: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.last: dict[str, float] = {}

    def _line(self, text: str) -> None:
        stamp = timezone.localtime().strftime(LOG_TIME_FORMAT)
        self.stream.write(f"{stamp} {text}\n")
        self.stream.flush()

    def stage(self, name: str, total: int | None = None) -> None:
        self.done.setdefault(name, 0)
        if total:
            self.totals[name] = total
        self.last[name] = time.monotonic()
        if name != "images":
            self._line(f"{name}: starting")

    def total(self, name: str, total: int) -> None:
        if name == "images":
            self.totals[name] = self.totals.get(name, 0) + total
        else:
            self.totals[name] = total

    def advance(self, name: str, count: int = 1) -> None:
        self.done[name] = self.done.get(name, 0) + count
        now = time.monotonic()
        if now - self.last.get(name, 0) >= self.interval:
            self.last[name] = now
            self._report(name)

    def _report(self, name: str) -> None:
        total = self.totals.get(name)
        of = f"/{total}" if total else ""
        self._line(f"{name}: {self.done.get(name, 0)}{of}")

    def close(self) -> None:
        for name in self.done:
            self._report(name)


def progress_for(stream: IO[str], verbosity: int) -> Progress:
    """A bar on a terminal, log lines otherwise, nothing at verbosity 0."""
    if verbosity == 0:
        return Progress()
    if hasattr(stream, "isatty") and stream.isatty():
        return TerminalProgress(stream)
    return LogProgress(stream)
