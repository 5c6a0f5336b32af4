"""Serve every runbook from a fork server: an alert's run starts in well under a second, not in several.

Prefect's `serve()` starts a fresh Python process per run (about 4 s of imports here) after polling
every few seconds. This runner registers the same deployments (prefect.yaml: parameters, schedules,
triggers), polls for scheduled runs every `poll_seconds`, claims each the way Prefect's own Runner does
(proposing Pending, which the server grants to one claimant only), and runs it in a process forked from
a multiprocessing fork server that imported Prefect and every runbook once (deployments/warm_worker.py).
Each run still gets its own process: a crash or a leak in one run cannot touch another. Cancelling a run
from the UI terminates its process, as with `serve()`; stopping the runner ends every run it holds in a
final state (see `shutdown`).
"""
from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterId,
                                            FlowRunFilterNextScheduledStartTime, FlowRunFilterState,
                                            FlowRunFilterStateType)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Cancelled, Crashed, Pending

from . import warm_worker
from .serve import ROOT, declared_deployments, runner_deployments

log = logging.getLogger("runbooks.runner")
HEARTBEAT_SECONDS = 10.0   # how often the deployments are marked ready (a server-side write)
API_ERROR_BACKOFF_SECONDS = 5.0
SHUTDOWN_GRACE_SECONDS = 15.0   # a run in progress may finish this long after a stop is asked for


@dataclass
class RunProcess:
    process: BaseProcess

    def running(self) -> bool:
        return self.process.exitcode is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (Prefect's engine records the run's end), then SIGKILL after `grace` seconds."""
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
        self._last_heartbeat = 0.0
        self.context = multiprocessing.get_context("forkserver")

    # -- processes ---------------------------------------------------------------------------------

    def start_fork_server(self) -> None:
        """Start the fork server and wait for its imports, before registering: a run that arrives right
        after start-up must not pay for them."""
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))               # the fork server imports the runbooks from here
        self.context.set_forkserver_preload(warm_worker.preload_modules())
        started = time.monotonic()
        probe = self.context.Process(target=warm_worker.warmed, name="runbooks-warm-up")
        probe.start()
        probe.join()
        log.info("fork server ready in %.1fs (exit %s)", time.monotonic() - started, probe.exitcode)

    def _hand_over(self, run_id: UUID, entrypoint: str) -> None:
        process = self.context.Process(target=warm_worker.run_flow_run, args=(str(run_id), entrypoint),
                                       name=f"flow-run-{run_id}")
        process.start()
        self.busy[run_id] = RunProcess(process)
        log.info("run %s started in process %s", run_id, process.pid)

    # -- the loop ----------------------------------------------------------------------------------

    def register(self) -> None:
        for entry, deployment in zip(declared_deployments(), runner_deployments()):
            deployment_id = deployment.apply()
            self.entrypoints[deployment_id] = entry["entrypoint"]
            log.info("serving deployment %s/%s", deployment.flow_name, deployment.name)

    def run(self) -> None:
        self.start_fork_server()
        self.register()
        log.info("warm runner polling every %.2fs, at most %d runs at once", self.poll_seconds, self.limit)
        last_housekeeping = 0.0
        with get_client(sync_client=True) as client:
            while not self.stop.wait(self.poll_seconds):
                try:
                    self._claim_scheduled(client)
                    if time.monotonic() - last_housekeeping > 1.0:
                        self._reap(client)
                        self._cancel_requested(client)
                        last_housekeeping = time.monotonic()
                except Exception:                 # the API is restarting or overloaded: keep serving
                    log.exception("polling the Prefect API failed; retrying in %.0fs", API_ERROR_BACKOFF_SECONDS)
                    self.stop.wait(API_ERROR_BACKOFF_SECONDS)
        self.shutdown()

    def _claim_scheduled(self, client) -> None:
        capacity = self.limit - len(self.busy)
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
        """Forget finished processes; one that died before its run finished leaves the run Crashed."""
        done = [(run_id, w) for run_id, w in self.busy.items() if not w.running()]
        for run_id, _ in done:
            del self.busy[run_id]
        for run_id, ended in done:
            run = client.read_flow_run(run_id)
            if run.state and not run.state.is_final() and not run.state.is_paused():
                message = f"its process exited with {ended.process.exitcode}"
                client.set_flow_run_state(run_id, Crashed(message=message), force=True)

    def _cancel_requested(self, client) -> None:
        ours = list(self.busy)
        if not ours:
            return
        cancelling = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=ours), state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.CANCELLING]))))
        for run in cancelling:
            worker = self.busy.get(run.id)
            if worker and worker.running():
                log.info("cancelling run %s: terminating its process", run.id)
                worker.stop()
            client.set_flow_run_state(run.id, Cancelled(message="cancelled by request"), force=True)

    def shutdown(self) -> None:
        """Stop serving without leaving a run that looks alive but has no process.

        A run waiting at its approval gate has changed nothing yet: it ends Cancelled at once (approving
        it later would otherwise "resume" a run nobody executes). A run in progress gets up to
        SHUTDOWN_GRACE_SECONDS to finish its procedure and verification; if it has not, it is
        terminated and ends Crashed, saying where to look.
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
                    proc.stop()
                    self._end(client, run_id, Crashed(message=(
                        "the runbook server stopped during this run; its last logged step and its report "
                        "say what was changed. Check the target before starting it again.")))

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
