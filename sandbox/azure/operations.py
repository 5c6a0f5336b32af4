"""Long-running operations as ARM runs them: each write starts an operation on its own thread, clients poll
its `Azure-AsyncOperation` status (InProgress, then Succeeded/Failed/Canceled, with ARM's error when it
fails) or its `Location` (202 while running, then 204). Polls carry no Retry-After, so a client's own
polling interval decides how fast it sees the end.

Tests steer operations here: `hold()` keeps new operations from progressing (a second write meets one in
flight), and `fail_next()` makes the next matching operation end Failed with a chosen ARM error."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .errors import OperationError

log = logging.getLogger("sandbox.azure")


class Stopped(Exception):
    """The stand-in is stopping: an operation's thread gives up where it is."""


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Clock:
    """Simulated time: `sleep(s)` waits s / speed seconds, and gives up (Stopped) when the stand-in stops."""

    def __init__(self, speed: float, stopping: threading.Event) -> None:
        self.speed = speed
        self._stopping = stopping

    def sleep(self, seconds: float) -> None:
        self.pause(max(seconds, 0) / self.speed)

    def pause(self, real_seconds: float) -> None:
        """Wait `real_seconds` of wall time (polling something real, e.g. a Node turning Ready)."""
        if self._stopping.wait(real_seconds):
            raise Stopped()


@dataclass
class Operation:
    id: str
    name: str                      # what runs: the provisioningState it shows (Creating, Updating, Deleting, ...)
    cluster: tuple[str, str, str]  # the managed cluster's key
    pool: str | None               # the agent pool, or None for a cluster operation
    started: str = field(default_factory=now_rfc3339)
    status: str = "InProgress"
    ended: str | None = None
    error: dict | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def status_body(self) -> dict:
        """The Azure-AsyncOperation answer (ARM's OperationStatusResult)."""
        body = {"name": self.id, "status": self.status, "startTime": self.started}
        if self.ended:
            body["endTime"] = self.ended
        if self.error:
            body["error"] = dict(self.error)
        return body


@dataclass
class OperationFault:
    """Make the next `times` operations named `name` (or any: "*") on `pool` (or any) end Failed."""

    code: str
    message: str
    name: str = "*"
    pool: str = "*"
    times: int = 1

    def matches(self, operation: Operation) -> bool:
        return self.times > 0 and self.name in ("*", operation.name) and self.pool in ("*", operation.pool)


class Operations:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._all: dict[str, Operation] = {}
        self._faults: list[OperationFault] = []
        self._released = threading.Event()
        self._released.set()

    def start(self, name: str, cluster: tuple[str, str, str], pool: str | None,
              work: Callable[[Operation], None], finish: Callable[[Operation], None]) -> Operation:
        """Run `work` on its own thread; `finish` records the outcome on the resource (always called)."""
        operation = Operation(str(uuid.uuid4()), name, cluster, pool)
        with self._lock:
            self._all[operation.id] = operation
        threading.Thread(target=self._run, args=(operation, work, finish), name=f"azure-op-{name}",
                         daemon=True).start()
        return operation

    def _run(self, operation: Operation, work: Callable[[Operation], None],
             finish: Callable[[Operation], None]) -> None:
        try:
            while not self._released.wait(0.05):
                self.clock.pause(0)
            fault = self._take_fault(operation)
            if fault is not None:
                raise OperationError(fault.code, fault.message)
            work(operation)
            operation.status = "Succeeded"
        except OperationError as exc:
            operation.status, operation.error = "Failed", {"code": exc.code, "message": exc.message}
        except Stopped:
            operation.status = "Canceled"
            operation.error = {"code": "OperationCanceled", "message": "The sandbox stopped during the operation."}
        except Exception as exc:  # a stand-in bug must end the operation, never leave it InProgress forever
            log.exception("operation %s (%s) crashed", operation.id, operation.name)
            operation.status = "Failed"
            operation.error = {"code": "InternalOperationError", "message": f"{type(exc).__name__}: {exc}"}
        finally:
            operation.ended = now_rfc3339()
            try:
                finish(operation)
            finally:
                operation.done.set()

    def _take_fault(self, operation: Operation) -> OperationFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(operation):
                    fault.times -= 1
                    return fault
        return None

    # -- queries -------------------------------------------------------------------------------------

    def get(self, operation_id: str) -> Operation | None:
        with self._lock:
            return self._all.get(operation_id.lower())

    def in_flight(self, cluster: tuple[str, str, str], pool: str | None = None) -> Operation | None:
        """An unfinished operation that a write to this cluster (pool) would collide with: one on the same
        pool, or one on the whole cluster (for a cluster write: any)."""
        with self._lock:
            for operation in self._all.values():
                if operation.cluster != cluster or operation.done.is_set():
                    continue
                if pool is None or operation.pool in (None, pool):
                    return operation
        return None

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every operation has finished (test helper)."""
        with self._lock:
            pending = [o for o in self._all.values() if not o.done.is_set()]
        for operation in pending:
            if not operation.done.wait(timeout):
                raise TimeoutError(f"operation {operation.name} {operation.id} still running after {timeout}s")

    # -- steering ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Operations started inside the block stay InProgress until it exits."""
        self._released.clear()
        try:
            yield
        finally:
            self._released.set()

    def fail_next(self, code: str, message: str, *, name: str = "*", pool: str = "*", times: int = 1) -> OperationFault:
        fault = OperationFault(code, message, name, pool, times)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
