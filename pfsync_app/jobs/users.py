"""The users stage: PF users (agents) into the host's user table, and what each save did.

Shared by the nightly sync (page by page) and the webhook batch (one user of a
``user.*`` event).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from pfsync_app.atlas import records
from pfsync_app.exceptions import RecordRejected, first_line
from pfsync_app.hostmap import host_map
from pfsync_app.mapping import UserValues, map_user
from pfsync_app.reports.causes import Cause
from pfsync_app.reports.recorder import RunRecorder
from pfsync_app.writers.outcomes import CREATED, UPDATED, UserOutcome
from pfsync_app.writers.users import id_problem, save_user, unchanged_users


def record_user_outcome(
    recorder: RunRecorder,
    user_id: int,
    values: UserValues,
    outcome: UserOutcome,
    why: str = "",
) -> None:
    """Count a saved user and give it a report entry (``why``: what caused the sync)."""
    for warning in outcome.warnings:
        recorder.warning("user.warning", warning, pf_id=str(user_id))
    if outcome.action == CREATED:
        recorder.count("users_created")
        message = f"{values.fields['email'] or user_id} created"
    elif outcome.action == UPDATED:
        recorder.count("users_updated")
        message = "; ".join(outcome.changes)
    else:
        return
    recorder.info(
        f"user.{outcome.action}",
        f"{message} ({why})" if why else message,
        pf_id=str(user_id),
        object_type="user",
        object_id=outcome.agent_id,
    )


class UserStage:
    """Saves pages of users; what failed goes to ``failures``, dry-run changes to ``changes``."""

    def __init__(
        self,
        recorder: RunRecorder,
        *,
        dry_run: bool = False,
        failures: list[str],
        changes: list[str],
        now: datetime | None = None,
    ) -> None:
        self.recorder = recorder
        self.dry_run = dry_run
        self.failures = failures
        self.changes = changes
        self.now = now or timezone.now()

    def save(self, users: list[records.User], advance: Callable[[], None]) -> None:
        """Save one page's users; ``advance()`` is called once per user done."""
        extra = host_map()["user"].extra
        mapped = []
        for user in users:
            values = map_user(user, extra)
            # An id no column can hold fails its user here, before a query names it.
            problem = id_problem(values)
            if problem is None:
                mapped.append(values)
                continue
            self.recorder.error(
                "user.failed", problem, pf_id=str(user.id), cause=Cause("invalid_record")
            )
            self.failures.append(f"user {user.id}: {problem}")
            advance()
        # One query tells which users are already up to date: they cost nothing more.
        unreadable: list = []
        unchanged = unchanged_users(mapped, unreadable)
        for pf_user_id, cell in unreadable:
            # That user fails, named by the value; the row, read with it as None,
            # disagrees and is written over when pfsync owns the column.
            self.recorder.error("user.failed", cell.message, pf_id=str(pf_user_id))
            self.failures.append(f"user {pf_user_id}: {cell.message}")
        for values in mapped:
            user = values.record
            if user.id in unchanged and not values.warnings:
                advance()
                continue
            try:
                outcome = save_user(values, dry_run=self.dry_run, now=self.now)
            except (OperationalError, InterfaceError):
                raise
            except (DatabaseError, RecordRejected) as exc:
                message = first_line(exc)
                self.recorder.error("user.failed", message, pf_id=str(user.id))
                self.failures.append(f"user {user.id}: {message}")
                continue
            record_user_outcome(self.recorder, user.id, values, outcome)
            if self.dry_run and outcome.action == UPDATED:
                self.changes.append(f"user {user.id}: " + "; ".join(outcome.changes))
            advance()
