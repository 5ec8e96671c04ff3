"""``--report FILE.html``: written by a whole storm, opened from file:// in chromium with
the network cut off."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from watchkit import chromium, console_errors, screenshot

SCENARIO = "unicast*3, broadcast*2, tree:64"


class Links(HTMLParser):
    """Every attribute that could make a browser load something."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster") and value:
                self.loads.append((tag, name, value))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    path = folder / "storm.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "msstorm.storm.local",
            "--conns",
            "200",
            "--scenario",
            SCENARIO,
            "--report",
            str(path),
            "--logs",
            str(folder / "logs"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"report written to {path}" in result.stderr
    assert "the dashboard: http://127.0.0.1:" in result.stderr
    return path


def operation_ids(document: str) -> list[str]:
    return re.findall(r"<td class=\"l\">([A-Za-z0-9_-]{4}-[0-9a-f]+)</td>", document)


def test_the_report_is_one_file_that_loads_nothing(report: Path) -> None:
    document = report.read_text()
    links = Links()
    links.feed(document)
    assert links.loads == []  # no script, stylesheet, image or font from anywhere
    assert "script" not in links.tags and "@import" not in document and "url(" not in document
    assert len(operation_ids(document)) == 6
    for heading in (
        "Settings",
        "Operations",
        "RTT and pingDelay distributions",
        "Trees by depth",
        "The server",
        "The swarm",
    ):
        assert f"<h2>{heading}</h2>" in document
    assert "connected (peak)         200 / 200" in document  # the swarm's own summary
    assert "tree:64 by depth" in document


def test_the_report_opens_offline_from_file(report: Path) -> None:
    driver = chromium(offline=True)
    try:
        driver.set_network_conditions(
            offline=True, latency=0, download_throughput=0, upload_throughput=0
        )
        driver.get(report.as_uri())
        check_page(driver, report.read_text())
        screenshot(driver, "report")
        assert console_errors(driver) == []
    finally:
        driver.quit()


def check_page(driver: Any, document: str) -> None:
    from selenium.webdriver.common.by import By

    shown = driver.find_element(By.TAG_NAME, "body").text
    for op in operation_ids(document):
        assert op in shown
    for label in ("unicast", "broadcast", "tree:64"):
        assert label in shown
    # Every chart is drawn: histograms for each kind of operation, and the tree by depth.
    charts = driver.find_elements(By.CSS_SELECTOR, "svg")
    assert len(charts) == 7
    assert all(chart.size["width"] > 100 for chart in charts)
    assert driver.find_elements(By.CSS_SELECTOR, "svg rect")


def test_a_report_that_is_not_html_is_refused_before_the_run(tmp_path: Path) -> None:
    for command in (["msstorm.monitor", "broadcast"], ["msstorm.storm.local"]):
        result = subprocess.run(
            [sys.executable, "-m", *command, "--report", str(tmp_path / "x.txt")],
            capture_output=True,
            text=True,
            timeout=30,
            env={"MSSTORM_MONITOR_TOKEN": "t", "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 2, result.stderr
        assert "--report writes an HTML file" in result.stderr
