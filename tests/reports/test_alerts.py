"""The alert e-mail: after a nightly pf_sync that needs a person, once, through Django's mail.

Django's test runner swaps in the locmem e-mail backend: every e-mail lands in
``mail.outbox``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from pfsync_app.jobs.sync import SyncOptions, run_nightly
from pfsync_app.models import SyncRun
from pfsync_app.reports.alerts import admin_addresses, alert_recipients, send_run_alert
from pfsync_app.reports.causes import Cause
from pfsync_app.reports.recorder import RunRecorder

pytestmark = pytest.mark.django_db

NIGHTLY = {"dry_run": False, "only": None, "listing_ids": [], "limit": None}


def use_mail_backend(settings, backend: str) -> None:
    """Send through ``backend``: the default mailer of MAILERS on Django 6.1 and newer (which
    deprecates EMAIL_BACKEND), EMAIL_BACKEND before."""
    if hasattr(django_settings, "MAILERS"):
        settings.MAILERS = {"default": {"BACKEND": backend}}
    else:
        settings.EMAIL_BACKEND = backend


class BrokenBackend(BaseEmailBackend):
    """An e-mail backend whose server refuses every message."""

    def send_messages(self, email_messages):
        raise ConnectionRefusedError(111, "Connection refused")


@pytest.fixture(autouse=True)
def _recipients(settings):
    settings.PF_ALERT_EMAILS = ["ops@example.com"]
    settings.PF_ADMIN_BASE_URL = "https://www.example.com/admin/"


def finished(command: str = "pf_sync", options=None, **counters) -> SyncRun:
    """A finished run with image failures as counted by ``errors``."""
    with RunRecorder.start(command, options=NIGHTLY if options is None else options) as recorder:
        for name, value in counters.items():
            if name != "errors":
                recorder.count(name, value)
        for n in range(counters.get("errors", 0)):
            recorder.count("images_failed")
            recorder.error(
                "image.failed",
                f"image {n}: HTTP 404",
                pf_id=f"01J{n}",
                cause=Cause("http_status", 404),
                url=f"https://img.example/{n}.jpg",
            )
    return SyncRun.objects.get(pk=recorder.run.pk)


def test_a_nightly_run_with_errors_sends_one_e_mail_with_failures_by_cause_and_a_link():
    run = finished(properties_created=60, errors=2)

    assert send_run_alert(run) is True

    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.subject == (
        f"pfsync www.example.com: nightly pf_sync finished with errors (2 errors), run {run.pk}"
    )
    assert "Properties created:     60" in message.body
    assert "What failed, by cause:\n2 images failed: HTTP 404\n" in message.body
    assert "  HTTP 404: listing 01J0: https://img.example/0.jpg" in message.body
    assert (
        f"The run in the admin: https://www.example.com/admin/pfsync_app/syncrun/{run.pk}/change/"
        in message.body
    )
    assert f"python manage.py pf_report --run {run.pk}" in message.body


def test_a_run_is_e_mailed_about_once_at_most():
    run = finished(errors=1)

    sent = [send_run_alert(run), send_run_alert(run.pk)]

    assert sent == [True, False]
    assert len(mail.outbox) == 1
    assert SyncRun.objects.get(pk=run.pk).alerted_at is not None


def test_a_run_below_the_error_threshold_is_not_e_mailed_about(settings):
    settings.PF_ALERT_MIN_ERRORS = 3

    assert send_run_alert(finished(errors=2)) is False
    assert send_run_alert(finished(errors=3)) is True
    assert len(mail.outbox) == 1


def test_a_clean_run_is_not_e_mailed_about_unless_every_run_is_asked_for(settings):
    assert send_run_alert(finished(properties_updated=4)) is False

    settings.PF_ALERT_MIN_ERRORS = 0
    assert send_run_alert(finished(properties_updated=4)) is True
    assert "(nightly report)" in mail.outbox[0].subject


def test_a_run_that_unpublished_anything_is_e_mailed_about_without_errors():
    run = finished(properties_unpublished=5)

    assert send_run_alert(run) is True
    assert "(5 unpublished)" in mail.outbox[0].subject
    assert "5 properties were unpublished" in mail.outbox[0].body


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("pf_sync", {**NIGHTLY, "dry_run": True}),
        ("pf_sync", {**NIGHTLY, "listing_ids": ["01JA"]}),
        ("pf_sync", {**NIGHTLY, "only": "users"}),
        ("pf_sync", {**NIGHTLY, "limit": 5}),
        ("pf_webhooks", {"trigger": "webhook"}),
        ("pf_repair", {"dry_run": False}),
    ],
    ids=["dry run", "--listing", "--only", "--limit", "webhook batch", "pf_repair"],
)
def test_only_nightly_syncs_are_e_mailed_about(command, options):
    run = finished(command, options, errors=3)

    assert send_run_alert(run) is False
    assert mail.outbox == []


def test_a_start_refused_by_the_lock_is_not_e_mailed_about():
    RunRecorder.record_refused("pf_sync", NIGHTLY, "another pf_sync is running", "skipped")

    assert send_run_alert(SyncRun.objects.get()) is False


def test_without_alert_addresses_the_admins_are_e_mailed_and_an_empty_list_is_off(settings):
    del settings.PF_ALERT_EMAILS
    settings.ADMINS = [("Ops", "ops@example.com"), ("Lead", "lead@example.com")]
    assert alert_recipients() == ["ops@example.com", "lead@example.com"]

    settings.ADMINS = []
    assert send_run_alert(finished(errors=1)) is False

    settings.ADMINS = ["ops@example.com"]
    settings.PF_ALERT_EMAILS = []
    assert send_run_alert(finished(errors=1)) is False
    assert mail.outbox == []


def test_admins_are_read_as_django_5_2_pairs_and_as_django_6_strings():
    assert admin_addresses([("Ops", "ops@example.com")]) == ["ops@example.com"]
    assert admin_addresses(["ops@example.com", "lead@example.com"]) == [
        "ops@example.com",
        "lead@example.com",
    ]
    assert admin_addresses([]) == []


def test_a_failed_e_mail_is_logged_and_the_run_is_left_as_it_was(settings, caplog):
    use_mail_backend(settings, f"{__name__}.BrokenBackend")
    run = finished(errors=1)

    with caplog.at_level(logging.ERROR, logger="pfsync.alerts"):
        assert send_run_alert(run) is False

    assert f"could not send the alert e-mail about run {run.pk}: " in caplog.text
    after = SyncRun.objects.get(pk=run.pk)
    assert (after.status, after.errors, after.message) == (run.status, run.errors, run.message)


def test_without_an_admin_address_the_e_mail_names_the_run(settings):
    settings.PF_ADMIN_BASE_URL = ""
    run = finished(errors=1)

    send_run_alert(run)

    assert f"The run in the admin: Runs, run {run.pk} (set PF_ADMIN_BASE_URL" in mail.outbox[0].body


# ---------------------------------------------------------------------------
# After a real nightly run
# ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_nightly_sync_with_a_failed_image_ends_with_one_e_mail(sandbox_settings):
    sb = sandbox_settings
    raw = next(r for r in sb.data.listings() if (r.get("media") or {}).get("images"))
    sb.faults.add_image(raw["media"]["images"][0]["original"]["url"], "404", times=None)

    result = run_nightly(SyncOptions())

    assert result.exit_code == 1
    [message] = mail.outbox
    assert f"run {result.sync.run_id}" in message.subject
    assert "1 image failed: HTTP 404" in message.body


@pytest.mark.django_db(transaction=True)
def test_a_nightly_sync_that_could_not_run_is_e_mailed_about(sandbox_settings, settings):
    from pfsync_app.exceptions import SyncAborted

    settings.PF_API_SECRET = "not-the-secret"

    with pytest.raises(SyncAborted):
        run_nightly(SyncOptions())

    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.FAILED
    [message] = mail.outbox
    assert message.subject.endswith(f"nightly pf_sync could not run, run {run.pk}")
    assert f"It could not run: {run.message}" in message.body
    assert "not-the-secret" not in message.body


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_sends_nothing_and_a_broken_mail_server_changes_no_exit_code(
    sandbox_settings, settings
):
    sb = sandbox_settings
    raw = next(r for r in sb.data.listings() if (r.get("media") or {}).get("images"))
    sb.faults.add_image(raw["media"]["images"][0]["original"]["url"], "404", times=None)

    assert run_nightly(SyncOptions(dry_run=True)).exit_code == 0
    assert mail.outbox == []

    use_mail_backend(settings, f"{__name__}.BrokenBackend")
    result = run_nightly(SyncOptions())
    assert result.exit_code == 1
    run = SyncRun.objects.get(pk=result.sync.run_id)
    assert run.status == SyncRun.Status.FINISHED_WITH_ERRORS
    assert run.alerted_at is not None


def test_the_alert_names_when_the_run_started_in_the_sites_time_zone():
    started = dt.datetime(2026, 1, 18, 19, 0, 5, tzinfo=dt.UTC)
    run = finished(errors=1)
    SyncRun.objects.filter(pk=run.pk).update(
        started_at=started, finished_at=started + dt.timedelta(minutes=3, seconds=12)
    )

    send_run_alert(run.pk)

    body = mail.outbox[0].body
    assert f"Started:  2026-01-19 00:00:05 ({timezone.get_default_timezone_name()})" in body
    assert "Took:     3 min 12 s" in body


def test_the_bundled_project_sends_alerts_through_email_url():
    code = (
        "import django;django.setup();from django.conf import settings as s;"
        # Django 6.1 and newer: the default mailer of MAILERS; before: the EMAIL_* settings.
        "m=s.MAILERS['default']['OPTIONS'] if hasattr(s, 'MAILERS') else"
        " {'host': s.EMAIL_HOST, 'port': s.EMAIL_PORT, 'use_tls': s.EMAIL_USE_TLS};"
        "print(m['host'], m['port'], m['use_tls'], s.DEFAULT_FROM_EMAIL,"
        " s.PF_ALERT_EMAILS, sep='|')"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project_settings.settings",
        "EMAIL_URL": "smtp+tls://pfsync:mail-password@smtp.example.com:587",
        "DEFAULT_FROM_EMAIL": "pfsync@example.com",
        "PF_ALERT_EMAILS": "ops@example.com, lead@example.com",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split("|") == [
        "smtp.example.com",
        "587",
        "True",
        "pfsync@example.com",
        "['ops@example.com', 'lead@example.com']",
    ]


def test_the_mail_password_is_kept_out_of_logs_and_entries(settings):
    from pfsync_app.reports.logs import redact

    if hasattr(django_settings, "MAILERS"):
        settings.MAILERS = {
            "default": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {"host": "smtp.example.com", "password": "smtp-password-123"},
            }
        }
    else:
        settings.EMAIL_HOST_PASSWORD = "smtp-password-123"

    assert redact("SMTP AUTH smtp-password-123 refused") == "SMTP AUTH [redacted] refused"
