"""A plan: the exact changes a runbook will make. Approval is bound to its digest."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from tasks.errors import PermanentError

from .targets import Target


class PlanningError(PermanentError):
    """The request cannot be planned (a value out of range, a paused Deployment, a forbidden revision, no room):
    nothing is changed, and the message names the limit."""


class Change(BaseModel):
    resource: str                     # e.g. "deployment payments/payments-api"
    field: str                        # e.g. "spec.template (image)"
    before: Any
    after: Any

    def describe(self) -> str:
        return f"{self.resource} {self.field}: {self.before} -> {self.after}"


class Plan(BaseModel):
    """What a run will change on its target; `dry_run` publishes it and stops."""
    runbook: str
    target: Target
    summary: str
    changes: list[Change] = Field(default_factory=list)
    noop_reason: str | None = None    # set when there is nothing to do, and why
    evidence: list[str] = Field(default_factory=list)   # what the decision rests on, shown at the gate
    escalation: str | None = None     # why this plan needs the next approval level (e.g. its blast radius)

    @property
    def is_noop(self) -> bool:
        return not self.changes

    @property
    def digest(self) -> str:
        body = self.model_dump(mode="json", exclude={"noop_reason", "evidence"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def markdown(self) -> str:
        lines = [f"### Plan `{self.digest}`: {self.runbook} on {self.target.label}", "", self.summary, ""]
        if self.changes:
            lines += ["| resource | field | before | after |", "|---|---|---|---|"]
            lines += [f"| {c.resource} | {c.field} | `{c.before}` | `{c.after}` |" for c in self.changes]
        else:
            lines.append(f"No change: {self.noop_reason or 'already in the desired state'}")
        if self.escalation:
            lines += ["", f"**Approval raised one level**: {self.escalation}."]
        if self.evidence:
            lines += ["", "Evidence:", *[f"- {e}" for e in self.evidence]]
        return "\n".join(lines)
