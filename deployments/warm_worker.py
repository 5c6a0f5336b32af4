"""One flow run in a process forked from a server that has already imported every runbook.

A fresh interpreter spends about 4 s importing Prefect, the SDKs and the runbooks before a run can
start. The warm runner instead starts a multiprocessing fork server that imports all of that once
(`preload_modules()`); each run's process is then a fork of it (copy-on-write, tens of milliseconds),
and runs Prefect's own engine steps (read the run, `run_flow`, engine signal handling) with the flow
already imported, instead of reading the deployment and executing the flow's file again.

Those engine steps are Prefect's private functions, so the fast path is pinned to the Prefect minor
versions the suite has passed on (`TESTED_PREFECT_MINORS`) and checked at start-up (`fast_path_problem`):
on any other version, or if an internal moved, every run goes through `python -m prefect.engine` in the
forked process instead (slower to start, same behaviour), and the runner says so loudly.
"""
from __future__ import annotations

import importlib
import inspect
import os
import runpy
import sys
import traceback
from uuid import UUID

from .serve import ROOT, declared_deployments

TESTED_PREFECT_MINORS = ("3.8", "3.9")
ENGINE_MODULES = [
    "prefect.engine", "prefect.flow_engine", "prefect.task_engine", "prefect._internal.observers",
    "prefect._internal.metrics", "prefect._internal.control_listener", "prefect.client.orchestration",
    "prefect.deployments.steps.core",
]
# What the fast path calls, and the parameters it passes.
_FAST_PATH = {"prefect.flow_engine:run_flow": ("flow", "flow_run", "error_logger"),
              "prefect.flow_engine:load_flow_run": ("flow_run_id",),
              "prefect.flow_engine:flow_run_logger": ("flow_run",),
              "prefect.engine:handle_engine_signals": ("flow_run_id",),
              "prefect.engine:_drive_run_flow_result": ("flow", "run_result"),
              "prefect._internal.metrics:RunMetrics": (),
              "prefect._internal.control_listener:configure_from_env": ()}


def flow_module(entrypoint: str) -> tuple[str, str]:
    """'flows/rollback.py:emergency_rollback' -> ('flows.rollback', 'emergency_rollback')."""
    path, _, name = entrypoint.partition(":")
    return path.removesuffix(".py").replace("/", "."), name


def runbook_modules() -> list[str]:
    return sorted({flow_module(d["entrypoint"])[0] for d in declared_deployments()})


def preload_modules() -> list[str]:
    """What the fork server imports once: Prefect's engine and every runbook in prefect.yaml."""
    return ENGINE_MODULES + runbook_modules()


def fast_path_problem() -> str | None:
    """Why the fast path cannot be used with this Prefect, or None when it can."""
    import prefect
    minor = ".".join(prefect.__version__.split(".")[:2])
    if minor not in TESTED_PREFECT_MINORS:
        return f"Prefect {prefect.__version__} is not a version the fast path was tested on " \
               f"({', '.join(TESTED_PREFECT_MINORS)})"
    for target, parameters in _FAST_PATH.items():
        module_name, _, name = target.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            return f"{target} is missing in Prefect {prefect.__version__}: {exc}"
        accepted = set(inspect.signature(found).parameters)
        if not set(parameters) <= accepted:
            return f"{target} no longer takes {', '.join(sorted(set(parameters) - accepted))}"
    return None


def probe(results) -> None:
    """In a process forked from the fork server: import every runbook (an import error must stop
    start-up, not surface in the first 3 a.m. run) and check the fast path. Puts (ok, message)."""
    os.chdir(ROOT)
    for module in runbook_modules():
        try:
            importlib.import_module(module)
        except BaseException:                                  # noqa: BLE001 - reported to the runner
            results.put((False, f"runbook module {module} failed to import:\n{traceback.format_exc()}"))
            return
    results.put((True, fast_path_problem() or ""))


def run_flow_run(run_id: str, entrypoint: str, fast: bool = True) -> None:
    """`prefect.engine`'s main, with the flow taken from the already imported module; `python -m
    prefect.engine` when the fast path is off."""
    os.chdir(ROOT)
    if not fast:
        sys.argv = ["prefect.engine", run_id]
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        return
    from prefect._internal.control_listener import configure_from_env
    from prefect._internal.metrics import RunMetrics
    from prefect.engine import _drive_run_flow_result, handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow_run, run_flow
    module, name = flow_module(entrypoint)
    flow = getattr(importlib.import_module(module), name)
    flow_run_id = UUID(run_id)
    configure_from_env()
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        run_logger = flow_run_logger(flow_run=flow_run)
        with RunMetrics(flow_run, flow):
            result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)
            _drive_run_flow_result(flow, result)
