"""What a MessageStorm worker adds to ``/metrics``: pokes, answers, operations, RTT.

A scrape may land on any worker of a node (they share the port): the worker
that takes it asks the others for their families over the bus and serves the
whole cluster, every sample labelled with its worker's tag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msstorm._fastpath import Histogram
from msstorm._fastpath.wire import refusal
from msstorm.server import metrics
from msstorm.server.metrics import Family

if TYPE_CHECKING:
    from .app import Storm

# The outcomes Storm counts per operation kind, as "<kind> <outcome>".
OUTCOMES = {"started": "started", "completed": "completed", "timed out": "timed_out"}


def storm_families(storm: Storm) -> list[Family]:
    """This worker's MessageStorm counters (unlabelled)."""
    clients = Family("msstorm_clients", "gauge", "Clients joined to namespace / now.")
    clients.add(len(storm.clients.members))
    running = Family("msstorm_operations_running", "gauge", "Operations started here, running.")
    running.add(len(storm.running))
    operations = Family(
        "msstorm_operations_total", "counter", "Operations started here, by type and outcome."
    )
    counts = storm.counts
    for kind in ("unicast", "broadcast", "tree"):
        for said, outcome in OUTCOMES.items():
            operations.add(counts.get(f"{kind} {said}", 0), type=kind, outcome=outcome)
    sent, answered = storm.traffic()
    pokes = Family("msstorm_pokes_sent_total", "counter", "Pokes sent to this worker's clients.")
    pokes.add(sent)
    answers = Family("msstorm_answers_total", "counter", "pokeBacks of this worker's clients.")
    answers.add(answered, outcome="recorded")
    answers.add(counts.get("answers unknown or late", 0), outcome="unknown_or_late")
    answers.add(counts.get("answers for another client's poke", 0), outcome="foreign")
    answers.add(counts.get("malformed pokeBacks", 0), outcome="malformed")
    rtt = Histogram()
    rtt.merge(storm.rtt_history)
    for shard in storm.shards.values():
        rtt.merge(shard.table.rtt)
    rtt_family = metrics.histogram(
        "msstorm_rtt_milliseconds",
        "Round-trip time of the pokes answered here, poke written to pokeBack decoded.",
        rtt.to_bytes(),
    )
    return [clients, running, operations, pokes, answers, rtt_family]


def worker_families(storm: Storm) -> list[Family]:
    """This worker's server and MessageStorm families, labelled with its tag."""
    if storm.listener is not None:
        served = storm.listener.router.families()
    else:
        served = metrics.server_families({storm.server.path: storm.server})
        served += metrics.trim_families(refusal())
    own = served + storm_families(storm)
    return [family.labelled(worker=storm.tag) for family in own]
