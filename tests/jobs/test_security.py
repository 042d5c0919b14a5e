"""Security through whole syncs: image URL policy, storage names, secrets, log-in, privileges."""

from __future__ import annotations

import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from pfsync_app.exceptions import SyncAborted
from pfsync_app.jobs.sync import SyncOptions, run_sync
from pfsync_app.models import Agent, Property, PropertyImage, ReportEntry, SyncRun
from pfsync_app.reports.logs import redact, redact_text
from pfsync_app.sandbox import Sandbox
from tests.fixtures.faults import SMALL, FastClient, OnFirstPage, entries, media_root

pytestmark = pytest.mark.django_db(transaction=True)

STORED_NAME = re.compile(r"property_images/[0-9a-f]{32}\.(jpg|png|gif|webp)")


def sync(sb, progress=None, **options):
    """A sync of the sandbox with a client that never sleeps."""
    client = FastClient(sb, per_page=4)
    try:
        return run_sync(SyncOptions(**options), client=client, progress=progress)
    finally:
        client.close()


def test_without_the_private_hosts_setting_local_images_are_refused_and_listings_saved(
    sandbox_settings, settings
):
    sb = sandbox_settings
    settings.PF_MEDIA_ALLOW_PRIVATE_HOSTS = False

    result = sync(sb)

    assert result.exit_code == 1
    assert Property.objects.count() == len(sb.data.listings())
    assert not PropertyImage.objects.exists()
    assert not [r for r in sb.requests if r.path.startswith("/images/")]
    refused = entries(result.run_id, level="error", action="image.failed")
    images = sum(len((r.get("media") or {}).get("images") or []) for r in sb.data.listings())
    assert len(refused) == images
    assert all("(blocked_url)" in e.message and "refused" in e.message for e in refused)
    assert not list(media_root().rglob("*.jpg")) and not list(media_root().rglob("*.png"))


