"""`runbooks approve`: answer a paused run's approval gate from a shell, as the Prefect UI form would."""
from __future__ import annotations

import argparse
import logging
import sys


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "approve", help="approve or reject a run waiting at its approval gate",
        description="Answer the approval gate of a paused run. The answer is bound to the plan the gate "
                    "shows (or to --plan, which must match it); the requester of the run may not approve it.")
    parser.add_argument("flow_run_id", metavar="FLOW_RUN_ID", help="the paused flow run's id")
    parser.add_argument("--as", dest="approver", required=True, metavar="NAME", help="your name, as recorded")
    parser.add_argument("--reject", action="store_true", help="reject the plan (default: approve)")
    parser.add_argument("--reason", default="", metavar="TEXT", help="why; shown in the run report")
    parser.add_argument("--plan", dest="plan_digest", metavar="DIGEST",
                        help="the plan digest you reviewed; refused if the gate shows another plan")
    parser.set_defaults(func=run_approve)


def run_approve(args: argparse.Namespace) -> int:
    import httpx
    from tasks.gate_answer import answer_gate      # imports Prefect: only when this command runs

    if not args.verbose:        # the CLI logs at INFO; httpx would print every API request there
        logging.getLogger("httpx").setLevel(logging.WARNING)
    decision = "reject" if args.reject else "approve"
    try:
        digest = answer_gate(args.flow_run_id, approver=args.approver, decision=decision,
                             reason=args.reason, plan_digest=args.plan_digest)
    except ValueError as exc:
        print(f"runbooks approve: {exc}", file=sys.stderr)
        return 2
    except httpx.TransportError as exc:
        from prefect.settings import PREFECT_API_URL
        print(f"runbooks approve: cannot reach the Prefect API at {PREFECT_API_URL.value()}: {exc}", file=sys.stderr)
        return 1
    verb = "rejected" if args.reject else "approved"
    print(f"{verb} plan {digest} of run {args.flow_run_id} as {args.approver.strip()}")
    return 0
