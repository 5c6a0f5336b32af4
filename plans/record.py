"""The run record: everything that happened in one run, published as its report and returned by the flow."""
from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from .plan import Change, Plan
from .targets import Target
from .trigger import Trigger

Outcome = Literal["pending", "succeeded", "no-op", "dry-run", "refused", "rejected", "timed-out", "failed",
                  "rolled-back", "undo-failed", "cancelled", "crashed"]
# Outcomes that announce `success`; every other final outcome announces `failure`.
SUCCESSFUL: frozenset[str] = frozenset({"succeeded", "no-op", "dry-run"})
StepStatus = Literal["intended", "made", "not-needed", "failed", "undone", "undo-failed"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Approval(BaseModel):
    decision: Literal["approve", "reject", "auto"]
    approver: str
    reason: str = ""
    plan_digest: str
    at: dt.datetime = Field(default_factory=utcnow)


class TimelineEntry(BaseModel):
    at: dt.datetime = Field(default_factory=utcnow)
    step: str
    message: str


class Step(BaseModel):
    """One mutating step: what it changes, how far it got, and how it is undone (or why it is not)."""
    change: Change
    status: StepStatus = "intended"
    undo: str | None = None            # how it is undone, when it can be
    no_undo: str | None = None         # why it has no undo
    detail: str = ""


class Check(BaseModel):
    """One verification: what was checked, whether it passed, and the evidence."""
    name: str
    passed: bool
    detail: str
    seconds: float = 0.0


class NotificationResult(BaseModel):
    event: str
    block: str
    delivered: bool
    error: str = ""


class RunRecord(BaseModel):
    """Everything that happened in one run; published as a markdown artifact and returned by the flow."""
    runbook: str
    run_id: str = ""
    catalog: str = ""
    environment: str = ""
    target: Target | None = None
    requested_by: str
    reason: str = ""
    trigger: Trigger = Field(default_factory=Trigger)
    dry_run: bool = False
    emergency_override: str | None = None
    plan: Plan | None = None
    approvals: list[Approval] = Field(default_factory=list)
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    outcome: Outcome = "pending"
    next_steps: list[str] = Field(default_factory=list)
    notifications: list[NotificationResult] = Field(default_factory=list)

    def note(self, step: str, message: str) -> None:
        self.timeline.append(TimelineEntry(step=step, message=message))

    @property
    def changed(self) -> bool:
        """Whether any step may have changed the target (made, undone, or cut off mid-way)."""
        return any(s.status in ("made", "undone", "undo-failed", "intended") for s in self.steps)

    @property
    def succeeded(self) -> bool:
        return self.outcome in SUCCESSFUL
