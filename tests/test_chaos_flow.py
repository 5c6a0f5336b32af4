"""The chaos-drill runbook end to end: a real flow under Prefect, the real client, the sandbox (its watch
API, PDB-respecting evictions, crash-looping images and the services/proxy health URL).

The drills reach the sandbox as the `runbooks` ServiceAccount under the shipped RBAC (tests/rbac_helpers.py): a
call its ClusterRole does not grant fails the test, and the last test fails on a grant no test used. The
api-fault drill alone runs as the admin: it installs the sandbox's own fault rules (its admin API), which no
real cluster has, so no ClusterRole can grant it."""
from __future__ import annotations

import datetime as dt
import json
import time
from types import SimpleNamespace

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.chaos import chaos_drill
from plans.chaos import ExperimentError
from plans.targets import DeploymentTarget
from sandbox.catalog import DEMO_SERVICES
from tasks.errors import ApprovalRejected, GuardRefused, VerificationFailed
from tasks.gate_answer import answer_gate
from tasks.scorecard import scorecard_key
from tests.rbac_helpers import assert_every_grant_used, rbac_ledger, runbooks_token  # noqa: F401
from tests.runbook_helpers import answered_at_gate, apps_api, wait_healthy, write_catalog

RBAC_ROLE = "runbooks-chaos-drill"                      # deployments/kubernetes/rbac/chaos-drill.yaml
pytestmark = pytest.mark.usefixtures("prefect_harness")
NOW = dt.datetime.now(dt.timezone.utc)


def health_url(sandbox, namespace: str = "payments", service: str = "payments-api") -> str:
    return f"{sandbox.url}/api/v1/namespaces/{namespace}/services/{service}:http/proxy/healthz"


@pytest.fixture
def drills(demo_sandbox, tmp_path, monkeypatch, runbooks_token):
    """A staging catalog on the demo sandbox with an experiments folder, reached with the runbooks account's
    token; `use(...)` rewrites it (`admin=True`: with the admin's credentials instead)."""
    folder = tmp_path / "experiments"
    folder.mkdir()
    token = runbooks_token(demo_sandbox)

    def use(*, blast_radius: dict | None = None, admin: bool = False, **overrides) -> None:
        services = {**DEMO_SERVICES, "payments-api": {**DEMO_SERVICES["payments-api"],
                                                      "health_url": health_url(demo_sandbox)}}
        path = write_catalog(demo_sandbox, tmp_path, "staging", token=None if admin else token, services=services,
                             **overrides)
        raw = yaml.safe_load(path.read_text())
        raw["chaos"] = {"experiments": "experiments", "blast_radius": blast_radius or {}}
        path.write_text(yaml.safe_dump(raw))
        monkeypatch.setenv("RUNBOOKS_CATALOG", str(path))
    use()
    wait_healthy(demo_sandbox)
    return SimpleNamespace(folder=folder, use=use)


def experiment(**overrides) -> dict:
    return {"title": "lose a pod", "service": "payments-api", "fault": {"kind": "pod-kill", "share": 0.34},
            "hypothesis": [{"kind": "ready-replicas", "at_least": 2}, {"kind": "restarts", "at_most": 0}],
            "duration_seconds": 1.0, **overrides}


HEALTH = {"kind": "health-ratio", "at_least": 0.9, "window_seconds": 0.5}


def write(drills, name: str, body: dict) -> str:
    (drills.folder / name).write_text(json.dumps(body) if name.endswith(".json") else yaml.safe_dump(body))
    return name


def drill(**params):
    return chaos_drill(**{"environment": "staging", "requested_by": "game-day", **params})


def scorecards(target_key: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[scorecard_key(target_key)])))


def payments_key(sandbox) -> str:
    return DeploymentTarget(environment="staging", cluster=sandbox.url.rstrip("/"), service="payments-api",
                            namespace="payments", deployment="payments-api").key


def test_a_healthy_service_with_replicas_and_a_pdb_passes_with_real_times(drills, demo_sandbox):
    since = time.time()
    hypothesis = experiment()["hypothesis"] + [HEALTH]
    record = drill(experiment_file=write(drills, "pod-kill.yaml", experiment(hypothesis=hypothesis)))
    assert record.outcome == "succeeded"
    deletes = [r for r in demo_sandbox.requests.writes(since) if r.method == "DELETE"]
    assert len(deletes) == 1 and "/pods/payments-api-" in deletes[0].path
    card = "\n".join(record.evidence)
    assert "scorecard: PASS" in card and "after: PASS ready replicas >= 2" in card and "after: PASS health URL" in card
    detect = float(card.split("time to detect: ")[1].split("s")[0])
    recover = float(card.split("time to recover: ")[1].split("s")[0])
    assert 0 < detect < 1.0 and 0 <= recover < 30          # seen within the 1 s drill; recovered in real time
    [artifact] = scorecards(payments_key(demo_sandbox))
    assert "**PASS**" in artifact.data and "time to detect" in artifact.data
    wait_healthy(demo_sandbox)


