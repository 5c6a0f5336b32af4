"""chaos-drill's node-pool-scale-in fault end to end under Prefect: the real kubernetes, azure-mgmt-containerservice
and azure-identity clients against the Kubernetes sandbox served as an AKS cluster by the Azure stand-in, which
drains the Node it removes (PDBs honoured) and adds one back when the count goes up again."""
from __future__ import annotations

import pytest
import yaml

from flows.chaos import chaos_drill
from plans.plan import PlanningError
from tasks.errors import CatalogError
from tests.aks_helpers import changes, pool_nodes, running_estate, use_identity, write_aks_catalog
from tests.runbook_helpers import wait_healthy

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]
FAULT = {"kind": "node-pool-scale-in", "pool": "user", "nodes": 1}


@pytest.fixture(scope="module")
def estate():
    with running_estate() as (kube, azure):
        wait_healthy(kube, namespace="payments", name="payments-api")
        yield kube, azure


@pytest.fixture
def catalog(estate, monkeypatch, tmp_path):
    """`production` (unattended here: production=False) on the stand-in's AKS cluster, `staging` through a
    kubeconfig; `use(blast_radius=...)` rewrites the chaos section."""
    kube, azure = estate
    use_identity(azure, monkeypatch)
    (tmp_path / "experiments").mkdir()

    def use(blast_radius: dict | None = None) -> None:
        path = write_aks_catalog(kube, azure, tmp_path, production=False)
        raw = yaml.safe_load(path.read_text())
        raw["chaos"] = {"experiments": "experiments", "blast_radius": blast_radius or {}}
        path.write_text(yaml.safe_dump(raw))
        monkeypatch.setenv("RUNBOOKS_CATALOG", str(path))
    use()
    yield use
    azure.operations.wait_idle()


def drill(fault: dict = FAULT, environment: str = "production", service: str = "payments-api", **params):
    experiment = {"title": "lose a node", "service": service, "fault": fault, "duration_seconds": 1.0,
                  "hypothesis": [{"kind": "ready-replicas", "at_least": 2}, {"kind": "restarts", "at_most": 0}]}
    return chaos_drill(environment=environment, requested_by="game-day", experiment=experiment, **params)


def ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))


def test_a_drill_takes_a_node_away_and_puts_the_pool_back_at_its_exact_count(estate, catalog):
    kube, azure = estate
    before = pool_nodes(kube, "user")
    since = azure.requests.mark()
    record = drill()
    assert record.outcome == "succeeded", record.evidence
    evidence = "\n".join(record.evidence)
    assert "scorecard: PASS" in evidence and "PASS nodes ready: node pool user: 3/3" in evidence
    assert [e.body["properties"]["count"] for e in changes(azure, since) if e.method == "PUT"] == [2, 3]
    pool = azure.pool("user")
    assert (pool.count, pool.properties["enableAutoScaling"], pool.provisioning_state) == (3, False, "Succeeded")
    after = pool_nodes(kube, "user")
    assert len(after) == len(before) == 3 and after != before     # a node went away; a new one came back
    assert all(ready(kube.get("Node", name)) and not kube.get("Node", name).get("spec", {}).get("unschedulable")
               for name in after)
    wait_healthy(kube, namespace="payments", name="payments-api")


def test_a_dry_run_plans_the_pool_count_and_writes_nothing(estate, catalog):
    kube, azure = estate
    since_kube, since_azure = kube.requests.mark(), azure.requests.mark()
    record = drill(dry_run=True)
    assert record.outcome == "dry-run" and "node pool user properties.count: 3 -> 2" in record.plan.summary
    assert any("scale-in removes aks-user-" in line for line in record.plan.evidence + record.evidence)
    no_writes(kube, azure, since_kube, since_azure, read=True)


def no_writes(kube, azure, since_kube: float, since_azure: float, *, read: bool) -> None:
    """No write in either stand-in's log; with `read`, the positive control that ARM's log saw the run's reads
    (a kubeconfig environment is refused from the catalog, before any request)."""
    assert bool(azure.requests.entries(since_azure)) is read
    assert kube.requests.writes(since_kube) == [] and changes(azure, since_azure) == []


@pytest.fixture
def autoscaled(estate):
    """The user pool's count owned by its cluster autoscaler (2-5), as `az aks nodepool update
    --enable-cluster-autoscaler` leaves it; put back afterwards."""
    pool = estate[1].pool("user")
    saved = dict(pool.properties)
    pool.properties.update(enableAutoScaling=True, minCount=2, maxCount=5)
    yield
    pool.properties.clear()
    pool.properties.update(saved)


@pytest.mark.parametrize("case, error, match", [
    ("autoscaled", PlanningError, "owned by its cluster autoscaler"),
    ("kubeconfig", CatalogError, "not an AKS cluster"),
])
def test_a_drill_that_may_not_take_the_node_is_refused_before_any_write(estate, catalog, request, case, error,
                                                                         match):
    """The System pool and blast-radius refusals share these paths (scale-service's pool planner through
    `PoolScaling.fewer`, and the drill's blast radius): they are tested on the planners."""
    kube, azure = estate
    params: dict = {"environment": "staging", "service": "cart"} if case == "kubeconfig" else {}
    if case == "autoscaled":
        request.getfixturevalue("autoscaled")
    since_kube, since_azure = kube.requests.mark(), azure.requests.mark()
    with pytest.raises(error, match=match):
        drill(**params)
    no_writes(kube, azure, since_kube, since_azure, read=case != "kubeconfig")
