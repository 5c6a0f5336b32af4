"""Serve every runbook declared in prefect.yaml, so `prefect deploy` and `make run` share one source of truth.

Each prefect.yaml deployment becomes a RunnerDeployment with its parameters, tags, schedules (with their
per-schedule parameters) and event triggers, served by one process that polls the Prefect API.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from prefect.deployments.runner import RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Schedule

ROOT = Path(__file__).resolve().parent.parent
# RUNBOOKS_PREFECT_YAML serves another declaration (the end-to-end tests serve a test runbook too).
PREFECT_YAML = Path(os.environ.get("RUNBOOKS_PREFECT_YAML") or ROOT / "prefect.yaml")


def declared_deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments:` entries of prefect.yaml, as written."""
    return (yaml.safe_load(path.read_text()) or {}).get("deployments") or []


def _schedule(spec: dict[str, Any]) -> Schedule:
    spec = dict(spec)
    return Schedule(cron=spec.pop("cron"), timezone=spec.pop("timezone", "UTC"),
                    parameters=spec.pop("parameters", {}), slug=spec.pop("slug", None),
                    active=spec.pop("active", True))


def runner_deployments(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    deployments = []
    for entry in declared_deployments(path):
        flow = load_flow_from_entrypoint(str(ROOT / entry["entrypoint"]))
        deployments.append(flow.to_deployment(
            name=entry["name"], description=entry.get("description"), tags=entry.get("tags") or [],
            version=entry.get("version"), parameters=entry.get("parameters") or {},
            enforce_parameter_schema=entry.get("enforce_parameter_schema", True),
            schedules=[_schedule(s) for s in entry.get("schedules") or []],
            triggers=[DeploymentEventTrigger(**t) for t in entry.get("triggers") or []]))
    return deployments


def serve_all(path: Path = PREFECT_YAML, *, limit: int | None = None) -> None:
    """Serve until interrupted (SIGTERM/SIGINT stop it cleanly)."""
    from prefect import serve
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from .zombies import ensure_zombie_automation
    with get_client(sync_client=True) as client:
        ensure_zombie_automation(client, get_current_settings().flows.heartbeat_frequency or 180)
    serve(*runner_deployments(path), limit=limit, print_starting_message=True)


__all__ = ["declared_deployments", "runner_deployments", "serve_all"]
