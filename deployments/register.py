"""Register the runbooks with a Prefect server for a Kubernetes work pool (what the worker's init container runs).

`python -m deployments.register --pool runbooks --base-job-template FILE` (image from $RUNBOOKS_IMAGE):
1. creates the work pool (type kubernetes) or updates its base job template, with the image's default
   set to RUNBOOKS_IMAGE, so every flow-run Job runs the image the worker runs;
2. registers every deployment of prefect.yaml (parameters, schedules, alert triggers) for that pool, the
   flows loaded from /app in the Job (the image's RUNBOOKS_HOME);
3. creates the zombie automation (runs whose heartbeats stop are marked Crashed).
Idempotent: run at every worker start, so an upgraded image re-registers what it serves.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def job_template(path: Path, image: str) -> dict:
    """The pool's base job template with the flow-run image's default set."""
    template = json.loads(path.read_text())
    template["variables"]["properties"]["image"]["default"] = image
    return template


def register(pool: str, template: dict, image: str) -> list[str]:
    """Create or update the pool, register the deployments; returns the deployment ids."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import get_current_settings

    from .serve import runner_deployments
    from .zombies import ensure_zombie_automation

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="kubernetes", base_job_template=template))
        except ObjectAlreadyExists:
            client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
        ids = [str(deployment.apply(work_pool_name=pool, image=image)) for deployment in runner_deployments()]
        ensure_zombie_automation(client, get_current_settings().flows.heartbeat_frequency or 180)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.register", description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="runbooks")
    parser.add_argument("--base-job-template", type=Path, required=True)
    parser.add_argument("--image", default=os.environ.get("RUNBOOKS_IMAGE"), help="default: $RUNBOOKS_IMAGE")
    args = parser.parse_args(argv)
    if not args.image:
        print("register: no image (--image or RUNBOOKS_IMAGE)", file=sys.stderr)
        return 2
    ids = register(args.pool, job_template(args.base_job_template, args.image), args.image)
    print(f"register: work pool {args.pool} (kubernetes, image {args.image}); {len(ids)} deployment(s) registered",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
