"""`runbooks docs [--check]`: regenerate docs/runbooks/*.md from the flows (or check they are current)."""
from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("docs", help="generate the runbook pages in docs/runbooks")
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is out of date; write nothing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .docs import write_all
    stale = write_all(check=args.check)
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path}", file=sys.stderr if args.check else sys.stdout)
    return 1 if args.check and stale else 0
