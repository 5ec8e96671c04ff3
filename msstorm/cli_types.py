"""What the commands' options accept: argparse ``type=`` functions that refuse a bad
value when the command starts, saying what is accepted.

argparse turns the ``ArgumentTypeError`` they raise into "argument --OPTION: why"
and exit status 2, so a wrong value never starts a server, a swarm or a worker
that would run misconfigured; none is clamped or dropped. Each function returns
the value as the command uses it (the same text for URLs and addresses, so that
a supervisor can hand it on to its workers unchanged).

This module is a leaf: it imports nothing of msstorm, so the commands of every
layer (``storm/``, ``swarm/``, ``monitor/``) and ``cluster/`` (which shows a bus
URL with its password masked) use it without importing up a layer. It is not in
``protocol/``, which is the wire's contract; this is the operator's.
"""

from __future__ import annotations

import ipaddress
import math
import re
from argparse import ArgumentTypeError
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

T = TypeVar("T")

# The longest delay a JavaScript timer takes (2^31 - 1 ms): a client's heartbeat
# timers are set from the intervals the server announces.
MAX_MILLISECONDS = 2**31 - 1
MASK = "***"

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


# -- numbers --------------------------------------------------------------------


def whole(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number from ``minimum`` (to ``maximum``, if any)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ArgumentTypeError(f"not a whole number: {text!r}") from None
        if maximum is not None and not minimum <= value <= maximum:
            raise ArgumentTypeError(f"must be from {minimum} to {maximum}, not {value}")
        if value < minimum:
            raise ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    return parse


count = whole(1)
port = whole(1, 65535)
milliseconds = whole(1, MAX_MILLISECONDS)


def power_of_two(text: str) -> int:
    value = count(text)
    if value & (value - 1):
        raise ArgumentTypeError(f"must be a power of two (1, 2, 4, ...), not {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def positive(text: str) -> float:
    """A number more than 0 (seconds, mostly)."""
    value = _number(text)
    if value <= 0:
        raise ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def non_negative(text: str) -> float:
    """A number of 0 or more (a pause, a rate where 0 means none)."""
    value = _number(text)
    if value < 0:
        raise ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


# -- addresses ------------------------------------------------------------------


def is_host(text: str) -> bool:
    """An IP address, or a host name: dot-separated labels, the last not all digits."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    name = text.removesuffix(".")
    labels = name.split(".")
    return (
        0 < len(name) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def host(text: str) -> str:
    if not is_host(text):
        raise ArgumentTypeError(
            f"expected an IP address (0.0.0.0, ::, 10.0.0.5...) or a host name, not {text!r}"
        )
    return text


def server_url(text: str) -> str:
    """A server: http(s):// or ws(s):// HOST[:PORT], nothing after; HOST:PORT means http://."""
    if "://" not in text:
        text = "http://" + text
    expected = f"expected http://HOST:PORT (or https://, ws://, wss://), not {text!r}"
    try:
        parts = urlsplit(text)
        given_port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ArgumentTypeError(f"not a URL: {text!r} ({exc})") from None
    if parts.scheme not in ("http", "https", "ws", "wss") or not is_host(parts.hostname or ""):
        raise ArgumentTypeError(expected)
    if given_port == 0:
        raise ArgumentTypeError(f"port 0 is no server's port: {text!r}")
    if "@" in parts.netloc:
        raise ArgumentTypeError(f"a server URL has no user or password: {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ArgumentTypeError(f"a server URL has no path or query (only HOST:PORT): {text!r}")
    return text


def origins(text: str) -> str:
    """``*``, or a comma-separated list of origins as browsers send them
    (``scheme://host[:port]``, lower case, no default port), or ``null``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ArgumentTypeError("expected '*' or a comma-separated list of origins")
    if "*" in items:
        if len(items) > 1:
            raise ArgumentTypeError("'*' lets every origin in: give it alone")
        return "*"
    for item in items:
        if item != "null" and item != _origin(item):
            raise ArgumentTypeError(
                f"{item!r} is no origin as a browser sends it: expected scheme://host[:port], "
                f"lower case, without the default port or a path, e.g. {_origin(item)!r}"
            )
    return ",".join(items)


def _origin(text: str) -> str:
    """``text`` written as a browser's Origin header (or the scheme's example)."""
    try:
        parts = urlsplit(text.lower())
        number = parts.port
    except ValueError:
        return "https://example.com"
    name = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not is_host(name):
        return "https://example.com"
    if ":" in name:
        name = f"[{name}]"
    default = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{name}" + (f":{number}" if number not in (None, default) else "")


# -- the bus --------------------------------------------------------------------

BUS_FORMS = (
    "'embedded', redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS), "
    "or unix://[[USER]:PASSWORD@]/PATH[?db=DB]"
)


def bus(text: str) -> str:
    """``embedded``, or a Redis URL of the forms redis-py's ``from_url`` serves, with
    nothing it would ignore: a host, a port from 1 to 65535, a whole-number db."""
    if text == "embedded":
        return text
    problem = _redis_problem(text)
    if problem is not None:
        raise ArgumentTypeError(f"{problem}: expected {BUS_FORMS}, not {masked_url(text)!r}")
    return text


def _redis_problem(text: str) -> str | None:
    try:
        parts = urlsplit(text)
        given_port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.fragment:
        return "a fragment (#...) means nothing to Redis"
    if parts.scheme in ("redis", "rediss"):
        if not text.startswith(parts.scheme + "://") or not is_host(parts.hostname or ""):
            return "no host"
        if given_port == 0:
            return "port 0"
        if parts.query:
            return "no query options are taken"
        db = parts.path.removeprefix("/")
        if db and not db.isdigit():
            return f"the db is a whole number, not {db!r}"
        return None
    if parts.scheme == "unix":
        if not text.startswith("unix://") or parts.hostname or not parts.path.startswith("/"):
            return "a socket's path is absolute, after unix://"
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key != "db":
                return f"the only query option is db, not {key!r}"
            if not value.isdigit():
                return f"the db is a whole number, not {value!r}"
        return None
    return "not a bus"


def masked_url(url: str) -> str:
    """``url`` with its password, if any, shown as ``***``: fit for logs and status."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    userinfo, _, where = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{where}"))


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


# -- anything else ----------------------------------------------------------------


def explained(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse type that shows its ``ValueError``'s message (argparse
    alone would say only "invalid value")."""

    def checked(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise ArgumentTypeError(str(exc)) from None

    checked.__name__ = getattr(parse, "__name__", "value")
    return checked
