"""The alert e-mail after a nightly pf_sync that needs a person, through Django's mail.

A nightly pf_sync (not a dry run, not ``--listing``, ``--only`` or ``--limit``;
never a webhook batch) is e-mailed about when it could not run, finished with at
least ``PF_ALERT_MIN_ERRORS`` errors, or unpublished anything. It goes to
``PF_ALERT_EMAILS``, or Django's ``ADMINS`` when that is not set; an empty list
turns alerts off. One e-mail per run at most (``SyncRun.alerted_at``). Sending
never raises: a failed e-mail is logged, and the run's status and the command's
exit status stay what they were.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import DatabaseError
from django.utils import timezone

from pfsync_app.conf import pfsync_settings
from pfsync_app.exceptions import first_line
from pfsync_app.models import SyncRun
from pfsync_app.reports.failures import summarize_failures
from pfsync_app.reports.health import is_nightly
from pfsync_app.reports.summary import COUNTER_LABELS, format_duration, local_datetime_text
from pfsync_app.words import plural

logger = logging.getLogger("pfsync.alerts")

#: Entries shown under each cause in the e-mail.
EXAMPLES = 5


def admin_addresses(admins: Iterable[Any]) -> list[str]:
    """``ADMINS`` as addresses: (name, address) pairs on Django 5.2, plain strings on Django 6."""
    addresses = []
    for admin in admins or ():
        if isinstance(admin, str):
            addresses.append(admin)
        elif isinstance(admin, list | tuple) and len(admin) == 2:
            addresses.append(str(admin[1]))
    return [address for address in addresses if address]


def alert_recipients() -> list[str]:
    """Who is e-mailed: PF_ALERT_EMAILS, else ADMINS; an empty list when alerts are off."""
    configured = pfsync_settings.PF_ALERT_EMAILS
    if configured is not None:
        return [address for address in configured if address]
    return admin_addresses(getattr(settings, "ADMINS", ()))


def alert_reason(run: SyncRun) -> str | None:
    """Why ``run`` needs a person, in a few words ("19 errors"), or None when it does not."""
    if run.command != SyncRun.Command.SYNC or not is_nightly(run.options):
        return None
    if run.status == SyncRun.Status.FAILED:
        return "could not run"
    if run.status not in (SyncRun.Status.SUCCEEDED, SyncRun.Status.FINISHED_WITH_ERRORS):
        return None  # running, interrupted, or skipped because another run held the lock
    reasons = []
    if run.errors and run.errors >= int(pfsync_settings.PF_ALERT_MIN_ERRORS):
        reasons.append(f"{run.errors} error{'s' if run.errors != 1 else ''}")
    if run.properties_unpublished:
        reasons.append(f"{run.properties_unpublished} unpublished")
    if not reasons and int(pfsync_settings.PF_ALERT_MIN_ERRORS) == 0:
        reasons.append("nightly report")
    return ", ".join(reasons) or None


def run_admin_url(run: SyncRun) -> str:
    """The run's page in the admin under PF_ADMIN_BASE_URL, or "" when that is not set."""
    base = str(pfsync_settings.PF_ADMIN_BASE_URL or "").strip()
    if not base:
        return ""
    opts = SyncRun._meta
    return f"{base.rstrip('/')}/{opts.app_label}/{opts.model_name}/{run.pk}/change/"


def site_name() -> str:
    """The site the e-mail is about: PF_ADMIN_BASE_URL's host, else this machine's name."""
    base = str(pfsync_settings.PF_ADMIN_BASE_URL or "")
    try:
        host = urlsplit(base).hostname
    except ValueError:
        host = None
    return host or socket.gethostname()


def alert_subject(run: SyncRun, reason: str) -> str:
    """ "pfsync www.example.com: nightly pf_sync finished with errors (19 errors), run 12"."""
    status = "could not run" if reason == "could not run" else run.get_status_display()
    detail = "" if reason == "could not run" else f" ({reason})"
    return f"pfsync {site_name()}: nightly pf_sync {status}{detail}, run {run.pk}"


def alert_body(run: SyncRun) -> str:
    """What happened, what failed by cause, and where to see the run."""
    lines = [
        f"Nightly pf_sync run {run.pk} on {site_name()}: {run.get_status_display()}.",
        "",
        f"Started:  {local_datetime_text(run.started_at)} ({timezone.get_default_timezone_name()})",
        f"Took:     {format_duration(run.duration)}",
    ]
    if run.status == SyncRun.Status.FAILED:
        lines += [f"It could not run: {run.message}", ""]
    else:
        width = max(len(label) for _, label in COUNTER_LABELS) + 2
        lines += [f"Message:  {run.message or '(none)'}", ""]
        lines += [f"{label + ':':<{width}}{getattr(run, key)}" for key, label in COUNTER_LABELS]
        lines.append("")
    summary = summarize_failures(run, examples=EXAMPLES)
    if summary:
        lines += ["What failed, by cause:", *summary.lines(EXAMPLES), ""]
    if run.properties_unpublished:
        lines += [
            f"{run.properties_unpublished} properties were unpublished: Property Finder no "
            "longer returns their listings.",
            "",
        ]
    url = run_admin_url(run)
    if url:
        lines.append(f"The run in the admin: {url}")
    else:
        lines.append(f"The run in the admin: Runs, run {run.pk} (set PF_ADMIN_BASE_URL for a link)")
    lines.append(f"All its entries: python manage.py pf_report --run {run.pk}")
    return "\n".join(lines) + "\n"


def send_run_alert(run: SyncRun | int | None) -> bool:
    """E-mail about the run if it needs a person, once; True when an e-mail was sent.

    Never raises: whatever goes wrong is logged, and the run is left as it was.
    """
    if run is None:
        return False
    pk = run.pk if isinstance(run, SyncRun) else run
    try:
        run = SyncRun.objects.get(pk=pk)
        reason = alert_reason(run)
        recipients = alert_recipients() if reason else []
        if not reason or not recipients:
            return False
        # Claimed before sending, so two callers never both send: one e-mail per run at most.
        claimed = SyncRun.objects.filter(pk=run.pk, alerted_at__isnull=True).update(
            alerted_at=timezone.now()
        )
        if not claimed:
            return False
        EmailMessage(alert_subject(run, reason), alert_body(run), to=recipients).send()
    except Exception as exc:  # an alert must never change how the run ended
        logger.error("could not send the alert e-mail about run %s: %s", pk, first_line(exc))
        return False
    logger.info("alert e-mail about run %s sent to %s", pk, plural(len(recipients), "recipient"))
    return True


def send_stopped_run_alert(command: str, since: dt.datetime) -> bool:
    """E-mail about the run this process recorded since ``since`` that stopped; never raises.

    A run that fails preflight is recorded without its caller ever seeing it:
    it is found as this process's newest run of ``command``.
    """
    try:
        run = (
            SyncRun.objects.filter(
                command=command,
                pid=os.getpid(),
                hostname=socket.gethostname(),
                started_at__gte=since,
            )
            .order_by("-started_at", "-id")
            .first()
        )
    except DatabaseError as exc:
        # The database that stopped the run is down: the run was not recorded either, and
        # the command's own sentence already says why.
        logger.debug("no %s run to e-mail about: %s", command, first_line(exc))
        return False
    return send_run_alert(run)
