"""What started a run: a person (Prefect UI or CLI), a schedule, or an alert, with the alert's facts."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AlertContext(BaseModel):
    """The alert that started a run, as the alert receiver passes it (`alert` flow parameter).

    `starts_at` matters: a rollback started by an alert treats the revision that was current when the
    alert began firing as the bad one, so a re-delivered alert never undoes a fix rolled out since.
    """
    model_config = ConfigDict(frozen=True)
    source: str = Field(description="alertmanager, azure-monitor or grafana")
    name: str = Field(description="the alert's name, e.g. KubePodCrashLooping")
    fingerprint: str = ""
    severity: str = ""
    starts_at: dt.datetime | None = Field(None, description="when the alert began firing")
    summary: str = ""
    labels: dict[str, str] = Field(default_factory=dict)

    def describe(self) -> str:
        since = f", firing since {self.starts_at.isoformat()}" if self.starts_at else ""
        summary = f": {self.summary}" if self.summary else ""
        return f"{self.source} alert {self.name} ({self.severity or 'no severity'}){since}{summary}"


class Trigger(BaseModel):
    """What started the run: a person (UI/CLI), a schedule, or an alert."""
    kind: Literal["manual", "schedule", "alert"] = "manual"
    detail: str = ""
    alert: AlertContext | None = None
