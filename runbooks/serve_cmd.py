"""`runbooks serve`: serve every runbook declared in prefect.yaml from this process (foreground)."""
from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("serve", help="serve every runbook in prefect.yaml (foreground)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many runs at once")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deployments.serve import serve_all
    serve_all(limit=args.limit)
    return 0
