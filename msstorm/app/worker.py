"""One worker of ``msstorm.run``, as its supervisor starts it:
``python -m msstorm.app.worker module:app --node-id XX ...`` (the supervisor adds
``--worker-index``, ``--run-dir`` and, for the embedded bus, ``--hub``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

import uvloop

from msstorm.cluster.supervisor import die_with_parent

from .run import serve_worker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m msstorm.app.worker")
    p.add_argument("app", help="the AsyncServer, as module:attribute")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--bus", default="embedded")
    p.add_argument("--cluster", default="msstorm")
    p.add_argument("--node-id", required=True)
    p.add_argument("--log-level", default="info")
    p.add_argument("--worker-index", type=int, default=0)
    p.add_argument("--hub", default=None)
    p.add_argument("--run-dir", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    die_with_parent()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(
            serve_worker(
                args.app,
                args.host,
                args.port,
                args.bus,
                args.cluster,
                args.node_id,
                args.worker_index,
                args.hub,
                args.run_dir,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
