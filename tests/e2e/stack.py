"""The whole main job as an operator runs it: `runbooks up` (Prefect server, served runbooks, receiver,
sandbox) in a subprocess on free loopback ports, torn down with SIGTERM."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    directory: Path
    process: subprocess.Popen
    prefect_port: int
    receiver_port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def receiver_token(self) -> str:
        return (self.directory / "receiver-token").read_text().strip()

    def env(self) -> dict[str, str]:
        """Environment for clients (CLI, Prefect client) talking to this stack."""
        sandbox_env = self.directory / "sandbox" / "env"
        pairs = dict(line.removeprefix("export ").split("=", 1) for line in sandbox_env.read_text().splitlines())
        return {**os.environ, "PREFECT_API_URL": self.api_url, **{k: v.strip("'") for k, v in pairs.items()}}

    def log(self, name: str) -> str:
        return (self.directory / "logs" / f"{name}.log").read_text(errors="replace")


def start_stack(directory: Path, *, sandbox_speed: float = 10.0, timeout: float = 240,
                extra_env: dict[str, str] | None = None, database: str | None = None) -> Stack:
    """`database`: a PostgreSQL URL, passed as an operator would (RUNBOOKS_DATABASE_URL, not on argv)."""
    prefect_port, receiver_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RUNBOOKS_", "KUBECONFIG"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL="0.5", **(extra_env or {}))
    if database:
        env["RUNBOOKS_DATABASE_URL"] = database
    out = open(directory / "up.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "runbooks.cli", "up", "--dir", str(directory),
                                "--prefect-port", str(prefect_port), "--receiver-port", str(receiver_port),
                                "--sandbox-speed", str(sandbox_speed)],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stack = Stack(directory, process, prefect_port, receiver_port)
    deadline = time.monotonic() + timeout
    while "runbooks are up:" not in (directory / "up.log").read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_stack(stack)
            raise RuntimeError(f"runbooks up did not come up:\n{(directory / 'up.log').read_text()[-4000:]}")
        time.sleep(0.5)
    return stack


def stop_stack(stack: Stack) -> int:
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()
    return stack.process.returncode


def wait_for(predicate, timeout: float, what: str):
    """Poll `predicate` until it returns something truthy (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def gated_rollback_run(stack: Stack, *, reason: str) -> str:
    """Start a production rollback of checkout-web to revision 1 and wait until it pauses at its approval
    gate (before any write). Returns the flow run id."""
    deployment = httpx.get(f"{stack.api_url}/deployments/name/emergency-rollback/emergency-rollback").json()
    created = httpx.post(f"{stack.api_url}/deployments/{deployment['id']}/create_flow_run", timeout=10, json={
        "parameters": {"service": "checkout-web", "environment": "production", "target_revision": 1,
                       "reason": reason, "requested_by": "pytest"}})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    wait_for(lambda: httpx.get(f"{stack.api_url}/flow_runs/{run_id}", timeout=10).json()["state_type"] == "PAUSED",
             90, "the run to pause at its approval gate")
    return run_id
