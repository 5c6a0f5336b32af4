"""Scale Service: the runbook's wall time against the bare SDK calls that make the same change, side by side.

Two scenarios, each round on fresh identical sandboxes, interleaved so machine noise hits both alike:

- node-pool: an AKS node pool from 3 to 10 nodes, end to end (the Azure stand-in over HTTPS and the Kubernetes
  sandbox it adds Nodes to), at 1/`--speed` of AKS's times (10x: 1 s of operation, 9 s per VM boot). Bare SDK:
  a ClientSecretCredential, `agent_pools.get`, `begin_create_or_update(...).result()` with If-Match, the user
  credentials as a kubeconfig, and a watch until 10 Nodes of the pool are Ready (`az aks nodepool scale`, then
  `kubectl wait`).
- deployment: a Deployment from 3 to 30 replicas at real speed (pods Ready after 2 s). Bare SDK: patch the scale
  subresource, watch until 30 are available, list the pods (`kubectl scale`, then `kubectl rollout status`).

Not a test: prints medians and the ratio runbook / bare SDK (goal: at most 1.2x).
Usage: python benchmarks/scaling.py [--rounds N] [--scenario node-pool|deployment] [--speed X]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")   # loopback only
os.environ.setdefault("DO_NOT_TRACK", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402

from sandbox.azure.env import azure_identity_env  # noqa: E402
from sandbox.azure.server import AzureConfig, AzureSandbox  # noqa: E402
from sandbox.server import DEMO_MANIFESTS, Sandbox, SandboxConfig  # noqa: E402
from tests.aks_helpers import KUBE_TOKEN, write_aks_catalog  # noqa: E402
from tests.runbook_helpers import wait_healthy, write_catalog  # noqa: E402
from tests.sandbox.azure_helpers import arm_client  # noqa: E402

POOL, POOL_FROM, POOL_TO = "user", 3, 10
NS, NAME, REPLICAS_FROM, REPLICAS_TO = "payments", "payments-api", 3, 30
POLL_SECONDS = 0.25          # ARM operation polling, the same for the runbook (catalog) and the bare SDK
LABEL = "kubernetes.azure.com/agentpool"


def estate(speed: float) -> tuple[Sandbox, AzureSandbox]:
    kube = Sandbox(SandboxConfig(speed=speed, tick_seconds=0.02, tls=True,
                                 token=KUBE_TOKEN, manifests=(DEMO_MANIFESTS,))).start()
    azure = AzureSandbox(AzureConfig(speed=speed), kubernetes=kube).start()
    for namespace, name in (("payments", "payments-api"), ("checkout", "checkout-web"), ("checkout", "cart")):
        wait_healthy(kube, namespace=namespace, name=name, timeout=120)
    return kube, azure


def kube_only() -> Sandbox:
    kube = Sandbox(SandboxConfig(speed=1.0, tick_seconds=0.02,
                                 manifests=(DEMO_MANIFESTS,))).start()
    wait_healthy(kube, timeout=60)
    return kube


# -- the bare SDK calls --------------------------------------------------------------------------------------

def bare_pool(kube: Sandbox, azure: AzureSandbox) -> None:
    from azure.core import MatchConditions
    rg, cluster = azure.config.resource_group, azure.config.cluster_name
    arm = arm_client(azure, polling_interval=POLL_SECONDS)
    pool = arm.agent_pools.get(rg, cluster, POOL)
    body = pool.as_dict()
    body["properties"]["count"] = POOL_TO
    arm.agent_pools.begin_create_or_update(rg, cluster, POOL, body, etag=pool.e_tag,
                                           match_condition=MatchConditions.IfNotModified).result()
    kubeconfig = arm.managed_clusters.list_cluster_user_credentials(rg, cluster).kubeconfigs[0].value
    api = config.new_client_from_config_dict(yaml.safe_load(kubeconfig))
    core = client.CoreV1Api(api)
    ready: dict[str, bool] = {}
    for event in watch.Watch().stream(core.list_node, label_selector=f"{LABEL}={POOL}", timeout_seconds=300):
        node = event["object"]
        ready[node.metadata.name] = event["type"] != "DELETED" and any(
            c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        if sum(ready.values()) == POOL_TO:
            break
    api.close()
    arm.close()


def bare_deployment(kube: Sandbox) -> None:
    api = config.new_client_from_config_dict(kube.kubeconfig())
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.patch_namespaced_deployment_scale(NAME, NS, {"spec": {"replicas": REPLICAS_TO}})
    for event in watch.Watch().stream(apps.list_namespaced_deployment, NS, field_selector=f"metadata.name={NAME}",
                                      timeout_seconds=120):
        d = event["object"]
        if (d.status.observed_generation or 0) >= d.metadata.generation and \
                d.status.updated_replicas == d.status.available_replicas == REPLICAS_TO:
            break
    core.list_namespaced_pod(NS, label_selector="app.kubernetes.io/name=payments-api")
    api.close()


# -- the runbook ---------------------------------------------------------------------------------------------

def runbook_pool(kube: Sandbox, azure: AzureSandbox, directory: Path) -> None:
    from flows.scaling import scale_service
    for name, value in azure_identity_env({k: str(v) for k, v in azure.credentials().env().items()}).items():
        os.environ[name] = value
    catalog = write_aks_catalog(kube, azure, directory, verify_timeout_seconds=300,
                                scaling={"max_nodes": 20, "blast_radius_up": 5})
    text = catalog.read_text().replace("operation_poll_seconds: 0.02", f"operation_poll_seconds: {POLL_SECONDS}")
    catalog.write_text(text)
    os.environ["RUNBOOKS_CATALOG"] = str(catalog)
    record = scale_service(environment="production", requested_by="bench",
                           target={"kind": "node-pool", "pool": POOL, "count": POOL_TO})
    assert record.outcome == "succeeded", (record.outcome, record.evidence)


def runbook_deployment(kube: Sandbox, directory: Path) -> None:
    from flows.scaling import scale_service
    os.environ["RUNBOOKS_CATALOG"] = str(write_catalog(kube, directory, scaling={"blast_radius_up": 20}))
    record = scale_service(environment="staging", requested_by="bench",
                           target={"kind": "replicas", "service": NAME, "replicas": REPLICAS_TO})
    assert record.outcome == "succeeded", (record.outcome, record.evidence)


# -- measuring -----------------------------------------------------------------------------------------------

def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def one(scenario: str, who: str, work: Path, speed: float) -> float:
    """One change on fresh sandboxes; the seconds it took."""
    if scenario == "deployment":
        kube = kube_only()
        try:
            return timed(lambda: bare_deployment(kube) if who == "bare SDK" else runbook_deployment(kube, work))
        finally:
            kube.stop()
    kube, azure = estate(speed)
    try:
        elapsed = timed(lambda: bare_pool(kube, azure) if who == "bare SDK" else runbook_pool(kube, azure, work))
        nodes = [n for n in kube.list("Node") if n["metadata"]["labels"].get(LABEL) == POOL]
        assert len(nodes) == POOL_TO and azure.pool(POOL).count == POOL_TO, "the change did not happen"
        return elapsed
    finally:
        azure.stop()
        kube.stop()


def measure(scenario: str, rounds: int, speed: float, tmp: str) -> None:
    results: dict[str, list[float]] = {"bare SDK": [], "runbook": []}
    one(scenario, "runbook", Path(tempfile.mkdtemp(dir=tmp)), speed)       # warm-up: imports, first flow run
    for _ in range(rounds):
        for who in results:
            results[who].append(one(scenario, who, Path(tempfile.mkdtemp(dir=tmp)), speed))
    med = {k: statistics.median(v) for k, v in results.items()}
    what = f"node pool {POOL} {POOL_FROM} -> {POOL_TO} nodes at {speed:g}x AKS's speed" if scenario == "node-pool" \
        else f"deployment {NS}/{NAME} {REPLICAS_FROM} -> {REPLICAS_TO} replicas at real speed"
    print(f"== {scenario}: {what}, {rounds} rounds ==")
    for who, values in results.items():
        print(f"  {who:<9} median {med[who]:6.2f} s   (min {min(values):.2f}, max {max(values):.2f})")
    print(f"  runbook / bare SDK: {med['runbook'] / med['bare SDK']:.2f}x   (goal <= 1.2x); "
          f"flat cost {med['runbook'] - med['bare SDK']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", choices=["node-pool", "deployment"], action="append", help="default: both")
    parser.add_argument("--speed", type=float, default=10.0, help="simulated AKS time, x faster (node-pool)")
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=120), tempfile.TemporaryDirectory() as tmp:
        for scenario in args.scenario or ["node-pool", "deployment"]:
            measure(scenario, args.rounds, args.speed, tmp)


if __name__ == "__main__":
    main()
