"""``/metrics``: counters in the Prometheus text format (version 0.0.4).

A ``Family`` is one metric: its name, type, help, and samples. Families travel
as plain lists and dicts (``to_json`` / ``from_json``) so that a worker can
gather its peers' and serve the whole node from one scrape; ``render`` merges
families of the same name, from any number of workers, under one header.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from msstorm._fastpath.histogram import bucket_middle, unpack

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Upper bounds of the RTT histogram's buckets, in milliseconds.
RTT_BOUNDS_MS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

Labels = dict[str, str]


@dataclass
class Family:
    """One metric and its samples: ``(suffix, labels, value)``, suffix ``""`` or
    ``_bucket``, ``_sum``, ``_count`` for histograms."""

    name: str
    kind: str  # counter, gauge or histogram
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> Family:
        self.samples.append((suffix, labels, value))
        return self

    def labelled(self, **labels: str) -> Family:
        """The same family with ``labels`` added to every sample."""
        samples = [(suffix, {**labels, **own}, value) for suffix, own, value in self.samples]
        return Family(self.name, self.kind, self.help, samples)

    def to_json(self) -> list[Any]:
        return [self.name, self.kind, self.help, [list(s) for s in self.samples]]

    @classmethod
    def from_json(cls, data: list[Any]) -> Family:
        name, kind, help_text, samples = data
        return cls(name, kind, help_text, [(s, dict(lb), float(v)) for s, lb, v in samples])


def counted(
    name: str, kind: str, help_text: str, label: str, counts: Mapping[str, float]
) -> Family:
    """A family with one sample per key of ``counts``, the key as ``label``."""
    family = Family(name, kind, help_text)
    for key, value in sorted(counts.items()):
        family.add(value, **{label: key})
    return family


def histogram(name: str, help_text: str, packed: bytes, **labels: str) -> Family:
    """A Prometheus histogram of a packed log-linear ``Histogram`` (milliseconds)."""
    count, total, _, _, buckets = unpack(packed)
    middles = sorted(
        (bucket_middle(key) / 1e6 if key >= 0 else -bucket_middle(-key - 1) / 1e6, n)
        for key, n in buckets
    )
    family = Family(name, "histogram", help_text)
    seen = 0
    at = 0
    for bound in RTT_BOUNDS_MS:
        while at < len(middles) and middles[at][0] <= bound:
            seen += middles[at][1]
            at += 1
        family.add(seen, "_bucket", le=_number(bound), **labels)
    family.add(count, "_bucket", le="+Inf", **labels)
    family.add(total, "_sum", **labels)
    family.add(count, "_count", **labels)
    return family


def handoff_families(handoff: Any) -> list[Family]:
    """Connections passed between the workers of a node (``handoff.Handoff``)."""
    family = Family(
        "msstorm_handoffs_total", "counter", "Connections passed to or adopted from other workers."
    )
    family.add(handoff.sent, direction="sent")
    family.add(handoff.received, direction="adopted")
    family.add(handoff.failed, direction="failed")
    return [family]


def trim_families(refusal: str | None) -> list[Family]:
    """Whether this process trims picows's per-connection state (``wire.refusal()``)."""
    family = Family(
        "msstorm_trim_active",
        "gauge",
        "1 when picows's per-connection buffers are trimmed; 0 when the installed picows "
        "is not the one msstorm knows, so every connection keeps about 4 KiB more memory "
        "(/healthz says why).",
    )
    family.add(0 if refusal else 1)
    return [family]


def server_families(endpoints: Mapping[str, Any]) -> list[Family]:
    """What every endpoint counts: connections, handshakes, disconnects, refusals, traffic."""
    families = [
        Family("msstorm_connections", "gauge", "Connections open now."),
        Family("msstorm_polling_sessions", "gauge", "Sessions on HTTP long-polling now."),
        Family("msstorm_handshakes_total", "counter", "Engine.IO sessions opened."),
        Family("msstorm_disconnects_total", "counter", "Connections closed, by reason."),
        Family("msstorm_bad_input_total", "counter", "Input refused, by kind."),
        Family(
            "msstorm_ignored_packets_total", "counter", "Well-formed packets that meant nothing."
        ),
        Family("msstorm_handler_errors_total", "counter", "Application handlers that raised."),
        Family(
            "msstorm_trims_refused_total",
            "counter",
            "Times a connection's picows buffers could not be trimmed (at its handshake, "
            "then at each ping); see msstorm_trim_active.",
        ),
        Family("msstorm_frames_received_total", "counter", "WebSocket frames received."),
        Family("msstorm_received_bytes_total", "counter", "WebSocket payload bytes received."),
        Family("msstorm_frames_sent_total", "counter", "WebSocket frames sent."),
        Family("msstorm_sent_bytes_total", "counter", "WebSocket payload bytes sent."),
    ]
    (conns, polling, handshakes, disconnects, refused, ignored, errors, trims, *traffic) = families
    for path, endpoint in endpoints.items():
        stats = endpoint.stats
        conns.add(stats.connections, endpoint=path)
        polling.add(sum(1 for s in endpoint.polling.values() if not s.upgraded), endpoint=path)
        handshakes.add(stats.handshakes, endpoint=path)
        for reason, n in sorted(stats.disconnects.items()):
            disconnects.add(n, endpoint=path, reason=reason)
        for kind, n in sorted(stats.refused.items()):
            refused.add(n, endpoint=path, kind=kind)
        ignored.add(stats.ignored, endpoint=path)
        errors.add(stats.handler_errors, endpoint=path)
        trims.add(stats.trims_refused, endpoint=path)
        t = endpoint.traffic
        for family, value in zip(
            traffic, (t.frames_in, t.bytes_in, t.frames_out, t.bytes_out), strict=True
        ):
            family.add(value, endpoint=path)
    return families


def render(families: Iterable[Family]) -> str:
    """The exposition text; families sharing a name are merged under one header."""
    merged: dict[str, Family] = {}
    for family in families:
        known = merged.get(family.name)
        if known is None:
            merged[family.name] = Family(
                family.name, family.kind, family.help, list(family.samples)
            )
        else:
            known.samples += family.samples
    lines: list[str] = []
    for family in merged.values():
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(
                f"{family.name}{suffix}{{{text}}} {_number(value)}"
                if text
                else f"{family.name}{suffix} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
