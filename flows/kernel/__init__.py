"""The runbook kernel: `Runbook` (the shared shape of a run) and `runbook_flow` (Prefect's `@flow` with
the kernel's hooks and settings). See docs/architecture.md."""
from __future__ import annotations

from typing import Any

from prefect import flow

from .lost import report_lost_run
from .run import Runbook


def runbook_flow(*, name: str, description: str, **options: Any):
    """Prefect's `@flow`, with what every runbook needs: the lost-run report as its crash and cancellation
    hook, and no result persistence (the report artifact is the evidence; results would otherwise be
    pickled under ~/.prefect/storage, outside the run's directory). It injects no parameters: the flow's
    own signature and docstring stay the UI form and the docs page."""
    return flow(name=name, description=description, persist_result=False, on_crashed=[report_lost_run],
                on_cancellation=[report_lost_run], **options)


__all__ = ["Runbook", "report_lost_run", "runbook_flow"]
