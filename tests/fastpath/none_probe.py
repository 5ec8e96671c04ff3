"""Call every public function and method of one compiled module with None for each
argument in turn; print OK at the end. Run in its own process: a crash is the finding.

    python tests/fastpath/none_probe.py msstorm._fastpath.histogram_c
"""

from __future__ import annotations

import faulthandler
import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def probe(name: str, function: Callable[..., Any], bound: object = None) -> int:
    """Calls made: one per argument, that argument None and the others too."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return 0
    count = sum(
        1 for p in signature.parameters.values() if p.kind in POSITIONAL and p.name != "self"
    )
    for _ in range(count):
        print(name, flush=True)  # the last name printed is the one that crashed
        try:
            function(*([] if bound is None else [bound]), *[None] * count)
        except Exception:  # an exception is the right answer to None
            continue
    return count


def construct(name: str, kind: type) -> object | None:
    """Probe the constructor with one to four Nones; an instance built from no
    argument or a size, or None."""
    for arity in range(1, 5):
        print(name, flush=True)
        try:
            kind(*[None] * arity)
        except Exception:  # an exception is the right answer to None
            continue
    for arguments in ((), (16,)):
        try:
            instance: object = kind(*arguments)
            return instance
        except Exception:  # try the next way to build one
            continue
    return None


def main(module_name: str) -> None:
    faulthandler.enable()
    module = importlib.import_module(module_name)
    calls = 0
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if not inspect.isclass(value):
            if callable(value):
                calls += probe(name, value)
            continue
        instance = construct(name, value)
        calls += 4
        if instance is None:
            continue
        for method_name, method in vars(value).items():
            if not method_name.startswith("_") and callable(method):
                calls += probe(f"{name}.{method_name}", method, instance)
    print(f"OK {calls}")


if __name__ == "__main__":
    main(sys.argv[1])
