"""The optional features and the extra that installs what each one needs.

The base install serves, swarms and monitors; the Redis bus (``--bus redis://...``)
needs ``msstorm[redis]`` and ``--plot`` needs ``msstorm[plot]``. A command checks
right after parsing its options, so that a missing extra is one line at start
(exit status 2, as for any bad option), not a traceback once the work has begun.
"""

from __future__ import annotations

import argparse
import importlib

# extra: (the module it installs, what that is, in the message)
EXTRAS = {
    "redis": ("redis.asyncio", "the Redis client"),
    "plot": ("matplotlib", "matplotlib"),
}


def require(parser: argparse.ArgumentParser, extra: str, feature: str) -> None:
    """Exit 2 with one line saying how to install ``extra``, unless it is installed."""
    module, what = EXTRAS[extra]
    try:
        importlib.import_module(module)
    except ImportError:
        parser.exit(2, f"{parser.prog}: {feature} needs {what}: pip install 'msstorm[{extra}]'\n")
