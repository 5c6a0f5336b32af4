"""Serve every runbook with warm workers: an alert's run starts in about a second, not in several.

Prefect's `serve()` starts a fresh Python process per run (about 3 s of imports here) after polling
every few seconds. This runner registers the same deployments (prefect.yaml: parameters, schedules,
triggers), polls for scheduled runs every `poll_seconds`, claims each the way Prefect's own Runner does
(proposing Pending, which the server grants to one claimant only), and hands it to a worker process that
has already imported everything (deployments/warm_worker.py). A worker runs one flow run and exits; a new
one is warmed in its place. Cancelling a run from the UI terminates its worker, as with `serve()`.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterId,
                                            FlowRunFilterNextScheduledStartTime, FlowRunFilterState,
                                            FlowRunFilterStateType)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelled, Crashed, Pending

from .serve import ROOT, runner_deployments

log = logging.getLogger("runbooks.runner")
HEARTBEAT_SECONDS = 10.0   # how often the deployments are marked ready (a server-side write)


@dataclass
class Worker:
    process: subprocess.Popen
    run_id: UUID | None = None
    started: float = field(default_factory=time.monotonic)

    def ready(self, timeout: float) -> bool:
        line = self.process.stdout.readline() if self.process.stdout else b""
        return line.strip() == b"ready"


class WarmRunner:
    def __init__(self, *, poll_seconds: float = 0.25, warm: int = 2, limit: int = 8) -> None:
        self.poll_seconds = poll_seconds
        self.warm_count = warm
        self.limit = limit
        self.stop = threading.Event()
        self.deployment_ids: list[UUID] = []
        self.idle: list[Worker] = []
        self.busy: dict[UUID, Worker] = {}
        self.lock = threading.Lock()
        self._last_heartbeat = 0.0

    # -- workers -----------------------------------------------------------------------------------

    def _spawn(self) -> None:
        """Start a worker and add it to the idle pool once it has finished importing."""
        process = subprocess.Popen([sys.executable, "-m", "deployments.warm_worker"], cwd=ROOT,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ.copy())
        worker = Worker(process)
        if worker.ready(timeout=120):
            with self.lock:
                if self.stop.is_set():
                    process.stdin.close()
                    return
                self.idle.append(worker)
        else:
            log.error("a warm worker failed to start (exit %s)", process.poll())

    def _replenish(self) -> None:
        with self.lock:
            missing = self.warm_count - len(self.idle)
        for _ in range(max(0, missing)):
            threading.Thread(target=self._spawn, daemon=True).start()

    def _hand_over(self, run_id: UUID) -> None:
        with self.lock:
            worker = self.idle.pop(0) if self.idle else None
        if worker is None:                         # all warm workers busy: warm one now (slower start)
            self._spawn()
            with self.lock:
                worker = self.idle.pop(0)
        worker.run_id = run_id
        worker.process.stdin.write(f"{run_id}\n".encode())
        worker.process.stdin.flush()
        with self.lock:
            self.busy[run_id] = worker
        self._replenish()
        log.info("run %s handed to warm worker pid %s", run_id, worker.process.pid)

    # -- the loop ----------------------------------------------------------------------------------

    def register(self) -> None:
        for deployment in runner_deployments():
            self.deployment_ids.append(deployment.apply())
            log.info("serving deployment %s/%s", deployment.flow_name, deployment.name)

    def run(self) -> None:
        self.register()
        self._replenish()
        log.info("warm runner polling every %.2fs with %d warm workers", self.poll_seconds, self.warm_count)
        last_housekeeping = 0.0
        with get_client(sync_client=True) as client:
            while not self.stop.wait(self.poll_seconds):
                self._claim_scheduled(client)
                if time.monotonic() - last_housekeeping > 1.0:
                    self._reap(client)
                    self._cancel_requested(client)
                    last_housekeeping = time.monotonic()
        self.shutdown()

    def _claim_scheduled(self, client) -> None:
        with self.lock:
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
            self._hand_over(flow_run.id)

    def _due_runs(self, client) -> list:
        """Scheduled runs of our deployments that are due. A plain read: Prefect's own
        `get_scheduled_flow_runs` also marks the deployments ready, a write that at 4 polls a second
        makes SQLite refuse concurrent writes (the UI's) with 503s. That call is kept as a heartbeat."""
        now = dt.datetime.now(dt.timezone.utc)
        if now.timestamp() - self._last_heartbeat > HEARTBEAT_SECONDS:
            self._last_heartbeat = now.timestamp()
            return client.get_scheduled_flow_runs_for_deployments(
                deployment_ids=self.deployment_ids, scheduled_before=now + dt.timedelta(seconds=1))
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=self.deployment_ids)),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                    before_=now + dt.timedelta(seconds=1))),
            sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=self.limit)

    def _reap(self, client) -> None:
        """Forget finished workers; a worker that died before its run finished leaves the run Crashed."""
        with self.lock:
            done = [(run_id, w) for run_id, w in self.busy.items() if w.process.poll() is not None]
            for run_id, _ in done:
                del self.busy[run_id]
        for run_id, worker in done:
            run = client.read_flow_run(run_id)
            if run.state and not run.state.is_final() and not run.state.is_paused():
                client.set_flow_run_state(run_id, Crashed(message=f"worker exited with {worker.process.returncode}"),
                                          force=True)

    def _cancel_requested(self, client) -> None:
        with self.lock:
            ours = list(self.busy)
        if not ours:
            return
        cancelling = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=ours), state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.CANCELLING]))))
        for run in cancelling:
            worker = self.busy.get(run.id)
            if worker and worker.process.poll() is None:
                log.info("cancelling run %s: terminating its worker", run.id)
                worker.process.terminate()
                try:
                    worker.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
            client.set_flow_run_state(run.id, Cancelled(message="cancelled by request"), force=True)

    def shutdown(self) -> None:
        self.stop.set()
        with self.lock:
            idle, busy = list(self.idle), list(self.busy.values())
            self.idle.clear()
        for worker in idle:
            worker.process.stdin.close()               # an idle worker exits on end of input
        for worker in busy:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in idle + busy:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()


def main() -> None:
    import signal
    runner = WarmRunner(poll_seconds=float(os.environ.get("RUNBOOKS_POLL_SECONDS", "0.25")))
    signal.signal(signal.SIGTERM, lambda *_: runner.stop.set())
    signal.signal(signal.SIGINT, lambda *_: runner.stop.set())
    runner.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
