"""The base of pfsync's management commands: one way a command that cannot run says so.

A command is a thin shell (Django's own commands are the model): it parses its
options, calls one job, and prints. ``PfsyncCommand.execute`` turns the ways a
command cannot run into one sentence on stderr and exit status 2:
``SyncAborted`` from a job ("pf_sync could not run: ..."), and ``PfsyncError``
for a request the command refuses (a pf_areas link, a webhook subscription).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pfsync_app.exceptions import PfsyncError, SyncAborted

#: The exit status of a command that could not run (the old service's, and cron's cue).
COULD_NOT_RUN = 2


class PfsyncCommand(BaseCommand):
    """A pfsync command: ``handle`` may raise SyncAborted or PfsyncError; both exit 2."""

    def execute(self, *args: Any, **options: Any) -> Any:
        """Run the command; a job that could not run is one sentence and exit status 2."""
        try:
            return super().execute(*args, **options)
        except SyncAborted as exc:
            raise CommandError(
                f"{self.command_name()} could not run: {exc}", returncode=COULD_NOT_RUN
            ) from None
        except PfsyncError as exc:
            raise CommandError(str(exc), returncode=COULD_NOT_RUN) from None

    def command_name(self) -> str:
        """The command's name as typed (pf_sync, pf_check...)."""
        return self.__module__.rsplit(".", 1)[-1]
