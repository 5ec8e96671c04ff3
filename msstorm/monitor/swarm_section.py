"""``python -m msstorm.monitor.swarm_section REPORT.html < SUMMARY``: add the swarm's
summary to a report written by ``--report`` (``msstorm-storm`` does, once its swarm
has stopped and printed it)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .html_report import ReportError, add_swarm


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(
            "usage: python -m msstorm.monitor.swarm_section REPORT.html < SUMMARY", file=sys.stderr
        )
        return 2
    try:
        add_swarm(args[0], sys.stdin.read())
    except (OSError, ReportError) as exc:
        print(f"msstorm-storm: cannot add the swarm to the report: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