class AnyPathImageHost:
    """An image host on 127.0.0.1 answering every path with the same PNG (weird names welcome)."""

    def __init__(self, body: bytes, content_type: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AnyPathImageHost:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_storage_names_come_from_a_uuid_and_the_sniffed_type_never_from_the_url(
    sandbox_settings, tmp_path
):
    sb = sandbox_settings
    raw = sb.data.listings()[0]
    png_url = next(
        image["original"]["url"]
        for listing in sb.data.listings()
        for image in (listing.get("media") or {}).get("images") or []
        if image["original"]["url"].endswith(".png")
    )
    body = sb.data.image_bytes(png_url)
    with AnyPathImageHost(body, "image/jpeg") as host:
        urls = [
            f"{host.url}/../../../pfsync-escape/passwd.jpg",
            f"{host.url}/%2e%2e%2f%2e%2e%2fpfsync-escape%2fshadow.jpg",
            f"{host.url}/photo.php?name=../../pfsync-escape.exe",
        ]
        sb.data.update_listing(
            raw["id"],
            **{"media.images": [{"original": {"url": u, "width": 1, "height": 1}} for u in urls]},
        )
        result = sync(sb, listing_ids=[raw["id"]])

    assert result.exit_code == 0, result.failures
    names = list(PropertyImage.objects.values_list("image", flat=True))
    assert len(names) == 3
    assert all(STORED_NAME.fullmatch(name) and name.endswith(".png") for name in names)
    for name in names:
        assert (media_root() / name).read_bytes() == body
    assert not list(tmp_path.rglob("*pfsync-escape*"))
    assert not list(Path(media_root()).parent.parent.rglob("*pfsync-escape*"))


SECRET = "Distinctive-Secret-0f9a7c2e61b4"


@pytest.fixture
def secret_sandbox(settings, tmp_path):
    """A sandbox with a distinctive API secret, pfsync pointed at it, a report file."""
    with Sandbox(**SMALL, api_secret=SECRET) as sb:
        settings.PF_API_URL = sb.url
        settings.PF_API_KEY, settings.PF_API_SECRET = sb.api_key, SECRET
        settings.PF_MEDIA_ALLOW_PRIVATE_HOSTS = True
        settings.REPORT_FILE = str(tmp_path / "reports" / "pfsync-report.txt")
        yield sb


def test_the_secret_and_tokens_appear_in_no_log_entry_report_file_run_or_admin_page(
    secret_sandbox, settings, admin_client, caplog
):
    sb = secret_sandbox
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pfsync")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(logging.DEBUG)
    pfsync_logger = logging.getLogger("pfsync")
    pfsync_logger.addHandler(keep)
    logging.getLogger().addHandler(keep)
    try:
        sb.faults.add("/v1/listings?page=2", "status", status=401, times=1)
        sb.faults.add("/v1/listings?page=3", "status", status=500, times=None)
        bad = next(
            raw["media"]["images"][0]["original"]["url"]
            for raw in sb.data.listings()
            if (raw.get("media") or {}).get("images")
        )
        sb.faults.add_image(bad, "404")
        first = sync(sb)
        sb.faults.clear()
        with pytest.raises(SyncAborted) as aborted:
            sync(sb, progress=OnFirstPage(sb.faults.revoke_credentials))
    finally:
        pfsync_logger.removeHandler(keep)
        logging.getLogger().removeHandler(keep)

    tokens = list(sb.tokens._expiry)
    assert len(tokens) >= 2 and first.exit_code == 1
    texts = [str(aborted.value), caplog.text]
    texts += [f"{r.getMessage()} {r.exc_text or ''}" for r in records]
    texts += list(ReportEntry.objects.values_list("message", flat=True))
    texts += list(SyncRun.objects.values_list("message", flat=True))
    texts.append(Path(settings.REPORT_FILE).read_text())
    for run in SyncRun.objects.all():
        texts.append(admin_client.get(reverse("admin:pfsync_app_syncrun_change", args=[run.pk])))
    texts.append(admin_client.get(reverse("admin:pfsync_app_syncrun_changelist")))
    texts.append(admin_client.get(reverse("admin:pfsync_app_reportentry_changelist")))
    pages = [t for t in texts if not isinstance(t, str)]
    assert all(page.status_code == 200 for page in pages)
    texts = [t if isinstance(t, str) else t.content.decode() for t in texts]
    everything = "\n".join(texts)
    assert "HTTP 404" in everything and "401" in everything and "attempts over" in everything
    assert SECRET not in everything
    for token in tokens:
        assert token not in everything
        assert token.split(".")[-1] not in everything


def test_database_passwords_in_messages_are_redacted_by_the_run_recorder_and_the_log_filter(
    settings,
):
    password = "Hunter2-db-password-77"
    dsn_text = (
        f"could not connect: postgres://pfsync:{password}@db.internal:5432/site "
        f"(dbname=site user=pfsync password={password} host=db.internal)"
    )
    for cleaned in (redact(dsn_text), redact_text(dsn_text)):
        assert password not in cleaned
        assert "db.internal" in cleaned
    settings.PF_API_SECRET = SECRET
    assert SECRET not in redact(f"token request with apiSecret {SECRET} failed")


def test_users_pfsync_creates_cannot_log_in_and_are_never_staff(sandbox_settings, client):
    sb = sandbox_settings
    users = sb.data.users()
    sb.data.update_user(users[0]["id"], **{"role.baseRoleKey": "admin"})

    result = sync(sb, only="users")

    assert result.exit_code == 0, result.failures
    User = get_user_model()
    created = User.objects.filter(pf_user_id__isnull=False)
    assert created.count() == len(users)
    for user in created:
        assert not user.has_usable_password()
        for guess in ("", "!", user.password, user.username, user.email, "password"):
            assert not user.check_password(guess)
            assert not client.login(username=user.username, password=guess)
        assert not user.is_staff and not user.is_superuser
    assert Agent.objects.get(pf_user_id=users[0]["id"]).role == "admin"


def test_a_host_staff_user_linked_by_e_mail_keeps_his_password_and_flags(sandbox_settings):
    sb = sandbox_settings
    pf_user = sb.data.users()[1]
    User = get_user_model()
    boss = User.objects.create_superuser(
        username="boss", email=pf_user["email"].upper(), password="keep-me-123"
    )
    clerk = User.objects.create_user(
        username="clerk", email="clerk@example.com", password="clerk-pass-456"
    )
    hashes = (boss.password, clerk.password)

    result = sync(sb, only="users")
    again = sync(sb, only="users", full=True)

    assert result.exit_code == again.exit_code == 0
    boss.refresh_from_db()
    clerk.refresh_from_db()
    assert boss.pf_user_id == pf_user["id"]
    assert (boss.is_staff, boss.is_superuser, boss.is_active) == (True, True, True)
    assert (boss.password, clerk.password) == hashes
    assert boss.check_password("keep-me-123") and clerk.check_password("clerk-pass-456")
    assert not clerk.is_staff and clerk.pf_user_id is None
    assert User.objects.filter(is_staff=True).count() == 1
