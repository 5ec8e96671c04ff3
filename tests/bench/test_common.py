"""bench/common.py: what a results file says of the tree it was measured on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def make_repo(repo: Path) -> None:
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "bench@example.invalid")
    git(repo, "config", "user.name", "bench")
    for name in ("msstorm/app.py", "old.py", "bench/results/storm.md", "staged.py"):
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("one\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")


def test_a_clean_tree_is_clean(tmp_path: Path) -> None:
    make_repo(tmp_path)
    info = common.git_info(tmp_path)
    assert info["dirty"] is False and info["dirty_paths"] == []
    assert info["commit"] and len(info["commit"]) == 40


def test_every_change_is_named_whole(tmp_path: Path) -> None:
    make_repo(tmp_path)
    # Modified in the work tree only: porcelain's line begins with a space, which
    # a strip() of the whole output used to eat, cutting the path's first letter.
    (tmp_path / "msstorm/app.py").write_text("two\n")
    (tmp_path / "staged.py").write_text("two\n")
    git(tmp_path, "add", "staged.py")
    git(tmp_path, "mv", "old.py", "renamed.py")
    (tmp_path / "new file.py").write_text("new\n")
    info = common.git_info(tmp_path)
    assert info["dirty"] is True
    assert sorted(info["dirty_paths"]) == [
        "msstorm/app.py",
        "new file.py",
        "old.py",
        "renamed.py",
        "staged.py",
    ]


def test_results_files_alone_leave_the_tree_clean(tmp_path: Path) -> None:
    make_repo(tmp_path)
    (tmp_path / "bench/results/storm.md").write_text("new figures\n")
    (tmp_path / "bench/results/new.jsonl").write_text("{}\n")
    assert common.git_info(tmp_path)["dirty"] is False
