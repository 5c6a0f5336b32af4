"""Shared fixtures: a fresh sandbox per test (it starts in milliseconds) and real clients pointed at it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

# Never let Prefect's server phone home: nothing here may reach an address other than loopback.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The test servers store events every half second, not every 5 s: tests that prove "no event was posted"
# wait for a marker event to be stored, and that wait is this interval.
os.environ.setdefault("PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL", "0.5")

import pytest  # noqa: E402
from kubernetes import client, config

from sandbox.server import DEMO_MANIFESTS, Sandbox, SandboxConfig

FAST = dict(speed=30.0, pod_ready_seconds=2.0, tick_seconds=0.02, bookmark_seconds=0.5)


def start_sandbox(**overrides) -> Sandbox:
    return Sandbox(SandboxConfig(**{**FAST, **overrides})).start()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An empty sandbox (just the `default` namespace and three Ready nodes), fast simulated time."""
    sb = start_sandbox()
    sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    for i in range(3):
        sb.apply_object({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}"}}})
    yield sb
    sb.stop()


@pytest.fixture
def demo_sandbox() -> Iterator[Sandbox]:
    """A sandbox seeded with the demo estate."""
    sb = start_sandbox(manifests=(DEMO_MANIFESTS,))
    yield sb
    sb.stop()


@pytest.fixture
def api_client(sandbox: Sandbox) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config_dict(sandbox.kubeconfig())
    yield api
    api.close()


@pytest.fixture
def kubeconfig(sandbox: Sandbox, tmp_path: Path) -> Path:
    return sandbox.write_kubeconfig(tmp_path / "kubeconfig")


def deployment_manifest(name: str = "web", image: str = "web:v1", replicas: int = 3, namespace: str = "default",
                        progress_deadline: int = 60) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": progress_deadline,
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": image,
                                                           "ports": [{"containerPort": 8080}]}]}}}}


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes ~16 s to start)."""
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL per test session (per xdist worker): Debian's binaries, a temporary data directory,
    a free loopback port. Skipped only where the binaries are absent, and never in CI (.ci/run installs them)."""
    from tests.postgres import APT_HINT, PostgresServer, server_binaries
    if server_binaries() is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {APT_HINT}")
        pytest.skip(f"PostgreSQL server binaries are not installed: {APT_HINT}")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_database(postgres, request):
    """A fresh database on the session's PostgreSQL, named after the test; returns its URL."""
    import re
    import uuid
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    return postgres.create_database(name)
