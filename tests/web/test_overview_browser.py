"""Screenshots in the suite's Chromium after a night with failures, at a laptop's 1366 × 768.

The overview says what failed and why without scrolling sideways; the run list shows
every listed column; a run's page wraps its entries' messages in full, under one header.
The screenshots are kept under the test's temporary folder (pytest --basetemp=DIR).
"""

from __future__ import annotations

import pytest

from tests.web.conftest import log_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDTH, HEIGHT = 1366, 768


def laptop(browser, height: int = HEIGHT) -> None:
    """A 1366-pixel-wide viewport, ``height`` tall, at a device scale of 1."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def whole_page(browser, path) -> None:
    """A screenshot of the whole page at the laptop's width."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    laptop(browser, max(HEIGHT, height))
    browser.save_screenshot(str(path))
    laptop(browser)


def scrolls_sideways(browser) -> bool:
    """Whether the page, or a changelist's table in it, is wider than the screen."""
    return browser.execute_script(
        """
        const results = document.querySelector('#changelist .results');
        const page = document.documentElement;
        return page.scrollWidth > window.innerWidth
            || (results !== null && results.scrollWidth > results.clientWidth);
        """
    )


def text_of(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def test_after_a_night_with_failures_the_overview_says_what_failed_and_why_on_one_page(
    browser, live_server, night, django_user_model, tmp_path
):
    from selenium.webdriver.common.by import By

    shots = tmp_path / "screenshots"
    shots.mkdir()
    log_in(browser, live_server, django_user_model)
    laptop(browser)

    browser.get(f"{live_server.url}/admin/")
    first = browser.find_element(By.CSS_SELECTOR, "#content-main .app-pfsync_app th[scope=row] a")
    assert first.text == "Overview"
    first.click()

    text = text_of(browser)
    run = night.run
    assert "19 images failed: 12 HTTP 404, 7 HTTP 403" in run.message
    assert "Last night's sync" in text
    assert f"run {run.pk}" in text
    assert "12 HTTP 404" in text and "7 HTTP 403" in text
    assert "3 image files missing or damaged (3 missing)" in text
    assert "2 pending" in text and "1 failed" in text
    assert "Schedule healthy" in text  # last night ran, whatever failed in it
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.pf-chart rect.pf-images")
    assert len(bars) == 28  # one night missed, one could not run: no images
    assert browser.find_elements(By.CSS_SELECTOR, "svg.pf-chart text.pf-failed")
    assert not scrolls_sideways(browser)
    # The README's claim: the first screen shows last night's run and what failed.
    failed = browser.find_element(By.CSS_SELECTOR, "#pf-last-sync ul.pf-failures")
    assert failed.rect["y"] < HEIGHT
    whole_page(browser, shots / "overview.png")
    browser.save_screenshot(str(shots / "overview-first-screen.png"))

    link = browser.find_element(By.PARTIAL_LINK_TEXT, "12 HTTP 404")
    link.click()
    listed = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(listed) == 12
    assert f"Report entries of run {run.pk}" in text_of(browser)
    assert not scrolls_sideways(browser)
    browser.save_screenshot(str(shots / "entries-http-404.png"))

    browser.get(f"{live_server.url}/admin/pfsync_app/syncrun/")
    headers = browser.find_elements(By.CSS_SELECTOR, "#result_list thead th")
    assert [h.text.lower() for h in headers] == [
        "started",
        "command",
        "status",
        "duration",
        "created",
        "updated",
        "images failed",
        "errors",
    ]
    assert not scrolls_sideways(browser)
    results = browser.find_element(By.CSS_SELECTOR, "#changelist .results")
    right = results.rect["x"] + results.rect["width"]
    for header in headers:
        assert header.rect["x"] + header.rect["width"] <= right + 1, header.text  # subpixels
    assert not scrolls_sideways(browser)
    status = browser.find_element(By.CSS_SELECTOR, "#result_list tbody td.field-status_short span")
    assert "19 images failed: 12 HTTP 404, 7 HTTP 403" in status.get_attribute("title")
    browser.save_screenshot(str(shots / "runs.png"))

    browser.find_element(By.LINK_TEXT, "pf_check").click()
    assert "pf_check" in browser.find_element(By.CSS_SELECTOR, "#result_list tbody").text
    assert "pf_sync" not in browser.find_element(By.CSS_SELECTOR, "#result_list tbody").text

    browser.get(f"{live_server.url}/admin/pfsync_app/syncrun/{run.pk}/change/")
    entries = browser.find_element(By.ID, "entries-group")
    assert len(entries.find_elements(By.TAG_NAME, "thead")) == 1
    assert not browser.find_elements(By.CSS_SELECTOR, "#entries-group td.original, p.original")
    messages = entries.find_elements(By.CSS_SELECTOR, "td.pf-message")
    longest = max(messages, key=lambda cell: len(cell.text))
    assert longest.size["height"] > 20, "a long message wraps onto more lines"
    assert longest.rect["x"] + longest.rect["width"] <= WIDTH
    failed = entries.find_elements(By.XPATH, ".//tr[td[2]='image.failed']//td[4]//a")
    assert len(failed) == 19, "every failed image links its property"
    assert not scrolls_sideways(browser)
    browser.execute_script("arguments[0].scrollIntoView();", entries)
    browser.save_screenshot(str(shots / "run.png"))
    whole_page(browser, shots / "run-whole.png")

    for name in ("overview.png", "entries-http-404.png", "runs.png", "run.png"):
        assert (shots / name).stat().st_size > 0


def right_edge(browser, selector: str) -> float:
    """The right edge of the widest element matching ``selector``, in CSS pixels."""
    return browser.execute_script(
        "return Math.max(0, ...[...document.querySelectorAll(arguments[0])]"
        ".map(e => e.getBoundingClientRect().right))",
        selector,
    )


def test_at_1366_by_850_lists_and_pages_fit_the_width_with_one_time_format(
    browser, live_server, night, django_user_model, tmp_path
):
    import re

    from selenium.webdriver.common.by import By

    from pfsync_app.models import Property, PropertyImage, ReportEntry

    shots = tmp_path / "screenshots"
    shots.mkdir()
    log_in(browser, live_server, django_user_model)
    laptop(browser, 850)
    run = night.run
    ReportEntry.objects.create(
        run=run, level="warning", action="image.too_small", message="WARNING-image too small"
    )
    pictured = PropertyImage.objects.order_by("id").first()
    PropertyImage.objects.filter(pk=pictured.pk).update(
        source_url="https://images.example.com/" + "long-path-segment-" * 12 + "photo.jpg"
    )
    listing = Property.objects.get(pk=pictured.property_id)
    times = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    elsewise = re.compile(r"\b(a\.m\.|p\.m\.|midnight|noon)|[A-Z][a-z]{2}\. \d")

    browser.get(f"{live_server.url}/admin/pfsync_app/syncrun/{run.pk}/change/")
    levels = browser.find_elements(By.CSS_SELECTOR, "table.pf-entry-table td:first-child strong")
    warning = next(cell for cell in levels if cell.text == "warning")
    error = next(cell for cell in levels if cell.text == "error")
    assert warning.size["height"] == error.size["height"], "'warning' stays on one line"
    browser.execute_script("arguments[0].scrollIntoView();", warning)
    browser.save_screenshot(str(shots / "run-level.png"))

    for name, path in (
        ("properties", "/admin/pfsync_app/property/"),
        ("entries", "/admin/pfsync_app/reportentry/"),
        ("runs-all", "/admin/pfsync_app/syncrun/?command=all"),
        ("events", "/admin/pfsync_app/webhookevent/"),
    ):
        browser.get(live_server.url + path)
        browser.save_screenshot(str(shots / f"{name}.png"))
        assert not scrolls_sideways(browser), name
        assert right_edge(browser, "#result_list th, #result_list td") <= WIDTH, name
        text = text_of(browser)
        assert not elsewise.search(text), (name, elsewise.search(text))
        assert name == "entries" or times.search(text), name  # entries show no time

    browser.get(f"{live_server.url}/admin/pfsync_app/property/{listing.pk}/change/")
    assert not scrolls_sideways(browser)
    assert right_edge(browser, "#images-group td, #images-group th") <= WIDTH
    text = text_of(browser)
    assert not elsewise.search(text), elsewise.search(text)
    assert times.search(text)
    labels = [label.text for label in browser.find_elements(By.CSS_SELECTOR, "fieldset label")]
    assert len(labels) == len(set(labels)), labels  # each date-time once
    browser.execute_script("document.getElementById('images-group').scrollIntoView();")
    browser.save_screenshot(str(shots / "property.png"))
    whole_page(browser, shots / "property-whole.png")
