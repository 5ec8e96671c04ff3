"""`make system-deps` where it cannot install: it names what is missing and how to get it.

The Makefile and its script run from a copy, with a PATH that holds only what they
need and the programs a test puts there, as a user who is not root (``nobody``, via
setpriv, when the tests run as root). An ``apt-get`` on that PATH is a probe: it
says so if it is ever run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = "apt-get was run"
EVERYTHING = "make test needs programs that are not installed (not on PATH): "
REDIS_HOW = ("sudo apt-get install redis-server", "brew install redis")
NODE_HOW = ("sudo apt-get install nodejs npm", "brew install node")
LAB_HOW = ("sudo apt-get install haproxy iproute2",)
CHROMIUM_HOW = (
    "sudo apt-get install chromium chromium-driver",
    "brew install chromium chromedriver",
)
BROWSER = ("chromium", "chromedriver")  # put on PATH where a test names only the others
LAB = ("haproxy", "ip")


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder another user can read: the Makefile, its script, and bin/ for PATH."""
    folder = Path(tempfile.mkdtemp(prefix="msstorm-system-deps-"))
    try:
        folder.chmod(0o755)
        shutil.copy(ROOT / "Makefile", folder)
        shutil.copytree(ROOT / "tools", folder / "tools")
        (folder / "msstorm").mkdir()  # what the Makefile lists its sources from
        (folder / "bin").mkdir()
        yield folder
    finally:
        shutil.rmtree(folder)


def put_on_path(place: Path, *programs: str) -> None:
    for program in programs:
        found = shutil.which(program)
        if found is None:
            pytest.fail(f"{program} is required for this test (and by make test)", pytrace=False)
        (place / "bin" / program).symlink_to(found)


def put_apt_get_probe(place: Path) -> None:
    probe = place / "bin" / "apt-get"
    probe.write_text(f"#!/bin/sh\necho '{PROBE}' >&2\nexit 1\n")
    probe.chmod(0o755)


def not_root() -> list[str]:
    """The command prefix that drops root, if the tests run as root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is required to run this test as root", pytrace=False)
    nobody = pwd.getpwnam("nobody")
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


def system_deps(place: Path, user: list[str]) -> subprocess.CompletedProcess[str]:
    put_on_path(place, "make", "find", "grep", "id")  # what the Makefile and script use
    return subprocess.run(
        [*user, str(place / "bin" / "make"), "-s", "system-deps"],
        cwd=place,
        env={"PATH": str(place / "bin"), "HOME": str(place)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_user_who_is_not_root_is_told_what_is_missing_and_how_to_get_it(place: Path) -> None:
    put_apt_get_probe(place)
    done = system_deps(place, not_root())
    assert done.returncode != 0 and done.stdout == "", done
    assert EVERYTHING + "redis-server haproxy ip chromium chromedriver node npm\n" in done.stderr
    for how in (*REDIS_HOW, *LAB_HOW, *CHROMIUM_HOW, *NODE_HOW):
        assert how in done.stderr, done.stderr
    assert PROBE not in done.stderr


def test_only_what_is_missing_is_named(place: Path) -> None:
    put_apt_get_probe(place)
    put_on_path(place, "node", "npm", *LAB, *BROWSER)
    done = system_deps(place, not_root())
    assert done.returncode != 0, done
    assert EVERYTHING + "redis-server\n" in done.stderr
    assert all(how in done.stderr for how in REDIS_HOW), done.stderr
    assert not any(how in done.stderr for how in (*NODE_HOW, *LAB_HOW, *CHROMIUM_HOW)), done.stderr
    assert PROBE not in done.stderr


def test_without_apt_get_whoever_runs_it_is_told(place: Path) -> None:
    put_on_path(place, "node", "npm", *LAB, *BROWSER)
    done = system_deps(place, [])  # as root too, when the tests run as root: not Debian
    assert done.returncode != 0, done
    assert EVERYTHING + "redis-server\n" in done.stderr
    assert all(how in done.stderr for how in REDIS_HOW), done.stderr
    assert "installing" not in done.stdout + done.stderr


def test_nothing_missing_says_nothing(place: Path) -> None:
    put_apt_get_probe(place)
    put_on_path(place, "redis-server", "node", "npm", *LAB, *BROWSER)
    done = system_deps(place, not_root())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_machines_lab_programs_are_named(place: Path) -> None:
    put_apt_get_probe(place)
    put_on_path(place, "redis-server", "ip", "node", "npm", *BROWSER)
    done = system_deps(place, not_root())
    assert done.returncode != 0, done
    assert EVERYTHING + "haproxy\n" in done.stderr
    assert all(how in done.stderr for how in LAB_HOW), done.stderr
    assert not any(how in done.stderr for how in (*REDIS_HOW, *NODE_HOW)), done.stderr
