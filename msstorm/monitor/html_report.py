"""``--report FILE.html``: one self-contained HTML file to share a run.

The run's settings, the table of operations, the RTT and pingDelay
distributions of each kind of operation, trees by depth, and the figures of the
server (its overview, asked at the end) and of the swarm (added by
``msstorm-storm``). Styles are inline, charts are inline SVG drawn here, and
there is no script: the file loads nothing and opens offline.
"""

from __future__ import annotations

import html
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from .report import STAT_TITLES, number
from .results import STAT_KEYS, OpResult, Totals, by_depth, summarize

SWARM_MARK = "<!-- the swarm's figures -->"
W, H = 520, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 12, 12, 30
BINS_PER_DECADE = 10
LOWEST_MS = 1e-3
RTT_COLOUR, DELAY_COLOUR = "#2b6cb0", "#d69e2e"

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2430; margin: 2em auto; max-width: 1100px;
  padding: 0 1em; }
h1 { margin-bottom: 0; } .sub { color: #6b7483; margin-top: .2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #dde2ea; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { padding: .2em .6em; border-bottom: 1px solid #dde2ea; text-align: right;
  white-space: nowrap; }
th { color: #6b7483; font-size: .85em; } td.l, th.l { text-align: left; }
td.ok { color: #2f855a; } td.bad { color: #c53030; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { color: #6b7483; font-size: .9em; }
svg text { font-size: 11px; fill: #6b7483; } pre { background: #f6f8fb; padding: .8em; }
"""


class ReportError(Exception):
    pass


def require(path: str) -> None:
    """Fail now, not after the experiment: an .html file, in a folder that is there."""
    if not path.lower().endswith((".html", ".htm")):
        raise ReportError(
            f"--report writes an HTML file: give it a name ending in .html, not {path!r}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ReportError(f"cannot write {path}: no folder {folder}")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    cells = "".join(
        f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(head)
    )
    body = []
    for row in rows:
        tds = []
        for i, cell in enumerate(row):
            css = "l" if i < left else ""
            if cell in ("ok",):
                css += " ok"
            elif cell in ("lost", "timed out", "gave up"):
                css += " bad"
            tds.append(f'<td class="{css.strip()}">{_e(cell)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- charts -------------------------------------------------------------------------


def _bin(ms: float) -> int:
    return 0 if ms <= LOWEST_MS else int(math.log10(ms / LOWEST_MS) * BINS_PER_DECADE)


def _edge(index: int) -> float:
    return LOWEST_MS * 10 ** (index / BINS_PER_DECADE)


def _tick(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{float(f'{value:.3g}'):g}"


def _svg(label: str, body: list[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" role="img" aria-label="{_e(label)}">'
    )
    return head + "".join(body) + "</svg>"


def _text(x: float, y: float, text: str, anchor: str = "middle") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{_e(text)}</text>'


def _bar(x: float, width: float, height: float, colour: str, title: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{H - PAD_BOTTOM - height:.1f}" width="{max(width, 1):.1f}" '
        f'height="{height:.1f}" fill="{colour}"><title>{_e(title)}</title></rect>'
    )


def _grid(step: float) -> list[str]:
    """Five horizontal lines, labelled 0, step, ... 4 steps."""
    parts = []
    for line in range(5):
        y = H - PAD_BOTTOM - (H - PAD_TOP - PAD_BOTTOM) * line / 4
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{W - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#dde2ea"/>'
        )
        parts.append(_text(PAD_LEFT - 4, y + 4, _tick(line * step), "end"))
    return parts


def histogram_svg(values: Sequence[float], colour: str, label: str) -> str:
    """Bars over log-spaced bins of milliseconds; an axis of counts."""
    if not values:
        return _svg(label, [_text(W / 2, H / 2, "no answers")])
    counts: dict[int, int] = {}
    for value in values:
        counts[_bin(value)] = counts.get(_bin(value), 0) + 1
    bins = list(range(min(counts), max(counts) + 1))
    step = max(1, math.ceil(max(counts.values()) / 4))  # whole counts on the axis
    width = (W - PAD_LEFT - PAD_RIGHT) / len(bins)
    plot_h = H - PAD_TOP - PAD_BOTTOM
    parts = _grid(step)
    label_every = max(1, math.ceil(len(bins) / 8))
    for i, index in enumerate(bins):
        n = counts.get(index, 0)
        x = PAD_LEFT + i * width
        if n:
            span = f"{_tick(_edge(index))}..{_tick(_edge(index + 1))} ms: {n}"
            parts.append(_bar(x + 0.5, width - 1, plot_h * n / (4 * step), colour, span))
        if i % label_every == 0:
            parts.append(_text(x, H - 12, _tick(_edge(index))))
    parts.append(_text(W - PAD_RIGHT, H - 1, "ms (log scale)", "end"))
    return _svg(label, parts)


def depth_svg(rows: list[tuple[int, dict[str, float | None]]]) -> str:
    """p50 and p99 RTT by depth, as pairs of bars."""
    top = max((s["p99"] or 0.0) for _, s in rows) or 1.0
    width = (W - PAD_LEFT - PAD_RIGHT) / max(len(rows), 1)
    plot_h = H - PAD_TOP - PAD_BOTTOM
    parts = _grid(top / 4)
    for i, (depth, stats) in enumerate(rows):
        x = PAD_LEFT + i * width
        for j, (key, colour) in enumerate((("p50", RTT_COLOUR), ("p99", "#c53030"))):
            value = stats[key] or 0.0
            title = f"depth {depth} {key}: {number(value)} ms"
            parts.append(
                _bar(x + 1 + j * width / 2, width / 2 - 2, plot_h * value / top, colour, title)
            )
        parts.append(_text(x + width / 2, H - 12, str(depth)))
    parts.append(_text(W - PAD_RIGHT, H - 1, "depth (p50 blue, p99 red), ms", "end"))
    return _svg("RTT by depth", parts)


# -- sections -------------------------------------------------------------------------


def _operations(results: Sequence[OpResult], total: Totals | None) -> str:
    head = [
        "operation",
        "op",
        "state",
        "expected",
        "received",
        "lost",
        "elapsed ms",
        "metric (ms)",
        *STAT_TITLES,
    ]
    rows: list[list[Any]] = []
    for r in results:
        s = r.summary
        common = [
            r.label,
            r.op,
            r.state,
            number(r.expected),
            number(r.received),
            number(r.missing),
            number(s.get("elapsedMs")),
        ]
        rows.append([*common, "rtt", *[number((s.get("rtt") or {}).get(k)) for k in STAT_KEYS]])
        rows.append(
            [
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "pingDelay",
                *[number((s.get("pingDelay") or {}).get(k)) for k in STAT_KEYS],
            ]
        )
    if total is not None:
        state = "ok" if total.ok else "lost"
        common = [
            "total",
            f"{total.operations} ops",
            state,
            number(total.expected),
            number(total.received),
            number(total.lost),
            number(round(total.elapsed_ms, 3)),
        ]
        rows.append([*common, "rtt", *[number(total.rtt.get(k)) for k in STAT_KEYS]])
        rows.append(
            [
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "pingDelay",
                *[number(total.delay.get(k)) for k in STAT_KEYS],
            ]
        )
    return _table(head, rows, left=3)


def _figure(svg: str, metric: str, values: Sequence[float]) -> str:
    stats = summarize(values)
    caption = ", ".join(f"{k} {number(stats[k])}" for k in ("p50", "p99", "max"))
    return f"<figure>{svg}<figcaption>{metric}: {caption} ms</figcaption></figure>"


def _distributions(results: Sequence[OpResult]) -> str:
    groups: dict[str, list[OpResult]] = {}
    for r in results:
        groups.setdefault(r.label, []).append(r)
    parts = []
    for label, group in groups.items():
        rtt = [v for r in group for v in r.rtt]
        delay = [v for r in group for v in r.delay]
        ops = f"{len(group)} operations" if len(group) > 1 else f"op {group[0].op}"
        parts.append(f"<h3>{_e(label)} ({_e(ops)}, {len(rtt):,} answers)</h3>")
        parts.append(
            '<div class="charts">'
            + _figure(histogram_svg(rtt, RTT_COLOUR, f"{label} RTT"), "RTT", rtt)
            + _figure(histogram_svg(delay, DELAY_COLOUR, f"{label} pingDelay"), "pingDelay", delay)
            + "</div>"
        )
    return "".join(parts) or "<p>No answer was kept.</p>"


def _trees(results: Sequence[OpResult]) -> str:
    groups: dict[str, list[OpResult]] = {}
    for r in results:
        if r.kind == "tree" and len(r.depth):
            groups.setdefault(r.label, []).append(r)
    parts = []
    for label, group in groups.items():
        depths = by_depth(group)
        rows = []
        charted = []
        for depth, (rtts, delays) in depths.items():
            rtt, delay = summarize(rtts), summarize(delays)
            charted.append((depth, rtt))
            rows.append(
                [
                    depth,
                    len(rtts),
                    number(rtt["p50"]),
                    number(rtt["p90"]),
                    number(rtt["p99"]),
                    number(rtt["max"]),
                    number(delay["p50"]),
                ]
            )
        trees = f"{len(group)} trees" if len(group) > 1 else f"op {group[0].op}"
        parts.append(f"<h3>{_e(label)} by depth ({_e(trees)}), ms</h3>")
        parts.append(
            _table(
                ["depth", "pokes", "rtt p50", "rtt p90", "rtt p99", "rtt max", "pingDelay p50"],
                rows,
            )
        )
        parts.append(f"<figure>{depth_svg(charted)}</figure>")
    return "".join(parts) or "<p>No tree in this run.</p>"


def _server(overview: dict[str, Any] | None) -> str:
    if not overview:
        return "<p>The server's overview could not be read.</p>"
    cluster = overview.get("cluster") or {}
    parts = [
        f"<p>{number(overview.get('clients'))} clients connected, "
        f"{number(cluster.get('workers'))} workers, bus "
        f"{_e((cluster.get('bus') or {}).get('kind', '?'))}.</p>"
    ]
    rows = []
    for tag, w in sorted((cluster.get("perWorker") or {}).items()):
        cpu = w.get("cpu")
        rss = w.get("rss")
        per = w.get("rssPerConnection")
        rows.append(
            [
                tag,
                w.get("pid", ""),
                number(w.get("clients")),
                number(w.get("connections")),
                number(w.get("polling")),
                f"{100 * cpu:.1f} %" if cpu is not None else "-",
                f"{rss / 2**20:.1f} MiB" if rss else "-",
                f"{per / 1024:.2f} KiB" if per else "-",
            ]
        )
    parts.append(
        _table(
            [
                "worker",
                "pid",
                "clients",
                "connections",
                "polling",
                "CPU (last s)",
                "memory",
                "per connection",
            ],
            rows,
        )
    )
    counts = overview.get("counts") or {}
    if counts:
        parts.append("<h3>Counts</h3>")
        parts.append(_table(["what", "count"], [[k, number(v)] for k, v in sorted(counts.items())]))
    return "".join(parts)


def render(
    *,
    title: str,
    settings: dict[str, Any],
    results: Sequence[OpResult],
    total: Totals | None,
    overview: dict[str, Any] | None,
) -> str:
    server_settings = (overview or {}).get("settings") or {}
    if all(r.ok for r in results):
        outcome = "every one completed with nothing lost"
    else:
        outcome = "some lost answers or timed out"
    rows = [[k, v] for k, v in settings.items()] + [
        [f"server {k}", v] for k, v in server_settings.items()
    ]
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">",
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            f'<p class="sub">{_e(time.strftime("%Y-%m-%d %H:%M:%S %Z"))}, ',
            f"{len(results)} operations, {_e(outcome)}</p>",
            "<h2>Settings</h2>",
            _table(["setting", "value"], rows),
            "<h2>Operations</h2>",
            _operations(results, total),
            "<h2>RTT and pingDelay distributions</h2>",
            _distributions(results),
            "<h2>Trees by depth</h2>",
            _trees(results),
            "<h2>The server</h2>",
            _server(overview),
            SWARM_MARK,
            "</body></html>\n",
        ]
    )


def write(path: str, document: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(document)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror}") from None


def add_swarm(path: str, text: str) -> None:
    """Put the swarm's figures (its summary, as it printed it) into a written report."""
    with open(path, encoding="utf-8") as report:
        document = report.read()
    section = f"<h2>The swarm</h2><pre>{_e(text.strip())}</pre>"
    write(path, document.replace(SWARM_MARK, section, 1))
