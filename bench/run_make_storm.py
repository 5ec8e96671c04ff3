"""What ``make storm`` prints, kept as a results file the README can quote.

    python bench/run_make_storm.py [msstorm-storm options]

Runs ``msstorm-storm`` (``python -m msstorm.storm.local``) with the options given
(none: what ``make storm`` runs) and writes its report, as printed, to
bench/results/make-storm.md with the commit, machine and command, and the
exit status beside it in make-storm.jsonl.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common


def main() -> int:
    ctx = common.context()
    options = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="msstorm-make-storm-") as logs:
        if "--logs" not in options:
            options += ["--logs", logs]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "msstorm.storm.local", *options],
            cwd=common.ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # in the order a terminal shows them
            text=True,
        )
    took = time.monotonic() - started
    printed = done.stdout
    common.append_jsonl(
        "make-storm",
        [
            {
                **ctx,
                "figure": "make_storm",
                "exit_status": done.returncode,
                "seconds": took,
                "output": printed,
            }
        ],
    )
    commit = (ctx["git"]["commit"] or "?")[:12]
    m = ctx["machine"]
    text = "\n".join(
        [
            "# What `make storm` prints",
            "",
            f"`{ctx['command']}` at `{commit}`"
            + (" (dirty tree)" if ctx["git"]["dirty"] else "")
            + f", {ctx['time']}, {m['cores']} cores ({m['cpu']}): exit status "
            f"{done.returncode} after {took:.0f} s.",
            "",
            "```",
            printed.rstrip(),
            "```",
            "",
        ]
    )
    path = common.write_text("make-storm.md", text)
    print(path.read_text())
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
