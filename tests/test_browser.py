"""The HTML reports in a real browser: headless Chromium through Selenium and chromedriver.

Each report kind is opened from a ``file://`` URL: no console error, no request other than
``file:``/``data:``, the key content visible (the zzhc.vnet.cn flow, the diff headline, the
registration app first in the matrix), the filter box and severity select hide rows, the column
headers sort (by keyboard too) and set ``aria-sort``, printing opens collapsed sections and hides
the controls. The reports of a HOSTILE build (see ``test_render_html.py``) never run its script:
``window.__xss`` stays undefined and no dialog opens, after load and after every control has
been used. A full-page screenshot of each report is kept in ``test-artifacts/``.

Chromium and chromedriver come from Debian (``chromium``, ``chromium-driver``), Selenium from PyPI;
Selenium Manager is never used (the driver path is given), so nothing is downloaded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from test_render_html import (
    AUTOREG,
    FEB,
    HOSTILE_DISPLAY_ID,
    HOSTILE_LABEL,
    PRE,
    render_all,
    scan_all,
)

from fwscan.compare import diff

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts"
SETUP = (
    "run `make setup` (it needs the Debian packages chromium and chromium-driver and the "
    "PyPI package selenium)"
)
WIDTH, HEIGHT = 1280, 900

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select
except ImportError:  # reported by the fixture, as a failure
    webdriver = None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    if webdriver is None:
        pytest.fail(f"selenium is not installed: {SETUP}")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            pytest.fail(f"{path} is missing: {SETUP}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def reports(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every report kind written to a file; plus the diff headline under ``"headline"``."""
    results = scan_all(samples, tmp_path_factory.mktemp("hostile"))
    out = tmp_path_factory.mktemp("reports")
    paths = {}
    for name, text in render_all(results).items():
        path = out / f"{name}.html"
        path.write_text(text, encoding="utf-8")
        paths[name] = path
    headline = out / "headline.txt"
    headline.write_text(diff(results[PRE], results[FEB]).headline, encoding="utf-8")
    paths["headline"] = headline
    return paths


# -- helpers ----------------------------------------------------------------------------------


def open_report(driver: WebDriver, path: Path) -> None:
    """Load a report from its file:// URL, with fresh logs."""
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(path.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


def check_clean(driver: WebDriver) -> None:
    """No console error or warning; no request but the page itself and data: URLs."""
    messages = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert messages == []
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert all(u.startswith(("file:", "data:")) for u in urls), urls


def check_no_xss(driver: WebDriver) -> None:
    """The hostile build's script never ran."""
    with pytest.raises(NoAlertPresentException):
        _ = driver.switch_to.alert.text
    assert driver.execute_script("return typeof window.__xss") == "undefined"


def shown_rows(driver: WebDriver, table_id: str) -> list[str]:
    """The text of the body rows a reader sees."""
    rows: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' > tbody > tr'))"
        ".filter(function (r) { return r.getClientRects().length > 0; })"
        ".map(function (r) { return r.innerText; });",
        table_id,
    )
    return rows


def column(driver: WebDriver, table_id: str, index: int) -> list[str]:
    """The text of one column in the visible rows."""
    cells: list[str] = driver.execute_script(
        "var index = arguments[1];"
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' > tbody > tr'))"
        ".filter(function (r) { return r.getClientRects().length > 0; })"
        ".map(function (r) { return r.cells[index].innerText.trim(); });",
        table_id,
        index,
    )
    return cells


def type_filter(driver: WebDriver, table_id: str, text: str) -> None:
    """Replace the filter text of a table, as a user types it."""
    box = driver.find_element(By.ID, f"{table_id}-q")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def sort_button(driver: WebDriver, table_id: str, label: str) -> Any:
    """The sort button of one column header."""
    return driver.find_element(
        By.XPATH, f"//table[@id='{table_id}']/thead/tr/th/button[normalize-space(.)='{label}']"
    )


def aria_sort(button: Any) -> str | None:
    """The ``aria-sort`` of the header holding a sort button."""
    value: str | None = button.find_element(By.XPATH, "..").get_attribute("aria-sort")
    return value


