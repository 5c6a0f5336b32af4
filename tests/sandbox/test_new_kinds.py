"""DaemonSets, Jobs, ServiceAccounts and RBAC objects through the real `kubernetes` client: what their
controllers do, and CRUD, selectors and watch as for every other kind."""
from __future__ import annotations

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.sandbox.client_helpers import status_of

pytestmark = pytest.mark.timeout(60)
SYSTEM_TAINT = {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}
RBAC = "rbac.authorization.k8s.io"


def daemonset(name: str, image: str = "agent:1", **pod_spec) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "agent", "image": image}], **pod_spec}}}}


def job(name: str, image: str = "migrate:1", policy: str = "Never", **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": policy,
                                                   "containers": [{"name": "work", "image": image}]}}}}


def binding(name: str, role: str, kind: str = "Role") -> dict:
    return {"metadata": {"name": name, "labels": {"team": "a"}}, "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "default"}]}


def pods_of(sandbox, kind: str, name: str) -> list[dict]:
    return [p for p in sandbox.list("Pod", "default")
            if any(r["kind"] == kind and r["name"] == name for r in p["metadata"].get("ownerReferences", ()))]


def condition_types(obj: dict) -> list[str]:
    return [c["type"] for c in (obj.get("status") or {}).get("conditions", []) if c["status"] == "True"]


# -- DaemonSets ------------------------------------------------------------------------------------

def test_daemonset_runs_one_pod_per_eligible_node(sandbox, api_client):
    sandbox.apply_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "system-0"},
                          "spec": {"taints": [SYSTEM_TAINT]}})
    sandbox.apply_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2", "labels": {"disk": "ssd"}}})
    apps = client.AppsV1Api(api_client)
    created = apps.create_namespaced_daemon_set("default", daemonset("agent"))
    assert api_client.sanitize_for_serialization(created)["status"] == {
        "currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}
    apps.create_namespaced_daemon_set("default", daemonset("everywhere", tolerations=[{"operator": "Exists"}]))
    apps.create_namespaced_daemon_set("default", daemonset("ssd-only", nodeSelector={"disk": "ssd"}))
    want = {"agent": ["node-0", "node-1", "node-2"], "everywhere": ["node-0", "node-1", "node-2", "system-0"],
            "ssd-only": ["node-2"]}
    for name, nodes in want.items():
        sandbox.wait_for(lambda: (sandbox.get("DaemonSet", name, "default").get("status") or {})
                         .get("numberAvailable") == len(nodes))
        assert sorted(p["spec"]["nodeName"] for p in pods_of(sandbox, "DaemonSet", name)) == nodes
    status = sandbox.get("DaemonSet", "agent", "default")["status"]
    assert status == {"currentNumberScheduled": 3, "numberMisscheduled": 0, "desiredNumberScheduled": 3,
                      "numberReady": 3, "observedGeneration": 1, "updatedNumberScheduled": 3, "numberAvailable": 3}
    pods = pods_of(sandbox, "DaemonSet", "agent")
    owner = sandbox.get("DaemonSet", "agent", "default")["metadata"]["uid"]
    assert all(p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                                     "uid": owner, "controller": True, "blockOwnerDeletion": True}]
               for p in pods)
    assert len({p["metadata"]["labels"]["controller-revision-hash"] for p in pods}) == 1
    pinned = pods[0]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert pinned["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [pods[0]["spec"]["nodeName"]]
    client.CoreV1Api(api_client).patch_node("node-0", {"spec": {"unschedulable": True}})     # cordon
    apps.delete_namespaced_daemon_set("ssd-only", "default")
    sandbox.wait_for(lambda: not pods_of(sandbox, "DaemonSet", "ssd-only"))
    assert "node-0" in [p["spec"]["nodeName"] for p in pods_of(sandbox, "DaemonSet", "agent")]


def test_daemonset_rolls_a_new_template_out_keeping_max_unavailable(sandbox, api_client):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_daemon_set("default", daemonset("agent"))
    sandbox.wait_for(lambda: (sandbox.get("DaemonSet", "agent", "default").get("status") or {})
                     .get("numberAvailable") == 3)
    old_hash = pods_of(sandbox, "DaemonSet", "agent")[0]["metadata"]["labels"]["controller-revision-hash"]
    apps.patch_namespaced_daemon_set("agent", "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "agent", "image": "agent:2"}]}}}})
    lowest = 3

    def rolled() -> bool:
        nonlocal lowest
        status = sandbox.get("DaemonSet", "agent", "default")["status"]
        lowest = min(lowest, status["numberAvailable"])
        return status["observedGeneration"] == 2 and status["updatedNumberScheduled"] == 3 \
            and status["numberAvailable"] == 3
    sandbox.wait_for(rolled, timeout=20, interval=0.005)
    pods = pods_of(sandbox, "DaemonSet", "agent")
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"agent:2"} and len(pods) == 3
    assert old_hash not in {p["metadata"]["labels"]["controller-revision-hash"] for p in pods}
    assert lowest >= 2                                    # maxUnavailable 1 of 3


# -- Jobs ------------------------------------------------------------------------------------------

def test_job_runs_pods_to_completion_and_reports_like_the_job_controller(sandbox, api_client):
    batch = client.BatchV1Api(api_client)
    created = api_client.sanitize_for_serialization(
        batch.create_namespaced_job("default", job("migrate", completions=3, parallelism=2)))
    uid = created["metadata"]["uid"]
    assert created["status"] == {} and created["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert created["spec"]["template"]["metadata"]["labels"]["job-name"] == "migrate"
    assert created["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "migrate"
    assert created["spec"]["backoffLimit"] == 6 and created["spec"]["completionMode"] == "NonIndexed"
    batch.create_namespaced_job("default", job("queue", parallelism=2))      # a work queue: no completions
    sandbox.wait_for(lambda: "Complete" in condition_types(sandbox.get("Job", "migrate", "default")))
    status = sandbox.get("Job", "migrate", "default")["status"]
    assert [(c["type"], c["reason"], c["message"]) for c in status["conditions"]] == [
        ("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
        ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]
    assert status["succeeded"] == 3 and "active" not in status and "failed" not in status
    assert status["startTime"] <= status["completionTime"] and status["ready"] == 0
    pods = pods_of(sandbox, "Job", "migrate")
    assert len(pods) == 3 and {p["status"]["phase"] for p in pods} == {"Succeeded"}
    assert {p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] for p in pods} == {"Completed"}
    sandbox.wait_for(lambda: "Complete" in condition_types(sandbox.get("Job", "queue", "default")))
    assert sandbox.get("Job", "queue", "default")["status"]["succeeded"] == 2


def test_job_fails_once_crashing_pods_pass_the_backoff_limit(sandbox, api_client):
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job("default", job("never", image="migrate:2-crashloop", backoffLimit=1))
    batch.create_namespaced_job("default", job("again", image="migrate:2-crashloop", policy="OnFailure",
                                               backoffLimit=2))
    sandbox.wait_for(lambda: "Failed" in condition_types(sandbox.get("Job", "never", "default")))
    status = sandbox.get("Job", "never", "default")["status"]
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
    assert status["failed"] == 2 and "completionTime" not in status and "succeeded" not in status
    pods = pods_of(sandbox, "Job", "never")
    assert [p["status"]["phase"] for p in pods] == ["Failed", "Failed"]
    assert {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods} == {1}
    sandbox.wait_for(lambda: "Failed" in condition_types(sandbox.get("Job", "again", "default")), timeout=20)
    assert not pods_of(sandbox, "Job", "again")          # restarts counted, then the running pod is removed


def test_job_pods_must_not_restart_always(quiet, quiet_client):
    with pytest.raises(ApiException) as exc:
        client.BatchV1Api(quiet_client).create_namespaced_job("default", job("bad", policy="Always"))
    assert exc.value.status == 422
    assert status_of(exc.value)["details"]["causes"][0] == {
        "reason": "FieldValueNotSupported", "field": "spec.template.spec.restartPolicy",
        "message": 'Unsupported value: "Always": supported values: "OnFailure", "Never"'}


# -- ServiceAccounts -------------------------------------------------------------------------------

def test_every_namespace_gets_a_default_service_account(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": "team-a"}})
    sandbox.wait_for(lambda: [s["metadata"]["name"] for s in sandbox.list("ServiceAccount", "team-a")] == ["default"])
    account = core.read_namespaced_service_account("default", "team-a")
    assert account.secrets is None and account.metadata.uid
    core.delete_namespaced_service_account("default", "team-a")
    sandbox.wait_for(lambda: sandbox.list("ServiceAccount", "team-a"))             # put back, as for real
    pod = core.create_namespaced_pod("team-a", {"metadata": {"name": "p"},
                                                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}})
    assert pod.spec.service_account_name == "default"


# -- RBAC ------------------------------------------------------------------------------------------

def test_rbac_objects_are_stored_and_bindings_keep_their_role(quiet, quiet_client):
    rbac = client.RbacAuthorizationV1Api(quiet_client)
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    rbac.create_namespaced_role("default", {"metadata": {"name": "reader"}, "rules": [rule]})
    rbac.create_cluster_role({"metadata": {"name": "node-reader"}, "rules": [{**rule, "resources": ["nodes"]}]})
    made = rbac.create_namespaced_role_binding("default", binding("read", "reader"))
    assert made.subjects[0].api_group == RBAC and made.subjects[1].api_group is None       # defaults
    rbac.create_cluster_role_binding(binding("nodes", "node-reader", "ClusterRole"))
    assert [r.metadata.name for r in rbac.list_namespaced_role_binding("default", label_selector="team=a").items] \
        == ["read"]
    changed = binding("read", "other")
    with pytest.raises(ApiException) as exc:
        rbac.replace_namespaced_role_binding("read", "default", changed)
    assert exc.value.status == 422 and status_of(exc.value)["message"] == (
        'RoleBinding.rbac.authorization.k8s.io "read" is invalid: roleRef: Invalid value: rbac.RoleRef{'
        'APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"other"}: cannot change roleRef')
    with pytest.raises(ApiException) as exc:
        rbac.create_cluster_role_binding(binding("bad", "reader", "Role"))
    assert 'roleRef.kind: Unsupported value: "Role"' in status_of(exc.value)["message"]
    rbac.patch_namespaced_role("reader", "default", {"rules": [{**rule, "verbs": ["get"]}]})
    assert quiet.get("Role", "reader", "default")["rules"][0]["verbs"] == ["get"]
    rbac.delete_cluster_role_binding("nodes")
    assert [b.metadata.name for b in rbac.list_cluster_role_binding().items] == []


WATCHED = [  # (list function, create function, namespaced, manifest)
    ("AppsV1Api", "daemon_set", True, lambda: daemonset("w")),
    ("BatchV1Api", "job", True, lambda: {**job("w"), "metadata": {"name": "w", "labels": {"app": "w"}}}),
    ("CoreV1Api", "service_account", True, lambda: {"metadata": {"name": "w", "labels": {"app": "w"}}}),
    ("RbacAuthorizationV1Api", "role", True, lambda: {"metadata": {"name": "w", "labels": {"app": "w"}}, "rules": []}),
    ("RbacAuthorizationV1Api", "cluster_role", False, lambda: {"metadata": {"name": "w", "labels": {"app": "w"}}}),
    ("RbacAuthorizationV1Api", "role_binding", True, lambda: {**binding("w", "r"), "metadata": {
        "name": "w", "labels": {"app": "w"}}}),
    ("RbacAuthorizationV1Api", "cluster_role_binding", False, lambda: {**binding("w", "r", "ClusterRole"),
                                                                       "metadata": {"name": "w", "labels": {"app": "w"}}}),
]


@pytest.mark.parametrize("api_name, kind, namespaced, manifest", WATCHED, ids=[w[1] for w in WATCHED])
def test_new_kinds_list_by_selector_and_watch(quiet, quiet_client, api_name, kind, namespaced, manifest):
    api = getattr(client, api_name)(quiet_client)
    scope = ("namespaced_", ("default",)) if namespaced else ("", ())
    create, listing = (getattr(api, f"{verb}_{scope[0]}{kind}") for verb in ("create", "list"))
    start = listing(*scope[1]).metadata.resource_version
    create(*scope[1], manifest())
    assert [o.metadata.name for o in listing(*scope[1], label_selector="app=w").items] == ["w"]
    assert listing(*scope[1], label_selector="app=other").items == []
    assert [o.metadata.name for o in listing(*scope[1], field_selector="metadata.name=w").items] == ["w"]
    stream = watch.Watch()
    events = []
    for event in stream.stream(listing, *scope[1], resource_version=start, label_selector="app=w", timeout_seconds=5):
        events.append((event["type"], event["object"].metadata.name))
        stream.stop()
    assert events == [("ADDED", "w")]
