"""Zombie flow runs: a run whose process died with nobody to say so (its runner died too, or the machine).

Prefect's native answer is heartbeats plus an automation: every run sends `prefect.flow-run.heartbeat`
every `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds (also while paused at a gate), and a proactive trigger
marks a run Crashed when its heartbeats stop without a final state. The runners catch the common case
at once (a run's process exits under them); this catches the rest within three heartbeats, so no run
is left looking alive with nothing behind it, and `runbooks approve` can refuse it.
"""
from __future__ import annotations

import datetime as dt

from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

NAME = "runbooks-crash-flow-runs-without-heartbeat"
FINAL_EVENTS = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}


def zombie_automation(heartbeat_seconds: int) -> AutomationCore:
    return AutomationCore(
        name=NAME, enabled=True,
        description="Marks a flow run Crashed when its heartbeats stop before it reached a final state "
                    "(created by `runbooks serve`).",
        trigger=EventTrigger(after={"prefect.flow-run.heartbeat"},
                             expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
                             match={"prefect.resource.id": "prefect.flow-run.*"},
                             for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                             within=dt.timedelta(seconds=3 * heartbeat_seconds)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, name="Crashed",
                                    message=f"no heartbeat for {3 * heartbeat_seconds} s: the run's process is "
                                            "gone; its report says what may have been changed")])


def ensure_zombie_automation(client, heartbeat_seconds: int) -> None:
    """Create the automation once (idempotent by name)."""
    if client.read_automations_by_name(NAME):
        return
    client.create_automation(zombie_automation(heartbeat_seconds))
