"""Session and socket ids, and the worker tag that starts each of them.

An id is 20 characters of URL-safe base64, like Node's: the 4-character tag of
the worker process that made it, then 16 random characters (96 bits) drawn
from the kernel in batches. Any worker of a cluster can thus tell which worker
owns a socket from its id alone (``owner_of``), with no table to share.

A tag is a 2-character node id (one msstorm-server instance) and the worker's
2-character index on that node.
"""

from __future__ import annotations

import base64
import os
import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TAG_SIZE = 4
MAX_WORKERS = len(ALPHABET) ** 2  # 4,096 per node
_RANDOM_BYTES = 12  # 16 base64 characters
_BATCH = 1024

_pool = b""
_offset = 0
_tag = ""


def node_id() -> str:
    """A random 2-character node id."""
    return secrets.choice(ALPHABET) + secrets.choice(ALPHABET)


def make_tag(node: str, index: int) -> str:
    if len(node) != 2 or any(c not in ALPHABET for c in node):
        raise ValueError(f"a node id is 2 characters of [A-Za-z0-9_-], not {node!r}")
    if not 0 <= index < MAX_WORKERS:
        raise ValueError(f"worker index out of range: {index}")
    return node + ALPHABET[index // len(ALPHABET)] + ALPHABET[index % len(ALPHABET)]


def set_tag(tag: str) -> None:
    """Make this process the worker ``tag``: every id made from now on starts with it."""
    global _tag
    if len(tag) != TAG_SIZE or any(c not in ALPHABET for c in tag):
        raise ValueError(f"not a worker tag: {tag!r}")
    _tag = tag


def tag() -> str:
    """This process's worker tag (a random one until ``set_tag`` names it)."""
    if not _tag:
        set_tag(make_tag(node_id(), 0))
    return _tag


def owner_of(sid: str) -> str:
    """The tag of the worker that made ``sid``."""
    return sid[:TAG_SIZE]


def new_sid() -> str:
    """A fresh id of this worker."""
    global _pool, _offset
    if _offset + _RANDOM_BYTES > len(_pool):
        _pool = os.urandom(_RANDOM_BYTES * _BATCH)
        _offset = 0
    chunk = _pool[_offset : _offset + _RANDOM_BYTES]
    _offset += _RANDOM_BYTES
    return tag() + base64.urlsafe_b64encode(chunk).decode("ascii")
