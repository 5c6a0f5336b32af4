"""`runbooks sandbox`: run the local Kubernetes API stand-in (and the Azure and GitHub ones next to it) in the
foreground."""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.catalog import write_demo_catalog
from sandbox.server import DEMO_MANIFESTS, Sandbox, SandboxConfig

if TYPE_CHECKING:      # imported where used: every `runbooks` command imports this module
    from sandbox.azure.server import AzureSandbox
    from sandbox.github.server import GitHubSandbox


def add_sandbox_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sandbox", help="run the Kubernetes API sandbox in the foreground",
                                 description="Start the sandbox, write DIR/kubeconfig and DIR/env once it is "
                                             "ready, and stop cleanly on SIGTERM or SIGINT.")
    parser.add_argument("--dir", required=True, type=Path, help="where to write kubeconfig and env")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a generated CA")
    parser.add_argument("--token", help="require this bearer token (default: none)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time speed-up (default 1)")
    parser.add_argument("--manifests", type=Path, action="append",
                        help=f"YAML file or directory to seed state from (default: the demo estate in "
                             f"{DEMO_MANIFESTS})")
    parser.add_argument("--empty", action="store_true", help="start with no seed state")
    parser.add_argument("--no-azure", action="store_true",
                        help="do not start the Azure stand-in (ARM for AKS + an Entra ID tenant) next to it")
    parser.add_argument("--no-github", action="store_true",
                        help="do not start the GitHub stand-in (REST API as on GitHub Enterprise Server) next to it")
    parser.set_defaults(func=run_sandbox)


def run_sandbox(args: argparse.Namespace) -> int:
    manifests = () if args.empty else tuple(args.manifests or [DEMO_MANIFESTS])
    for path in manifests:
        if not path.exists():
            print(f"runbooks sandbox: manifests not found: {path}", file=sys.stderr)
            return 2
    try:
        config = SandboxConfig(port=args.port, tls=args.tls, token=args.token, speed=args.speed,
                               manifests=manifests)
    except ValueError as exc:
        print(f"runbooks sandbox: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sandbox = Sandbox(config).start()
    azure = github = None
    try:
        if not args.no_azure:
            from sandbox.azure.local import start_next_to
            azure = start_next_to(sandbox, args.dir, speed=args.speed)
        if not args.no_github:
            from sandbox.github.local import start_local
            github = start_local(args.dir, speed=args.speed, demo=not args.empty)
        write_files(sandbox, args.dir, azure, github)
        print(f"sandbox: Kubernetes API at {sandbox.url}", flush=True)
        if azure is not None:
            print(f"sandbox: Azure Resource Manager and Entra ID at {azure.url} (AKS cluster "
                  f"{azure.config.resource_group}/{azure.config.cluster_name}; RUNBOOKS_AZURE_* in the env file)",
                  flush=True)
        if github is not None:
            print(f"sandbox: GitHub REST API at {github.base_url} (repositories "
                  f"{', '.join(r.full_name for r in github.repos())}; RUNBOOKS_GITHUB_* in the env file)", flush=True)
        print(f"sandbox: export KUBECONFIG={(args.dir / 'kubeconfig').resolve()}   (or: source {args.dir / 'env'})",
              flush=True)
        print("sandbox: no cluster is configured, so runbooks run against this sandbox; Ctrl-C stops it",
              flush=True)
        stop.wait()
    finally:
        stopping = [threading.Thread(target=s.stop) for s in (azure, github) if s is not None]
        for thread in stopping:
            thread.start()                             # the servers wind down at once
        sandbox.stop()
        for thread in stopping:
            thread.join()
        print("sandbox: stopped", flush=True)
    return 0


def write_files(sandbox: Sandbox, directory: Path, azure: "AzureSandbox | None" = None,
                github: "GitHubSandbox | None" = None) -> None:
    """kubeconfig and catalog first, env last: `env` existing means the sandbox is ready."""
    directory.mkdir(parents=True, exist_ok=True)
    env = directory / "env"
    env.unlink(missing_ok=True)
    kubeconfig = sandbox.write_kubeconfig(directory / "kubeconfig").resolve()
    production = None
    if azure is not None:
        from sandbox.azure.local import credentials_in
        from sandbox.catalog import aks_cluster
        production = aks_cluster(credentials_in(azure, directory), azure.config.resource_group,
                                 azure.config.cluster_name)
    catalog = write_demo_catalog(directory / "catalog.yaml", kubeconfig, production_cluster=production).resolve()
    lines = [f"export KUBECONFIG={shlex.quote(str(kubeconfig))}",
             f"export RUNBOOKS_CATALOG={shlex.quote(str(catalog))}",
             f"export SANDBOX_URL={shlex.quote(sandbox.url)}"]
    if azure is not None:
        from sandbox.azure.local import env_lines
        lines += env_lines(azure, directory)
    if github is not None:
        from sandbox.github.local import env_lines as github_env_lines
        lines += github_env_lines(github, directory)
    tmp = directory / ".env.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)                                   # it may hold the Azure client secret and the GitHub token
    tmp.replace(env)
