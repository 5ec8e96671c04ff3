"""``make fuzz``: one decoder under atheris (coverage-guided) for a while.

    python tests/fuzz/run.py TARGET [libFuzzer options...]

TARGET is a name of ``targets.TARGETS``; the options go to libFuzzer
(``-max_total_time=60``, a corpus directory...). A crash, or any exception a
decoder does not document, stops the run and leaves the input that caused it.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["msstorm", "targets"]):
    from targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: run.py TARGET [libFuzzer options]; targets: {', '.join(TARGETS)}")
    target = TARGETS[sys.argv[1]]
    if "twin" in inspect.signature(target).parameters:
        # The plain twin gives atheris its coverage (compiled code has none to
        # show); the compiled one gets the same input, for crashes of its own.
        def both(data: bytes) -> None:
            target(data, "python")
            target(data, "cython")

        atheris.Setup([sys.argv[0], *sys.argv[2:]], both)
    else:
        atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
