"""The chaos drill's pure parts on typed fixtures (no server): experiments, the Chaos Toolkit mapping, the blast
radius, freeze overlap; and the sandbox's services/proxy health URL the health probe reads."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import httpx
import pytest

from plans.chaos import (BlastRadius, DrillState, ExperimentError, NodeDrain, NodePoolScaleIn, PodKill, ScaleDown,
                         check_blast_radius, check_drill_window, crashloop_image, drill_policy, experiment_path,
                         fault_change, parse_experiment)
from plans.targets import DeploymentTarget
from plans.chaostoolkit import ServiceRef, from_chaostoolkit
from tasks.errors import GuardRefused
from tests.conftest import deployment_manifest

PAYMENTS = ServiceRef(name="payments-api", namespace="payments", deployment="payments-api")
STATE = DrillState(replicas=3, ready=3, pods=["a", "b", "c"], pods_by_node={"n1": ["a", "b"], "n2": ["c"]},
                   schedulable_nodes=["n1", "n2", "n3"], images={"api": "repo/api:1.0"})


def action(func: str, module: str = "chaosk8s.pod.actions", **arguments) -> dict:
    return {"type": "action", "name": func, "pauses": {"after": 5},
            "provider": {"type": "python", "module": module, "func": func, "arguments": arguments}}


HEALTHY = {"type": "probe", "name": "healthy", "tolerance": True, "provider": {
    "type": "python", "module": "chaosk8s.deployment.probes", "func": "deployment_available_and_healthy",
    "arguments": {"name": "payments-api", "ns": "payments"}}}


def ctk(method: list, probes: list | None = None, rollbacks: list | None = None) -> dict:
    return {"title": "t", "steady-state-hypothesis": {"title": "h", "probes": probes or [HEALTHY]}, "method": method,
            "rollbacks": rollbacks or []}


def test_an_experiment_error_names_every_offending_field():
    with pytest.raises(ExperimentError) as error:
        parse_experiment({"title": "x", "service": "s", "fault": {"kind": "pod-kill"}, "hypothesis": [],
                          "duration_seconds": 0}, "x.yaml")
    message = str(error.value)
    assert "fault.pod-kill: Value error, give exactly one of share or count" in message
    assert "hypothesis: List should have at least 1 item" in message and "duration_seconds:" in message
    with pytest.raises(ExperimentError, match=r"fault: Input tag 'explode' found using 'kind' does not match"):
        parse_experiment({"title": "x", "service": "s", "fault": {"kind": "explode"},
                          "hypothesis": [{"kind": "restarts", "at_most": 0}], "duration_seconds": 1}, "x.yaml")


def test_chaos_toolkit_actions_and_probes_map_onto_ours():
    drill = from_chaostoolkit(ctk([action("terminate_pods", ns="payments", qty=34, mode="percentage")], probes=[
        {"type": "probe", "name": "p", "tolerance": True, "provider": {
            "type": "python", "module": "chaosk8s.pod.probes", "func": "count_min_pods",
            "arguments": {"label_selector": "app=x", "min_count": 2, "ns": "payments"}}}]), PAYMENTS, "e.json")
    assert drill.fault == PodKill(share=0.34) and drill.hypothesis[0].at_least == 2
    assert drill.duration_seconds == 5 and drill.watched[0].at_least == 1      # the safety floor
    scale = from_chaostoolkit(ctk([action("scale_deployment", "chaosk8s.deployment.actions", name="payments-api",
                                          replicas=2, ns="payments")]), PAYMENTS, "e.json")
    assert scale.fault == ScaleDown(replicas=2)
    drain = from_chaostoolkit(ctk([action("drain_nodes", "chaosk8s.node.actions", name="n1", count=1)],
                                  rollbacks=[action("uncordon_node", "chaosk8s.node.actions", name="n1")]),
                              PAYMENTS, "e.json")
    assert drain.fault == NodeDrain(node="n1")


@pytest.mark.parametrize("experiment, message", [
    (ctk([action("exec_in_pods", cmd="x", ns="payments")]), r"method\[0\] uses chaosk8s.pod.actions.exec_in_pods"),
    (ctk([action("terminate_pods", ns="default")]), r"argument ns is 'default', but the drilled service's is"),
    (ctk([action("terminate_pods", ns="payments", name_pattern="x")]), "does not reproduce: name_pattern"),
    (ctk([action("terminate_pods", ns="payments")], probes=[{"type": "probe", "name": "p", "tolerance": True,
                                                             "provider": {"type": "process", "path": "curl"}}]),
     r"steady-state-hypothesis.probes\[0\] uses process provider 'p'"),
    (ctk([action("terminate_pods", ns="payments")], rollbacks=[action("uncordon_node", "chaosk8s.node.actions")]),
     r"rollbacks\[0\] uses chaosk8s.node.actions.uncordon_node, which does not undo the drill's pod-kill"),
    (ctk([action("terminate_pods", ns="payments"), action("terminate_pods", ns="payments")]), "has 2 actions"),
    ({**ctk([action("terminate_pods", ns="payments")]), "steady-state-hypothesis": {}},
     "steady-state-hypothesis has no probes: a drill needs one"),
])
def test_a_chaos_toolkit_experiment_we_cannot_run_faithfully_is_refused_naming_why(experiment, message):
    with pytest.raises(ExperimentError, match=message):
        from_chaostoolkit(experiment, PAYMENTS, "e.json")


def test_the_blast_radius_counts_pods_and_nodes():
    cap = BlastRadius(max_pod_share=0.5, max_node_share=0.34)
    assert "33% of pods, 0% of nodes" in check_blast_radius(PodKill(share=0.34), STATE, cap)
    assert "33% of pods, 33% of nodes" in check_blast_radius(NodeDrain(node="n2"), STATE, cap)
    with pytest.raises(GuardRefused, match="node-drain takes away 67% of the service's pods"):
        check_blast_radius(NodeDrain(), STATE, cap)                     # default: the node with most pods
    with pytest.raises(GuardRefused, match="takes away 50% of the schedulable nodes"):
        check_blast_radius(NodeDrain(node="n2"), STATE.model_copy(update={"schedulable_nodes": ["n1", "n2"]}), cap)
    with pytest.raises(ExperimentError, match="fault.node 'n3' runs none of the service's pods"):
        check_blast_radius(NodeDrain(node="n3"), STATE, cap)


def test_a_freeze_window_refuses_a_drill_that_would_reach_it_and_only_those():
    now = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)
    window = SimpleNamespace(start=now + dt.timedelta(minutes=5), end=now + dt.timedelta(hours=1), reason="freeze")
    check_drill_window("staging", [window], now=now, seconds=299)
    with pytest.raises(GuardRefused, match="overlapping the drill"):
        check_drill_window("staging", [window], now=now, seconds=301)


def test_crashloop_images_and_production_policy():
    assert crashloop_image("ghcr.io/x/api:1.4.2") == "ghcr.io/x/api:1.4.2-crashloop"
    assert crashloop_image("registry:5000/api") == "registry:5000/api:latest-crashloop"
    assert drill_policy(True, "auto") == "one" and drill_policy(False, "auto") == "auto"
    assert drill_policy(True, "two") == "two"


def test_an_experiment_file_outside_the_folder_is_refused(tmp_path):
    with pytest.raises(ExperimentError, match="outside the experiments folder"):
        experiment_path(tmp_path, "../catalog.yaml")


def test_the_sandbox_service_proxy_answers_only_while_a_pod_is_ready(sandbox):
    sandbox.apply_object(deployment_manifest(replicas=1))
    sandbox.apply_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                          "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}})
    url = f"{sandbox.url}/api/v1/namespaces/default/services/web:http/proxy/healthz"
    sandbox.wait_for(lambda: httpx.get(url).status_code == 200)
    assert httpx.get(url).text == "ok"
    sandbox.faults.add(verb="get", path="/api/v1/namespaces/default/services/web*/proxy*", status=503)
    assert httpx.get(url).status_code == 503
    sandbox.faults.clear()
    with httpx.Client() as client:
        client.patch(f"{sandbox.url}/apis/apps/v1/namespaces/default/deployments/web", json={"spec": {"replicas": 0}},
                     headers={"Content-Type": "application/merge-patch+json"})
    sandbox.wait_for(lambda: httpx.get(url).status_code == 503)
    assert httpx.get(url).json()["message"] == 'no endpoints available for service "web"'


def test_game_days_are_declared_and_their_experiments_load_from_the_example_catalog():
    from deployments.serve import declared_deployments
    from tasks.catalog import EXAMPLE_CATALOG, load_catalog
    from tasks.chaos_experiments import load_experiment

    catalog = load_catalog(EXAMPLE_CATALOG)
    [entry] = [d for d in declared_deployments() if d["name"] == "chaos-drill"]
    by_env = {s["parameters"]["environment"]: s for s in entry["schedules"]}
    assert by_env["staging"].get("active", True) is True and by_env["production"]["active"] is False
    for schedule in entry["schedules"]:
        params = schedule["parameters"]
        drill = load_experiment(catalog, params["environment"], experiment_file=params["experiment_file"],
                                experiment=None, service="")
        assert drill.service in catalog.environment(params["environment"]).services
    ctk = load_experiment(catalog, "production", experiment_file="checkout-web-terminate-pod.json",
                          experiment=None, service="checkout-web")
    assert ctk.fault == PodKill(count=1)


def test_a_node_pool_scale_in_counts_the_newest_node_and_its_pods_and_plans_the_pool_count():
    """AKS removes the newest instance (the highest name): its pods and one node count against the caps."""
    cap = BlastRadius(max_pod_share=0.5, max_node_share=0.34)
    fault = NodePoolScaleIn(pool="user")
    state = STATE.model_copy(update={"pool_count": 2, "pool_nodes": ["n1", "n0"]})    # n1 goes
    with pytest.raises(GuardRefused, match="node-pool-scale-in takes away 67% of the service's pods"):
        check_blast_radius(fault, state, cap)
    state = state.model_copy(update={"pool_count": 3, "pool_nodes": ["n1", "n2", "n3"]})
    assert "0% of pods, 33% of nodes" in check_blast_radius(fault, state, cap)
    target = DeploymentTarget(environment="e", cluster="c", service="s", namespace="n", deployment="d")
    change = fault_change(fault, target, state)
    assert (change.resource, change.field, change.before, change.after) == ("node pool user", "properties.count", 3, 2)
    with pytest.raises(ExperimentError, match=r"fault.node-pool-scale-in.nodes: Input should be 1"):
        parse_experiment({"title": "x", "service": "s", "fault": {"kind": "node-pool-scale-in", "pool": "user",
                          "nodes": 2}, "hypothesis": [{"kind": "restarts", "at_most": 0}], "duration_seconds": 1},
                         "x.yaml")