def screenshot(driver: WebDriver, name: str) -> Path:
    """A full-page PNG in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], 16000),
                "scale": 1,
            },
        },
    )
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes().startswith(b"\x89PNG")
    return path


# -- the reports ------------------------------------------------------------------------------


def test_scan_report(browser: WebDriver, reports: dict[str, Path]) -> None:
    open_report(browser, reports["scan"])
    check_clean(browser)
    first = browser.find_element(
        By.XPATH,
        "//section[@id='summary']//table[contains(caption, 'network or SMS')]/tbody/tr[1]",
    )
    assert first.is_displayed()
    assert AUTOREG in first.text
    assert "zzhc.vnet.cn" in first.text
    assert first.location["y"] < 3 * HEIGHT

    # The filter box hides rows that do not match; the status line says how many are shown.
    assert len(shown_rows(browser, "flows-table")) == 3
    type_filter(browser, "flows-table", "weather")
    rows = shown_rows(browser, "flows-table")
    assert len(rows) == 1
    assert "com.hmdglobal.weather" in rows[0]
    status = browser.find_element(By.CSS_SELECTOR, "[data-table='flows-table'] [role=status]")
    assert status.text == "Showing 1 of 3 rows."
    type_filter(browser, "flows-table", "")
    assert len(shown_rows(browser, "flows-table")) == 3

    # The severity select keeps findings at or above the chosen severity.
    Select(browser.find_element(By.ID, "findings-table-sev")).select_by_visible_text("high")
    severities = column(browser, "findings-table", 0)
    assert severities
    assert {s.lower() for s in severities} == {"high"}
    Select(browser.find_element(By.ID, "findings-table-sev")).select_by_visible_text("any")

    # Sorting by a column header, from the keyboard: ascending, then descending.
    initial = column(browser, "flows-table", 1)
    button = sort_button(browser, "flows-table", "Component")
    assert aria_sort(button) is None
    button.send_keys(Keys.ENTER)
    ascending = column(browser, "flows-table", 1)
    assert ascending == sorted(initial)
    assert ascending != initial
    assert aria_sort(button) == "ascending"
    button.click()
    assert column(browser, "flows-table", 1) == sorted(ascending, reverse=True)
    assert aria_sort(button) == "descending"

    # Printing: collapsed sections open, controls hidden, filtered rows back.
    type_filter(browser, "findings-table", "zzhc")
    closed = browser.execute_script(
        "return document.querySelectorAll('details:not([open])').length"
    )
    assert closed > 0
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    browser.execute_script("window.dispatchEvent(new Event('beforeprint'));")
    try:
        assert (
            browser.execute_script("return document.querySelectorAll('details:not([open])').length")
            == 0
        )
        displays = browser.execute_script(
            "return Array.from(document.querySelectorAll('.filter, nav.toc'))"
            ".map(function (e) { return getComputedStyle(e).display; });"
        )
        assert set(displays) == {"none"}
        hidden = browser.execute_script(
            "return document.querySelectorAll('#findings-table tr.filtered-out').length"
        )
        assert hidden > 0
        assert browser.execute_script(
            "return Array.from(document.querySelectorAll('#findings-table tbody tr'))"
            ".every(function (r) { return r.getClientRects().length > 0; })"
        )
    finally:
        browser.execute_script("window.dispatchEvent(new Event('afterprint'));")
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert (
        browser.execute_script("return document.querySelectorAll('details:not([open])').length")
        == closed
    )
    type_filter(browser, "findings-table", "")
    check_clean(browser)
    screenshot(browser, "report-scan")


def test_diff_report(browser: WebDriver, reports: dict[str, Path]) -> None:
    open_report(browser, reports["diff"])
    check_clean(browser)
    headline = browser.find_element(By.CSS_SELECTOR, "header .headline")
    assert headline.is_displayed()
    assert headline.text == reports["headline"].read_text(encoding="utf-8")
    assert headline.location["y"] + headline.size["height"] <= HEIGHT, "above the fold"

    table = "changes-read"
    assert len(shown_rows(browser, table)) == 4
    type_filter(browser, table, "imsi")
    rows = shown_rows(browser, table)
    assert rows
    assert all("IMSI" in r for r in rows)
    assert len(rows) < 4
    type_filter(browser, table, "")
    button = sort_button(browser, table, "Finding")
    button.click()
    ascending = column(browser, table, 3)
    assert ascending == sorted(ascending, key=str.lower)
    assert aria_sort(button) == "ascending"

    # Kept findings are collapsed until opened.
    kept = browser.find_element(By.ID, "kept-flow")
    assert not kept.is_displayed()
    kept.find_element(By.XPATH, "ancestor::details[1]/summary").click()
    assert kept.is_displayed()
    check_clean(browser)
    screenshot(browser, "report-diff")


def test_matrix_report(browser: WebDriver, reports: dict[str, Path]) -> None:
    open_report(browser, reports["matrix"])
    check_clean(browser)
    first = browser.find_element(By.CSS_SELECTOR, "#matrix-table > tbody > tr")
    assert first.is_displayed()
    assert AUTOREG in first.text
    assert "absent" in first.text
    total = len(shown_rows(browser, "matrix-table"))

    type_filter(browser, "matrix-table", "weather")
    rows = shown_rows(browser, "matrix-table")
    assert 0 < len(rows) < total
    assert all("weather" in r for r in rows)
    type_filter(browser, "matrix-table", "")
    Select(browser.find_element(By.ID, "matrix-table-sev")).select_by_visible_text("high")
    assert 0 < len(shown_rows(browser, "matrix-table")) < total
    Select(browser.find_element(By.ID, "matrix-table-sev")).select_by_visible_text("any")

    button = sort_button(browser, "matrix-table", "Row")
    button.click()
    labels = column(browser, "matrix-table", 1)
    assert labels == sorted(labels, key=str.lower)
    assert labels[0] != AUTOREG
    assert aria_sort(button) == "ascending"
    check_clean(browser)
    screenshot(browser, "report-matrix")


@pytest.mark.parametrize("kind", ["scan", "diff", "matrix"])
def test_hostile_report_runs_no_firmware_script(
    browser: WebDriver, reports: dict[str, Path], kind: str
) -> None:
    open_report(browser, reports[f"hostile-{kind}"])
    check_no_xss(browser)
    check_clean(browser)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert HOSTILE_DISPLAY_ID in body
    if kind == "scan":
        assert HOSTILE_LABEL in body

    # Use every control: open every section, filter, pick each severity, sort every column.
    for summary in browser.find_elements(By.TAG_NAME, "summary")[:3]:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", summary)
        summary.click()
    browser.execute_script(
        "document.querySelectorAll('details:not([open]) > summary')"
        ".forEach(function (s) { s.click(); });"
    )
    assert (
        browser.execute_script("return document.querySelectorAll('details:not([open])').length")
        == 0
    )
    box = browser.find_element(By.CSS_SELECTOR, "input[type=search]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    box.send_keys("xss")
    select = Select(browser.find_element(By.CSS_SELECTOR, "select[data-role=severity]"))
    select.select_by_visible_text("critical")
    select.select_by_visible_text("any")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    browser.execute_script(
        "document.querySelectorAll('.filter').forEach(function (bar) {"
        " var q = bar.querySelector('input'), s = bar.querySelector('select');"
        " ['xss', 'evil', ''].forEach(function (text) {"
        "  q.value = text; q.dispatchEvent(new Event('input', {bubbles: true})); });"
        " if (s) { ['4', '0', ''].forEach(function (v) {"
        "  s.value = v; s.dispatchEvent(new Event('change', {bubbles: true})); }); } });"
    )
    for table in browser.find_elements(By.CSS_SELECTOR, "table.sortable"):
        button = table.find_element(By.CSS_SELECTOR, "th.sortable > button")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
        button.click()
    browser.execute_script(
        "document.querySelectorAll('th.sortable > button').forEach(function (b) {"
        " b.click(); b.click(); });"
    )
    browser.execute_script(
        "window.dispatchEvent(new Event('beforeprint'));"
        "window.dispatchEvent(new Event('afterprint'));"
    )
    check_no_xss(browser)
    check_clean(browser)
    screenshot(browser, f"report-hostile-{kind}")
