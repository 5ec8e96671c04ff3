"""Scenarios: the operations ``msstorm-monitor run`` starts, one after another.

Inline, a comma-separated list of ``TYPE[:ARG][*REPEAT]``::

    unicast*10, broadcast*3, tree:1024*2, unicast:SID

(``ARG`` is the number of leaves of a tree, or the sid a unicast goes to.) As a
JSON file, a list of objects::

    [{"type": "unicast", "repeat": 10},
     {"type": "tree", "treeLeaves": 1024, "repeat": 2},
     {"type": "unicast", "destId": "SID"}]
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

TYPES = ("unicast", "broadcast", "tree")
_ITEM = re.compile(r"^(?P<type>[A-Za-z]+)(?::(?P<arg>[^*]+))?(?:\*(?P<repeat>[0-9]+))?$")
_KEYS = {"type", "treeLeaves", "destId", "repeat"}


class ScenarioError(ValueError):
    """A scenario that cannot be run: what is wrong and where."""


@dataclass(frozen=True)
class Step:
    """One kind of operation, started ``repeat`` times in a row."""

    type: str
    tree_leaves: int | None = None
    dest_id: str | None = None
    repeat: int = 1

    def request(self) -> dict[str, Any]:
        """The ``initiatePoke`` argument of one of its operations."""
        request: dict[str, Any] = {"type": self.type}
        if self.tree_leaves is not None:
            request["treeLeaves"] = self.tree_leaves
        if self.dest_id is not None:
            request["destId"] = self.dest_id
        return request

    @property
    def label(self) -> str:
        """``tree:1024``, ``unicast:SID``, ``broadcast``: the step without its repeat."""
        if self.tree_leaves is not None:
            return f"{self.type}:{self.tree_leaves}"
        if self.dest_id is not None:
            return f"{self.type}:{self.dest_id}"
        return self.type

    def to_json(self) -> dict[str, Any]:
        document = self.request()
        document["repeat"] = self.repeat
        return document


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def make_step(
    kind: Any, tree_leaves: Any = None, dest_id: Any = None, repeat: Any = 1, where: str = ""
) -> Step:
    """A checked ``Step``; ``where`` names it in error messages."""
    prefix = f"{where}: " if where else ""
    if not isinstance(kind, str) or kind not in TYPES:
        raise ScenarioError(f"{prefix}unknown operation {kind!r} (one of {', '.join(TYPES)})")
    if type(repeat) is not int or repeat < 1:
        raise ScenarioError(f"{prefix}repeat must be a whole number >= 1, not {repeat!r}")
    if kind == "tree":
        if tree_leaves is None:
            raise ScenarioError(f"{prefix}a tree needs its number of leaves (tree:L, treeLeaves)")
        if type(tree_leaves) is not int or not is_power_of_two(tree_leaves):
            raise ScenarioError(
                f"{prefix}treeLeaves must be a power of two (1, 2, 4, ...), not {tree_leaves!r}"
            )
    elif tree_leaves is not None:
        raise ScenarioError(f"{prefix}only a tree takes treeLeaves")
    if dest_id is not None:
        if kind != "unicast":
            raise ScenarioError(f"{prefix}only a unicast takes a destId")
        if not isinstance(dest_id, str) or not dest_id:
            raise ScenarioError(f"{prefix}destId must be a client's sid (a string)")
    return Step(kind, tree_leaves, dest_id, repeat)


def parse_inline(text: str) -> list[Step]:
    """``"unicast*10, broadcast*3, tree:1024*2"`` as steps."""
    items = [item for item in re.split(r"[,\s]+", text.strip()) if item]
    if not items:
        raise ScenarioError("the scenario is empty")
    steps = []
    for item in items:
        match = _ITEM.match(item)
        if match is None:
            raise ScenarioError(f"{item!r}: expected TYPE[:ARG][*REPEAT], e.g. tree:1024*2")
        kind = match["type"].lower()
        arg = match["arg"]
        repeat = int(match["repeat"]) if match["repeat"] is not None else 1
        leaves: Any = None
        dest = None
        if kind == "tree" and arg is not None:
            try:
                leaves = int(arg)
            except ValueError:
                leaves = arg
        elif kind == "unicast":
            dest = arg
        elif arg is not None:
            raise ScenarioError(f"{item!r}: a {kind} takes no argument")
        steps.append(make_step(kind, leaves, dest, repeat, where=repr(item)))
    return steps


def parse_json(document: Any, source: str = "scenario") -> list[Step]:
    """A decoded JSON scenario (a list of step objects) as steps."""
    if not isinstance(document, list) or not document:
        raise ScenarioError(f"{source}: expected a non-empty JSON list of operations")
    steps = []
    for i, entry in enumerate(document):
        where = f"{source}, entry {i}"
        if not isinstance(entry, dict):
            raise ScenarioError(f'{where}: expected an object like {{"type": "broadcast"}}')
        unknown = set(entry) - _KEYS
        if unknown:
            raise ScenarioError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_KEYS))})"
            )
        steps.append(
            make_step(
                entry.get("type"),
                entry.get("treeLeaves"),
                entry.get("destId"),
                entry.get("repeat", 1),
                where=where,
            )
        )
    return steps


def load(argument: str) -> list[Step]:
    """``run``'s SCENARIO: a JSON file (``-`` for standard input), else inline text."""
    if argument == "-":
        return _decode(sys.stdin.read(), "standard input")
    if os.path.isfile(argument):
        try:
            with open(argument, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ScenarioError(f"cannot read {argument}: {exc.strerror}") from exc
        return _decode(text, argument)
    if argument.lower().endswith(".json"):
        raise ScenarioError(f"no such scenario file: {argument}")
    return parse_inline(argument)


def _decode(text: str, source: str) -> list[Step]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{source}: not valid JSON: {exc}") from exc
    return parse_json(document, source)


def total_operations(steps: list[Step]) -> int:
    return sum(step.repeat for step in steps)
