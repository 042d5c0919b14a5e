"""The admin's fixtures: the suite's Chromium, and a night with failures to look at."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from pfsync_app.jobs.check import check_images
from pfsync_app.jobs.sync import SyncOptions, SyncResult, run_nightly
from pfsync_app.models import PropertyImage, SyncRun, WebhookEvent
from pfsync_app.sandbox import Sandbox

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PASSWORD = "browser-test-password"
NIGHTLY = {"dry_run": False, "only": None, "listing_ids": [], "limit": None, "full": False}


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Debian's chromedriver; fails when either is missing."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: install chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver) to run the admin browser test."
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pfsync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def log_in(browser: Any, live_server: Any, django_user_model: Any) -> None:
    """Create a superuser and log the browser in as it."""
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    submit_login(browser, "boss")


def submit_login(browser: Any, username: str) -> None:
    """Fill in the admin's open login page and wait for the admin index."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The click returns before the next page has loaded: wait for it, not for a fixed time.
    try:
        WebDriverWait(browser, 30).until(lambda b: "Site administration" in b.page_source)
    except TimeoutException:
        pytest.fail(f"the admin index did not open after logging in: {browser.current_url}")


@dataclass
class Night:
    """A night with failures: last night's run, and the sandbox it ran against."""

    sandbox: Sandbox
    result: SyncResult
    gone: list[str]
    forbidden: list[str]

    @property
    def run(self) -> SyncRun:
        """Last night's pf_sync run."""
        return SyncRun.objects.get(pk=self.result.run_id)


def _history(today_start: dt.datetime) -> None:
    """29 nights before last night: steady runs, one night missed, one that could not run."""
    for days_ago in range(29, 0, -1):
        started = today_start - dt.timedelta(days=days_ago)
        if days_ago == 9:
            continue  # the cron job did not run that night
        if days_ago == 4:
            SyncRun.objects.create(
                command="pf_sync",
                status="failed",
                options=NIGHTLY,
                started_at=started,
                finished_at=started + dt.timedelta(seconds=3),
                message="Property Finder refused the credentials (PF_API_KEY/PF_API_SECRET)",
            )
            continue
        SyncRun.objects.create(
            command="pf_sync",
            status="finished_with_errors" if days_ago % 6 == 0 else "succeeded",
            options=NIGHTLY,
            started_at=started,
            finished_at=started + dt.timedelta(minutes=2, seconds=days_ago),
            properties_created=days_ago % 5,
            properties_updated=20 + (days_ago * 7) % 30,
            properties_unpublished=1 if days_ago % 10 == 0 else 0,
            images_downloaded=40 + (days_ago * 13) % 60,
            images_failed=2 if days_ago % 6 == 0 else 0,
            errors=2 if days_ago % 6 == 0 else 0,
        )


@pytest.fixture
def night(settings: Any) -> Iterator[Night]:
    """Last night's pf_sync of 60 listings, 19 of whose images failed (12 HTTP 404, 7 HTTP 403),
    after 29 nights of history; then 3 image files went missing and pf_check found them, and
    two webhook events wait while one has failed."""
    with Sandbox(users=5, listings=60, images_per_listing=2, seed=7, image_bytes=2000) as sb:
        settings.PF_API_URL = sb.url
        settings.PF_API_KEY = sb.api_key
        settings.PF_API_SECRET = sb.api_secret
        settings.PF_MEDIA_ALLOW_PRIVATE_HOSTS = True
        settings.PF_ALERT_EMAILS = ["ops@example.com"]
        settings.PF_ADMIN_BASE_URL = "https://www.example.com/admin/"
        local_midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
        _history(local_midnight)
        urls = [
            image["original"]["url"]
            for raw in sb.data.listings()
            for image in (raw.get("media") or {}).get("images") or []
        ]
        gone, forbidden = urls[:12], urls[12:19]
        for url in gone:
            sb.faults.add_image(url, "404", times=None)
        for url in forbidden:
            sb.faults.add_image(url, "403", times=None)
        result = run_nightly(SyncOptions()).sync
        for n, status in enumerate(["pending", "pending", "failed"]):
            WebhookEvent.objects.create(
                event_id=f"evt-{n}",
                event_type="listing.published",
                entity_type="listing",
                entity_id=f"01JWEBHOOK{n}",
                status=status,
                attempts=10 if status == "failed" else 1,
                last_error="cannot reach the Property Finder API" if status == "failed" else "",
            )
        for image in PropertyImage.objects.order_by("id")[:3]:
            default_storage.delete(image.image)
        check_images()
        yield Night(sb, result, gone, forbidden)
