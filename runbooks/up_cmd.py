"""`runbooks up`: the main job. Prefect server + every runbook served + alert receiver (+ sandbox).

Each part is its own process with its log under DIR/logs. One that dies after start-up is restarted (with a
back-off; after five quick failures in a row everything stops and the command exits non-zero with the tail
of its log), so a crashed runner does not take the UI, the receiver and the sandbox down with it.
Ctrl-C (SIGINT) or SIGTERM stops everything cleanly, and no process is left behind: each part's whole
process group (the runner's forked runs included) is stopped.
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

from . import database

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STOP_SECONDS = {"serve": 60}    # the runner lets runs finish (15 s), then gives stopped ones 30 s to undo
QUICK_FAILURE_SECONDS = 30      # a child that dies sooner than this after a (re)start counts as a quick failure
MAX_QUICK_FAILURES = 5
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
SANDBOX_CATALOG_MARK = "# Written by `runbooks sandbox`"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("up", help="start Prefect, serve every runbook, the alert receiver (+ sandbox)",
                                 description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".run"), help="state and logs (default .run)")
    parser.add_argument("--host", default="127.0.0.1", help="Prefect server bind address (default 127.0.0.1)")
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--receiver-port", type=int, default=9095)
    parser.add_argument("--sandbox-speed", type=float, default=1.0)
    parser.add_argument("--catalog", type=Path, metavar="PATH",
                        help="the estate to act on (default: $RUNBOOKS_CATALOG; neither: the sandbox's demo estate)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="do not start the sandbox even when no catalog is given")
    parser.add_argument("--database", metavar="URL", default=os.environ.get(database.ENV),
                        help=f"PostgreSQL for the Prefect server and the receiver's shared state, "
                             f"postgresql://user:password@host:port/db (default: ${database.ENV}, which keeps the "
                             "password out of the process list; neither: Prefect's own SQLite in DIR/prefect)")
    parser.set_defaults(func=run_up)


class Child:
    """One supervised process: how to start it again, and how it has been failing."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.quick_failures = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started = time.monotonic()


class Supervisor:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.logs = directory / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []
        self.stop = threading.Event()

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        child = Child(name, args, env, self.logs / f"{name}.log")
        child.start()
        self.children.append(child)
        return child.proc

    def dead(self) -> str | None:
        return next((c.name for c in self.children if c.proc.poll() is not None), None)

    def restart_dead(self) -> str | None:
        """Restart children that died; the name of one that keeps dying (give up), else None."""
        for child in self.children:
            code = child.proc.poll()
            if code is None:
                continue
            quick = time.monotonic() - child.started < QUICK_FAILURE_SECONDS
            child.quick_failures = child.quick_failures + 1 if quick else 1
            if child.quick_failures >= MAX_QUICK_FAILURES:
                return child.name
            delay = min(30, 2 ** (child.quick_failures - 1))
            print(f"up: {child.name} exited with {code}; restarting it in {delay}s "
                  f"(log: {child.log})", file=sys.stderr, flush=True)
            if self.stop.wait(delay):
                return None
            child.start()
        return None

    def tail(self, name: str, lines: int = 20) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def shutdown(self) -> None:
        """Stop the children one at a time, last started first: the runner then stops while the Prefect
        server and the sandbox are still up, so it can let runs finish and record how each one ended.
        Then whatever is left of each child's process group (a forked run that outlived its runner)."""
        for child in reversed(self.children):
            proc = child.proc
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_SECONDS.get(child.name, 20))
                except subprocess.TimeoutExpired:
                    print(f"up: {child.name} did not stop in time; killing it", flush=True)
                    _kill_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            _stop_group(proc.pid)

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


