"""Socket.IO's own admin UI (``@socket.io/admin-ui`` from npm, pinned by its lock file,
its ``ui/dist`` served here) logs in to msstorm-server and shows its clients."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import watchkit
from stormkit import Clients
from watchkit import ADMIN, ADMIN_UI_DIST, Server, chromium, free_port, screenshot

USER, PASSWORD = ADMIN.split(":", 1)
CLIENTS = 120

wait = functools.partial(watchkit.wait, shot="admin-ui-failed")


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def admin_ui() -> Iterator[str]:
    """The UI's built files on a port of this machine."""
    if not (ADMIN_UI_DIST / "index.html").is_file():
        pytest.fail(
            f"no {ADMIN_UI_DIST}: `make node-deps` installs @socket.io/admin-ui", pytrace=False
        )
    port = free_port()
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Quiet, directory=str(ADMIN_UI_DIST))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def field(driver: Any, label: str) -> Any:
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.TAG_NAME, "label"):
        if element.text.strip() == label:
            return driver.find_element(By.ID, element.get_attribute("for"))
    raise AssertionError(f"no field {label!r} on the page")


def log_in(driver: Any, ui: str, server: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(ui + "/")
    wait(driver, lambda: field(driver, "Server URL").is_displayed(), "its connection form")
    for label, value in (("Server URL", server), ("Username", USER), ("Password", password)):
        element = field(driver, label)
        element.send_keys(Keys.CONTROL, "a")  # what a former try left there goes
        element.send_keys(Keys.DELETE)
        element.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


async def test_the_official_admin_ui_shows_the_clients(admin_ui: str) -> None:
    import asyncio

    server = Server("--workers", "2", "--cors-origin", admin_ui, env={"MSSTORM_ADMIN_AUTH": ADMIN})
    clients = Clients(server.url)
    try:
        await server.until(lambda h: h["cluster"]["workers"] == 2)
        await clients.pokees_(CLIENTS)
        await server.until(lambda h: h["cluster"]["clients"] == CLIENTS)
        driver = await asyncio.to_thread(chromium, True)  # its CDN fonts stay out
        try:
            await asyncio.to_thread(check_ui, driver, admin_ui, server.url)
        finally:
            driver.quit()
    finally:
        clients.close()
        server.stop()


def check_ui(driver: Any, ui: str, server: str) -> None:
    from selenium.webdriver.common.by import By

    # A wrong password: the UI says what the server said.
    log_in(driver, ui, server, "wrong")
    wait(
        driver,
        lambda: "invalid credentials" in driver.find_element(By.TAG_NAME, "body").text.lower(),
        "the refusal",
    )
    # The right one: the servers page lists both workers, their clients added up to ours
    # and the UI's own connection.
    log_in(driver, ui, server, PASSWORD)
    wait(
        driver,
        lambda: (
            "CONNECTED" in driver.find_element(By.TAG_NAME, "header").text.upper()
            and "DISCONNECTED" not in driver.find_element(By.TAG_NAME, "header").text.upper()
        ),
        "its status connected",
    )
    # Its dashboard: the clients of both workers and the UI's own connection.
    wait(
        driver,
        lambda: str(CLIENTS + 1) in driver.find_element(By.TAG_NAME, "main").text,
        "the client count on its dashboard",
    )
    screenshot(driver, "admin-ui")
    driver.find_element(By.LINK_TEXT, "Servers").click()

    def workers() -> list[list[str]] | None:
        rows = [
            [td.text for td in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
        ]
        rows = [row for row in rows if len(row) >= 5]
        return rows if len(rows) == 2 else None

    rows = wait(driver, workers, "both workers on its servers page")
    screenshot(driver, "admin-ui-servers")
    counts = [int(row[4]) for row in rows]
    assert sum(counts) == CLIENTS + 1, rows
