"""`runbooks serve`: serve every runbook declared in prefect.yaml from this process (foreground).

`--engine warm` (default): each run is forked from a process that already imported every runbook, so it
starts in well under a second (deployments/warm_runner.py).
`--engine prefect`: Prefect's own `serve()`, a fresh process per run.
`--limit` caps the runs that are working at once; with the warm engine, runs waiting at an approval gate do
not count (with Prefect's `serve()` they do). Exit code 1 when a runbook module fails to import.
"""
from __future__ import annotations

import argparse
import os
import sys


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("serve", help="serve every runbook in prefect.yaml (foreground)",
                                 description=__doc__)
    parser.add_argument("--engine", choices=("warm", "prefect"),
                        default=os.environ.get("RUNBOOKS_SERVE_ENGINE", "warm"),
                        help="default: $RUNBOOKS_SERVE_ENGINE or warm")
    parser.add_argument("--limit", type=int, default=int(os.environ.get("RUNBOOKS_SERVE_LIMIT", "8")),
                        help="at most this many runs working at once (default: $RUNBOOKS_SERVE_LIMIT or 8)")
    parser.add_argument("--poll-seconds", type=float, default=0.25, help="warm engine: poll interval")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.engine == "prefect":
        from deployments.serve import serve_all
        serve_all(limit=args.limit)
        return 0
    import signal

    from deployments.warm_runner import WarmRunner
    runner = WarmRunner(poll_seconds=args.poll_seconds, limit=args.limit)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop.set())
    signal.signal(signal.SIGINT, lambda *_: runner.stop.set())
    try:
        runner.run()
    except RuntimeError as exc:              # a runbook that does not import: stop here, not at 3 a.m.
        print(f"runbooks serve: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
