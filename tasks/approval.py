"""The approval gate: a paused flow run waits for typed answers bound to the plan it showed.

Prefect OSS has no users, so an approver is whoever types a name; the server keeps every answer,
which is the audit trail. The rules the gate enforces (the requester may not approve, `two` needs
two different people, an answer for another plan does not count) live here in the flow run, so
they hold whether the answer came from the Prefect UI form, `runbooks approve`, or the raw API.
"""
from __future__ import annotations

import math
import time
import uuid
from typing import Annotated, Callable, Literal

from prefect import get_client, get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput, create_flow_run_input, keyset_from_paused_state
from prefect.states import Paused, Running
from pydantic import Field, StringConstraints, ValidationError

from plans.names import identity, same_person
from plans.plan import Plan
from plans.record import Approval

from .catalog import ApprovalPolicy
from .errors import ApprovalRejected, ApprovalTimedOut

EventSink = Callable[[str, str], None]
POLL_SECONDS = 1          # Prefect's default is 10 s: an approver would wait that long for the run to move
_NEEDED = {"one": 1, "two": 2}
_NEXT = {"auto": "one", "one": "two", "two": "two"}
APPROVALS_KEY = "approvals-so-far"


class ApprovalInput(RunInput):
    """The form the Prefect UI renders on a paused run; the server validates answers against it."""
    decision: Literal["approve", "reject"] = Field(
        description="approve lets the run make the changes in the plan; reject stops it with no change")
    approver: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=r"\S")] = Field(
        description="your name, as your team knows you; the requester of the run may not approve it")
    reason: str = Field("", description="why; required by habit for rejections, shown in the run report")
    plan_digest: str = Field(
        description="the digest of the plan you reviewed; leave the pre-filled value unless you reviewed another")


def raised(policy: ApprovalPolicy) -> ApprovalPolicy:
    """The next approval level (auto -> one -> two; two is the top), for one plan that needs more."""
    return policy.model_copy(update={"policy": _NEXT[policy.policy]})


def request_approval(plan: Plan, *, policy: ApprovalPolicy, requested_by: str,
                     on_event: EventSink | None = None) -> list[Approval]:
    """Pause the current flow run until the policy is satisfied; call from a flow body.

    Args:
        plan: what the approvers are shown; every answer must carry its digest.
        policy: `auto` returns at once; `one`/`two` need that many distinct approvers, none the requester.
        requested_by: who started the run; they may reject but not approve.
        on_event: called with ("gate", message) when the gate starts waiting and ("escalation", message)
            once if `escalate_after_seconds` pass without a decision (the flow routes these to notifications).

    Returns:
        The approvals that satisfied the policy, for the run record.

    Raises:
        ApprovalRejected: someone rejected, the gate timed out, or the run left the paused state.
    """
    if policy.policy == "auto":
        return [Approval(decision="auto", approver="policy:auto", plan_digest=plan.digest)]
    return _Gate(plan, policy, requested_by, on_event).wait()


