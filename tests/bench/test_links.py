"""Every relative link of the READMEs leads somewhere: a file, a folder, or a heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", "bench/README.md", "PROTOCOL.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a document's headings."""
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", CODE.sub("", markdown), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out


def relative_links(markdown: str) -> list[str]:
    links = LINK.findall(CODE.sub("", markdown))
    return [t for t in links if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # http:, mailto:...


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_relative_link_resolves(document: str) -> None:
    path = ROOT / document
    text = path.read_text()
    broken = []
    for target in relative_links(text):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, f"{document}: broken links: {broken}"


def test_the_readme_links_to_the_wire_contract() -> None:
    assert "PROTOCOL.md" in relative_links((ROOT / "README.md").read_text())


def test_a_broken_link_is_seen() -> None:
    text = "see [the spec](NOPE.md) and [x](#performance) but not `[code](gone.md)`"
    assert relative_links(text) == ["NOPE.md", "#performance"]
    assert "performance" in anchors("## Performance\n")
    assert "many-workers-many-machines" in anchors("## Many workers, many machines")