def test_a_single_replica_service_fails_its_hypothesis_aborts_and_is_restored(drills, demo_sandbox):
    drills.use(blast_radius={"max_pod_share": 1.0, "max_node_share": 0.5})
    apps_api(demo_sandbox).patch_namespaced_deployment_scale("cart", "checkout", {"spec": {"replicas": 1}})
    wait_healthy(demo_sandbox, namespace="checkout", name="cart")
    before = demo_sandbox.get("Deployment", "cart", "checkout")["spec"]
    name = write(drills, "drain.yaml", experiment(title="lose the node", service="cart",
                                                  fault={"kind": "node-drain"}, duration_seconds=20,
                                                  hypothesis=[{"kind": "ready-replicas", "at_least": 1}]))
    started = time.monotonic()
    with pytest.raises(VerificationFailed, match="ready replicas >= 1 broken: 0 ready"):
        drill(experiment_file=name)
    assert time.monotonic() - started < 15, "the abort did not cut the 20 s drill short"
    after = demo_sandbox.get("Deployment", "cart", "checkout")["spec"]
    assert after["replicas"] == before["replicas"] == 1 and after["template"] == before["template"]
    assert not any(n.get("spec", {}).get("unschedulable") for n in demo_sandbox.list("Node"))
    wait_healthy(demo_sandbox, namespace="checkout", name="cart")


def test_a_crashlooping_release_aborts_on_restarts_and_is_rolled_back_to_the_same_image(drills, demo_sandbox):
    before = demo_sandbox.get("Deployment", "payments-api", "payments")["spec"]["template"]
    name = write(drills, "bad-release.yaml", experiment(title="bad release", fault={"kind": "crashloop-image"},
                                                        duration_seconds=20))
    with pytest.raises(VerificationFailed, match="container restarts <= 0 broken"):
        drill(experiment_file=name)
    assert demo_sandbox.get("Deployment", "payments-api", "payments")["spec"]["template"] == before
    wait_healthy(demo_sandbox)


def test_errors_in_front_of_the_service_break_its_health_ratio_and_are_removed(drills, demo_sandbox):
    drills.use(admin=True)                      # the sandbox's fault rules take the admin token (module docstring)
    name = write(drills, "api.yaml", experiment(title="503s", fault={"kind": "api-fault", "status": 503, "share": 0.5},
                                                duration_seconds=20, hypothesis=[HEALTH]))
    with pytest.raises(VerificationFailed, match=r"health URL 2xx ratio >= 0.90 over 0.5s broken"):
        drill(experiment_file=name)
    assert demo_sandbox.faults.rules() == []                 # the restore removed it ...
    assert httpx.get(health_url(demo_sandbox)).status_code == 200   # ... and the service answers again


def test_one_replica_fewer_keeps_the_hypothesis_and_the_restore_scales_back(drills, demo_sandbox):
    since = time.time()
    record = drill(experiment_file=write(drills, "fewer.yaml", experiment(
        title="one replica fewer", fault={"kind": "scale-down", "replicas": 2},
        hypothesis=[{"kind": "ready-replicas", "at_least": 2}])))
    assert record.outcome == "succeeded", record.evidence
    scale = "/apis/apps/v1/namespaces/payments/deployments/payments-api/scale"
    writes = demo_sandbox.requests.writes(since)
    assert [(r.method, r.path, r.body["spec"]["replicas"]) for r in writes] == [("PATCH", scale, 2),
                                                                                ("PATCH", scale, 3)]
    assert demo_sandbox.get("Deployment", "payments-api", "payments")["spec"]["replicas"] == 3
    wait_healthy(demo_sandbox)


def test_a_chaos_toolkit_experiment_with_supported_actions_runs_as_a_drill(drills, demo_sandbox):
    ctk = {"version": "1.0.0", "title": "payments survives losing a pod", "description": "game day",
           "steady-state-hypothesis": {"title": "all replicas", "probes": [
               {"type": "probe", "name": "healthy", "tolerance": True, "provider": {
                   "type": "python", "module": "chaosk8s.deployment.probes", "func": "deployment_available_and_healthy",
                   "arguments": {"name": "payments-api", "ns": "payments"}}},
               {"type": "probe", "name": "health-url", "tolerance": 200, "provider": {
                   "type": "http", "url": health_url(demo_sandbox), "timeout": 1}}]},
           "method": [{"type": "action", "name": "kill one", "pauses": {"after": 0.5}, "provider": {
               "type": "python", "module": "chaosk8s.pod.actions", "func": "terminate_pods",
               "arguments": {"label_selector": "app.kubernetes.io/name=payments-api", "ns": "payments", "qty": 1}}}],
           "rollbacks": []}
    since = time.time()
    record = drill(experiment_file=write(drills, "ctk.json", ctk), service="payments-api")
    assert record.outcome == "succeeded" and "scorecard: PASS" in "\n".join(record.evidence)
    assert [r.method for r in demo_sandbox.requests.writes(since)] == ["DELETE"]
    wait_healthy(demo_sandbox)


