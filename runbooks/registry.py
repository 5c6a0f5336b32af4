"""Every runbook by its deployment name, imported lazily (Prefect is slow to import)."""
from __future__ import annotations

import importlib

RUNBOOKS = {
    "emergency-rollback": "flows.rollback:emergency_rollback",
    "certificate-renewal": "flows.certificates:certificate_renewal",
    "scale-service": "flows.scaling:scale_service",
    "chaos-drill": "flows.chaos:chaos_drill",
    "ci-failure-triage": "flows.ci_triage:ci_failure_triage",
}


def load(name: str):
    if name not in RUNBOOKS:
        raise KeyError(f"unknown runbook {name!r}; allowed: {', '.join(sorted(RUNBOOKS))}")
    module, attr = RUNBOOKS[name].split(":")
    return getattr(importlib.import_module(module), attr)
