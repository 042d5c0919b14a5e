"""The base of pfsync's management commands: one way a command that cannot run says so.

A command is a thin shell (Django's own commands are the model): it parses its
options, calls one job, and prints. ``PfsyncCommand.execute`` turns the ways a
command cannot run into one sentence on stderr and exit status 2:
``SyncAborted`` from a job ("pf_sync could not run: ..."), ``PfsyncError``
for a request the command refuses (a pf_areas link, a webhook subscription),
a ``CommandError`` whatever status it was raised with,
and a database error said as what it means (``pfsync_app.database``: the
database cannot be reached, pfsync's tables are missing, a host table is).

A reader that stops reading (``pf_report --run 5 | head -1``) ends the command
quietly with exit status 0, as other command-line tools do.

A run that did not finish exits 2 too, never 1 (which means "finished, with
item errors"): one stopped by SIGTERM (its run marked interrupted) and one ended
by an unexpected exception (its run marked failed) each say so in one sentence;
``--traceback`` shows the exception as Python would.

While a command runs in the main thread it handles SIGTERM, what docker stop,
systemd and Kubernetes send: the first one raises ``Terminated`` there, so the
run is marked interrupted, its lock given back and its temporary files removed
before the process exits; more while that happens are ignored. Only the
commands install the handler, never the webhook view: a web worker's signals
belong to its server.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from pfsync_app.checks import check_settings, one_sentence
from pfsync_app.database import database_problem, from_database
from pfsync_app.exceptions import PfsyncError, SyncAborted, Terminated
from pfsync_app.jobs.base import main_thread_interrupt
from pfsync_app.reports.logs import one_line

logger = logging.getLogger("pfsync.commands")

#: The exit status of a command that could not run (the old service's, and cron's cue).
COULD_NOT_RUN = 2


class _WarningsOnly(logging.Filter):
    """Lets through records of level WARNING and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def console_handlers() -> list[logging.Handler]:
    """The handlers of pfsync's loggers and the root that write to the terminal."""
    terminal = {sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__}
    loggers = [logging.getLogger("pfsync"), logging.getLogger()]
    loggers += [
        logger
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if name.startswith("pfsync.") and isinstance(logger, logging.Logger)
    ]
    found: list[logging.Handler] = []
    for logger in loggers:
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if (
                isinstance(handler, logging.StreamHandler)
                and not isinstance(handler, logging.FileHandler)
                and stream in terminal
                and handler not in found
            ):
                found.append(handler)
    return found


@contextmanager
def console_at_warning(quiet: bool) -> Iterator[None]:
    """While it lasts (when ``quiet``), the terminal's log handlers show WARNING and above.

    Only the console: a host's file or syslog handler keeps every record.
    """
    if not quiet:
        yield
        return
    only = _WarningsOnly()
    handlers = console_handlers()
    for handler in handlers:
        handler.addFilter(only)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(only)


class PfsyncCommand(BaseCommand):
    """A pfsync command: ``handle`` may raise SyncAborted, PfsyncError or CommandError; all exit 2.

    A ``CommandError`` raised with Django's default status 1 leaves with 2: status 1
    is kept for a run that finished with item errors, which commands say with
    ``sys.exit(1)``.
    """

    def execute(self, *args: Any, **options: Any) -> Any:
        """Run the command; a job that could not run is one sentence and exit status 2."""
        quiet = not self.records_run(options) and options.get("verbosity", 1) < 2
        with self.stopping_on_sigterm(), console_at_warning(quiet):
            try:
                return super().execute(*args, **options)
            except SyncAborted as exc:
                raise CommandError(
                    f"{self.command_name()} could not run: {exc}", returncode=COULD_NOT_RUN
                ) from None
            except PfsyncError as exc:
                raise CommandError(str(exc), returncode=COULD_NOT_RUN) from None
            except CommandError as exc:
                # Django's default status 1 would say "finished, with item errors"; a command
                # that refuses an option or argument did not run (item errors use sys.exit(1)).
                if exc.returncode == 1:
                    exc.returncode = COULD_NOT_RUN
                raise
            except BrokenPipeError:
                self.reader_gone()
                return None
            except Terminated as exc:
                raise self.terminated(exc) from None
            except Exception as exc:
                if options.get("traceback"):
                    raise
                using = options.get("database") or DEFAULT_DB_ALIAS
                if from_database(exc, using):
                    # Django's DatabaseError, or the driver's own unwrapped (a server-side
                    # cursor closed after its query failed): said as what it means.
                    problem = database_problem(exc, using)
                    raise CommandError(
                        f"{self.command_name()} could not run: {problem}", returncode=COULD_NOT_RUN
                    ) from None
                raise self.unexpected(exc) from None

    def records_run(self, options: dict[str, Any]) -> bool:
        """Whether this invocation records a run (a SyncRun), whose INFO lines the console keeps.

        One that does not (a search, a listing, a report) is interactive: its
        console shows WARNING and above unless ``-v 2``, so an access token
        obtained is not news on a terminal. Commands override this.
        """
        return True

    def check(self, *args: Any, **kwargs: Any) -> None:
        """Django's system checks, after pfsync's settings: a wrong one is a sentence, exit 2.

        Settings errors are exit status 2 wherever they are found (the bundled
        project's manage.py says an unreadable variable the same way), never a
        system-check block with status 1.
        """
        errors = [m for m in check_settings() if m.is_serious()]
        if errors:
            raise CommandError(
                f"{self.command_name()} could not run: {one_sentence(errors)}",
                returncode=COULD_NOT_RUN,
            )
        super().check(*args, **kwargs)

    def command_name(self) -> str:
        """The command's name as typed (pf_sync, pf_check...)."""
        return self.__module__.rsplit(".", 1)[-1]

    @staticmethod
    def reader_gone() -> None:
        """stdout's reader stopped reading: send what is left to /dev/null, so exit is quiet."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass  # not a real stream (a test's StringIO): nothing is left to flush

    # -- a run that did not finish ---------------------------------------------

    def terminated(self, exc: Terminated) -> CommandError:
        """The sentence, and exit status 2, of a command stopped by a signal."""
        return CommandError(
            f"{self.command_name()} was stopped by {exc.signal_name} before it finished",
            returncode=COULD_NOT_RUN,
        )

    def unexpected(self, exc: Exception) -> CommandError:
        """The sentence, and exit status 2, of a command ended by an exception nobody expected.

        The job has already recorded its run as failed with the same line; the
        traceback goes to the debug log (LOG_LEVEL=debug), or to stderr with
        ``--traceback``.
        """
        logger.debug("%s stopped on an unexpected error", self.command_name(), exc_info=exc)
        return CommandError(
            f"{self.command_name()} stopped on an unexpected error: {one_line(exc)} "
            "(run it with --traceback to see where)",
            returncode=COULD_NOT_RUN,
        )

    @contextmanager
    def stopping_on_sigterm(self) -> Iterator[None]:
        """While the command runs in the main thread, SIGTERM raises ``Terminated`` there.

        The job's heartbeat stops the main thread the same way when the writer
        lock's lease is lost (the job then says why). Elsewhere (a command
        called from another thread) nothing is installed: signals are for the
        main thread only.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stopping = False

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            if stopping:
                logger.warning("%s: already stopping", signal.Signals(signum).name)
                return
            stopping = True
            raise Terminated(signal.Signals(signum).name)

        main = threading.main_thread().ident
        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            with main_thread_interrupt(lambda: signal.pthread_kill(main, signal.SIGTERM)):
                yield
        finally:
            signal.signal(signal.SIGTERM, previous)
