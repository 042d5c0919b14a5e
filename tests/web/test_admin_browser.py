"""The admin in a real browser, served as the README opens it: `manage.py runserver` with DEBUG off.

pytest-django's ``live_server`` serves static files by itself, so a test on it would see a styled
admin even when the demo host serves none. This one starts the demo host's own runserver in a
real process on 127.0.0.1 with DEBUG off, on a migrated database of its own, and checks that the
admin's stylesheet is applied and a property's thumbnail (media) loads; then it reads the runs, a
run's entries and a property's images.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.faults import PROJECT_DIR, ProcessDatabase, manage, process_env, wait_for
from tests.web.conftest import PASSWORD

# The admin's header background, var(--secondary) in Django's admin/css/base.css (#417690).
ADMIN_HEADER_BACKGROUND = "rgb(65, 118, 144)"

# Run in the server's database by `manage.py shell`: a superuser, a run with two entries, and a
# property with one real 40 × 30 PNG in storage and one image row whose file is gone.
SETUP = textwrap.dedent(
    f"""
    import datetime as dt, io
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone
    from PIL import Image
    from pfsync_app.models import Property, PropertyImage, ReportEntry, SyncRun

    get_user_model().objects.create_superuser("boss", "boss@example.com", {PASSWORD!r})
    started = dt.datetime(2026, 1, 18, 19, 0, 5, tzinfo=dt.UTC)
    run = SyncRun.objects.create(
        command="pf_sync", status="finished_with_errors", started_at=started,
        finished_at=started + dt.timedelta(minutes=3, seconds=12),
        properties_created=4321, errors=1,
    )
    ReportEntry.objects.create(run=run, level="info", action="created", message="INFO-created L1")
    ReportEntry.objects.create(run=run, level="error", action="failed", message="ERROR-bad L9")
    now = timezone.now()
    prop = Property.objects.create(
        pf_id="01JBROWSER", title="Browser flat", created_at=now, updated_at=now
    )
    png = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 80, 40)).save(png, format="PNG")
    stored = default_storage.save("property_images/b1.png", ContentFile(png.getvalue()))
    PropertyImage.objects.create(property=prop, image=stored, position=1, created_at=now)
    PropertyImage.objects.create(property=prop, image="property_images/gone.jpg", created_at=now)
    print(prop.pk)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """True once ``url`` answers with any HTTP status."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ProcessDatabase, int]]:
    """`manage.py runserver --noreload` with DEBUG off on a database with the setup's data:
    (its base URL, the database, the property's id)."""
    db = ProcessDatabase(tmp_path / "server")
    log = (tmp_path / "runserver.log").open("w")
    server = None
    try:
        created = manage(db, "shell", "-c", SETUP, DJANGO_DEBUG="false")
        assert created.returncode == 0, created.stderr
        prop_pk = int(created.stdout.strip().splitlines()[-1])
        url = f"http://127.0.0.1:{free_port()}"
        server = subprocess.Popen(
            [
                sys.executable,
                str(PROJECT_DIR / "manage.py"),
                "runserver",
                "--noreload",
                url.removeprefix("http://"),
            ],
            cwd=PROJECT_DIR,
            env=process_env(db, DJANGO_DEBUG="false"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: server.poll() is not None or answers(f"{url}/admin/login/"),
            timeout=60,
            what="runserver to answer",
        )
        assert server.poll() is None, (tmp_path / "runserver.log").read_text()
        yield url, db, prop_pk
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        db.drop()


def header_background(browser) -> str:
    return browser.execute_script(
        "return getComputedStyle(document.getElementById('header')).backgroundColor"
    )


@pytest.mark.slow
def test_the_admin_served_by_runserver_with_debug_off_is_styled_and_shows_thumbnails(
    browser, served, tmp_path
):
    from selenium.webdriver.common.by import By

    url, _db, prop_pk = served
    shots = tmp_path / "screenshots"
    shots.mkdir()

    browser.get(f"{url}/admin/login/?next=/admin/")
    # The admin's base.css reached the browser and applies: not the browser's transparent default.
    assert header_background(browser) == ADMIN_HEADER_BACKGROUND
    browser.find_element(By.NAME, "username").send_keys("boss")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    assert "Site administration" in browser.page_source

    browser.get(f"{url}/admin/pfsync_app/syncrun/")
    assert header_background(browser) == ADMIN_HEADER_BACKGROUND
    # pfsync's own stylesheet too: the run list's cells stay on one line.
    cell = browser.find_element(By.CSS_SELECTOR, ".model-syncrun #result_list tbody td")
    assert cell.value_of_css_property("white-space") == "nowrap"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "2026-01-19 00:00:05" in body
    assert "4321" in body
    assert "3 min 12 s" in body
    browser.save_screenshot(str(shots / "runs.png"))

    browser.find_element(By.LINK_TEXT, "2026-01-19 00:00:05").click()
    body = browser.find_element(By.TAG_NAME, "body").text
    assert body.index("ERROR-bad L9") < body.index("INFO-created L1")
    browser.execute_script("document.getElementById('entries-group').scrollIntoView();")
    browser.save_screenshot(str(shots / "run.png"))

    browser.get(f"{url}/admin/pfsync_app/property/{prop_pk}/change/")
    thumbnails = browser.find_elements(By.CSS_SELECTOR, "img[height='80']")
    assert [img.get_attribute("src") for img in thumbnails] == [
        f"{url}/media/property_images/b1.png"
    ]
    # The media file was served and decoded: a broken image has a natural width of 0.
    wait_for(
        lambda: browser.execute_script("return arguments[0].complete", thumbnails[0]),
        timeout=10,
        what="the thumbnail to load",
    )
    assert browser.execute_script("return arguments[0].naturalWidth", thumbnails[0]) == 40
    assert "✗ file missing" in browser.find_element(By.TAG_NAME, "body").text
    browser.execute_script("document.getElementById('images-group').scrollIntoView();")
    browser.save_screenshot(str(shots / "property.png"))

    for name in ("runs.png", "run.png", "property.png"):
        assert (shots / name).stat().st_size > 0
