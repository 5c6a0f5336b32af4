"""Answering approval gates from outside the run (`runbooks approve`) and listing them (`runbooks pending`).

Answers the gate would not count are refused here, before anything is sent, so the person answering hears
it now rather than in the run log: the requester approving, a second approval by the same person, an
answer for another plan, and an answer to a run that nothing executes any more (its process is gone:
the run would show Running forever with nothing behind it).
"""
from __future__ import annotations

import datetime as dt
import re
import time
from typing import Literal
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from prefect.flow_runs import resume_flow_run
from prefect.input import filter_flow_run_input, read_flow_run_input
from prefect.settings import PREFECT_API_URL, get_current_settings
from pydantic import BaseModel

from plans.names import same_person

from .approval import APPROVALS_KEY, ApprovalInput

_DIGEST_LINE = re.compile(r"Plan digest: `([0-9a-f]+)`")
HEARTBEAT_GRACE_SECONDS = 15


class PendingGate(BaseModel):
    run_id: str
    run_name: str
    runbook: str
    target: str
    requested_by: str
    waiting_since: dt.datetime | None
    plan_digest: str | None
    approvers_so_far: list[str]


def answer_gate(flow_run_id: UUID | str, *, approver: str, decision: Literal["approve", "reject"],
                reason: str = "", plan_digest: str | None = None) -> str:
    """Answer a run's approval gate; return the plan digest answered for.

    Raises:
        ValueError: no such run, not paused, not waiting for an approval, an answer that would not count,
            a run nothing executes any more, or the server refused. Nothing was sent in each case.
    """
    run_id = _as_uuid(flow_run_id)
    name = approver.strip()
    if not name:
        raise ValueError("approver name is empty: pass the name your team knows you by")
    if decision not in ("approve", "reject"):
        raise ValueError(f"decision must be 'approve' or 'reject', not {decision!r}")
    with get_client(sync_client=True) as client:
        run = _read_run(client, run_id)
        keyset = _waiting_keyset(run)
        _check_alive(client, run)
        requester = str(run.parameters.get("requested_by") or "")
        if decision == "approve" and requester and same_person(name, requester):
            raise ValueError(f"{name} requested run {run_id} and may not approve it; another approver is needed "
                             f"(nothing was sent)")
    gate_digest = _gate_digest(run_id, keyset)
    if plan_digest and plan_digest != gate_digest:
        raise ValueError(f"run {run_id} waits for approval of plan {gate_digest}, not {plan_digest}; review the "
                         f"current plan and answer again (nothing was sent)")
    if decision == "approve" and any(same_person(name, a) for a in approvers_so_far(run_id, keyset)):
        raise ValueError(f"{name} has already approved run {run_id}; its policy needs another, different "
                         f"approver (nothing was sent)")
    answer = ApprovalInput(decision=decision, approver=name, reason=reason, plan_digest=gate_digest)
    try:
        resume_flow_run(run_id, run_input=answer.model_dump(mode="json"), _sync=True)
    except (NotPausedError, FlowPauseTimeout) as exc:
        raise ValueError(f"run {run_id} stopped waiting before the answer arrived ({exc}); check its state") from exc
    except RuntimeError as exc:
        raise ValueError(f"the Prefect server refused the answer for run {run_id}: {exc}") from exc
    return gate_digest


