"""`runbooks pending`: every run waiting at an approval gate, with the command that answers it."""
from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("pending", help="list runs waiting at an approval gate",
                                 description="List every run paused at its approval gate, oldest first, with "
                                             "the plan it shows and how to answer it.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import httpx
    from prefect.settings import PREFECT_API_URL

    from tasks.gate_answer import pending_gates
    try:
        gates = pending_gates()
    except httpx.TransportError as exc:
        print(f"runbooks pending: cannot reach the Prefect API at {PREFECT_API_URL.value()}: {exc}", file=sys.stderr)
        return 1
    if not gates:
        print("no run is waiting for approval")
        return 0
    for gate in gates:
        since = gate.waiting_since.strftime("%Y-%m-%d %H:%M:%S UTC") if gate.waiting_since else "?"
        approved = f"; approved so far by {', '.join(gate.approvers_so_far)}" if gate.approvers_so_far else ""
        print(f"{gate.run_id}  {gate.runbook} on {gate.target or '?'}  plan {gate.plan_digest or '?'}  "
              f"requested by {gate.requested_by}  waiting since {since}{approved}")
        print(f"    runbooks approve {gate.run_id} --as YOUR_NAME [--reject --reason TEXT]")
    return 0
