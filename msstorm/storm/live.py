"""The storm as the dashboard shows it: the whole cluster, in aggregates only.

Whichever worker serves the dashboard builds its state: the cluster's clients
and figures come from the membership's beats (``figures.py``); the operations
from every worker, asked over the bus (each is the origin of some); the
distribution of the current or last operation from the histograms of its
shards (running) or of its origin (ended); a tree's RTT by depth from its final
status, once, then kept. Nothing in the state grows with the clients: at a
million of them it is the same few kilobytes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

from msstorm._fastpath import Histogram
from msstorm._fastpath.histogram import bucket_middle, unpack
from msstorm.server import ids

if TYPE_CHECKING:
    from .app import Storm
    from .operations import Operation

# Finished operations each worker reports, and the state keeps.
FINISHED_SHOWN = 30
# The distribution's bins: ten per decade of milliseconds, from 1 us to 100 s.
BINS_PER_DECADE = 10
LOWEST_MS = 1e-3
BINS = 8 * BINS_PER_DECADE
DEPTHS_KEPT = 8  # trees whose depth table is kept


def bin_of(ms: float) -> int:
    if ms <= LOWEST_MS:
        return 0
    return min(BINS - 1, int(math.log10(ms / LOWEST_MS) * BINS_PER_DECADE))


def bin_edges(index: int) -> tuple[float, float]:
    low = LOWEST_MS * 10 ** (index / BINS_PER_DECADE)
    return low, LOWEST_MS * 10 ** ((index + 1) / BINS_PER_DECADE)


def distribution(packed: bytes) -> list[list[float]]:
    """``[low ms, high ms, count]`` per non-empty display bin of a packed histogram
    (values at or below zero in the first)."""
    if not packed:
        return []
    _, _, _, _, buckets = unpack(packed)
    counts = [0] * BINS
    for key, n in buckets:
        ms = bucket_middle(key) / 1e6 if key >= 0 else 0.0
        counts[bin_of(ms)] += n
    return [[*bin_edges(i), n] for i, n in enumerate(counts) if n]


def _nearest_rank(ordered: list[float], fraction: float) -> float:
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def depth_table(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RTT and pingDelay by depth of a tree's per-answer array."""
    rtts: dict[int, list[float]] = {}
    delays: dict[int, list[float]] = {}
    for entry in tree:
        depth = int(entry.get("depth", 0))
        rtts.setdefault(depth, []).append(float(entry["rtt"]))
        delays.setdefault(depth, []).append(float(entry["pingDelay"]))
    rows = []
    for depth in sorted(rtts):
        rtt = sorted(rtts[depth])
        delay = sorted(delays[depth])
        rows.append(
            {
                "depth": depth,
                "pokes": len(rtt),
                "rtt": {f"p{p}": round(_nearest_rank(rtt, p / 100), 3) for p in (50, 90, 99)}
                | {"max": round(rtt[-1], 3)},
                "pingDelay": {"p50": round(_nearest_rank(delay, 0.5), 3)},
            }
        )
    return rows


def _wall(monotonic: float) -> float:
    """A monotonic time of this process as UNIX milliseconds."""
    return round((time.time() - (time.monotonic() - monotonic)) * 1000.0)