class _Gate:
    """One gate's wait: a series of pauses (each with its own key) sharing one deadline."""

    def __init__(self, plan: Plan, policy: ApprovalPolicy, requested_by: str, on_event: EventSink | None):
        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            raise RuntimeError("request_approval pauses the flow run, so it must be called from a flow body")
        self.run_id = context.flow_run.id
        self.logger = get_run_logger()
        self.plan, self.policy, self.requested_by, self.on_event = plan, policy, requested_by, on_event
        self.needed = _NEEDED[policy.policy]
        self.approvals: dict[str, Approval] = {}
        self.key_prefix = f"approval-{plan.digest}-{uuid.uuid4().hex[:8]}"
        self.pauses = 0
        self.started = time.monotonic()
        self.deadline = self.started + policy.timeout_seconds
        escalate = policy.escalate_after_seconds
        self.escalate_at = self.started + escalate if escalate and escalate < policy.timeout_seconds else None

    def wait(self) -> list[Approval]:
        self._emit("gate", f"Run {self.run_id} waits for approval of plan {self.plan.digest} "
                           f"({self._what()}), requested by {self.requested_by}; policy {self.policy.policy}. "
                           f"Answer in the Prefect UI or: runbooks approve {self.run_id} --as NAME "
                           f"[--reject --reason TEXT]. Aborts with no change after {self.policy.timeout_seconds} s.")
        while len(self.approvals) < self.needed:
            self._check_clock()
            answer = self._pause_once()
            if answer is not None:
                self._judge(answer)
        return list(self.approvals.values())

    def _what(self) -> str:
        return f"{self.plan.runbook} on {self.plan.target.label}"

    def _emit(self, kind: str, message: str) -> None:
        self.logger.info(message)
        if self.on_event is not None:
            self.on_event(kind, message)

    def _check_clock(self) -> None:
        """Escalate once, then give up at the deadline: an unanswered gate must not hold a run forever."""
        now = time.monotonic()
        if now >= self.deadline:
            raise ApprovalTimedOut(f"approval timed out after {self.policy.timeout_seconds} s; nothing was changed")
        if self.escalate_at is not None and now >= self.escalate_at:
            self.escalate_at = None
            self._emit("escalation", f"Approval of plan {self.plan.digest} ({self._what()}) has waited "
                                     f"{self.policy.escalate_after_seconds} s without a decision; run {self.run_id}, "
                                     f"requested by {self.requested_by}. It aborts with no change in "
                                     f"{math.ceil(self.deadline - now)} s.")

    def _pause_once(self) -> ApprovalInput | None:
        """One pause until the next clock event; None when it ended without a usable answer."""
        until = self.deadline if self.escalate_at is None else min(self.deadline, self.escalate_at)
        self.pauses += 1
        key = f"{self.key_prefix}-{self.pauses}"
        form = ApprovalInput.with_initial_data(
            description=self._description(),
            plan_digest=Field(self.plan.digest, description=ApprovalInput.model_fields["plan_digest"].description))
        try:
            return pause_flow_run(wait_for_input=form, timeout=max(1, math.ceil(until - time.monotonic())),
                                  poll_interval=POLL_SECONDS, key=key, _sync=True)
        except FlowPauseTimeout:
            return self._reopen(key, form)
        except ValidationError as exc:       # the server checks the schema, but a stale UI could differ
            self.logger.warning(f"An answer to the gate did not validate and does not count: {exc}")
            return None

    def _reopen(self, key: str, form: type[ApprovalInput]) -> ApprovalInput | None:
        """After a pause segment expires the server still shows Paused (or Failed, if a late answer hit
        the expired pause); put the run back to Running so the next pause, or the flow's report, can go on."""
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(self.run_id).state
            if state is not None and state.is_running():   # answered between Prefect's last check and now
                return form.load(keyset_from_paused_state(Paused(pause_key=key)), flow_run_id=self.run_id, _sync=True)
            if state is None or not (state.is_paused() or state.is_failed()):
                name = state.name if state else "stateless"
                raise ApprovalRejected(f"the run became {name} while waiting for approval; nothing was changed")
            client.set_flow_run_state(self.run_id, Running(message="approval gate still waiting"), force=True)
        return None

    def _judge(self, answer: ApprovalInput) -> None:
        """Count an answer, or say in the run log why it does not count."""
        name = answer.approver
        if answer.plan_digest != self.plan.digest:
            self.logger.warning(f"{name} answered for plan {answer.plan_digest}, but this gate shows plan "
                                f"{self.plan.digest}; the answer does not count. Still waiting.")
            return
        if answer.decision == "reject":
            raise ApprovalRejected(f"rejected by {name}: {answer.reason or 'no reason given'}")
        if same_person(name, self.requested_by):
            self.logger.warning(f"{name} requested this run and may not approve it; another approver is needed")
            return
        if identity(name) in self.approvals:
            self.logger.warning(f"{name} has already approved; policy {self.policy.policy} needs "
                                f"{self.needed} different approvers; another approver is needed")
            return
        self.approvals[identity(name)] = Approval(decision="approve", approver=name, reason=answer.reason,
                                                   plan_digest=answer.plan_digest)
        self.logger.info(f"{name} approved plan {self.plan.digest} ({len(self.approvals)} of {self.needed})")
        self._publish_status()

    def _publish_status(self) -> None:
        """Who has approved so far, as a run input `runbooks approve` reads: a second approval by the same
        person is refused there, before it is sent, instead of printing "approved" and not counting."""
        create_flow_run_input(key=f"{APPROVALS_KEY}-{self.key_prefix}-{len(self.approvals)}",
                              value={"plan_digest": self.plan.digest,
                                     "approvers": [a.approver for a in self.approvals.values()]},
                              flow_run_id=self.run_id, _sync=True)

    def _description(self) -> str:
        """The markdown the Prefect UI shows above the form: the plan, then how to answer."""
        remaining = max(0, math.ceil(self.deadline - time.monotonic()))
        who = "one approver" if self.needed == 1 else "two different approvers"
        so_far = ", ".join(a.approver for a in self.approvals.values()) or "none yet"
        return "\n".join([
            self.plan.markdown(), "", "---", "",
            f"**Approval needed from {who}.** Requested by **{self.requested_by}**, who may not approve it.",
            f"Approvals so far: {so_far}.", "",
            f"Plan digest: `{self.plan.digest}`. Leave the plan digest field as it is: an answer for any "
            f"other plan does not count.",
            f"From a shell: `runbooks approve {self.run_id} --as NAME [--reject --reason TEXT]`.",
            f"Unanswered, the run aborts with no change in {remaining} s.",
        ])
