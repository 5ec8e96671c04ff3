"""Reports: tables for people, JSON for machines.

A table has a row per operation and metric (RTT, then pingDelay), and a totals
row when there is more than one operation. Operation rows show the server's
summary (its percentiles come from a histogram, within 0.4% of the exact ones);
totals are computed here from every answer of every operation (exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .results import STAT_KEYS, OpResult, Totals, by_depth, summarize

STAT_TITLES = ("min", "p50", "p90", "p99", "p99.9", "max", "mean")
HEAD = ("type", "op", "state", "expected", "received", "lost", "elapsed ms", "metric (ms)")
LEFT = {0, 1, 2, 7}  # left-aligned columns


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _stats(stats: dict[str, Any]) -> list[str]:
    return [number(stats.get(key)) for key in STAT_KEYS]


def render(rows: Sequence[Sequence[str]], left: set[int], rule_after: int = 1) -> str:
    """Columns padded to their widest cell; a rule under the head."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i in left else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n + 1 == rule_after:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def operations_table(results: Sequence[OpResult], total: Totals | None = None) -> str:
    rows: list[list[str]] = [[*HEAD, *STAT_TITLES]]
    for r in results:
        s = r.summary
        rows.append(
            [
                r.label,
                r.op,
                r.state,
                number(r.expected),
                number(r.received),
                number(r.missing),
                number(s.get("elapsedMs")),
                "rtt",
                *_stats(s.get("rtt") or {}),
            ]
        )
        rows.append(["", "", "", "", "", "", "", "pingDelay", *_stats(s.get("pingDelay") or {})])
    if total is not None:
        state = "ok" if total.ok else f"{total.timed_out} timed out" if total.timed_out else "lost"
        rows.append(
            [
                "total",
                f"{total.operations} ops",
                state,
                number(total.expected),
                number(total.received),
                number(total.lost),
                number(round(total.elapsed_ms, 3)),
                "rtt",
                *_stats(total.rtt),
            ]
        )
        rows.append(["", "", "", "", "", "", "", "pingDelay", *_stats(total.delay)])
    return render(rows, LEFT)


def losses(results: Sequence[OpResult]) -> str:
    """Which workers (their first two characters name their node) an operation lost."""
    lines = [
        f"{r.op}: lost the workers {', '.join(r.status['workersLost'])}"
        for r in results
        if r.status.get("workersLost")
    ]
    return "\n".join(lines)


def depth_tables(results: Sequence[OpResult]) -> str:
    """RTT and pingDelay by depth for each kind of tree (one table per tree size)."""
    groups: dict[str, list[OpResult]] = {}
    for r in results:
        if r.kind == "tree" and len(r.depth):
            groups.setdefault(r.label, []).append(r)
    parts = []
    for label, group in groups.items():
        trees = f"{len(group)} trees" if len(group) > 1 else f"op {group[0].op}"
        rows = [["depth", "pokes", "rtt p50", "rtt p90", "rtt p99", "rtt max", "pingDelay p50"]]
        for depth, (rtts, delays) in by_depth(group).items():
            rtt = summarize(rtts)
            delay = summarize(delays)
            rows.append(
                [
                    str(depth),
                    str(len(rtts)),
                    number(rtt["p50"]),
                    number(rtt["p90"]),
                    number(rtt["p99"]),
                    number(rtt["max"]),
                    number(delay["p50"]),
                ]
            )
        parts.append(f"{label} by depth ({trees}), ms:\n" + render(rows, {0}))
    return "\n\n".join(parts)


def op_json(result: OpResult, details: bool = False) -> dict[str, Any]:
    """The server's summary with op, type, done and timedOut (and what was asked)."""
    document: dict[str, Any] = {
        "op": result.op,
        "type": result.kind,
        "done": result.done,
        "timedOut": result.timed_out,
    }
    if result.gave_up:
        document["gaveUp"] = True  # the monitor's --timeout passed first
    if result.tree_leaves is not None:
        document["treeLeaves"] = result.tree_leaves
    if result.client_id is not None:
        document["clientId"] = result.client_id
    if result.status.get("workersLost"):
        document["workersLost"] = result.status["workersLost"]
    document["summary"] = result.summary
    if details:
        document[result.kind] = result.detail
    return document


def run_json(
    scenario: list[dict[str, Any]],
    results: Sequence[OpResult],
    total: Totals,
    details: bool = False,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "scenario": scenario,
        "operations": [op_json(r, details) for r in results],
        "totals": total.to_json(),
        "ok": error is None and all(r.ok for r in results),
    }
    if error is not None:
        document.update(error)
    return document


def overview_text(url: str, overview: dict[str, Any]) -> str:
    """``statusRequest`` without an operation: clients, running operations, counts."""
    lines = [f"{url}: {overview.get('clients', '?')} clients connected"]
    running = [
        OpResult.from_status(None, status)
        for status in overview.get("operations") or []
        if isinstance(status, dict)
    ]
    if running:
        lines += [f"running operations ({len(running)}):", operations_table(running)]
    else:
        lines.append("no operation running")
    finished = overview.get("finished") or []
    if finished:
        lines.append(f"finished operations the server keeps ({len(finished)}):")
        lines.append("  " + " ".join(str(op) for op in finished))
    counts = overview.get("counts") or {}
    if counts:
        lines.append("server counts:")
        width = max(len(str(name)) for name in counts)
        lines += [f"  {str(name).ljust(width)}  {value}" for name, value in sorted(counts.items())]
    return "\n".join(lines)
