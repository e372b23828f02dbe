"""The `gateway` command: the server commands `gateway run [--config FILE]` and `gateway check-config
FILE` here, and the administration of a running gateway through its REST API (`gateway rooms list`,
`gateway mute ROOM ID`, ...) from the admin client (gateway/admin_client.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import admin_client

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

DEFAULT_CONFIG = Path("configs/gateway.yaml")


def _load(path: Path) -> GatewayConfig | None:
    from gateway.config import ConfigInvalid, load_config  # pydantic: not needed by the admin commands

    try:
        return load_config(path)
    except ConfigInvalid as exc:
        print(f"{exc.source}: the configuration is not valid:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description="Open-source meeting gateway")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", "-c", type=Path, default=DEFAULT_CONFIG, help="YAML file (default: %(default)s)")
    check = sub.add_parser("check-config", help="validate a configuration file and print every error")
    check.add_argument("file", type=Path)
    admin_client.add_parsers(sub)
    args = parser.parse_args(argv)

    if args.command == "check-config":
        config = _load(args.file)
        if config is None:
            return 1
        print(f"{args.file}: OK ({len(config.rooms)} room(s))")
        return 0

    if args.command != "run":
        return admin_client.run(args)

    config = _load(args.config)
    if config is None:
        return 1
    from gateway.logging import configure_logging
    from gateway.workers import Supervisor, WorkerPlan, worker_count

    configure_logging(config.logging)
    plan = WorkerPlan.from_environment()
    if plan is None and worker_count(config) > 1:
        try:
            return Supervisor(config, args.config, worker_count(config)).run()
        except OSError as exc:
            print(f"gateway: cannot start: {exc}", file=sys.stderr)
            return 1
    if plan is not None:
        import structlog

        config = plan.configure(config)
        structlog.contextvars.bind_contextvars(worker=plan.index)  # (on every line of this worker)
    from gateway.app import run_gateway  # heavy imports (aiortc, av) only when running
    from gateway.control.store import StoreError

    try:
        asyncio.run(run_gateway(config, plan))
    except KeyboardInterrupt:
        pass
    except (OSError, StoreError) as exc:
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
