"""Serve every runbook from a fork server: an alert's run starts in well under a second, not in several.

Prefect's `serve()` starts a fresh Python process per run (about 4 s of imports here) after polling
every few seconds. This runner registers the same deployments (prefect.yaml: parameters, schedules,
triggers), polls for scheduled runs every `poll_seconds`, claims each the way Prefect's own Runner does
(proposing Pending, which the server grants to one claimant only), and runs it in a process forked from
a multiprocessing fork server that imported Prefect and every runbook once (deployments/warm_worker.py).

It behaves as `serve()` does where it matters for the runbooks:
- Cancelling a run (UI, CLI, API) sends its process SIGTERM: Prefect's engine raises in the run, the
  kernel undoes what is in place and reports; after `CANCEL_GRACE_SECONDS` the process is killed. The
  run ends Cancelled and its `on_cancellation` hooks run here.
- A run whose process dies (killed, out of memory), at its gate or mid-change, ends Crashed at once and
  its `on_crashed` hooks run here (the kernel's hook publishes the report from the run's change journal).
- Runs waiting at an approval gate do not count against `limit`: a queue of gates must not block an
  alert's rollback of another service.
- Stopping the runner ends every run it holds in a final state (see `shutdown`).
"""
from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterId,
                                            FlowRunFilterNextScheduledStartTime, FlowRunFilterState,
                                            FlowRunFilterStateType)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import get_current_settings
from prefect.states import Cancelled, Crashed, Pending

from . import warm_worker
from .serve import ROOT, declared_deployments, runner_deployments
from .zombies import ensure_zombie_automation

log = logging.getLogger("runbooks.runner")
HEARTBEAT_SECONDS = 10.0   # how often the deployments are marked ready (a server-side write)
API_ERROR_BACKOFF_SECONDS = 5.0
SHUTDOWN_GRACE_SECONDS = 15.0   # a run in progress may finish this long after a stop is asked for
CANCEL_GRACE_SECONDS = 30.0     # as Prefect's runner: time for the run to undo its changes and report