def pending_gates() -> list[PendingGate]:
    """Every run paused at an approval gate, oldest first."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))), limit=200)
        flows = {run.flow_id: client.read_flow(run.flow_id).name for run in runs}
    gates = []
    for run in runs:
        keyset = run.state.state_details.run_input_keyset if run.state else None
        if not keyset:
            continue
        params = run.parameters or {}
        target = "/".join(str(params[k]) for k in ("environment", "service") if params.get(k))
        try:
            digest = _gate_digest(run.id, keyset, attempts=1)
        except ValueError:
            digest = None
        gates.append(PendingGate(run_id=str(run.id), run_name=run.name, runbook=flows[run.flow_id],
                                 target=target, requested_by=str(params.get("requested_by") or "?"),
                                 waiting_since=run.state.timestamp if run.state else None, plan_digest=digest,
                                 approvers_so_far=approvers_so_far(run.id, keyset)))
    return sorted(gates, key=lambda g: g.waiting_since or dt.datetime.min.replace(tzinfo=dt.timezone.utc))


def approvers_so_far(run_id: UUID, keyset: dict[str, str]) -> list[str]:
    """The approvers the gate has counted so far (the gate publishes them as a run input)."""
    base = keyset["schema"].rsplit("-", 2)[0]            # paused-approval-<digest>-<id>-<n>-schema
    prefix = base[base.find("approval-"):]               # -> approval-<digest>-<id>: the gate's own key prefix
    inputs = filter_flow_run_input(key_prefix=f"{APPROVALS_KEY}-{prefix}-", flow_run_id=run_id, limit=20, _sync=True)
    return sorted({name for item in inputs for name in (item.decoded_value or {}).get("approvers", [])})


def _check_alive(client, run) -> None:
    """Refuse a paused run whose process is gone: it would be resumed with nothing to execute it.

    A live run sends a heartbeat every `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds (also while paused);
    none within twice that (plus a grace) means its process died. With heartbeats off, nothing is refused.
    """
    frequency = get_current_settings().flows.heartbeat_frequency
    if not frequency:
        return
    paused_since = run.state.timestamp if run.state else None
    limit = 2 * max(frequency, 30) + HEARTBEAT_GRACE_SECONDS
    now = dt.datetime.now(dt.timezone.utc)
    if paused_since is None or (now - paused_since).total_seconds() < limit:
        return
    last = last_heartbeat(client, run.id)
    if last is None or (now - last).total_seconds() > limit:
        seen = f"its last heartbeat was at {last:%Y-%m-%d %H:%M:%S} UTC" if last else "it has sent no heartbeat"
        raise ValueError(f"run {run.id} is Paused but {seen}: its process is gone and nothing would execute an "
                         f"approval. Nothing was sent; nothing was changed. Cancel it and start the runbook again.")


def last_heartbeat(client, run_id: UUID) -> dt.datetime | None:
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    response = client.request("POST", "/events/filter", json={
        "filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                   "resource": {"id": [f"prefect.flow-run.{run_id}"]},
                   "occurred": {"since": since}, "order": "DESC"}, "limit": 1})
    response.raise_for_status()
    events = response.json().get("events") or []
    return dt.datetime.fromisoformat(events[0]["occurred"].replace("Z", "+00:00")) if events else None


def _as_uuid(flow_run_id: UUID | str) -> UUID:
    try:
        return flow_run_id if isinstance(flow_run_id, UUID) else UUID(str(flow_run_id).strip())
    except ValueError:
        raise ValueError(f"{flow_run_id!r} is not a flow run id (a UUID)") from None


def _read_run(client, run_id: UUID):
    try:
        return client.read_flow_run(run_id)
    except ObjectNotFound:
        where = PREFECT_API_URL.value() or "a temporary local server (PREFECT_API_URL is not set)"
        raise ValueError(f"no flow run {run_id} at {where}") from None


def _waiting_keyset(run) -> dict[str, str]:
    """The input keys of the pause the run is in, if it is paused on a form and the pause is still open."""
    state = run.state
    if state is None or not state.is_paused():
        what = state.name if state else "without a state"
        message = f": {state.message}" if state and state.message else ""
        raise ValueError(f"run {run.id} is not waiting at a gate (it is {what}{message}); there is nothing to "
                         f"answer and nothing was sent")
    keyset = state.state_details.run_input_keyset
    if not keyset:
        raise ValueError(f"run {run.id} is paused but not waiting for input; resume it in the Prefect UI instead")
    expires = state.state_details.pause_timeout
    if expires is not None and expires <= dt.datetime.now(dt.timezone.utc):
        raise ValueError(f"run {run.id}'s pause has just expired; the gate re-opens within seconds unless it "
                         f"timed out: try again")
    return keyset


def _gate_digest(run_id: UUID, keyset: dict[str, str], attempts: int = 20) -> str:
    """The plan digest the gate waits on: the form's plan_digest default, else the description's digest line.

    The schema is written just after the run enters Paused, so a fast caller may briefly find none.
    """
    schema = None
    for _ in range(attempts):
        schema = read_flow_run_input(keyset["schema"], flow_run_id=run_id, _sync=True)
        if schema is not None:
            break
        time.sleep(0.25)
    if schema is None:
        raise ValueError(f"run {run_id} is paused but its approval form was never published (its process may have "
                         f"stopped while pausing); nothing was sent. Check the run's logs")
    field = (schema.get("properties") or {}).get("plan_digest")
    if field is None:
        raise ValueError(f"run {run_id} is waiting for {schema.get('title', 'some')} input, not an approval")
    if field.get("default"):
        return str(field["default"])
    description = read_flow_run_input(keyset["description"], flow_run_id=run_id, _sync=True) or ""
    found = _DIGEST_LINE.search(str(description))
    if not found:
        raise ValueError(f"run {run_id}'s approval form does not say which plan it shows; pass --plan DIGEST")
    return found.group(1)
