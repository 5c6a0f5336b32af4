"""One flow run in a process forked from a server that has already imported every runbook.

A fresh interpreter spends about 4 s importing Prefect, the SDKs and the runbooks before a run can
start. The warm runner instead starts a multiprocessing fork server that imports all of that once
(`preload_modules()`); each run's process is then a fork of it (copy-on-write, tens of milliseconds),
and runs Prefect's own engine steps (read the run, `run_flow`, engine signal handling) with the flow
already imported, instead of reading the deployment and executing the flow's file again.
"""
from __future__ import annotations

import importlib
import os
import runpy
import sys
from uuid import UUID

from .serve import ROOT, declared_deployments

ENGINE_MODULES = [
    "prefect.engine", "prefect.flow_engine", "prefect.task_engine", "prefect._internal.observers",
    "prefect._internal.metrics", "prefect._internal.control_listener", "prefect.client.orchestration",
    "prefect.deployments.steps.core",
]


def flow_module(entrypoint: str) -> tuple[str, str]:
    """'flows/rollback.py:emergency_rollback' -> ('flows.rollback', 'emergency_rollback')."""
    path, _, name = entrypoint.partition(":")
    return path.removesuffix(".py").replace("/", "."), name


def preload_modules() -> list[str]:
    """What the fork server imports once: Prefect's engine and every runbook in prefect.yaml."""
    return ENGINE_MODULES + sorted({flow_module(d["entrypoint"])[0] for d in declared_deployments()})


def warmed() -> None:
    """A no-op run in a forked process: returns once the fork server has finished its imports."""


def run_flow_run(run_id: str, entrypoint: str) -> None:
    """`prefect.engine`'s main, with the flow taken from the already imported module. Falls back to
    running `prefect.engine` itself when this Prefect lacks the internals used here, or the flow's
    module cannot be imported."""
    os.chdir(ROOT)
    try:
        from prefect._internal.control_listener import configure_from_env
        from prefect._internal.metrics import RunMetrics
        from prefect.engine import _drive_run_flow_result, handle_engine_signals
        from prefect.flow_engine import flow_run_logger, load_flow_run, run_flow
        module, name = flow_module(entrypoint)
        flow = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        sys.argv = ["prefect.engine", run_id]
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        return
    flow_run_id = UUID(run_id)
    configure_from_env()
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        run_logger = flow_run_logger(flow_run=flow_run)
        with RunMetrics(flow_run, flow):
            result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)
            _drive_run_flow_result(flow, result)
