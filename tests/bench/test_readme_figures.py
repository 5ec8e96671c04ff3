"""Every figure the README quotes from a benchmark is in the results file it cites.

A figure is traced as a reader would trace it: each paragraph (a table counts as one)
names its sources, ``bench/results/NAME.md`` or ``NAME.md`` in a code span, or goes on
from the sources of the paragraph before it. Every number outside code spans must be found
in one of those files, at the precision the README gives it (``183 ms`` is ``183.2``), and a
commit the paragraph names must be the commit its results files were measured at.
Outside the Performance section, the paragraphs that cite a results file are checked so.
A number right after ``≤``, ``≥``, ``<`` or ``>`` is a goal, not a measurement.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"

NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.,])\d+(?:\.\d+)?")
CODE_SPAN = re.compile(r"`([^`]*)`")
SOURCE = re.compile(r"^(?:bench/results/)?([\w.-]+\.md)$")
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


GOAL = re.compile(r"[≤≥<>]\s*[\d.,/]+")


def numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def measured(text: str) -> list[str]:
    """The numbers of a README block that quote a measurement."""
    text = CODE_SPAN.sub("", text).replace("\u00d7", "x")
    return numbers(GOAL.sub("", text))


def value(token: str) -> tuple[float, int]:
    """The number a token writes, and its decimals."""
    plain = token.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    return float(plain), decimals


def found(token: str, values: list[float]) -> bool:
    target, decimals = value(token)
    half = 0.5 * 10**-decimals + 1e-9
    return any(abs(v - target) <= half for v in values)


def paragraphs(section: str) -> list[str]:
    """Blank-line separated blocks; a table, list or fenced block goes with the text
    just above it (a fenced block's fences are dropped: what it shows is quoted)."""
    blocks: list[str] = []
    fenced = False
    for block in re.split(r"\n\s*\n", section):
        block = block.strip()
        continues = fenced or block.startswith(("```", "|"))
        if continues and blocks:
            blocks[-1] += "\n" + block
        elif block:
            blocks.append(block)
        fenced ^= block.count("```") % 2 == 1
    return [re.sub(r"^```\w*$", "", b, flags=re.M) for b in blocks]


def section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"\n## {title}")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def split_bullets(block: str) -> list[str]:
    """A list's items each cite their own sources."""
    if not block.startswith("- ") and "\n- " not in block:
        return [block]
    parts = re.split(r"\n(?=- )", block)
    return [p for p in parts if p.strip()]


def sources_of(block: str) -> tuple[list[str], list[str]]:
    spans = CODE_SPAN.findall(block)
    cited = [m.group(1) for s in spans if (m := SOURCE.match(s.strip()))]
    commits = [s for s in spans if COMMIT.match(s.strip())]
    return cited, commits


def traced_blocks() -> list[tuple[str, list[str], list[str]]]:
    """(text, sources, commits) for every block of Performance, where a block without
    sources goes on from the one before; elsewhere, the blocks that cite a results file."""
    out: list[tuple[str, list[str], list[str]]] = []
    sources: list[str] = []
    for paragraph in paragraphs(section("Performance")):
        for block in split_bullets(paragraph):
            cited, commits = sources_of(block)
            if cited:
                sources = cited
            out.append((block, list(sources), commits))
    readme = (ROOT / "README.md").read_text()
    rest = readme.replace(section("Performance"), "")
    for paragraph in paragraphs(rest):
        cited, commits = sources_of(paragraph)
        if cited:
            out.append((paragraph, cited, commits))
    return out


def results_values(name: str) -> list[float]:
    path = RESULTS / name
    assert path.is_file(), f"the README cites {name}, which bench/results/ does not hold"
    return [value(t)[0] for t in numbers(path.read_text())]


def test_the_section_cites_its_sources() -> None:
    blocks = traced_blocks()
    assert blocks, "no Performance section found"
    for text, sources, _ in blocks:
        if measured(text):
            assert sources, f"figures quoted before any results file is cited:\n{text}"


@pytest.mark.parametrize("index", range(len(traced_blocks())))
def test_every_figure_is_in_its_results_file(index: int) -> None:
    text, sources, commits = traced_blocks()[index]
    quoted = measured(text)
    if not quoted:
        return
    values = [v for name in sources for v in results_values(name)]
    missing = [t for t in quoted if not found(t, values)]
    assert not missing, f"not in {', '.join(sources)}: {missing}\nin:\n{text}"
    headers = " ".join((RESULTS / name).read_text()[:2000] for name in sources)
    for commit in commits:
        assert commit in headers, (
            f"the README names commit {commit}, but {', '.join(sources)} "
            f"were measured at another:\n{text}"
        )


def test_the_checker_catches_a_wrong_figure() -> None:
    values = [183.2, 3735.0, 0.076]
    assert found("183", values) and found("183.2", values) and found("3,735", values)
    assert not found("184", values) and not found("183.3", values)
    assert not found("0.08", [0.074]) and found("0.08", values)
    # goals, code spans and ratios' signs are not figures
    block = "`python bench/run_storm.py --conns 40000` 2.40\u00d7 Node's, goal ≥ 3\u00d7"
    assert measured(block) == ["2.40"]
