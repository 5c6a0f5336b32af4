"""The undo stack: registered undos run in reverse order, then prove the target is back.

Why not Prefect's `transaction()` rollback hooks: they log and swallow a hook's error, and a failed undo
must never be swallowed. Here a failed undo ends the run Failed (`undo-failed`), saying what state the
target is in and what to do.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from plans.record import Step
from tasks.errors import UndoFailed
from plans.record import Check

if TYPE_CHECKING:
    from .run import Runbook


class UndoStack:
    def __init__(self, run: "Runbook") -> None:
        self.run = run
        self._entries: list[tuple[int, Step, Callable[[], Any], Callable[[], list[Check]] | None]] = []
        self._always: set[int] = set()

    def push(self, number: int, step: Step, undo: Callable[[], Any],
             verify: Callable[[], list[Check]] | None = None, *, always: bool = False) -> None:
        self._entries.append((number, step, undo, verify))
        if always:
            self._always.add(number)

    def pending(self, *, always_only: bool = False) -> bool:
        return any(not always_only or entry[0] in self._always for entry in self._entries)

    def run_all(self, *, cause: BaseException | None, always_only: bool = False) -> None:
        """Undo the registered changes, newest first, then run each change's undo verification. With
        `always_only` (a run that succeeded), only the steps whose undo always runs (a drill's restore).

        Raises:
            UndoFailed: an undo raised, or its verification failed (chained to `cause`).
        """
        run, record = self.run, self.run.record
        entries = [e for e in self._entries if not always_only or e[0] in self._always]
        self._entries = [e for e in self._entries if e not in entries]
        run.log.warning("undoing %d change(s) because: %s", len(entries), _describe(cause))
        record.note("undo", f"undoing {len(entries)} change(s) because: {_describe(cause)}")
        failures: list[str] = []
        with _shielded(run):
            for number, step, undo, _ in reversed(entries):
                try:
                    undo()
                    step.status = "undone"
                except Exception as exc:       # noqa: BLE001 - recorded and raised below, never swallowed
                    step.status, step.detail = "undo-failed", f"{type(exc).__name__}: {exc}"[:300]
                    failures.append(f"{step.change.describe()}: {step.detail}")
                run._journal(number, step)
                record.note("undo", f"{step.change.describe()}: {step.status}")
            checks = [] if failures else [c for *_, verify in entries if verify for c in verify()]
        record.evidence += [f"after undo: {'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in checks]
        failures += [f"{c.name}: {c.detail}" for c in checks if not c.passed]
        if failures:
            target = record.target.resource if record.target else "the target"
            record.next_steps[:0] = [
                f"UNDO FAILED: {target} is in neither its old nor its new state: " + "; ".join(failures),
                "Restore it by hand now, using each step's before/after values in this report."]
            raise UndoFailed("undo failed: " + "; ".join(failures)) from cause


@contextmanager
def _shielded(run: "Runbook") -> Iterator[None]:
    """While undoing, a second Ctrl-C or SIGTERM is logged and ignored: stopping half-way through an undo
    would leave the target worse off. (The runner's SIGKILL after its grace period still stops it.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {sig: signal.getsignal(sig) for sig in names}
    for sig in names:
        signal.signal(sig, lambda number, _frame: run.log.warning(
            "signal %s ignored: undo in progress; the run stops when it is done", signal.Signals(number).name))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "the run is done and these steps are always undone (a drill restores what it broke)"
    sig = getattr(exc, "signal", None)
    if sig is not None:
        return f"the run was stopped by {signal.Signals(sig).name}"
    if isinstance(exc, KeyboardInterrupt):
        return "the run was interrupted (Ctrl-C)"
    return f"{type(exc).__name__}: {exc}"
