"""A pre-started process that runs one flow run, exactly as `python -m prefect.engine RUN_ID` would.

It does the slow part first (importing Prefect and every runbook), says "ready", then waits for a flow run
id on stdin. Starting a run then costs milliseconds instead of a fresh interpreter's seconds.
"""
from __future__ import annotations

import importlib
import os
import runpy
import sys
import time


def warm_up() -> None:
    """Walk the engine's slow first-time paths now: imports, the entrypoint loader, the API client."""
    import prefect.deployments.steps.core  # noqa: F401 - pull steps, imported lazily by load_flow
    import prefect.engine  # noqa: F401
    import prefect.flow_engine  # noqa: F401
    from prefect.client.orchestration import get_client
    from prefect.flows import load_flow_from_entrypoint

    from deployments.serve import ROOT, declared_deployments
    for entry in declared_deployments():
        importlib.import_module(entry["entrypoint"].split(":")[0].removesuffix(".py").replace("/", "."))
        load_flow_from_entrypoint(str(ROOT / entry["entrypoint"]))
    with get_client(sync_client=True) as client:    # settings, HTTP pool, response models
        client.read_flows(limit=1)


def main() -> None:
    warm_up()
    print("ready", flush=True)
    run_id = sys.stdin.readline().strip()
    if os.environ.get("RUNBOOKS_WORKER_TRACE"):
        print(f"{time.time():.3f} worker got run {run_id}", file=sys.stderr, flush=True)
    if not run_id:
        return                                    # the runner shut down before handing us a run
    sys.argv = ["prefect.engine", run_id]
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
