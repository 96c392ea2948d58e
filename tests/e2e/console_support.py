"""The web console's browser tests drive the system's Chromium (Debian ``chromium``, ``chromium-driver``)
headless through Selenium; nothing is downloaded. Without them the tests skip, or fail under
CLAUDEGATE_REQUIRE_SERVICES=1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import need_service

__all__ = ["Console", "chromium"]

CHROMIUM_PATHS = ("/usr/bin/chromium", "chromium")
WAIT_S = 20.0  # an upper bound on waiting for the page, not a duration any test depends on


def _which(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium driven by the system's chromedriver."""
    browser = _which(*CHROMIUM_PATHS)
    driver_path = _which("chromedriver")
    need_service(browser is not None and driver_path is not None, "chromium and chromedriver (apt)")
    assert browser is not None
    assert driver_path is not None
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """One browser session on the console of a gateway."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base = base_url + "/console"

    def wait(self, condition: Any) -> Any:
        """Wait until ``condition`` holds. Pages re-render lists after a change, so an element found a moment
        ago may be gone: the condition is then tried again, as when it is not there yet."""
        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(self.driver, WAIT_S, ignored_exceptions=ignored).until(condition)

    def sign_in(self, token: str) -> None:
        self.driver.delete_all_cookies()
        self.driver.get(self.base)
        field = self.wait(lambda d: d.find_element(By.ID, "token"))
        self.wait(lambda d: field.is_displayed())
        field.send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
        self.wait(lambda d: d.find_element(By.ID, "view").get_attribute("data-ready"))

    def open(self, page: str) -> WebElement:
        """Go to a page and wait until it has loaded its data."""
        self.driver.execute_script("document.getElementById('view').dataset.ready = ''")
        self.driver.get(f"{self.base}#{page}")
        self.driver.execute_script("window.dispatchEvent(new HashChangeEvent('hashchange'))")
        self.wait(lambda d: d.find_element(By.ID, "view").get_attribute("data-ready") == page)
        return self.driver.find_element(By.ID, "view")

    def click(self, css: str, xpath: str = ".") -> None:
        """Click what ``xpath`` finds inside ``css``, finding both again if a re-render replaced them."""
        self.wait(lambda d: not d.find_element(By.CSS_SELECTOR, css).find_element(By.XPATH, xpath).click())

    def find(self, css: str) -> WebElement:
        return self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css))

    def fetch(self, method: str, path: str, body: object = None, csrf: bool = True) -> dict[str, Any]:
        """A call from the page's own script (same origin, with the session cookie): status and body."""
        script = """
            const [method, path, body, csrf, done] = [...arguments];
            (async () => {
                const me = await fetch('/console/api/me').then(r => r.json());
                const headers = {'content-type': 'application/json'};
                if (csrf) headers['x-csrf-token'] = me.csrf;
                const init = {method, headers, body: body === null ? undefined : JSON.stringify(body)};
                const response = await fetch(path, init);
                done({status: response.status, body: await response.json().catch(() => null)});
            })();
        """
        result: dict[str, Any] = self.driver.execute_async_script(script, method, path, body, csrf)
        return result