@dataclass
class RunProcess:
    process: BaseProcess
    entrypoint: str
    paused: bool = False
    cancelling: bool = False
    stopper: threading.Thread | None = field(default=None, repr=False)

    def running(self) -> bool:
        return self.process.exitcode is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (Prefect's engine turns it into an exception the kernel handles), SIGKILL after `grace`."""
        if self.running():
            self.process.terminate()
            self.process.join(grace)
        if self.running():
            self.process.kill()
            self.process.join(5)


class WarmRunner:
    def __init__(self, *, poll_seconds: float = 0.25, limit: int = 8) -> None:
        self.poll_seconds = poll_seconds
        self.limit = limit
        self.stop = threading.Event()
        self.entrypoints: dict[UUID, str] = {}       # served deployment id -> prefect.yaml entrypoint
        self.busy: dict[UUID, RunProcess] = {}
        self.fast_path = True
        self.fallback_reason = ""
        self._last_heartbeat = 0.0
        self._flows: dict[str, object] = {}
        self.context = multiprocessing.get_context("forkserver")

    # -- processes ---------------------------------------------------------------------------------

    def start_fork_server(self) -> None:
        """Start the fork server and wait for its imports before registering (a run that arrives right
        after start-up must not pay for them). A runbook that fails to import stops start-up here; a
        Prefect whose internals the fast path does not know is served through `prefect.engine`, loudly."""
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))               # the fork server imports the runbooks from here
        self.context.set_forkserver_preload(warm_worker.preload_modules())
        started = time.monotonic()
        results = self.context.SimpleQueue()
        probe = self.context.Process(target=warm_worker.probe, args=(results,), name="runbooks-warm-up")
        probe.start()
        probe.join()
        if results.empty():
            raise RuntimeError(f"the fork server's warm-up process died (exit {probe.exitcode})")
        ok, message = results.get()
        if not ok:
            raise RuntimeError(message)
        if message:
            self.fast_path, self.fallback_reason = False, message
            log.warning("FAST PATH OFF: %s. Every run starts through `python -m prefect.engine` instead (about "
                        "4 s slower to start, same behaviour). Pin Prefect to %s to get it back.", message,
                        " or ".join(warm_worker.TESTED_PREFECT_MINORS))
        log.info("fork server ready in %.1fs (fast path %s)", time.monotonic() - started,
                 "on" if self.fast_path else "OFF")

    def _hand_over(self, run_id: UUID, entrypoint: str) -> None:
        process = self.context.Process(target=warm_worker.run_flow_run, args=(str(run_id), entrypoint, self.fast_path),
                                       name=f"flow-run-{run_id}")
        process.start()
        self.busy[run_id] = RunProcess(process, entrypoint)
        log.info("run %s started in process %s", run_id, process.pid)

    # -- the loop ----------------------------------------------------------------------------------

    def register(self) -> None:
        for entry, deployment in zip(declared_deployments(), runner_deployments()):
            deployment_id = deployment.apply()
            self.entrypoints[deployment_id] = entry["entrypoint"]
            log.info("serving deployment %s/%s", deployment.flow_name, deployment.name)
        with get_client(sync_client=True) as client:
            ensure_zombie_automation(client, get_current_settings().flows.heartbeat_frequency or 180)

    def run(self) -> None:
        self.start_fork_server()
        self.register()
        log.info("warm runner polling every %.2fs, at most %d runs at once (runs at a gate not counted)",
                 self.poll_seconds, self.limit)
        last_housekeeping = 0.0
        with get_client(sync_client=True) as client:
            while not self.stop.wait(self.poll_seconds):
                try:
                    self._claim_scheduled(client)
                    if time.monotonic() - last_housekeeping > 1.0:
                        self._reap(client)
                        self._watch_states(client)
                        last_housekeeping = time.monotonic()
                except Exception:                 # the API is restarting or overloaded: keep serving
                    log.exception("polling the Prefect API failed; retrying in %.0fs", API_ERROR_BACKOFF_SECONDS)
                    self.stop.wait(API_ERROR_BACKOFF_SECONDS)
        self.shutdown()

    def working(self) -> int:
        """Runs that count against `limit`: every live run except those waiting at a gate."""
        return sum(1 for proc in self.busy.values() if not proc.paused)

    def _claim_scheduled(self, client) -> None:
        capacity = self.limit - self.working()
        if capacity <= 0:
            return
        runs = self._due_runs(client)
        for flow_run in runs[:capacity]:
            if flow_run.id in self.busy:
                continue
            state = client.set_flow_run_state(flow_run.id, Pending())
            if state.status.value != "ACCEPT":     # someone else claimed it
                continue
            try:
                self._hand_over(flow_run.id, self.entrypoints.get(flow_run.deployment_id, ""))
            except OSError as exc:                 # fork failed (memory, process limits): say so on the run
                log.error("could not start a process for run %s: %s", flow_run.id, exc)
                client.set_flow_run_state(flow_run.id, Crashed(message=f"could not start its process: {exc}"),
                                          force=True)

    def _due_runs(self, client) -> list:
        """Scheduled runs of our deployments that are due. A plain read: Prefect's own
        `get_scheduled_flow_runs` also marks the deployments ready, a write that at 4 polls a second
        makes SQLite refuse concurrent writes (the UI's) with 503s. That call is kept as a heartbeat."""
        now = dt.datetime.now(dt.timezone.utc)
        if now.timestamp() - self._last_heartbeat > HEARTBEAT_SECONDS:
            self._last_heartbeat = now.timestamp()
            return client.get_scheduled_flow_runs_for_deployments(
                deployment_ids=list(self.entrypoints), scheduled_before=now + dt.timedelta(seconds=1))
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(self.entrypoints))),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                    before_=now + dt.timedelta(seconds=1))),
            sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=self.limit)

    def _reap(self, client) -> None:
        """Forget finished processes. One that died before its run ended (at its gate or mid-change) leaves
        the run Crashed at once, and its `on_crashed` hooks publish the report from its journal."""
        done = [(run_id, proc) for run_id, proc in self.busy.items()
                if not proc.running() and (proc.stopper is None or not proc.stopper.is_alive())]
        for run_id, proc in done:
            del self.busy[run_id]
            if proc.stopper is not None:              # cancelled: its thread ran the hooks and set the state
                continue
            run = client.read_flow_run(run_id)
            if run.state and not run.state.is_final():
                at_gate = " while it waited at its approval gate" if run.state.is_paused() else ""
                state = Crashed(message=f"its process exited with {proc.process.exitcode}{at_gate}; nothing will "
                                        "execute it. Its report says what may have been changed")
                client.set_flow_run_state(run_id, state, force=True)
                self._run_hooks(proc.entrypoint, client.read_flow_run(run_id), "on_crashed_hooks")

    def _watch_states(self, client) -> None:
        """Note which runs wait at a gate, and start stopping the ones whose cancellation was asked for."""
        ours = list(self.busy)
        if not ours:
            return
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ours)))
        for run in runs:
            proc = self.busy.get(run.id)
            if proc is None or run.state is None:
                continue
            proc.paused = run.state.is_paused()
            if run.state.is_cancelling() and proc.stopper is None:
                log.info("cancelling run %s: SIGTERM, then %.0fs to undo and report", run.id, CANCEL_GRACE_SECONDS)
                proc.stopper = threading.Thread(target=self._cancel, args=(run.id, proc), daemon=True)
                proc.stopper.start()

    def _cancel(self, run_id: UUID, proc: RunProcess) -> None:
        proc.stop(CANCEL_GRACE_SECONDS)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
            self._run_hooks(proc.entrypoint, run, "on_cancellation_hooks")
            client.set_flow_run_state(run_id, Cancelled(message="cancelled by request; its report says what was "
                                                                "undone"), force=True)

    def _run_hooks(self, entrypoint: str, flow_run, kind: str) -> None:
        """The flow's crash or cancellation hooks, in this process, as Prefect's runner runs them."""
        try:
            if entrypoint not in self._flows:
                from prefect.flows import load_flow_from_entrypoint
                self._flows[entrypoint] = load_flow_from_entrypoint(str(ROOT / entrypoint))
            flow = self._flows[entrypoint]
            for hook in getattr(flow, kind) or []:
                hook(flow, flow_run, flow_run.state)
        except Exception:                                  # noqa: BLE001 - hooks never stop the runner
            log.exception("running %s for run %s failed", kind, flow_run.id)

    def shutdown(self) -> None:
        """Stop serving without leaving a run that looks alive but has no process.

        A run waiting at its approval gate has changed nothing yet: it ends Cancelled at once (approving
        it later would otherwise "resume" a run nobody executes). A run in progress gets up to
        SHUTDOWN_GRACE_SECONDS to finish; then it is sent SIGTERM, so the kernel undoes what is in place
        and reports, and it ends Cancelled (or Crashed, if even that did not finish).
        """
        self.stop.set()
        live = {run_id: proc for run_id, proc in self.busy.items() if proc.running()}
        if not live:
            return
        with get_client(sync_client=True) as client:
            paused = [run_id for run_id in live if self._is_paused(client, run_id)]
            for run_id in paused:
                live.pop(run_id).stop()
                self._end(client, run_id, Cancelled(message=(
                    "the runbook server stopped while this run waited for approval; nothing was changed. "
                    "Start the runbook again if it is still needed.")))
            deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
            if live:
                log.info("waiting up to %.0fs for %d run(s) in progress", SHUTDOWN_GRACE_SECONDS, len(live))
            for proc in live.values():
                proc.process.join(max(0.0, deadline - time.monotonic()))
            for run_id, proc in live.items():
                if proc.running():
                    proc.stop(CANCEL_GRACE_SECONDS)
                    self._end(client, run_id, Cancelled(message=(
                        "the runbook server stopped during this run; it undid what it could and its report says "
                        "what state the target is in. Check the target before starting it again.")))

    @staticmethod
    def _is_paused(client, run_id: UUID) -> bool:
        try:
            state = client.read_flow_run(run_id).state
        except Exception:                               # the API is gone: treat the run as in progress
            return False
        return bool(state and state.is_paused())

    @staticmethod
    def _end(client, run_id: UUID, state) -> None:
        try:
            client.set_flow_run_state(run_id, state, force=True)
            log.info("run %s ended %s: %s", run_id, state.type.value, state.message)
        except Exception as exc:                        # say so: the UI will show the run as still active
            log.error("could not mark run %s %s (%s); mark it in the UI", run_id, state.type.value, exc)
