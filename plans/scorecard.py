"""A drill's scorecard: time to detect, time to recover, the hypothesis before/during/after, pass or fail.

Published as a version of one artifact per service (its key built from the Deployment's key), so the
Prefect UI's Artifacts page shows a service's drills over time in one place; also added to the run report.
"""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from .record import Check


class Scorecard(BaseModel):
    experiment: str
    service: str
    environment: str
    fault: str
    run_id: str = ""
    started_at: dt.datetime | None = None
    injected_at: float | None = None           # time.time() of the fault's write
    first_effect_at: float | None = None       # the fault's effect first seen by the watch
    aborted_at: float | None = None            # a watched tolerance broke (the drill aborts)
    restored_at: float | None = None
    recovered_seconds: float | None = None     # restore started -> service back to its steady state
    aborted_because: str = ""
    before: list[Check] = Field(default_factory=list)
    during: list[Check] = Field(default_factory=list)
    after: list[Check] = Field(default_factory=list)
    outcome: str = ""

    def observed(self, seen, during: Check) -> None:
        """What the watch saw during the fault (a `tasks.steady_state.Observation`)."""
        self.first_effect_at, self.aborted_at, self.aborted_because = seen.first_effect_at, seen.broken_at, seen.broken
        self.during = [during]

    @property
    def time_to_detect(self) -> float | None:
        """Fault written -> its effect seen (a broken tolerance, or any pod/health deviation)."""
        if self.injected_at is None or self.first_effect_at is None:
            return None
        return max(0.0, self.first_effect_at - self.injected_at)

    @property
    def passed(self) -> bool:
        phases = (self.before, self.during, self.after)
        return all(phases) and all(c.passed for phase in phases for c in phase)

    def lines(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return f"{value:.2f}s" if value is not None else "n/a"
        verdict = "PASS" if self.passed else "FAIL"
        lines = [f"scorecard: {verdict} ({self.experiment}: {self.fault})",
                 f"time to detect: {seconds(self.time_to_detect)}",
                 f"time to recover: {seconds(self.recovered_seconds)}"]
        if self.aborted_because:
            at = dt.datetime.fromtimestamp(self.aborted_at or 0, dt.timezone.utc).isoformat(timespec="milliseconds")
            lines.append(f"aborted at {at}: {self.aborted_because}")
        for phase in ("before", "during", "after"):
            checks = getattr(self, phase)
            lines += [f"{phase}: {'PASS' if c.passed else 'FAIL'} {c.name.removeprefix(phase + ': ')}: {c.detail}"
                      for c in checks] or [f"{phase}: not reached"]
        return lines

    def markdown(self) -> str:
        head, *rest = self.lines()
        return "\n".join([f"## Chaos drill {self.service} ({self.environment}): **{head.split(' ', 2)[1]}**", "",
                          f"Run `{self.run_id}`, started {self.started_at.isoformat() if self.started_at else '?'}"
                          f", outcome `{self.outcome}`.", "", *[f"- {line}" for line in rest]])
