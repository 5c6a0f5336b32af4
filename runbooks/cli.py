"""`runbooks`: the command line."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Every command, not only under `make`: Prefect must never phone home from these machines, and runs send
# heartbeats often enough that a dead run is noticed (by `runbooks approve`, the runner) within a minute.
RUNBOOKS_PREFECT_DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                             "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
for _name, _value in RUNBOOKS_PREFECT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

from sandbox.azure.env import azure_identity_env  # noqa: E402

# The sandbox's Azure identity (RUNBOOKS_AZURE_*), as DefaultAzureCredential reads it (sandbox/azure/env.py).
os.environ.update(azure_identity_env(os.environ))

from .sandbox_cmd import add_sandbox_parser


# Command modules, each with `add_parser(commands)`; the sandbox command needs no Prefect import.
COMMANDS: list[str] = ["run_cmd", "approve_cmd", "pending_cmd", "serve_cmd", "up_cmd", "demo_cmd", "receiver_cmd",
                       "docs_cmd"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runbooks", description="Operational runbooks as Prefect flows.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_sandbox_parser(commands)
    for module in COMMANDS:
        importlib.import_module(f"runbooks.{module}").add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:   # one line per HTTP request drowns what matters
        logging.getLogger("httpx").setLevel(logging.WARNING)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
