"""How a run ended, and what every exit publishes: the report artifact and a notification.

Every exit path ends here: success, no-op, dry run, a guard's refusal, rejection or timeout at the gate,
verification failure, an exception of any type (a Prefect client error, an SDK error, a bug), and
cancellation. Publishing never hides the run's own error: a report or notification that fails is logged
and recorded, and the run's exception still propagates.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from plans.record import SUCCESSFUL, RunRecord
from tasks.errors import ApprovalRejected, ApprovalTimedOut, GuardRefused, UndoFailed

if TYPE_CHECKING:
    from .run import Runbook


def outcome_of(record: RunRecord, exc: BaseException | None) -> str:
    """The outcome for an exit with `exc` (None: the body returned)."""
    if exc is None:
        return record.outcome if record.outcome in SUCCESSFUL else "failed"
    if not isinstance(exc, Exception):            # TerminationSignal, KeyboardInterrupt, SystemExit
        return "cancelled"
    if isinstance(exc, UndoFailed):
        return "undo-failed"
    if isinstance(exc, GuardRefused):
        return "refused"
    if isinstance(exc, ApprovalTimedOut):
        return "timed-out"
    if isinstance(exc, ApprovalRejected):
        return "rejected"
    if any(step.status == "undone" for step in record.steps):
        return "rolled-back"
    return "failed"


def finish(run: "Runbook", exc: BaseException | None) -> None:
    """7. Post-incident: note the end, fill in next steps, notify, then publish the report."""
    record = run.record
    if exc is not None:
        record.note("stopped", _describe(run, exc))
    elif record.outcome == "failed":
        record.note("stopped", "the runbook ended without proving its result (a runbook bug)")
    record.next_steps += default_next_steps(record)
    record.note("report", f"outcome: {record.outcome}")
    try:
        event = "success" if record.outcome in SUCCESSFUL else "failure"
        run.notify(event, f"{record.runbook} on {_label(record)}: {record.outcome}"
                          + (f" ({_describe(run, exc)})" if exc is not None else ""))
    except Exception as error:                    # noqa: BLE001 - never hides the run's own outcome
        run.log.error("notifying the outcome failed: %s", error)
    try:
        from tasks.github.incident import record_incident
        record_incident(run)
    except Exception as error:                    # noqa: BLE001 - recorded; never hides the run's own outcome
        run.log.error("recording the incident on GitHub failed: %s: %s", type(error).__name__, error)
        record.note("post-incident", f"recording the incident on GitHub failed: {type(error).__name__}: {error}")
    try:
        from tasks.report import publish_report
        publish_report(record)
    except Exception as error:                    # noqa: BLE001 - the run's own error must still propagate
        run.log.error("publishing the run report failed: %s: %s", type(error).__name__, error)
    level = run.log.info if record.outcome in SUCCESSFUL else run.log.error
    level("%s on %s: %s", record.runbook, _label(record), record.outcome)


def default_next_steps(record: RunRecord) -> list[str]:
    """What an operator reading the report should do, when the runbook did not say more."""
    changed = [s for s in record.steps if s.status in ("made", "intended")]
    steps: list[str] = []
    if record.outcome in ("refused", "rejected", "timed-out") or (record.outcome == "failed" and not record.steps):
        steps.append("Nothing was changed.")
    elif record.outcome == "rolled-back":
        steps.append("Every change was undone and the undo verified; the target is as it was before the run.")
    elif record.outcome == "cancelled":
        if changed:
            steps.append("The run was stopped with changes in place that have no undo: "
                         + "; ".join(s.change.describe() for s in changed) + ". Check the target now.")
        elif record.steps:
            steps.append("The run was stopped; every change it made was undone.")
        else:
            steps.append("The run was stopped before it changed anything.")
    return [s for s in steps if s not in record.next_steps]


def _label(record: RunRecord) -> str:
    return record.target.label if record.target else record.environment or "?"


def _describe(run: "Runbook", exc: BaseException) -> str:
    sig = getattr(exc, "signal", None)
    if sig is not None:
        return f"stopped by {signal.Signals(sig).name}{_cancel_requested(run)}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if not isinstance(exc, Exception):
        return f"stopped ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _cancel_requested(run: "Runbook") -> str:
    """`: cancelled from the UI or API` when the server shows the run Cancelling."""
    if run.run_id is None:
        return ""
    try:
        from prefect.client.orchestration import get_client
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run.run_id).state
    except Exception:                             # noqa: BLE001 - a description only
        return ""
    return ": cancelled from the UI, CLI or API" if state and state.is_cancelling() else ""
