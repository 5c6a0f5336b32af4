"""`runbooks run RUNBOOK --set key=value ... [--dry-run]`: run a runbook now, from a terminal.

Exit code 0 only when the run succeeded and verified (a no-op or a dry run counts as success); 1 when it
failed, was rejected, refused or cancelled; 2 for bad input (an unknown parameter, a value of the wrong
type, an environment or service not in the catalog), before anything runs. The catalog in use is printed
first. Cancelling the run in the Prefect UI (or closing the terminal) stops it within about a second:
changes in place are undone, the report says what happened, and the run ends Cancelled.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .registry import RUNBOOKS, load

CANCEL_POLL_SECONDS = 1.0


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run a runbook now", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runbook", help=f"one of: {', '.join(sorted(RUNBOOKS))}")
    parser.add_argument("--set", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="a runbook parameter (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    parser.add_argument("--catalog", metavar="PATH", help="the catalog to use (default: $RUNBOOKS_CATALOG)")
    parser.set_defaults(func=run)


def parse_params(pairs: list[str], allowed: set[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        if key not in allowed:
            raise ValueError(f"unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}")
        params[key] = value
    return params


def _bad_input(message: str) -> int:
    print(f"runbooks run: {message} (nothing was run)", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        runbook = load(args.runbook)
    except KeyError as exc:
        return _bad_input(exc.args[0])
    if args.catalog:
        os.environ["RUNBOOKS_CATALOG"] = args.catalog
    try:
        params = parse_params(args.params, set(runbook.parameters.properties))
        if args.dry_run:
            params["dry_run"] = "true"
        missing = [name for name in runbook.parameters.required if name not in params]
        if missing:
            raise ValueError(f"missing required parameter(s): {', '.join(missing)} (use --set NAME=VALUE)")
        validated = validate(runbook, params)
    except ValueError as exc:
        return _bad_input(str(exc))
    _quiet_tracebacks()
    watcher = CancelWatcher()
    for sig in (signal.SIGHUP, signal.SIGTERM):     # Prefect's engine re-sends the signal to this handler
        signal.signal(sig, _stopped)
    try:
        watcher.start()
        state = runbook(**validated, return_state=True)
    except BaseException as exc:            # TerminationSignal (cancel, SIGHUP, SIGTERM) or Ctrl-C
        watcher.stop()
        watcher.settle(cancelled=True)
        print(f"{args.runbook}: cancelled ({type(exc).__name__}); see the run's report", file=sys.stderr)
        return 1
    watcher.stop()
    if state.is_completed():
        print(f"{args.runbook}: {state.result().outcome}")
        return 0
    print(f"{args.runbook}: {state.name}: {state.message}", file=sys.stderr)
    return 1


def validate(runbook, params: dict[str, str]) -> dict:
    """Types from the flow's signature, then the environment and service against the catalog."""
    import typing

    from pydantic import TypeAdapter, ValidationError

    from tasks.catalog import load_catalog
    from tasks.errors import CatalogError, TargetNotFound
    hints = typing.get_type_hints(runbook.fn)
    validated = {}
    for name, value in params.items():
        adapter = TypeAdapter(hints.get(name, str))
        try:
            if isinstance(value, dict):
                validated[name] = adapter.validate_python(value)
            elif hints.get(name, str) is not str and value.lstrip().startswith("{"):
                validated[name] = adapter.validate_json(value)          # a typed object: --set 'target={...}'
            else:
                validated[name] = adapter.validate_strings(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"parameter {name!r}: {first.get('msg')} (got {value!r})") from None
    try:
        catalog = load_catalog()
        print(f"catalog: {catalog.source}", file=sys.stderr)
        if "environment" in validated:
            catalog.environment(validated["environment"])
        service = validated.get("service") or getattr(validated.get("target"), "service", None)
        if service and "environment" in validated:
            catalog.service(validated["environment"], service)
    except (CatalogError, TargetNotFound) as exc:
        raise ValueError(str(exc)) from None
    return validated


def _stopped(signum, frame) -> None:
    """A lost terminal (SIGHUP) or a SIGTERM stops the run like a cancel: undo, report, end Cancelled.

    Prefect's engine turns SIGTERM into a `TerminationSignal` while the flow runs and, once the run has
    handled it, re-sends the signal to the handler it found: this one, so the command still exits cleanly.
    """
    from prefect.exceptions import TerminationSignal
    raise TerminationSignal(signum)


def _quiet_tracebacks() -> None:
    """The console shows a failed runbook's message, not a traceback (the API logs keep the traceback)."""
    class DropTraceback(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            from tasks.errors import RunbookError
            if record.exc_info and isinstance(record.exc_info[1], RunbookError):
                record.exc_info, record.exc_text = None, None
            return True
    for handler in logging.getLogger("prefect").handlers + logging.getLogger().handlers:
        handler.addFilter(DropTraceback())


class CancelWatcher:
    """Watches this process's runs on the server: a Cancel from the UI/CLI interrupts the run at once
    (SIGTERM to ourselves: Prefect's engine turns it into a TerminationSignal in the run's thread, and the
    kernel undoes what is in place and reports). Without it a CLI-started run would ignore Cancel until
    its current step ended, holding its lock."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.cancel_requested: set = set()
        self.thread = threading.Thread(target=self._loop, name="cancel-watcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _loop(self) -> None:
        from prefect.client.orchestration import get_client

        from flows.kernel.run import active_runs
        with get_client(sync_client=True) as client:
            while not self.stopped.wait(CANCEL_POLL_SECONDS):
                for run_id in active_runs():
                    try:
                        state = client.read_flow_run(run_id).state
                    except Exception:       # noqa: BLE001 - the server may be restarting; try again
                        continue
                    if state is not None and state.is_cancelling() and run_id not in self.cancel_requested:
                        self.cancel_requested.add(run_id)
                        os.kill(os.getpid(), signal.SIGTERM)

    def settle(self, *, cancelled: bool) -> None:
        """A run stopped by a signal ends Crashed in Prefect's engine; say what it was: Cancelled."""
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        from flows.kernel.run import recent_runs
        with get_client(sync_client=True) as client:
            for run_id in recent_runs():
                state = client.read_flow_run(run_id).state
                if cancelled and state is not None and (state.is_crashed() or state.is_cancelling()):
                    client.set_flow_run_state(run_id, Cancelled(message="cancelled: the run was stopped and its "
                                                                         "report says what was undone"), force=True)
