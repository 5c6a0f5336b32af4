"""The runbook kernel: the shared shape of a run, used as a context manager inside a runbook's `@flow`.

A runbook's flow body holds only its own steps (its reads, its plan, its procedure, its verification and
how each change is undone); `Runbook` owns everything else: the run record, the trigger, the catalog and
the typed target, the guards, the dry-run and no-op exit, the approval gate, the undo stack, the outcome
of every exit path (any exception, cancellation included), and the report and notification that every
exit publishes. A context manager (not a decorator) keeps the flow's own signature and docstring, which
Prefect turns into the UI form and `runbooks docs` into the runbook's page.
"""
from __future__ import annotations

import datetime as dt
import os
from contextlib import ExitStack
from typing import Any, Callable, TypeVar

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from plans.names import identity
from plans.plan import Change, Plan
from plans.record import RunRecord, Step
from plans.targets import Target
from plans.trigger import AlertContext, Trigger
from tasks.approval import raised, request_approval
from tasks.catalog import AksCluster, ApprovalPolicy, Catalog, Environment, load_catalog
from tasks.errors import CatalogError, GuardRefused, PermanentError, RunbookError, VerificationFailed
from tasks.guards import check_cooldown, check_freeze
from tasks.journal import JournalEntry, journal
from tasks.lock import target_lock
from tasks.redaction import install_redaction
from plans.record import Check

from .outcome import finish, outcome_of
from .undo import UndoStack

R = TypeVar("R")
LOCK_WAIT_SECONDS = 30
_ACTIVE: set = set()        # runs of this process inside their `with Runbook(...)` (for `runbooks run`'s watcher)
_RECENT: list = []


def active_runs() -> list:
    return list(_ACTIVE)


def recent_runs() -> list:
    return list(_RECENT)


