"""Deciding what each alert of a delivery does, and posting the accepted ones as Prefect events.

Why these outcomes, in this order (first that applies wins):
- `ignored` / `resolved`: no rule wants it, or it stopped firing.
- `duplicate`: the same alert (source + fingerprint) started a run within the rule's dedupe window: HA
  Alertmanager pairs and retries deliver one alert many times, and it must start one run.
- `cooldown`: the object was *changed* within the rule's cooldown, as its change records in Prefect show
  (`tasks.journal.last_change`, the records every runbook writes before each write). Only a change starts
  a cooldown: a run that was refused, rejected at its gate or found nothing to do leaves no record, so the
  next alert on the object can act.
- `in-flight`: a run of the same runbook on the same object has not finished (or the event for one was
  posted under PENDING_SECONDS ago and its run has not appeared yet). The answer is 503 + Retry-After so
  the sender keeps the alert and retries: once that run ends it either changed the object (the retry gets
  `cooldown`) or did not (the retry starts a run). No queue in the receiver: the sender already has one
  that survives our restarts.
- `blocked`: the object's change history is unreadable; fail closed (no run) and answer 503 so the alert
  is retried after an operator repairs the record.
- `started`: an event is posted; the deployment trigger in prefect.yaml starts the run.

Decisions and the post happen under one lock, so racing deliveries still start one run per object: the
process's lock, and the state store's session (deployments/receiver_state.py), which in PostgreSQL is a
transaction holding a lock per object shared by every replica of the receiver.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from typing import Callable, Literal

from pydantic import BaseModel

from plans.trigger import AlertContext
from tasks.catalog import Catalog
from tasks.errors import RunbookError
from tasks.journal import UnreadableJournal

from .alerts import Alert
from .prefect_api import FINAL_STATES, PrefectApi
from .receiver_state import Accepted, MemoryState, Posted, StateView
from .rules import Ignored, RuleSet, Start, resolve

log = logging.getLogger("runbooks.receiver")

PENDING_SECONDS = 30.0          # how long a posted event counts as a run about to appear
SCHEDULED_AHEAD_SECONDS = 60    # a run scheduled further ahead (a monthly rehearsal) is not in flight
RETRY_OUTCOMES = frozenset({"in-flight", "blocked"})


class Outcome(BaseModel):
    """What happened to one alert of a delivery; returned to the sender and logged."""
    alert: str
    source: str
    fingerprint: str
    outcome: Literal["started", "duplicate", "cooldown", "in-flight", "blocked", "resolved", "ignored"]
    reason: str = ""
    rule: str | None = None
    runbook: str | None = None
    target: str | None = None
    pod: str | None = None
    event_id: str | None = None


def alert_context(alert: Alert) -> dict:
    """The `alert` flow parameter: plans.trigger.AlertContext as JSON (the trigger passes it as an object)."""
    return AlertContext(source=alert.source, name=alert.name, fingerprint=alert.fingerprint, severity=alert.severity,
                        starts_at=alert.starts_at, summary=alert.summary[:2000],
                        labels=alert.labels).model_dump(mode="json")


def alert_event(alert: Alert, start: Start) -> dict:
    """The Prefect event for one accepted alert; the deployment trigger reads payload.parameters and .alert."""
    parameters = {**start.parameters, "service": start.service, "environment": start.environment,
                  "requested_by": f"alert:{alert.source}", "pod": start.pod}
    return {
        "occurred": dt.datetime.now(dt.timezone.utc).isoformat(),
        "event": f"runbooks.alert.{start.rule.runbook}",
        "resource": {"prefect.resource.id": f"runbooks.alert.{alert.fingerprint}",
                     "prefect.resource.name": alert.name,
                     "runbooks.runbook": start.rule.runbook, "runbooks.target": start.target},
        "payload": {"parameters": parameters, "alert": alert_context(alert)},
        "id": str(uuid.uuid4()),
    }


class AlertDispatcher:
    """Decides each alert's outcome and posts the accepted ones as one batch of events.

    State (when each fingerprint started a run, which events await their run) is recorded only after
    Prefect accepted the events, so a failed post leaves the alert startable by the sender's retry. It
    lives in `state`: the process's memory by default, PostgreSQL when replicas share it.
    """

    def __init__(self, rules: RuleSet, catalog: Catalog, api: PrefectApi, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 pending_seconds: float = PENDING_SECONDS, state=None) -> None:
        self.rules, self.catalog, self.api = rules, catalog, api
        self.wall_clock, self.pending_seconds = wall_clock, pending_seconds
        self.state = state or MemoryState(pending_seconds=pending_seconds, horizon=self.horizon(rules),
                                          clock=clock, wall_clock=wall_clock)
        self._lock = threading.Lock()

    @staticmethod
    def horizon(rules: RuleSet) -> float:
        """How long a started alert must be remembered: the longest dedupe window of any rule."""
        return max(rule.dedupe_seconds for rule in rules.rules)

    def dispatch(self, alerts: list[Alert]) -> list[Outcome]:
        prepared = [(alert, *self._prepare(alert)) for alert in alerts]
        keys = [start.key for _, _, start in prepared if start is not None]
        with self._lock, self.state.session(keys) as view:
            outcomes, events, accepted = [], [], []
            for alert, outcome, start in prepared:
                if start is not None:
                    outcome, start = self._decide(view, alert, outcome, start, accepted)
                if start is not None:
                    event = alert_event(alert, start)
                    outcome.event_id = event["id"]
                    events.append(event)
                    accepted.append((alert, start))
                outcomes.append(outcome)
            if events:
                self.api.post(events)      # raises: nothing recorded, nothing logged as started
                view.record([Accepted(a.source, a.fingerprint, s.key) for a, s in accepted])
        for outcome in outcomes:
            log.info("alert %s %s fingerprint=%s: %s%s", outcome.source, outcome.alert, outcome.fingerprint,
                     outcome.outcome, f" ({outcome.reason})" if outcome.reason else
                     f" {outcome.runbook} on {outcome.target} event={outcome.event_id}")
        return outcomes

    def _prepare(self, alert: Alert) -> tuple[Outcome, Start | None]:
        """What the rules make of an alert alone (no state read): its outcome so far, and the run it asks for."""
        base = dict(alert=alert.name, source=alert.source, fingerprint=alert.fingerprint)
        rule = self.rules.first_match(alert)
        if rule is None:
            return Outcome(**base, outcome="ignored", reason=f"no rule matches alert {alert.name!r} "
                                                              f"({alert.source}, severity {alert.severity})"), None
        base.update(rule=rule.name, runbook=rule.runbook)
        if alert.status == "resolved":
            return Outcome(**base, outcome="resolved", reason="resolved alerts start nothing"), None
        start = resolve(rule, alert, self.catalog)
        if isinstance(start, Ignored):
            return Outcome(**base, outcome="ignored", reason=start.reason), None
        return Outcome(**base, outcome="started", target=start.target, pod=start.pod or None), start

    def _decide(self, view: StateView, alert: Alert, outcome: Outcome, start: Start,
                accepted: list[tuple[Alert, Start]]) -> tuple[Outcome, Start | None]:
        rule = start.rule
        if (alert.source, alert.fingerprint) in {(a.source, a.fingerprint) for a, _ in accepted} or (
                view.started_within(alert.source, alert.fingerprint, rule.dedupe_seconds)):
            return _held(outcome, "duplicate", f"this alert started a run less than {rule.dedupe_seconds}s ago")
        if start.key in {s.key for _, s in accepted}:
            return _held(outcome, "in-flight", f"another alert of this delivery starts a run on {start.target}; "
                                               "retry later")
        try:
            held = self._cooldown(start) or self._in_flight(view, start)
        except UnreadableJournal as exc:
            log.error("change records of %s are unreadable: %s", start.target, exc)
            return _held(outcome, "blocked", f"{exc}; nothing was started (fail closed): delete that artifact "
                                             "version in the Prefect UI")
        if held is not None:
            return _held(outcome, *held)
        return outcome, start

    def _cooldown(self, start: Start) -> tuple[str, str] | None:
        """('cooldown', why) when the object was changed within the rule's cooldown (change records)."""
        if start.rule.cooldown_seconds <= 0:
            return None
        last = self.api.last_change(start.key)
        if last is None:
            return None
        at = last.at if last.at.tzinfo else last.at.replace(tzinfo=dt.timezone.utc)
        age = (self.wall_clock() - at).total_seconds()
        if age >= start.rule.cooldown_seconds:
            return None
        return "cooldown", (f"{start.target} was changed by run {last.run} ({last.runbook}) {max(age, 0):.0f}s ago, "
                            f"at {at.isoformat()}; cooldown of {start.rule.cooldown_seconds}s")

    def _in_flight(self, view: StateView, start: Start) -> tuple[str, str] | None:
        """('in-flight', why) when a run on the same object has not finished, or its event's run has not
        appeared yet."""
        wall = self.wall_clock()
        posted = view.posted(start.key)
        since = wall - dt.timedelta(seconds=self.pending_seconds + 5)
        runs = [run for run in self.api.runs(start.rule.runbook, started_after=since) if self._names(run, start.key)]
        for run in runs:
            if _live(run, wall):
                return "in-flight", (f"run {run['id']} ({run.get('state_name') or run['state_type']}) of "
                                     f"{start.rule.runbook} on {start.target} has not finished; retry later")
        for post in posted:
            if not any(_started_by(run, post, wall) for run in runs):
                return "in-flight", (f"a run on {start.target} was requested {post.age:.0f}s ago (alert "
                                     f"{post.fingerprint}) and has not appeared yet; retry later")
        return None

    def _names(self, run: dict, key: str) -> bool:
        """Whether a run's parameters name the object (through any catalog entry for it): a `service`, or a
        typed `target` that names one (scale-service)."""
        parameters = run.get("parameters") or {}
        target = parameters.get("target")
        service = parameters.get("service") or (target.get("service") if isinstance(target, dict) else None)
        try:
            return self.catalog.deployment_target(str(parameters.get("environment")), str(service)).key == key
        except RunbookError:
            return False