def refused(run, sandbox, error, match):
    since = time.time()
    with pytest.raises(error, match=match):
        run()
    assert sandbox.requests.writes(since) == []


def test_beyond_the_blast_radius_overlapping_a_freeze_or_unhealthy_a_drill_is_refused_before_any_write(
        drills, demo_sandbox):
    name = write(drills, "scale.yaml", experiment(fault={"kind": "scale-down", "replicas": 1}))
    refused(lambda: drill(experiment_file=name), demo_sandbox, GuardRefused,
            "blast radius: scale-down takes away 67% of the service's pods .* at most 50%")
    pod_kill = write(drills, "x.yaml", experiment())
    soon = NOW + dt.timedelta(seconds=45)       # not frozen yet, but the drill and its restore would reach it
    drills.use(freeze_windows=[{"start": soon.isoformat(), "end": (soon + dt.timedelta(hours=2)).isoformat(),
                                "reason": "release freeze"}])
    refused(lambda: drill(experiment_file=pod_kill), demo_sandbox, GuardRefused,
            "freeze window .* \\(release freeze\\) overlapping the drill")
    drills.use()
    apps_api(demo_sandbox).patch_namespaced_deployment("payments-api", "payments", {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": "ghcr.io/example/payments-api:1.5.0-crashloop"}]}}}})
    demo_sandbox.wait_for(lambda: any(
        (s.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
        for p in demo_sandbox.list("Pod", "payments") for s in p["status"].get("containerStatuses") or []))
    refused(lambda: drill(experiment_file=pod_kill), demo_sandbox, GuardRefused,
            "does not meet its steady-state hypothesis before the drill.*crash-looping: payments-api-")


def test_a_malformed_experiment_names_the_field_and_writes_nothing(drills, demo_sandbox):
    bad = experiment(fault={"kind": "pod-kill", "share": 1.5})
    refused(lambda: drill(experiment_file=write(drills, "bad.yaml", bad)), demo_sandbox, ExperimentError,
            r"bad.yaml is invalid: fault\.pod-kill\.share: Input should be less than or equal to 1")


def test_a_chaos_toolkit_action_we_cannot_run_is_named_and_nothing_is_written(drills, demo_sandbox):
    ctk = {"title": "exec", "steady-state-hypothesis": {"probes": []}, "method": [
        {"type": "action", "name": "exec", "pauses": {"after": 1}, "provider": {
            "type": "python", "module": "chaosk8s.pod.actions", "func": "exec_in_pods",
            "arguments": {"cmd": "kill 1", "ns": "payments"}}}]}
    refused(lambda: drill(experiment_file=write(drills, "exec.json", ctk), service="payments-api"), demo_sandbox,
            ExperimentError, r"method\[0\] uses chaosk8s.pod.actions.exec_in_pods, which a drill cannot run")


def test_a_dry_run_checks_the_hypothesis_plans_and_writes_nothing(drills, demo_sandbox):
    since = time.time()
    record = drill(experiment_file=write(drills, "x.yaml", experiment()), dry_run=True)
    assert record.outcome == "dry-run" and "pods (deleted)" in record.plan.markdown()
    assert any("before: ready replicas >= 2" in line for line in record.evidence)
    assert demo_sandbox.requests.writes(since) == []


def test_a_production_drill_waits_for_a_person_even_where_the_environment_auto_approves(drills, demo_sandbox):
    """Staging drills run unattended (the other tests); a production one stops at the gate, and a rejection
    leaves the service untouched."""
    drills.use(production=True)                                 # approval policy: auto, as staging's
    since = time.time()
    box, _ = answered_at_gate(lambda: drill(experiment_file=write(drills, "x.yaml", experiment())), "chaos-drill",
                              lambda run: answer_gate(run, approver="bob", decision="reject", reason="not today"))
    assert isinstance(box.get("error"), ApprovalRejected)
    assert demo_sandbox.requests.writes(since) == []


def test_every_grant_of_the_chaos_drill_clusterrole_is_used_by_these_tests(request):
    """A grant no test of the runbook uses is one it may not need (last in the module)."""
    assert_every_grant_used(request)