class Runbook:
    """One run of a runbook. Use inside the flow: `with Runbook(NAME, environment=..., ...) as run:`.

    Args:
        name: the runbook's deployment name, e.g. emergency-rollback.
        environment: catalog environment; required (there is no default target).
        requested_by: who asks; required and non-blank, so the four-eyes rule means something.
        reason: why; shown at the gate and in the report.
        dry_run: plan only; the run publishes the plan and makes zero writes.
        emergency_override: a reason to act inside a freeze window.
        alert: the alert that started the run (set by the alert receiver).
    """

    def __init__(self, name: str, *, environment: str, requested_by: str, reason: str = "", dry_run: bool = False,
                 emergency_override: str | None = None, alert: AlertContext | None = None) -> None:
        self.name = name
        self.environment_name = environment
        self.dry_run = dry_run
        self.record = RunRecord(runbook=name, requested_by=(requested_by or "").strip(), reason=reason,
                                dry_run=dry_run, emergency_override=emergency_override, environment=environment,
                                trigger=_trigger(alert))
        self.catalog: Catalog | None = None
        self.environment: Environment | None = None
        self.undo = UndoStack(self)
        self._stack = ExitStack()
        self._kubernetes = None
        self._github = None
        self._azure = None
        self._credential = None
        self._also: list[Target] = []

    # -- entering and leaving ----------------------------------------------------------------------

    def __enter__(self) -> "Runbook":
        install_redaction()
        self.log = get_run_logger()
        context = FlowRunContext.get()
        self.run_id = context.flow_run.id if context and context.flow_run else None
        self.record.run_id = str(self.run_id or "")
        if self.run_id is not None:
            _ACTIVE.add(self.run_id)
            _RECENT.append(self.run_id)
        self.log.info("%s started for %s (trigger: %s%s; process %d)", self.name, self.environment_name,
                      self.record.trigger.kind, ", dry run" if self.dry_run else "", os.getpid())
        try:
            self._check_request()
            self.catalog = load_catalog()
            self.record.catalog = self.catalog.source
            self.log.info("catalog: %s", self.catalog.source)
            self.environment = self.catalog.environment(self.environment_name)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Every exit path: undo what needs undoing, set the outcome, release the lock, report, notify."""
        error = exc
        if self.undo.pending(always_only=exc is None):
            try:
                self.undo.run_all(cause=exc, always_only=exc is None)
            except BaseException as undo_error:     # UndoFailed: it replaces the cause, which it chains
                error = undo_error
        self.record.outcome = outcome_of(self.record, error)
        try:
            self._stack.close()                     # the lock, released before the report is written
        except Exception as close_error:            # noqa: BLE001 - reported, never hides the run's own error
            self.log.error("releasing the lock failed: %s", close_error)
            self.record.note("lock", f"releasing the lock failed: {close_error}")
        finish(self, error)
        _ACTIVE.discard(self.run_id)
        if error is not exc:
            raise error
        return False

    def _check_request(self) -> None:
        if not identity(self.record.requested_by):
            raise PermanentError("requested_by is empty: name the person (or system) asking for this run; the "
                                 "requester may not approve it, so an empty name would let anyone approve")
        if not (self.environment_name or "").strip():
            raise CatalogError("environment is empty: name the catalog environment to act on (there is no default)")

    # -- preflight ---------------------------------------------------------------------------------

    def guard(self, target: Target, *, cooldown: bool = True) -> Target:
        """Preflight guards on the object: freeze window, then (not for dry runs) the lock and cooldown.

        A dry run takes no lock (it changes nothing, so it must not wait for or block a change) and is not
        refused by a freeze (the report notes it). `cooldown=False`: a runbook whose changes do not call for
        a pause before the next run (CI triage re-runs jobs and files issues).
        """
        self.record.target = target
        note = check_freeze(self.environment_name, self.environment, now=_now(),
                            emergency_override=self.record.emergency_override, dry_run=self.dry_run)
        if note:
            self.record.note("preflight", note)
        self._lock_and_cool(target, cooldown=cooldown)
        self.record.note("preflight", f"{target.resource} on {target.cluster} ({target.label})")
        return target

    def guard_also(self, other: Target) -> Target:
        """Guard a second object the change moves, found by the first reads (an HPA, found from the
        Deployment it scales, whose bounds move that Deployment's replicas): it is locked and cooled down
        too, and every step is journaled under it as well, so its history and cooldowns see the change."""
        if self.record.target is None:
            raise RuntimeError("guard_also() after guard(): the run's own target comes first")
        self._also.append(other)
        self._lock_and_cool(other)
        self.record.note("preflight", f"the change moves {other.resource} too ({other.label})")
        return other

    def _lock_and_cool(self, target: Target, *, cooldown: bool = True) -> None:
        if self.dry_run:
            return
        self._stack.enter_context(target_lock(target, wait_seconds=LOCK_WAIT_SECONDS, runbook=self.name,
                                              run_id=self.run_id))
        if cooldown:
            check_cooldown(target, cooldown_seconds=self.environment.cooldown_seconds, now=_now())

    @property
    def kubernetes(self):
        """The environment's Kubernetes ApiClient, built once per run from the catalog (an AKS cluster's
        from its user credentials, with the run's Azure credential)."""
        if self._kubernetes is None:
            from tasks.clients import kubernetes_client
            self._kubernetes = kubernetes_client(self.environment, credential=self._azure_credential())
            self._stack.callback(self._kubernetes.close)
        return self._kubernetes

    @property
    def github(self):
        """The environment's PyGithub client (github.com or GHES), built once per run from the catalog."""
        if self._github is None:
            from tasks.github.client import github_client
            if self.environment.github is None:
                raise CatalogError(f"environment {self.environment_name!r} has no github: connection in the catalog")
            self._github = github_client(self.environment.github)
        return self._github

    @property
    def azure(self):
        """The environment's AKS management client (ContainerServiceClient), built once per run.

        Raises:
            CatalogError: the environment's cluster is not an AKS cluster (naming the environments that are).
        """
        if self._azure is None:
            from tasks.clients import arm_client
            self._azure = arm_client(self.aks_cluster, self._azure_credential())
            self._stack.callback(self._azure.close)
        return self._azure

    @property
    def aks_cluster(self) -> AksCluster:
        """The environment's AKS cluster (CatalogError naming the environments on AKS when it is not one)."""
        self.catalog.node_pool_target(self.environment_name, "-")
        return self.environment.cluster

    def _azure_credential(self):
        if self._credential is None and isinstance(self.environment.cluster, AksCluster):
            from tasks.clients import azure_credential
            self._credential = azure_credential(self.environment.cluster)
            if hasattr(self._credential, "close"):
                self._stack.callback(self._credential.close)
        return self._credential

    def before(self, state: dict[str, Any], summary: str) -> None:
        self.record.before = state
        self.record.note("preflight", summary)

    def after(self, state: dict[str, Any]) -> None:
        self.record.after = state

    # -- plan and approval ---------------------------------------------------------------------------

    def stop_after_plan(self, plan: Plan) -> bool:
        """Record the plan; True when the run ends here: nothing to do, or a dry run (zero writes)."""
        self.record.plan = plan
        self.record.note("plan", plan.summary)
        self.log.info("plan %s: %s", plan.digest, plan.summary)
        if plan.is_noop:
            self.record.outcome = "no-op"
        elif self.dry_run:
            self.record.outcome = "dry-run"
        return plan.is_noop or self.dry_run

    def approve(self, policy: ApprovalPolicy | None = None) -> None:
        """The approval gate: pause for the environment's policy (or a stricter `policy` the runbook needs,
        e.g. a production drill); the answers are bound to the plan.

        A plan that says why it needs more (`Plan.escalation`, e.g. a change beyond the environment's blast
        radius) raises the policy one level for this plan alone: auto -> one, one -> two, two stays two."""
        plan = self.record.plan
        base = policy or self.environment.approval
        policy = base
        if plan.escalation:
            policy = raised(base)
            self.record.note("approval", f"policy raised from {base.policy} to {policy.policy} "
                                         f"for this plan: {plan.escalation}")
        self.record.approvals = request_approval(
            plan, policy=policy, requested_by=self.record.requested_by,
            on_event=lambda event, text: self.notify(event, text))
        self.record.note("approval", ", ".join(f"{a.decision} by {a.approver}" for a in self.record.approvals))

    # -- procedure -----------------------------------------------------------------------------------

    def apply(self, change: Change, action: Callable[[], R], *, undo: Callable[[R], Any] | None = None,
              undo_text: str = "", verify_undo: Callable[[R], list[Check]] | None = None,
              no_undo: str | None = None, always_undo: bool = False,
              complete: Callable[[R], Any] | None = None, interrupted: Callable[[], R] | None = None) -> R:
        """Make one change: journal it before the write, run `action`, then register its undo.

        Every mutating step says how it is undone (`undo`, called with what `action` returned, e.g.
        `previous_replicas=3`, and `verify_undo` to prove it) or why it is not (`no_undo`); the report
        shows which. The kernel runs the undos when verification fails, when an error escapes after the
        change, and when the run is cancelled; with `always_undo` (a drill's fault) also when it succeeded.

        `complete` is for writes that take effect later (an ARM long-running operation): it waits for the
        change `action` started, after the undo is registered, so an operation that ends Failed (or a
        cancel during the wait) marks the step failed and its undo runs.

        `interrupted` is for a write that may have landed although `action` never returned: a cancel or Ctrl-C
        between the API accepting it and the task returning. It builds, from the plan, the result the undo
        then runs with; the undo must read first (a no-op when the write never landed).
        """
        if (undo is None) == (no_undo is None):
            raise ValueError("apply() needs exactly one of undo= or no_undo= (why this change has no undo)")
        if self.record.target is None or self.dry_run:
            raise RuntimeError("apply() before guard(), or in a dry run: a change needs its guards and its lock")
        step = Step(change=change, undo=undo_text or (undo and f"undo: {change.describe()} back") or None,
                    no_undo=no_undo)
        self.record.steps.append(step)
        number = len(self.record.steps)
        self._journal(number, step)                     # before the write: a crash still leaves a trace
        try:
            result = action()
        except BaseException as exc:
            step.status, step.detail = "failed", f"{type(exc).__name__}: {exc}"[:300]
            self._journal(number, step)
            if interrupted is not None and undo is not None and not isinstance(exc, Exception):
                assumed = interrupted()
                self.undo.push(number, step, lambda: undo(assumed),
                               (lambda: verify_undo(assumed)) if verify_undo is not None else None)
            raise
        step.status = "made" if getattr(result, "changed", True) else "not-needed"
        self.record.note("procedure", f"{change.describe()}: {step.status}")
        if undo is not None and step.status == "made":     # before the journal's write: a cancel may land in it
            self.undo.push(number, step, lambda: undo(result),
                           (lambda: verify_undo(result)) if verify_undo is not None else None, always=always_undo)
        self._journal(number, step)
        if complete is not None and step.status == "made":
            try:
                complete(result)
            except BaseException as exc:
                step.status, step.detail = "failed", f"{type(exc).__name__}: {exc}"[:300]
                self._journal(number, step)
                raise
        return result

    def _journal(self, number: int, step: Step) -> None:
        journal(JournalEntry(run=self.record.run_id or "-", runbook=self.name, step=number, status=step.status,
                             at=_now(), target=self.record.target, change=step.change, undo=step.undo,
                             no_undo=step.no_undo, detail=step.detail), flow_run_id=self.run_id,
                also=[t.key for t in self._also])

    # -- verification --------------------------------------------------------------------------------

    def verify(self, checks: Callable[[], list[Check]], *, explain: Callable[[], list[str]] | None = None
               ) -> list[Check]:
        """Run the checks; if any fails, undo every registered change (each proven by its `verify_undo`)
        and fail the run with `explain()`'s next steps.

        Raises:
            VerificationFailed: a check failed (after the undo, if there was one to run).
        """
        results = checks()
        self.evidence(*[f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in results])
        passed = all(c.passed for c in results)
        self.record.note("verification", "passed" if passed else "failed")
        if passed:
            self.record.outcome = "succeeded"
            return results
        failure = VerificationFailed("; ".join(c.detail for c in results if not c.passed))
        if explain is not None:
            self.record.next_steps += explain()
        if self.undo.pending():
            self.undo.run_all(cause=failure)
        raise failure

    def evidence(self, *lines: str) -> None:
        self.record.evidence += list(lines)

    # -- notifications -------------------------------------------------------------------------------

    def notify(self, event: str, text: str) -> None:
        """Send `event` to the environment's channels; failures are recorded in the run record."""
        from tasks.report import notify
        if self.environment is None:
            return
        subject = f"{self.name} {self.record.target.label if self.record.target else self.environment_name}"
        self.record.notifications += notify(self.environment, event, text, subject=subject)


def _trigger(alert: AlertContext | None) -> Trigger:
    """Alert rules pass the alert; Prefect tags runs its schedules create with `auto-scheduled`."""
    if alert is not None:
        return Trigger(kind="alert", detail=alert.describe(), alert=alert)
    if "auto-scheduled" in (flow_run.tags or []):
        return Trigger(kind="schedule", detail=f"scheduled run {flow_run.name}")
    return Trigger(kind="manual", detail="Prefect UI, CLI or API")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


__all__ = ["Runbook", "RunbookError", "GuardRefused"]
