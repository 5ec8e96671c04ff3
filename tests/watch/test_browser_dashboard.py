"""The dashboard in a real browser (Debian's chromium, headless, driven by selenium),
watching a server of two workers and a swarm of 2,000 clients."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import watchkit
from stormkit import TOKEN
from watchkit import Server, chromium, console_errors, free_port, screenshot, stop, swarm

CLIENTS = 2000

wait = functools.partial(watchkit.wait, shot="dashboard-failed")


def text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


async def test_the_dashboard_watches_a_storm_and_starts_a_broadcast(tmp_path: Path) -> None:
    port = free_port()
    server = Server("--workers", "2", "--dashboard-port", str(port))
    clients = None
    driver = None
    try:
        await server.until(lambda h: h["cluster"]["workers"] == 2, what="2 workers")
        clients = swarm(server.url, CLIENTS, tmp_path)
        await server.until(lambda h: h["cluster"]["clients"] == CLIENTS, 120, "every client")
        driver = await asyncio.to_thread(chromium)
        await asyncio.to_thread(watch_and_broadcast, driver, port)
    finally:
        if driver is not None:
            driver.quit()
        if clients is not None:
            stop(clients)
        server.stop()


def watch_and_broadcast(driver: Any, port: int) -> None:
    from selenium.webdriver.common.by import By

    page = f"http://127.0.0.1:{port}/dashboard/"
    driver.get(f"{page}#token={TOKEN}")
    wait(driver, lambda: text(driver, "clients") == f"{CLIENTS:,}", "the clients connected")
    assert "token" not in driver.current_url  # the fragment is wiped from the address bar
    wait(driver, lambda: "2 workers" in text(driver, "where"), "both workers")
    workers = driver.find_elements(By.CSS_SELECTOR, "#workers tbody tr")
    assert len(workers) == 2
    assert (
        sum(int(row.find_elements(By.TAG_NAME, "td")[3].text.replace(",", "")) for row in workers)
        == CLIENTS
    )

    driver.find_element(By.ID, "op-type").send_keys("broadcast")
    driver.find_element(By.ID, "op-start").click()
    wait(driver, lambda: "started" in text(driver, "op-answer"), "the broadcast started")

    def finished() -> list[str] | None:
        cells = [
            td.text
            for td in driver.find_elements(By.CSS_SELECTOR, "#operations tbody tr:first-child td")
        ]
        return cells if len(cells) > 8 and cells[2] == "ok" else None

    cells = wait(driver, finished, "the broadcast completed", 60)
    assert cells[1] == "broadcast"
    assert (cells[3], cells[4], cells[5]) == (f"{CLIENTS:,}", f"{CLIENTS:,}", "0")
    rtt_p50, rtt_p99 = float(cells[8]), float(cells[10])
    assert 0 < rtt_p50 <= rtt_p99
    # Its distribution and its point on the RTT chart are drawn.
    wait(
        driver,
        lambda: driver.find_elements(By.CSS_SELECTOR, "#chart-dist rect"),
        "the distribution",
    )
    assert driver.find_elements(By.CSS_SELECTOR, "#chart-rtt circle")
    wait(driver, lambda: "live" in text(driver, "status"), "a live status")
    screenshot(driver, "dashboard")
    assert console_errors(driver) == []

    # A wrong token, typed into the page's form, is refused and shows nothing.
    driver.get("about:blank")
    driver.get(page)
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait(driver, lambda: "invalid monitor token" in text(driver, "login-error"), "the refusal")
    assert not driver.find_element(By.ID, "storm").is_displayed()
    assert text(driver, "clients") in ("", "-")  # nothing of the storm was drawn
    screenshot(driver, "dashboard-refused")
    # The browser logs the refused request (401) itself; nothing else went wrong.
    errors = console_errors(driver)
    assert errors and all("401" in entry["message"] for entry in errors), errors
