"""A report for a run whose process is gone (killed, out of memory, its runner stopped hard).

Prefect calls `report_lost_run` as the flow's `on_crashed` and `on_cancellation` hook: in the runner
process when the run's process died (Prefect's `serve()` and the warm runner both do), or in the run's
own process when the engine saw the crash. If the kernel already published the run's report (it does on
every exit it sees), there is nothing to add. Otherwise the report is rebuilt from what the server keeps:
the run's parameters and its change journal (every step is journaled before its write), so the report
says which changes may be in place, and the cooldown already counts them.
"""
from __future__ import annotations

import logging

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

from plans.record import RunRecord
from plans.trigger import Trigger
from tasks.journal import steps_of_run

log = logging.getLogger("runbooks.kernel")


def report_lost_run(flow, flow_run, state) -> None:
    """Prefect hook (flow, flow_run, state): publish the report of a run that could not publish its own."""
    try:
        if _has_report(flow_run.id):
            return
        record = _rebuild(flow, flow_run, state)
        _notify(record)
        from tasks.report import publish_report
        publish_report(record, flow_run_id=flow_run.id)
        log.warning("run %s (%s) ended %s without its report; published one from its journal", flow_run.id,
                    flow.name, state.name)
    except Exception:                                   # a hook must not raise into Prefect's runner
        log.exception("could not publish the report of lost run %s", flow_run.id)


def _has_report(flow_run_id) -> bool:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(like_="runbook-report-%")))
    return any((a.metadata_ or {}).get("outcome") not in (None, "pending") for a in artifacts)


def _rebuild(flow, flow_run, state) -> RunRecord:
    params = flow_run.parameters or {}
    entries = steps_of_run(flow_run.id)
    record = RunRecord(runbook=flow.name, run_id=str(flow_run.id), environment=str(params.get("environment", "")),
                       requested_by=str(params.get("requested_by") or "?"), reason=str(params.get("reason") or ""),
                       dry_run=bool(params.get("dry_run")), trigger=Trigger(kind="manual", detail="unknown (run lost)"),
                       target=entries[0].target if entries else None,
                       steps=[e.as_step() for e in entries],
                       outcome="crashed" if state.is_crashed() else "cancelled")
    record.note("stopped", f"the run's process ended without finishing ({state.name}: {state.message or 'no message'})")
    open_steps = [s for s in record.steps if s.status in ("intended", "made")]
    if open_steps:
        record.next_steps = ["These changes may be in place and were not verified or undone: "
                             + "; ".join(f"{s.change.describe()} ({s.status})" for s in open_steps),
                             "Check the target now; the journal (Artifacts: runbook-change-...) has every step."]
    else:
        record.next_steps = ["Nothing was changed: the run stopped before its first write (or undid it)."]
    return record


def _notify(record: RunRecord) -> None:
    from tasks.catalog import load_catalog
    from tasks.report import notify
    try:
        environment = load_catalog().environment(record.environment)
    except Exception as exc:                            # noqa: BLE001 - report without notifying
        record.note("report", f"no notification: the catalog could not be read ({exc})")
        return
    label = record.target.label if record.target else record.environment
    record.notifications += notify(environment, "failure", f"{record.runbook} on {label}: {record.outcome} "
                                                           f"(its process ended without finishing)",
                                   subject=f"{record.runbook} {label}")
