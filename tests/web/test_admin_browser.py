"""The admin in a real browser: log in, read the runs, a run's entries, a property's images."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from pfsync_app.models import Property, PropertyImage, ReportEntry, SyncRun
from tests.web.conftest import log_in


def scroll_to(browser, element_id: str) -> None:
    """Bring an inline into view so the screenshot shows it."""
    from selenium.webdriver.common.by import By

    element = browser.find_element(By.ID, element_id)
    browser.execute_script("arguments[0].scrollIntoView();", element)


@pytest.mark.slow
def test_an_admin_reads_runs_entries_and_property_images_in_a_browser(
    browser, live_server, transactional_db, django_user_model, settings, tmp_path
):
    from selenium.webdriver.common.by import By

    settings.MEDIA_ROOT = tmp_path / "media"
    started = dt.datetime(2026, 1, 18, 19, 0, 5, tzinfo=dt.UTC)
    run = SyncRun.objects.create(
        command="pf_sync",
        status="finished_with_errors",
        started_at=started,
        finished_at=started + dt.timedelta(minutes=3, seconds=12),
        properties_created=4321,
        errors=1,
    )
    ReportEntry.objects.create(run=run, level="info", action="created", message="INFO-created L1")
    ReportEntry.objects.create(run=run, level="error", action="failed", message="ERROR-bad L9")
    now = timezone.now()
    prop = Property.objects.create(
        pf_id="01JBROWSER", title="Browser flat", created_at=now, updated_at=now
    )
    stored = default_storage.save("property_images/b1.jpg", ContentFile(b"\xff\xd8jpeg"))
    PropertyImage.objects.create(property=prop, image=stored, position=1, created_at=now)
    PropertyImage.objects.create(property=prop, image="property_images/gone.jpg", created_at=now)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    log_in(browser, live_server, django_user_model)

    browser.get(f"{live_server.url}/admin/pfsync_app/syncrun/")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "2026-01-19 00:00:05" in body
    assert "4321" in body
    assert "3 min 12 s" in body
    browser.save_screenshot(str(shots / "runs.png"))

    browser.find_element(By.LINK_TEXT, "2026-01-19 00:00:05").click()
    body = browser.find_element(By.TAG_NAME, "body").text
    assert body.index("ERROR-bad L9") < body.index("INFO-created L1")
    scroll_to(browser, "entries-group")
    browser.save_screenshot(str(shots / "run.png"))

    browser.get(f"{live_server.url}/admin/pfsync_app/property/{prop.pk}/change/")
    thumbnails = browser.find_elements(By.CSS_SELECTOR, "img[height='80']")
    assert [img.get_attribute("src") for img in thumbnails] == [
        f"{live_server.url}/media/property_images/b1.jpg"
    ]
    assert "✗ file missing" in browser.find_element(By.TAG_NAME, "body").text
    scroll_to(browser, "images-group")
    browser.save_screenshot(str(shots / "property.png"))

    for name in ("runs.png", "run.png", "property.png"):
        assert (shots / name).stat().st_size > 0
