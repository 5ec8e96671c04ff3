"""``msstorm-server``'s options for watching a storm: the dashboard and the admin UI.

The admin UI's credentials never travel on a command line: the supervisor hands
them to its workers in their environment (``MSSTORM_ADMIN_AUTH``), as a person
may hand them to the server.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .admin import DEVELOPMENT_LIMIT, MODES, AdminUI, AuthError, parse_auth
from .dashboard import Dashboard, dashboard_url

if TYPE_CHECKING:
    from .app import Storm

log = logging.getLogger("msstorm.server")

ADMIN_AUTH_ENV = "MSSTORM_ADMIN_AUTH"


def add_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("watching the storm")
    group.add_argument(
        "--dashboard-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the live dashboard at http://HOST:PORT/dashboard/ (default: none); "
        "it asks for the monitor token",
    )
    group.add_argument(
        "--admin-auth",
        default=os.environ.get(ADMIN_AUTH_ENV),
        metavar="USER:PASSWORD",
        help=f"serve Socket.IO's admin UI on namespace /admin (default: ${ADMIN_AUTH_ENV}; "
        "without either there is no /admin)",
    )
    group.add_argument(
        "--admin-mode",
        choices=MODES,
        default=None,
        help="production (the default: aggregates only) or development (the socket list "
        f"and events, for at most {DEVELOPMENT_LIMIT} clients)",
    )


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a wrong combination now (exit 2), naming the option."""
    if args.dashboard_port is not None and not 0 <= args.dashboard_port <= 65535:
        p.error(f"--dashboard-port must be a port (0..65535), not {args.dashboard_port}")
    if args.admin_auth is not None:
        try:
            parse_auth(args.admin_auth)
        except AuthError as exc:
            p.error(str(exc))
    if args.admin_mode is not None and args.admin_auth is None:
        p.error(f"--admin-mode needs --admin-auth USER:PASSWORD (or ${ADMIN_AUTH_ENV})")
    if args.admin_mode == "development" and (args.max_clients or 0) > DEVELOPMENT_LIMIT:
        p.error(
            f"--admin-mode development sends an event per socket to every admin: it serves "
            f"at most {DEVELOPMENT_LIMIT} clients, and --max-clients is {args.max_clients:,}"
        )
    if args.admin_auth is not None:  # for the workers, out of their command lines
        os.environ[ADMIN_AUTH_ENV] = args.admin_auth


def worker_options(args: argparse.Namespace) -> dict[str, object]:
    """What a worker's command line carries of these options (no secret)."""
    return {"--dashboard-port": args.dashboard_port, "--admin-mode": args.admin_mode}


@dataclass
class Watching:
    """A worker's dashboard and admin namespace, those it was asked for."""

    dashboard: Dashboard | None = None
    admin: AdminUI | None = None

    async def close(self) -> None:
        if self.admin is not None:
            self.admin.close()
        if self.dashboard is not None:
            await self.dashboard.close()


async def start(storm: Storm, args: argparse.Namespace, clustered: bool) -> Watching:
    watching = Watching()
    if args.admin_auth is not None:
        username, password = parse_auth(args.admin_auth)
        watching.admin = AdminUI(storm, username, password, mode=args.admin_mode or "production")
        watching.admin.start()
    if args.dashboard_port is not None:
        watching.dashboard = Dashboard(storm)
        await watching.dashboard.start(args.host, args.dashboard_port, reuse_port=clustered)
        if not args.worker_index:  # one line per node, not per worker
            shown = storm.token if args.monitor_token is None else "<the monitor token>"
            log.info("dashboard: %s", dashboard_url(args.host, watching.dashboard.port, shown))
    return watching
