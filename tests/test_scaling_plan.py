"""The scaling planner on typed fixtures: ranges, quotas, capacity, drains and PDBs, blast radius, autoscaled pools."""
from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from plans.capacity import drain_problems, room_for
from plans.cluster import HpaState, NodeState, PdbState, PodLoad, Resources, hpa_settled, pod_requests, quantity
from plans.kubernetes import deployment_state
from plans.plan import PlanningError
from plans.pool_scaling import PoolView, plan_pool
from plans.pools import PoolSettings, PoolState, scale_in_victims
from plans.scaling import (HpaBounds, PoolAutoscaler, PoolCount, ScaleRequest, ScaleUp, ScalingPolicy, ServiceReplicas,
                           ServiceView, plan_service)
from plans.targets import DeploymentTarget, HpaTarget, NodePoolTarget
from tasks.errors import ConflictError

CLUSTER = "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks"
TARGET = DeploymentTarget(environment="production", cluster=CLUSTER, service="payments-api", namespace="payments",
                          deployment="payments-api")
HPA_TARGET = HpaTarget(environment="production", cluster=CLUSTER, service="payments-api", namespace="payments",
                       hpa="payments-api")
POOL_TARGET = NodePoolTarget(environment="production", cluster=CLUSTER, pool="user")
POLICY = ScalingPolicy(max_replicas=30, max_nodes=12)
GI = 2**30