class LiveView:
    """Builds the dashboard's state on one worker; answers the others' questions."""

    def __init__(self, storm: Storm) -> None:
        self.storm = storm
        self._depths: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        storm.bus_handlers["watch-ops?"] = self._ops_asked
        storm.bus_handlers["watch-hist?"] = self._histograms_asked

    # -- this worker's part --------------------------------------------------------

    async def local_operations(self) -> dict[str, list[dict[str, Any]]]:
        """The operations this worker is the origin of: running, and the last finished."""
        storm = self.storm
        running = []
        for op_id in list(storm.running):
            status = await storm.status({"op": op_id, "detail": "summary"})
            op = storm.running.get(op_id) or storm.finished.get(op_id)
            if isinstance(status, dict) and "error" not in status and op is not None:
                running.append(self._entry(op, status))
        finished = [
            self._entry(op, op.final)
            for op in list(storm.finished.values())[-FINISHED_SHOWN:]
            if op.final is not None
        ]
        return {"running": running, "finished": finished}

    def _entry(self, op: Operation, status: dict[str, Any]) -> dict[str, Any]:
        entry = {k: v for k, v in status.items() if k != op.kind}  # no per-answer array
        entry["startedAt"] = _wall(op.started)
        if op.ended is not None:
            entry["endedAt"] = _wall(op.ended)
        return entry

    def _ops_asked(self, question: dict[str, Any], blob: bytes) -> None:
        async def answer() -> None:
            self.storm.answer(question, await self.local_operations())

        self.storm.spawn(answer())

    def local_histograms(self, op_id: str) -> tuple[bytes, bytes]:
        """``op``'s RTT and pingDelay as this worker has them: merged if it was its
        origin and it has ended, else its shard's."""
        storm = self.storm
        op = storm.finished.get(op_id)
        if op is not None and op.histograms is not None:
            rtt, delay = op.histograms
            return rtt.to_bytes(), delay.to_bytes()
        shard = storm.shards.get(f"{op_id}@{storm.tag}")
        if shard is None:
            return b"", b""
        return shard.table.rtt.to_bytes(), shard.table.delay.to_bytes()

    def _histograms_asked(self, question: dict[str, Any], blob: bytes) -> None:
        rtt, delay = self.local_histograms(question["op"])
        self.storm.answer(question, {"sizes": [len(rtt), len(delay)]}, rtt + delay)

    # -- the cluster's --------------------------------------------------------------

    def _others(self) -> list[str]:
        return [t for t in self.storm.membership.alive() if t != self.storm.tag]

    async def operations(self) -> dict[str, list[dict[str, Any]]]:
        mine = await self.local_operations()
        others = self._others()
        replies = await asyncio.gather(
            *(self.storm.ask(t, {"t": "watch-ops?"}) for t in others), return_exceptions=True
        )
        running, finished = mine["running"], mine["finished"]
        for reply in replies:
            if not isinstance(reply, BaseException):
                running += reply[0].get("running", [])
                finished += reply[0].get("finished", [])
        running.sort(key=lambda e: e["startedAt"])
        finished.sort(key=lambda e: e.get("endedAt", 0))
        return {"running": running, "finished": finished[-FINISHED_SHOWN:]}

    async def histograms(self, entry: dict[str, Any]) -> tuple[Histogram, Histogram]:
        """The RTT and pingDelay of an operation: its origin's once ended, else every
        worker's shard merged."""
        op_id = entry["op"]
        origin = op_id[: ids.TAG_SIZE]
        workers = [origin] if entry.get("done") else self.storm.membership.alive()
        rtt, delay = Histogram(), Histogram()
        asks = [
            self.storm.ask(t, {"t": "watch-hist?", "op": op_id})
            for t in workers
            if t != self.storm.tag
        ]
        parts: list[tuple[bytes, bytes]] = []
        if self.storm.tag in workers:
            parts.append(self.local_histograms(op_id))
        for reply in await asyncio.gather(*asks, return_exceptions=True):
            if not isinstance(reply, BaseException):
                rtt_size, delay_size = reply[0]["sizes"]
                blob = reply[1]
                parts.append((blob[:rtt_size], blob[rtt_size : rtt_size + delay_size]))
        for rtt_part, delay_part in parts:
            if rtt_part:
                rtt.merge(Histogram.from_bytes(rtt_part))
            if delay_part:
                delay.merge(Histogram.from_bytes(delay_part))
        return rtt, delay

    async def depths(self, entry: dict[str, Any]) -> list[dict[str, Any]] | None:
        """A finished tree's RTT by depth (computed once from its final status)."""
        op_id = entry["op"]
        if op_id in self._depths:
            return self._depths[op_id]
        origin = op_id[: ids.TAG_SIZE]
        status: Any
        if origin == self.storm.tag:
            # Its per-answer array is JSON text already (an orjson.Fragment): read it.
            status = orjson.loads(orjson.dumps(await self.storm.status({"op": op_id})))
        else:
            try:
                reply, blob = await self.storm.ask(
                    origin, {"t": "status?", "op": op_id, "detail": True}
                )
            except TimeoutError:
                return None
            if "error" in reply:
                return None
            status = orjson.loads(blob)
        tree = status.get("tree") if isinstance(status, dict) else None
        if not isinstance(tree, list):
            return None
        table = self._depths[op_id] = await asyncio.to_thread(depth_table, tree)
        while len(self._depths) > DEPTHS_KEPT:
            self._depths.popitem(last=False)
        return table

    async def state(self) -> dict[str, Any]:
        """What the dashboard shows, now."""
        storm = self.storm
        cluster = storm.cluster()
        operations = await self.operations()
        current = None
        if operations["running"]:
            current = operations["running"][-1]
        elif operations["finished"]:
            current = operations["finished"][-1]
        shown: dict[str, Any] | None = None
        if current is not None:
            rtt, delay = await self.histograms(current)
            shown = {
                "op": current["op"],
                "type": current["type"],
                "done": current.get("done", False),
                "rtt": distribution(rtt.to_bytes()),
                "pingDelay": distribution(delay.to_bytes()),
            }
        trees = [e for e in operations["finished"] if e.get("type") == "tree"]
        depths = None
        if trees:
            table = await self.depths(trees[-1])
            if table is not None:
                depths = {
                    "op": trees[-1]["op"],
                    "treeLeaves": trees[-1].get("treeLeaves"),
                    "depths": table,
                }
        return {
            "now": round(time.time() * 1000),
            "worker": storm.tag,
            "cluster": cluster,
            "totals": totals(cluster),
            "settings": {
                "opTimeout": storm.op_timeout,
                "maxTreeLeaves": storm.max_tree_leaves,
                "maxOperations": storm.max_operations,
            },
            "operations": operations,
            "distribution": shown,
            "tree": depths,
        }


def totals(cluster: dict[str, Any]) -> dict[str, Any]:
    """The workers' figures added up, and by node."""
    summed: dict[str, Any] = {
        "connections": 0,
        "polling": 0,
        "websocket": 0,
        "connectsPerSec": 0.0,
        "disconnectsPerSec": 0.0,
        "cpu": 0.0,
        "rss": 0,
        "refused": {},
    }
    nodes: dict[str, dict[str, int]] = {}
    for tag, worker in cluster.get("perWorker", {}).items():
        for key in (
            "connections",
            "polling",
            "websocket",
            "connectsPerSec",
            "disconnectsPerSec",
            "cpu",
            "rss",
        ):
            summed[key] += worker.get(key, 0) or 0
        for kind, n in (worker.get("refused") or {}).items():
            summed["refused"][kind] = summed["refused"].get(kind, 0) + n
        node = nodes.setdefault(tag[:2], {"workers": 0, "clients": 0})
        node["workers"] += 1
        node["clients"] += worker.get("clients", 0)
    summed["cpu"] = round(summed["cpu"], 4)
    summed["connectsPerSec"] = round(summed["connectsPerSec"], 1)
    summed["disconnectsPerSec"] = round(summed["disconnectsPerSec"], 1)
    summed["rssPerConnection"] = (
        round(summed["rss"] / summed["connections"]) if summed["connections"] else None
    )
    summed["nodes"] = nodes
    return summed
