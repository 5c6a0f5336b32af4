"""Typed models at task and flow boundaries: targets, plans, approvals and the run record."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Target(BaseModel):
    """What a runbook acts on, resolved from the catalog."""
    model_config = ConfigDict(frozen=True)
    environment: str
    service: str
    namespace: str
    deployment: str

    @property
    def key(self) -> str:
        """Lock and cooldown key: one per environment and service."""
        return f"{self.environment}/{self.service}"


class Change(BaseModel):
    resource: str                     # e.g. "deployment payments/payments-api"
    field: str                        # e.g. "spec.template (image)"
    before: Any
    after: Any


class Plan(BaseModel):
    """The exact changes a runbook will make; approval is bound to its digest."""
    runbook: str
    target: Target
    summary: str
    changes: list[Change] = Field(default_factory=list)
    noop_reason: str | None = None    # set when there is nothing to do, and why

    @property
    def is_noop(self) -> bool:
        return not self.changes

    @property
    def digest(self) -> str:
        body = self.model_dump(mode="json", exclude={"noop_reason"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def markdown(self) -> str:
        lines = [f"### Plan `{self.digest}`: {self.runbook} on {self.target.environment}/{self.target.service}",
                 "", self.summary, ""]
        if self.changes:
            lines += ["| resource | field | before | after |", "|---|---|---|---|"]
            lines += [f"| {c.resource} | {c.field} | `{c.before}` | `{c.after}` |" for c in self.changes]
        else:
            lines.append(f"No change: {self.noop_reason or 'already in the desired state'}")
        return "\n".join(lines)


class Approval(BaseModel):
    decision: Literal["approve", "reject", "auto"]
    approver: str
    reason: str = ""
    plan_digest: str
    at: dt.datetime = Field(default_factory=utcnow)


class Trigger(BaseModel):
    """What started the run: a person (UI/CLI), a schedule, or an alert."""
    kind: Literal["manual", "schedule", "alert"] = "manual"
    detail: str = ""


class TimelineEntry(BaseModel):
    at: dt.datetime = Field(default_factory=utcnow)
    step: str
    message: str


class RunRecord(BaseModel):
    """Everything that happened in one run; published as a markdown artifact and returned by the flow."""
    runbook: str
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
    evidence: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    outcome: Literal["pending", "succeeded", "no-op", "dry-run", "rejected", "refused", "failed"] = "pending"
    next_steps: list[str] = Field(default_factory=list)

    def note(self, step: str, message: str) -> None:
        self.timeline.append(TimelineEntry(step=step, message=message))