def node(name: str, pool: str = "user", cpu: int = 4000, memory: int = 16 * GI, **fields) -> NodeState:
    taints = [{"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}] if pool == "system" else []
    return NodeState(name=name, pool=pool, ready=True, unschedulable=False, taints=taints,
                     allocatable=Resources(cpu=cpu, memory=memory, pods=110),
                     labels={"kubernetes.azure.com/agentpool": pool}, **fields)


def pod(name: str, on: str, cpu: int = 500, memory: int = GI // 2, app: str = "payments-api", **fields) -> PodLoad:
    return PodLoad(namespace="payments", name=name, node=on, labels={"app": app}, ready=True,
                   requests=Resources(cpu=cpu, memory=memory, pods=1), **fields)


def deployment(replicas: int = 3, cpu: str = "500m", memory: str = "512Mi") -> dict:
    return {"metadata": {"namespace": "payments", "name": "payments-api", "uid": "u", "resourceVersion": "1",
                         "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "payments-api"}},
                     "template": {"metadata": {"labels": {"app": "payments-api"}}, "spec": {"containers": [{
                         "name": "api", "image": "api:1", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}},
            "status": {"replicas": replicas, "readyReplicas": replicas}}


USER = [node(f"aks-user-1-vmss00000{i}") for i in range(3)]
SYSTEM = [node("aks-system-1-vmss000000", pool="system")]


def view(replicas: int = 3, hpa: HpaState | None = None, nodes=None, pods=None, pdbs=()) -> ServiceView:
    pods = pods if pods is not None else [pod(f"p{i}", USER[i % 3].name) for i in range(replicas)]
    return ServiceView(deployment=deployment_state(deployment(replicas)), hpa=hpa,
                       nodes=nodes if nodes is not None else USER + SYSTEM, pods=pods, pdbs=list(pdbs))


def hpa(low: int = 2, high: int = 6) -> HpaState:
    return HpaState(namespace="payments", name="payments-api", target="payments-api", min_replicas=low,
                    max_replicas=high, generation=1, observed_generation=1, current_replicas=3, desired_replicas=3)


def pool(count: int = 3, **fields) -> PoolState:
    return PoolState(**{"name": "user", "mode": "User", "count": count, "vm_size": "Standard_D8s_v5",
                        "enable_auto_scaling": False, "provisioning_state": "Succeeded", **fields})


def pools_view(target: PoolState, nodes=None, pods=(), pdbs=()) -> PoolView:
    system = PoolState(name="system", mode="System", count=1, vm_size="Standard_D4s_v5", enable_auto_scaling=False,
                       provisioning_state="Succeeded")
    return PoolView(pool=target, pools=[target, system], nodes=nodes if nodes is not None else USER + SYSTEM,
                    pods=list(pods), pdbs=list(pdbs))


# -- requests and quantities --------------------------------------------------------------------------

def test_requests_are_typed_by_their_kind_and_unknown_fields_are_refused():
    adapter = TypeAdapter(ScaleRequest)
    assert adapter.validate_python({"kind": "node-pool", "pool": "user", "count": 5}) == PoolCount(pool="user", count=5)
    with pytest.raises(ValidationError, match="replica"):
        adapter.validate_python({"kind": "replicas", "service": "a", "replica": 3})
    with pytest.raises(ValidationError, match="kind\n  Input should be 'replicas'"):
        adapter.validate_python({"kind": "pods", "service": "a"})


def test_quantities_and_pod_requests_are_read_as_the_scheduler_reads_them():
    assert (quantity("500m") * 1000, quantity("1.5"), quantity("256Mi"), quantity("1G"), quantity("1e3")) == (
        500, 1.5, 256 * 2**20, 10**9, 1000)
    spec = {"containers": [{"resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}},
                           {"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}]}
    assert pod_requests(spec) == Resources(cpu=2000, memory=GI + 256 * 2**20, pods=1)


# -- replicas -----------------------------------------------------------------------------------------

def test_scaling_replicas_up_within_capacity_plans_one_change_with_the_capacity_as_evidence():
    decision = plan_service(ServiceReplicas(service="payments-api", replicas=5), TARGET, view(), POLICY)
    assert decision.replicas == 5 and decision.plan.escalation is None
    [change] = decision.plan.changes
    assert (change.field, change.before, change.after) == ("spec.replicas", 3, 5)
    assert any(e.startswith("capacity: 2 of 2 new pods") for e in decision.plan.evidence)


@pytest.mark.parametrize("replicas, message", [
    (-1, "replicas must be 0 or more, not -1"),
    (31, "replicas 31 is above the environment's quota of 30 replicas per service"),
])
def test_replicas_out_of_range_name_the_limit(replicas, message):
    with pytest.raises(PlanningError, match=message):
        plan_service(ServiceReplicas(service="payments-api", replicas=replicas), TARGET, view(), POLICY)


def test_replicas_outside_the_hpa_bounds_are_refused_with_what_to_do_instead():
    with pytest.raises(PlanningError, match=r"replicas 7 is above its maxReplicas .* allowed: 2-6, or change the HPA"):
        plan_service(ServiceReplicas(service="payments-api", replicas=7), TARGET, view(hpa=hpa()), POLICY)
    with pytest.raises(PlanningError, match="below its minReplicas"):
        plan_service(ServiceReplicas(service="payments-api", replicas=1), TARGET, view(hpa=hpa()), POLICY)


def test_replicas_that_do_not_fit_name_the_pool_that_must_grow_and_by_how_much():
    crowded = [pod(f"big{i}", n.name, cpu=3000) for i, n in enumerate(USER)]    # 1 CPU free on each user node
    with pytest.raises(PlanningError, match=r"7 more replicas .* do not fit: 6 of 7 new pods .*Node pool user must "
                                            r"grow first, by 1 node\(s\): scale it from 3 to 4"):
        plan_service(ServiceReplicas(service="payments-api", replicas=10), TARGET, view(pods=crowded), POLICY)


def test_a_new_replica_never_counts_the_tainted_system_pool_as_room():
    template = PodLoad(namespace="payments", name="t", node=None, labels={}, requests=Resources(cpu=100, pods=1))
    assert room_for(template, 3, SYSTEM, []).fit == 0
    assert room_for(template.model_copy(update={"tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}]}),
                    3, SYSTEM, []).fit == 3


def test_same_replicas_is_a_no_op():
    decision = plan_service(ServiceReplicas(service="payments-api", replicas=3), TARGET, view(), POLICY)
    assert decision.plan.is_noop and "already has 3 replicas" in decision.plan.noop_reason


@pytest.mark.parametrize("replicas, escalated", [(6, False), (7, True), (2, False), (1, True), (0, True)])
def test_the_blast_radius_raises_the_approval_level_beyond_2x_up_or_50_percent_down(replicas, escalated):
    decision = plan_service(ServiceReplicas(service="payments-api", replicas=replicas), TARGET, view(), POLICY)
    assert bool(decision.plan.escalation) is escalated
    if escalated:
        assert "blast radius" in decision.plan.escalation and "next approval level" in decision.plan.markdown()


def test_the_blast_radius_comes_from_the_catalog():
    wide = POLICY.model_copy(update={"blast_radius_up": 4.0})
    assert plan_service(ServiceReplicas(service="payments-api", replicas=12), TARGET, view(), wide).plan.escalation \
        is None


# -- HPA bounds and scale-up ----------------------------------------------------------------------------

def test_hpa_bounds_are_planned_and_checked():
    decision = plan_service(HpaBounds(service="payments-api", min_replicas=2, max_replicas=10), TARGET,
                            view(hpa=hpa()), POLICY, hpa_target=HPA_TARGET)
    assert decision.hpa_bounds == (2, 10) and decision.plan.changes[0].before == "2-6"
    assert decision.plan.target == HPA_TARGET and decision.plan.escalation is None
    for low, high, message in [(0, 5, "min_replicas must be 1 or more"), (5, 4, "max_replicas 4 is below min_replicas 5"),
                               (2, 31, "max_replicas 31 is above the environment's quota of 30")]:
        with pytest.raises(PlanningError, match=message):
            plan_service(HpaBounds(service="payments-api", min_replicas=low, max_replicas=high), TARGET,
                         view(hpa=hpa()), POLICY, hpa_target=HPA_TARGET)
    with pytest.raises(PlanningError, match="has no HorizontalPodAutoscaler; set its replicas instead"):
        plan_service(HpaBounds(service="payments-api", min_replicas=1, max_replicas=4), TARGET, view(), POLICY)


def test_scale_up_adds_replicas_or_raises_a_maxed_out_hpa_within_the_quota():
    assert plan_service(ScaleUp(service="payments-api"), TARGET, view(), POLICY).replicas == 5
    at_max = view(replicas=6, hpa=hpa(2, 6))
    assert plan_service(ScaleUp(service="payments-api"), TARGET, at_max, POLICY,
                        hpa_target=HPA_TARGET).hpa_bounds == (2, 9)
    free = plan_service(ScaleUp(service="payments-api"), TARGET, view(hpa=hpa(2, 6)), POLICY, hpa_target=HPA_TARGET)
    assert free.plan.is_noop and "still free to scale up on its own" in free.plan.noop_reason
    capped = plan_service(ScaleUp(service="payments-api", percent=500), TARGET, view(), POLICY)
    assert capped.replicas == 18 and capped.plan.escalation                     # capped by nothing but 6x: escalated
    with pytest.raises(PlanningError, match="already at the environment's quota of 30"):
        plan_service(ScaleUp(service="payments-api"), TARGET, view(replicas=30, nodes=USER * 4, pods=[]), POLICY)


def test_an_hpa_is_settled_when_it_observed_its_spec_and_wants_what_runs_within_its_bounds():
    assert hpa_settled(hpa(), 3)[0]
    assert not hpa_settled(hpa().model_copy(update={"generation": 2}), 3)[0]
    assert "outside the HPA's 2-6" in hpa_settled(hpa(), 7)[1]
    assert not hpa_settled(hpa().model_copy(update={"desired_replicas": 4}), 3)[0]


# -- node pools -----------------------------------------------------------------------------------------

def test_a_pool_scale_up_is_planned_with_its_settings_and_within_the_node_quota():
    decision = plan_pool(PoolCount(pool="user", count=5), POOL_TARGET, pools_view(pool()), POLICY)
    assert decision.pool == PoolSettings(count=5) and decision.expected_pool == PoolSettings(count=3)
    assert (decision.plan.changes[0].field, decision.plan.escalation) == ("properties.count", None)
    with pytest.raises(PlanningError, match=r"count 12 would let the cluster reach 13 nodes .* allowed: up to 11"):
        plan_pool(PoolCount(pool="user", count=12), POOL_TARGET, pools_view(pool()), POLICY)
    assert plan_pool(PoolCount(pool="user", count=7), POOL_TARGET, pools_view(pool()), POLICY).plan.escalation


@pytest.mark.parametrize("request_, message", [
    (PoolCount(pool="system", count=0), "System pool: it keeps at least 1 node; count must be 1-1000"),
    (PoolCount(pool="user", count=-1), "count must be 0-1000 for node pool user"),
    (PoolAutoscaler(pool="user", min_count=4, max_count=2), "max_count 2 is below min_count 4"),
    (PoolAutoscaler(pool="system", min_count=0, max_count=2), "min_count must be 1-1000"),
])
def test_pool_values_out_of_range_name_the_limit(request_, message):
    target = pool() if request_.pool == "user" else pool().model_copy(update={"name": "system", "mode": "System",
                                                                               "count": 1})
    with pytest.raises(PlanningError, match=message):
        plan_pool(request_, POOL_TARGET, pools_view(target), POLICY)


def test_a_pool_owned_by_its_autoscaler_is_refused_a_manual_count_with_what_to_do_instead():
    owned = pool(enable_auto_scaling=True, min_count=2, max_count=5)
    with pytest.raises(PlanningError, match=r"owned by its cluster autoscaler \(bounds 2-5, now 3 nodes\).*"
                                            r"target kind: node-pool-autoscaler.*--disable-cluster-autoscaler"):
        plan_pool(PoolCount(pool="user", count=4), POOL_TARGET, pools_view(owned), POLICY)
    bounds = plan_pool(PoolAutoscaler(pool="user", min_count=2, max_count=8), POOL_TARGET, pools_view(owned), POLICY)
    assert bounds.pool == PoolSettings(count=3, enable_auto_scaling=True, min_count=2, max_count=8)


def test_a_busy_or_stopped_pool_is_refused():
    with pytest.raises(ConflictError, match=r"busy \(Updating\)"):
        plan_pool(PoolCount(pool="user", count=4), POOL_TARGET, pools_view(pool(provisioning_state="Updating")), POLICY)
    with pytest.raises(PlanningError, match="is Stopped: start it first"):
        plan_pool(PoolCount(pool="user", count=4), POOL_TARGET, pools_view(pool(power_state="Stopped")), POLICY)


def test_a_scale_in_removes_the_newest_nodes_when_their_pods_fit_elsewhere():
    assert scale_in_victims([n.name for n in USER], 1) == [USER[1].name, USER[2].name]
    pods = [pod(f"p{i}", n.name) for i, n in enumerate(USER)]
    decision = plan_pool(PoolCount(pool="user", count=2), POOL_TARGET, pools_view(pool(), pods=pods), POLICY)
    assert decision.pool.count == 2 and any("scale-in removes aks-user-1-vmss000002" in e
                                            for e in decision.plan.evidence)


def test_a_scale_in_that_strands_pods_is_refused_before_anything_is_written():
    pods = [pod(f"p{i}", n.name, cpu=3000) for i, n in enumerate(USER)]
    with pytest.raises(PlanningError, match=r"would remove aks-user-1-vmss000001, aks-user-1-vmss000002: 2 pod\(s\) .*"
                                            r"would have nowhere to run"):
        plan_pool(PoolCount(pool="user", count=1), POOL_TARGET, pools_view(pool(), pods=pods), POLICY)


def test_a_scale_in_blocked_by_a_pdb_is_refused():
    pods = [pod(f"p{i}", n.name) for i, n in enumerate(USER)]
    budget = PdbState(namespace="payments", name="payments-api", selector={"matchLabels": {"app": "payments-api"}},
                      disruptions_allowed=0, current_healthy=3, desired_healthy=3)
    assert drain_problems([USER[2].name], USER, pods, []) == []
    with pytest.raises(PlanningError, match=r"PodDisruptionBudget payments/payments-api allows no disruption now "
                                            r"\(3 healthy, 3 required\).*the drain would block"):
        plan_pool(PoolCount(pool="user", count=2), POOL_TARGET, pools_view(pool(), pods=pods, pdbs=[budget]), POLICY)


def test_daemonset_pods_do_not_need_room_elsewhere():
    daemons = [pod(f"kube-proxy-{i}", n.name, cpu=3900, daemon=True) for i, n in enumerate(USER)]
    assert drain_problems([USER[2].name], USER, daemons, []) == []
