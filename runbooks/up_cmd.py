"""`runbooks up`: the main job. Prefect server + every runbook served + alert receiver (+ sandbox).

Each part is its own process with its log under DIR/logs; if one dies the others are stopped and the
command exits non-zero with the tail of that log. Ctrl-C (SIGINT) or SIGTERM stops everything cleanly.
Self-hosted Prefect has no users: anyone who reaches its API can approve a gate, so everything binds to
127.0.0.1 unless --host is given together with PREFECT_SERVER_API_AUTH_STRING.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STOP_SECONDS = {"serve": 40}    # the runner lets runs in progress finish (up to 15 s) before it exits


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("up", help="start Prefect, serve every runbook, the alert receiver (+ sandbox)",
                                 description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".run"), help="state and logs (default .run)")
    parser.add_argument("--host", default="127.0.0.1", help="Prefect server bind address (default 127.0.0.1)")
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--receiver-port", type=int, default=9095)
    parser.add_argument("--sandbox-speed", type=float, default=1.0)
    parser.add_argument("--no-sandbox", action="store_true",
                        help="do not start the sandbox even when RUNBOOKS_CATALOG is unset")
    parser.set_defaults(func=run_up)


class Supervisor:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.logs = directory / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stop = threading.Event()

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append((name, proc))
        return proc

    def dead(self) -> str | None:
        return next((name for name, proc in self.children if proc.poll() is not None), None)

    def tail(self, name: str, lines: int = 20) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def shutdown(self) -> None:
        """Stop the children one at a time, last started first: the runner then stops while the Prefect
        server and the sandbox are still up, so it can let runs finish and record how each one ended."""
        for name, proc in reversed(self.children):
            if proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_SECONDS.get(name, 20))
            except subprocess.TimeoutExpired:
                print(f"up: {name} did not stop in time; killing it", flush=True)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def wait_until(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            name = self.dead()
            if name:
                raise RuntimeError(f"{name} exited while waiting for {what}:\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
            if self.stop.wait(0.2):
                raise KeyboardInterrupt


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value.strip("'") for key, value in pairs}


def check_arguments(args: argparse.Namespace) -> str | None:
    if args.host not in LOOPBACK and not os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        return (f"refusing to bind Prefect to {args.host}: anyone who reaches it could approve gates. "
                "Set PREFECT_SERVER_API_AUTH_STRING (user:password) first, or keep the default 127.0.0.1")
    for name, port in (("--prefect-port", args.prefect_port), ("--receiver-port", args.receiver_port)):
        if not _port_free("127.0.0.1", port):
            return f"port {port} ({name}) is in use; pick another with {name}"
    return None


def run_up(args: argparse.Namespace) -> int:
    problem = check_arguments(args)
    if problem:
        print(f"runbooks up: {problem}", file=sys.stderr)
        return 2
    directory = args.dir.resolve()
    sup = Supervisor(directory)
    signal.signal(signal.SIGTERM, lambda *_: sup.stop.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stop.set())
    try:
        env = start_all(sup, args, directory)
        print_summary(args, env, directory)
        while not sup.stop.wait(0.5):
            name = sup.dead()
            if name:
                print(f"up: {name} exited unexpectedly:\n{sup.tail(name)}", file=sys.stderr, flush=True)
                return 1
        return 0
    except RuntimeError as exc:
        print(f"runbooks up: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        print("up: stopping...", flush=True)
        sup.shutdown()
        print("up: stopped", flush=True)


def start_all(sup: Supervisor, args: argparse.Namespace, directory: Path) -> dict[str, str]:
    cli = [sys.executable, "-m", "runbooks.cli"]
    api_url = f"http://{'127.0.0.1' if args.host in LOOPBACK else args.host}:{args.prefect_port}/api"
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(directory / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONUNBUFFERED": "1"}
    if os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        env["PREFECT_API_AUTH_STRING"] = os.environ["PREFECT_SERVER_API_AUTH_STRING"]
    if not os.environ.get("RUNBOOKS_CATALOG") and not args.no_sandbox:
        sandbox_dir = directory / "sandbox"
        (sandbox_dir / "env").unlink(missing_ok=True)
        sup.start("sandbox", cli + ["sandbox", "--dir", str(sandbox_dir), "--speed", str(args.sandbox_speed)], env)
        sup.wait_until("the sandbox", lambda: (sandbox_dir / "env").exists(), 60)
        env.update(_read_env(sandbox_dir / "env"))
    sup.start("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host", args.host,
                                 "--port", str(args.prefect_port)], env)
    sup.wait_until("the Prefect server", lambda: _healthy(f"{api_url}/health"), 180)
    serve_started = time.time() - 1.0              # the server's clock may trail ours a little
    sup.start("serve", cli + ["serve"], env)
    token_file = directory / "receiver-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(32))
        token_file.chmod(0o600)
    receiver_env = {**env, "RUNBOOKS_RECEIVER_TOKEN": token_file.read_text().strip()}
    sup.start("receiver", cli + ["receiver", "--port", str(args.receiver_port)], receiver_env)
    sup.wait_until("the alert receiver", lambda: _healthy(f"http://127.0.0.1:{args.receiver_port}/healthz"), 60)
    sup.wait_until("the served deployments and their alert triggers",
                   lambda: _deployments_ready(api_url, env, serve_started), 180)
    return env


def _deployments_ready(api_url: str, env: dict[str, str], since: float) -> bool:
    """Every prefect.yaml deployment registered by this start (updated after `since`), and the alert
    trigger of each one armed: an alert accepted before its automation exists would start nothing."""
    from deployments.serve import declared_deployments
    declared = declared_deployments()
    auth = tuple(env["PREFECT_API_AUTH_STRING"].split(":", 1)) if env.get("PREFECT_API_AUTH_STRING") else None
    try:
        deployments = httpx.post(f"{api_url}/deployments/filter", json={"limit": 200}, auth=auth, timeout=5)
        automations = httpx.post(f"{api_url}/automations/filter", json={"limit": 200}, auth=auth, timeout=5)
        if deployments.status_code != 200 or automations.status_code != 200:
            return False
        fresh = {d["name"]: d["id"] for d in deployments.json()
                 if dt.datetime.fromisoformat(d["updated"].replace("Z", "+00:00")).timestamp() >= since}
        armed = {action.get("deployment_id") for automation in automations.json() if automation.get("enabled")
                 for action in automation.get("actions", []) if action.get("type") == "run-deployment"}
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    if not {d["name"] for d in declared} <= set(fresh):
        return False
    return {fresh[d["name"]] for d in declared if d.get("triggers")} <= armed


def print_summary(args: argparse.Namespace, env: dict[str, str], directory: Path) -> None:
    ui = env["PREFECT_API_URL"].removesuffix("/api")
    receiver = f"http://127.0.0.1:{args.receiver_port}"
    lines = [
        "", "runbooks are up:",
        f"  Prefect UI:      {ui}   (deployments, runs, approval gates)",
        f"  Prefect API:     {env['PREFECT_API_URL']}",
        f"  alert receiver:  {receiver}/alerts/{{alertmanager,azure-monitor,grafana}}  "
        f"(bearer token in {directory / 'receiver-token'})",
    ]
    if env.get("KUBECONFIG"):
        lines.append(f"  sandbox cluster: export KUBECONFIG={env['KUBECONFIG']}   "
                     f"(catalog: {env.get('RUNBOOKS_CATALOG')})")
    lines += ["", "Fire a demo alert (payments-api starts crash looping, the alert starts emergency-rollback):",
              f"  .venv/bin/runbooks demo-alert --dir {args.dir}",
              "then approve the run at its gate in the UI, or: .venv/bin/runbooks approve RUN_ID --as YOUR_NAME",
              "", "Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)
