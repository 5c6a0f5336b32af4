"""`runbooks run RUNBOOK --set key=value ... [--dry-run]`: run a runbook now, from a terminal.

Exit code 0 only when the run succeeded and verified (a no-op or a dry run counts as success); 1 when it
failed, was rejected or refused; 2 for bad input, before anything runs.
"""
from __future__ import annotations

import argparse
import sys

from .registry import RUNBOOKS, load


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run a runbook now", description=__doc__)
    parser.add_argument("runbook", help=f"one of: {', '.join(sorted(RUNBOOKS))}")
    parser.add_argument("--set", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="a runbook parameter (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    parser.set_defaults(func=run)


def parse_params(pairs: list[str], allowed: set[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        if key not in allowed:
            raise ValueError(f"unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}")
        params[key] = value
    return params


def run(args: argparse.Namespace) -> int:
    try:
        runbook = load(args.runbook)
    except KeyError as exc:
        print(f"runbooks run: {exc.args[0]}", file=sys.stderr)
        return 2
    allowed = set(runbook.parameters.properties)
    try:
        params = parse_params(args.params, allowed)
    except ValueError as exc:
        print(f"runbooks run: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        params["dry_run"] = "true"
    missing = [name for name in runbook.parameters.required if name not in params]
    if missing:
        print(f"runbooks run: missing required parameter(s): {', '.join(missing)} (use --set NAME=VALUE)",
              file=sys.stderr)
        return 2
    state = runbook(**params, return_state=True)
    if state.is_completed():
        record = state.result()
        print(f"{args.runbook}: {record.outcome}")
        return 0
    print(f"{args.runbook}: {state.name}: {state.message}", file=sys.stderr)
    return 1