def _held(outcome: Outcome, kind: str, reason: str) -> tuple[Outcome, None]:
    return outcome.model_copy(update={"outcome": kind, "reason": reason}), None


def _live(run: dict, wall: dt.datetime) -> bool:
    """Not final, not a dry run (it changes nothing), not a schedule's run due later."""
    if run.get("state_type") in FINAL_STATES or (run.get("parameters") or {}).get("dry_run") is True:
        return False
    if run.get("state_type") == "SCHEDULED" and run.get("expected_start_time"):
        due = dt.datetime.fromisoformat(run["expected_start_time"].replace("Z", "+00:00"))
        return (due - wall).total_seconds() <= SCHEDULED_AHEAD_SECONDS
    return True


def _started_by(run: dict, post: Posted, wall: dt.datetime) -> bool:
    """Whether the run is the one a posted event asked for: it carries the alert, or it is a real (not dry,
    not scheduled for later) run due since the post."""
    parameters = run.get("parameters") or {}
    alert = parameters.get("alert")
    if isinstance(alert, dict) and alert.get("fingerprint") == post.fingerprint:
        return True
    if parameters.get("dry_run") is True or not run.get("expected_start_time"):
        return False
    due = dt.datetime.fromisoformat(run["expected_start_time"].replace("Z", "+00:00"))
    return post.wall - dt.timedelta(seconds=2) <= due <= wall + dt.timedelta(seconds=SCHEDULED_AHEAD_SECONDS)


__all__ = ["AlertDispatcher", "Outcome", "PENDING_SECONDS", "RETRY_OUTCOMES", "alert_context", "alert_event"]
