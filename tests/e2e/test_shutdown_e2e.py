"""Stopping `make run` while a run waits at its approval gate ends that run Cancelled, changing nothing.

Otherwise the run would stay Paused with no process behind it, and approving it later would "resume"
a rollback that nobody executes.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from .stack import gated_rollback_run, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def test_stopping_the_stack_cancels_a_run_waiting_for_approval(tmp_path):
    stack = start_stack(tmp_path)
    try:
        since = time.time()
        run_id = gated_rollback_run(stack, reason="shutdown test")
        requests = httpx.get(f"{stack.env()['SANDBOX_URL']}/_sandbox/requests", params={"since": since}).json()
        assert requests["requests"], "the run read the cluster"
        assert [r for r in requests["requests"] if r["is_write"]] == [], "nothing is written before the gate"
    finally:
        assert stop_stack(stack) == 0, stack.log("serve")[-3000:]

    assert f"run {run_id} ended CANCELLED" in stack.log("serve")
    assert leftovers(tmp_path) == [], "`runbooks up` left processes behind"
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as db:        # the server has stopped
        state, message = db.execute("SELECT s.type, s.message FROM flow_run r JOIN flow_run_state s "
                                    "ON s.id = r.state_id WHERE r.id = ?", (run_id,)).fetchone()
    assert state == "CANCELLED" and "nothing was changed" in message


def leftovers(directory) -> list[str]:
    """Processes whose command line or environment names the stack's directory (its children, forked runs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(directory).encode() in text:
            found.append(entry.name)
    return found
