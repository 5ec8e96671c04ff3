"""``--plot FILE.png``: the RTT distribution of the operations, and RTT by tree depth.

Drawn from the per-answer arrays of the final statuses with matplotlib's Agg
backend (no display needed). matplotlib is an optional dependency
(``pip install 'msstorm[plot]'``): the command line checks it is there
(``msstorm.extras``) and ``require`` that the file can be written, before any
operation runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .results import OpResult, by_depth

CDF_POINTS = 4000


class PlotError(Exception):
    pass


def require(path: str) -> None:
    """Fail now, not after the experiment: a PNG, in a folder that is there."""
    if not path.lower().endswith(".png"):
        raise PlotError(f"--plot writes a PNG file: give it a name ending in .png, not {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise PlotError(f"cannot write {path}: no folder {folder}")


def _groups(results: Sequence[OpResult]) -> dict[str, list[OpResult]]:
    groups: dict[str, list[OpResult]] = {}
    for r in results:
        groups.setdefault(r.label, []).append(r)
    return groups


def _values(group: Sequence[OpResult], attr: str) -> list[float]:
    values: list[float] = []
    for r in group:
        values.extend(getattr(r, attr))
    return values


def _log_scale(values: Sequence[float]) -> bool:
    low, high = min(values), max(values)
    return low > 0 and high / low >= 20


def write(path: str, results: Sequence[OpResult], title: str) -> None:
    """Draw the PNG; ``PlotError`` when it cannot be written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = _groups(results)
    trees = [r for r in results if r.kind == "tree" and len(r.depth)]
    panels = 4 if trees else 3
    fig = Figure(figsize=(13, 9) if panels == 4 else (16, 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).flatten() if panels == 4 else fig.subplots(1, 3)
    answers = sum(len(r.rtt) for r in results)
    lost = sum(r.missing for r in results)
    operations = f"{len(results)} operation{'s' if len(results) != 1 else ''}"
    fig.suptitle(f"{title}: {operations}, {answers} answers, {lost} lost")

    _histogram(axes[0], groups)
    _cdf(axes[1], groups, "rtt", "RTT (ms)", "RTT, cumulative")
    _cdf(axes[2], groups, "delay", "pingDelay (ms)", "pingDelay (client clock - server ts)")
    if trees:
        _depths(axes[3], trees)
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise PlotError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _no_data(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "no answers", ha="center", va="center", transform=ax.transAxes)


def _histogram(ax: Any, groups: dict[str, list[OpResult]]) -> None:
    everything = [v for group in groups.values() for v in _values(group, "rtt")]
    if not everything:
        return _no_data(ax, "RTT distribution")
    low, high = min(everything), max(everything)
    if _log_scale(everything):
        edges = [low * (high / low) ** (i / 60) for i in range(61)]
        ax.set_xscale("log")
    else:
        span = (high - low) or max(high, 1e-3)
        edges = [low + span * i / 60 for i in range(61)]
    for label, group in groups.items():
        values = _values(group, "rtt")
        if values:
            ax.hist(
                values, bins=edges, histtype="step", linewidth=1.5, label=f"{label} ({len(values)})"
            )
    ax.set_title("RTT distribution")
    ax.set_xlabel("RTT (ms)")
    ax.set_ylabel("answers")
    ax.legend(fontsize="small")
    return None


def _cdf(ax: Any, groups: dict[str, list[OpResult]], attr: str, xlabel: str, title: str) -> None:
    everything = [v for group in groups.values() for v in _values(group, attr)]
    if not everything:
        return _no_data(ax, title)
    for label, group in groups.items():
        values = sorted(_values(group, attr))
        if not values:
            continue
        n = len(values)
        # At most CDF_POINTS steps: a curve of a million answers looks the same.
        ranks = (
            range(n)
            if n <= CDF_POINTS
            else sorted({n * i // CDF_POINTS for i in range(CDF_POINTS)} | {n - 1})
        )
        ax.step([values[i] for i in ranks], [(i + 1) / n for i in ranks], where="post", label=label)
    if _log_scale(everything):
        ax.set_xscale("log")
    for fraction in (0.5, 0.9, 0.99):
        ax.axhline(fraction, color="grey", linewidth=0.5, linestyle=":")
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of answers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return None


def _depths(ax: Any, trees: Sequence[OpResult]) -> None:
    depths = by_depth(trees)
    positions = list(depths)
    ax.boxplot(
        [rtts for rtts, _ in depths.values()],
        positions=positions,
        whis=(5, 95),
        showfliers=False,
        widths=0.6,
        medianprops={"color": "black"},
    )
    sizes = _groups(trees)
    if len(sizes) > 1:  # trees of several sizes: their medians apart
        for label, group in sizes.items():
            per_depth = by_depth(group)
            medians = [sorted(r)[(len(r) - 1) // 2] for r, _ in per_depth.values()]
            ax.plot(list(per_depth), medians, marker="o", linewidth=1, label=f"{label} median")
        ax.legend(fontsize="small")
    ax.set_xticks(positions, [str(d) for d in positions])
    everything = [v for rtts, _ in depths.values() for v in rtts]
    if everything and _log_scale(everything):
        ax.set_yscale("log")
    ax.set_title("tree RTT by depth (box: quartiles, whiskers: p5-p95)")
    ax.set_xlabel("depth (0: the root poke)")
    ax.set_ylabel("RTT (ms)")
    ax.grid(True, axis="y", alpha=0.3)
