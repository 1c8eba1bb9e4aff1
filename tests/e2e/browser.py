"""A headless Chromium driven by Selenium, for the dashboard's tests.

Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``) and the
``selenium`` package (a test extra). When one is missing the test needs ``chromium``
(tests/support.py ``need``): it fails under CORRAL_REQUIRE=chromium (CI), and is skipped elsewhere.
"""
import os
import shutil
import time

from tests.support import need

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = "/usr/bin/chromedriver"


def start_browser():
    """A Selenium WebDriver over headless Chromium, 1280x900; needs ``chromium`` when it cannot start."""
    __tracebackhide__ = True
    binary = next((b for b in CHROMIUM if os.path.exists(b)), None)
    driver = DRIVER if os.path.exists(DRIVER) else shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need("chromium", "selenium is not installed (it is in the test extras: pip install -e '.[test]')")
    if binary is None or driver is None:
        need("chromium", "Chromium or its driver is missing (apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_until(what, predicate, timeout=30.0, interval=0.1):
    """Poll ``predicate`` (which may raise while the page changes under it) until it returns something
    truthy, and return that; fail naming ``what`` and the last error."""
    deadline = time.monotonic() + timeout
    last = value = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:   # stale elements while the page re-renders: look again
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {value!r}, last error: {last!r})")