def _kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _stop_group(pgid: int, grace: float = 10.0) -> None:
    """SIGTERM what is left of a process group, SIGKILL it after `grace` seconds."""
    if not _kill_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _kill_group(pgid, 0):
            return
        time.sleep(0.2)
    _kill_group(pgid, signal.SIGKILL)


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
    if args.database:
        try:
            database.parse(args.database)
        except database.DatabaseUrlError as exc:
            return str(exc)
        return database.unreachable(args.database)
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
            name = sup.restart_dead()
            if name:
                print(f"up: {name} keeps exiting; stopping everything:\n{sup.tail(name)}", file=sys.stderr,
                      flush=True)
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
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONUNBUFFERED": "1",
           # leases on disk: a server restart must not leave a runbook's lock held forever
           "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASE_STORAGE,
           "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")}
    for stale in ("KUBECONFIG", "SANDBOX_URL", "RUNBOOKS_CATALOG", database.ENV):
        env.pop(stale, None)
    if os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        env["PREFECT_API_AUTH_STRING"] = os.environ["PREFECT_SERVER_API_AUTH_STRING"]
    catalog = chosen_catalog(args)
    if catalog is not None:
        env["RUNBOOKS_CATALOG"] = str(catalog)
        if os.environ.get("KUBECONFIG"):
            env["KUBECONFIG"] = os.environ["KUBECONFIG"]
    elif not args.no_sandbox:
        sandbox_dir = directory / "sandbox"
        (sandbox_dir / "env").unlink(missing_ok=True)
        sandbox = sup.start("sandbox", cli + ["sandbox", "--dir", str(sandbox_dir), "--speed",
                                              str(args.sandbox_speed)], env)
        sup.wait_until("the sandbox", lambda: (sandbox_dir / "env").exists(), 60)
        env.update(_read_env(sandbox_dir / "env"))
        port = env["SANDBOX_URL"].rsplit(":", 1)[1]
        next(c for c in sup.children if c.proc is sandbox).args += ["--port", port]   # a restart keeps its address
    server_env, receiver_db = dict(env), {}
    if args.database:       # the URL carries a password: only the server and the receiver get it
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database.prefect_url(args.database)
        receiver_db["RUNBOOKS_RECEIVER_DATABASE_URL"] = database.plain_url(args.database)
    sup.start("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host", args.host,
                                 "--port", str(args.prefect_port)], server_env)
    sup.wait_until("the Prefect server", lambda: _healthy(f"{api_url}/health"), 180)
    serve_started = time.time() - 1.0              # the server's clock may trail ours a little
    sup.start("serve", cli + ["serve"], env)
    token_file = directory / "receiver-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(32))
        token_file.chmod(0o600)
    receiver_env = {**env, **receiver_db, "RUNBOOKS_RECEIVER_TOKEN": token_file.read_text().strip()}
    sup.start("receiver", cli + ["receiver", "--port", str(args.receiver_port)], receiver_env)
    sup.wait_until("the alert receiver", lambda: _healthy(f"http://127.0.0.1:{args.receiver_port}/healthz"), 60)
    sup.wait_until("the served deployments and their alert triggers",
                   lambda: _deployments_ready(api_url, env, serve_started), 180)
    return env


def chosen_catalog(args: argparse.Namespace) -> Path | None:
    """--catalog, else $RUNBOOKS_CATALOG, unless that is a catalog an earlier sandbox wrote (its sandbox is
    gone with that run: the demo estate is started afresh instead). None: use the sandbox."""
    if args.catalog:
        return args.catalog.resolve()
    exported = os.environ.get("RUNBOOKS_CATALOG")
    if not exported:
        return None
    path = Path(exported).expanduser().resolve()
    try:
        written_by_sandbox = path.read_text().startswith(SANDBOX_CATALOG_MARK)
    except OSError:
        written_by_sandbox = False
    if written_by_sandbox:
        print(f"up: ignoring RUNBOOKS_CATALOG={exported}: it is an earlier sandbox's catalog; starting the sandbox "
              "afresh (pass --catalog to use another estate)", flush=True)
        return None
    return path


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
    ui, api = env["PREFECT_API_URL"].removesuffix("/api"), env["PREFECT_API_URL"]
    receiver = f"http://127.0.0.1:{args.receiver_port}"
    sandbox = env.get("SANDBOX_URL")
    lines = [
        "", "runbooks are up:",
        f"  Prefect UI:      {ui}   (deployments, runs, approval gates)",
        f"  Prefect API:     {api}",
        f"  alert receiver:  {receiver}/alerts/{{alertmanager,azure-monitor,grafana}}  "
        f"(bearer token in {directory / 'receiver-token'})",
        f"  database:        "
        + (f"PostgreSQL {database.redacted(args.database)}   (the server's and the receiver's state)"
           if args.database else f"SQLite in {directory / 'prefect'}   (one machine; --database for PostgreSQL)"),
        f"  catalog:         {env.get('RUNBOOKS_CATALOG', '(none)')}"
        + ("   (the sandbox's demo estate)" if sandbox else "   (your estate)"),
    ]
    if sandbox:
        lines.append(f"  sandbox cluster: {sandbox}   (source {directory / 'sandbox' / 'env'} for kubectl)")
    if sandbox and env.get("RUNBOOKS_GITHUB_URL"):
        lines.append(f"  sandbox GitHub:  {env['RUNBOOKS_GITHUB_URL']}   (RUNBOOKS_GITHUB_TOKEN in the same env file)")
    fallback = _fast_path_warning(directory)
    if fallback:
        lines += ["", f"WARNING: {fallback}"]
    cli = f"PREFECT_API_URL={api} .venv/bin/runbooks"
    lines += ["", "Fire a demo alert (payments-api starts crash looping, the alert starts emergency-rollback):",
              f"  .venv/bin/runbooks demo-alert --dir {args.dir}",
              "then answer the run's gate in the UI, or from a shell:",
              f"  {cli} pending                              # runs waiting for approval",
              f"  {cli} approve RUN_ID --as YOUR_NAME",
              "", "Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)


def _fast_path_warning(directory: Path) -> str | None:
    """The runner's loud fallback line, if it fell back (the summary repeats it where people look)."""
    try:
        log = (directory / "logs" / "serve.log").read_text(errors="replace")
    except OSError:
        return None
    ready = [l for l in log.splitlines() if "fork server ready" in l or "FAST PATH OFF" in l]
    line = ready[-2] if len(ready) > 1 and "fast path OFF" in ready[-1] else None
    return line.split("FAST PATH OFF:", 1)[1].strip() if line else None
