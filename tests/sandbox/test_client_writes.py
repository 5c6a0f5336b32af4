"""The sandbox as the real `kubernetes` Python client changes it: patch types, subresources and garbage
collection.

Every test asserts what the client put on the wire (the sandbox's request log) and what the server then
holds (state read back), so a sandbox that answered plausibly but stored the wrong thing fails.
"""
from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import deployment_manifest
from tests.sandbox.client_helpers import (CERT_GROUP, CERT_PLURAL, CERT_VERSION, certificate, configmap, status_of,
                                          two_container_deployment)

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------------------------
# patch types

def test_json_merge_patch_replaces_lists_and_null_deletes(quiet, quiet_client):
    apps = client.AppsV1Api(quiet_client)
    dep = two_container_deployment()
    dep["metadata"]["annotations"] = {"keep": "1", "drop": "1"}
    apps.create_namespaced_deployment("default", dep)
    patch = {"metadata": {"annotations": {"drop": None, "new": "2"}},
             "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:v2"}]}}}}
    out = apps.patch_namespaced_deployment("web", "default", patch, _content_type="application/merge-patch+json")
    sent = quiet.requests.writes()[-1]
    assert (sent.method, sent.content_type, sent.body) == ("PATCH", "application/merge-patch+json", patch)
    assert out.metadata.annotations == {"keep": "1", "new": "2"}
    stored = quiet.get("Deployment", "web", "default")
    containers = stored["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("app", "web:v2")]   # RFC 7386: lists replace
    assert stored["metadata"]["generation"] == 2


def test_strategic_merge_patch_merges_containers_by_name(quiet, quiet_client):
    apps = client.AppsV1Api(quiet_client)
    apps.create_namespaced_deployment("default", two_container_deployment())
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:v2"}]}}}}
    out = apps.patch_namespaced_deployment("web", "default", patch)      # a dict body: strategic merge
    sent = quiet.requests.writes()[-1]
    assert sent.content_type == "application/strategic-merge-patch+json" and sent.body == patch
    assert [(c.name, c.image) for c in out.spec.template.spec.containers] == [("app", "web:v2"),
                                                                          ("sidecar", "proxy:1.0")]
    stored = quiet.get("Deployment", "web", "default")["spec"]["template"]["spec"]["containers"]
    assert stored[0]["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]   # untouched fields kept
    assert stored[1]["image"] == "proxy:1.0"


def test_json_patch_applies_operations_and_a_failed_test_op_is_422(quiet, quiet_client):
    apps = client.AppsV1Api(quiet_client)
    apps.create_namespaced_deployment("default", deployment_manifest(replicas=3))
    ops = [{"op": "test", "path": "/spec/replicas", "value": 3},
           {"op": "replace", "path": "/spec/replicas", "value": 4},
           {"op": "add", "path": "/metadata/labels", "value": {"patched": "yes"}}]
    out = apps.patch_namespaced_deployment("web", "default", ops)        # a list body: JSON patch
    assert quiet.requests.writes()[-1].content_type == "application/json-patch+json"
    assert out.spec.replicas == 4 and out.metadata.labels == {"patched": "yes"}
    before = quiet.get("Deployment", "web", "default")

    failing = [{"op": "test", "path": "/spec/replicas", "value": 3},      # it is 4 now
               {"op": "replace", "path": "/spec/replicas", "value": 9}]
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("web", "default", failing)
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"]) == (422, "Invalid")
    assert "test" in body["message"] and "/spec/replicas" in body["message"]
    assert quiet.get("Deployment", "web", "default") == before          # nothing applied, no new version
    assert quiet.requests.writes()[-1].status == 422


def test_certificate_rejects_strategic_merge_but_takes_merge_patch(quiet, quiet_client):
    custom = client.CustomObjectsApi(quiet_client)
    custom.create_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, certificate())
    before = quiet.get("Certificate", "web-tls", "default")
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, "web-tls",
                                              {"spec": {"commonName": "web"}},
                                              _content_type="application/strategic-merge-patch+json")
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"]) == (415, "UnsupportedMediaType")
    assert body["message"] == ("the body of the request was in an unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")
    assert quiet.get("Certificate", "web-tls", "default") == before

    out = custom.patch_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, "web-tls",
                                                {"spec": {"commonName": "web"}})
    assert quiet.requests.writes()[-1].content_type == "application/merge-patch+json"
    assert out["spec"]["commonName"] == "web" and out["spec"]["dnsNames"] == ["web.example.com"]


# subresources

def test_scale_subresource_reads_and_patches_replicas(quiet, quiet_client):
    apps = client.AppsV1Api(quiet_client)
    dep = deployment_manifest(replicas=3)
    dep["spec"]["selector"]["matchExpressions"] = [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]
    dep["spec"]["template"]["metadata"]["labels"] = {"app": "web", "tier": "fe"}
    apps.create_namespaced_deployment("default", dep)
    apps.patch_namespaced_deployment_status("web", "default", {"status": {"replicas": 3}})

    scale = apps.read_namespaced_deployment_scale("web", "default")
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec.replicas == 3 and scale.status.replicas == 3
    assert scale.status.selector == "app=web,tier in (be,fe)"               # the string form, sorted

    out = apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 5}})
    sent = quiet.requests.writes()[-1]
    assert sent.path == "/apis/apps/v1/namespaces/default/deployments/web/scale"
    assert sent.content_type == "application/strategic-merge-patch+json"
    assert out.spec.replicas == 5
    stored = quiet.get("Deployment", "web", "default")
    assert stored["spec"]["replicas"] == 5 and stored["metadata"]["generation"] == 2
    assert stored["status"] == {"replicas": 3}

    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": -2}})
    assert exc.value.status == 422
    assert quiet.get("Deployment", "web", "default")["spec"]["replicas"] == 5


def test_status_subresource_separates_spec_and_status_writes(quiet, quiet_client):
    apps = client.AppsV1Api(quiet_client)
    apps.create_namespaced_deployment("default", {**deployment_manifest(replicas=2),
                                                  "status": {"replicas": 42}})
    assert quiet.get("Deployment", "web", "default")["status"] == {}    # create ignores status: starts empty

    body = quiet_client.sanitize_for_serialization(apps.read_namespaced_deployment("web", "default"))
    body["status"] = {"replicas": 99, "readyReplicas": 99}
    body["metadata"]["labels"] = {"via": "put"}
    apps.replace_namespaced_deployment("web", "default", body)
    apps.patch_namespaced_deployment("web", "default", {"status": {"availableReplicas": 5}})
    stored = quiet.get("Deployment", "web", "default")
    assert stored.get("status", {}) == {} and stored["metadata"]["labels"] == {"via": "put"}
    assert quiet.requests.writes()[-2].body["status"]["replicas"] == 99      # it was sent, and ignored
    assert quiet.requests.writes()[-1].body == {"status": {"availableReplicas": 5}}
    assert stored["metadata"]["generation"] == 1

    out = apps.patch_namespaced_deployment_status("web", "default", {
        "spec": {"replicas": 9}, "metadata": {"labels": {"via": "status"}},
        "status": {"replicas": 2, "observedGeneration": 1}})
    assert quiet.requests.writes()[-1].path.endswith("/deployments/web/status")
    assert out.status.replicas == 2 and out.status.observed_generation == 1
    stored = quiet.get("Deployment", "web", "default")
    assert stored["status"] == {"replicas": 2, "observedGeneration": 1}
    assert stored["spec"]["replicas"] == 2 and stored["metadata"]["labels"] == {"via": "put"}
    assert stored["metadata"]["generation"] == 1


# ----------------------------------------------------------------------------------------------
# garbage collection

def test_deleting_a_deployment_deletes_its_replicasets_and_pods(sandbox, api_client):
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    dep = apps.create_namespaced_deployment("default", deployment_manifest(replicas=2))
    sandbox.wait_for(lambda: len(core.list_namespaced_pod("default", label_selector="app=web").items) == 2)
    (rs,) = apps.list_namespaced_replica_set("default").items
    assert rs.metadata.owner_references[0].uid == dep.metadata.uid
    pods = core.list_namespaced_pod("default").items
    assert {p.metadata.owner_references[0].uid for p in pods} == {rs.metadata.uid}

    apps.delete_namespaced_deployment("web", "default")
    sandbox.wait_for(lambda: not apps.list_namespaced_replica_set("default").items
                     and not core.list_namespaced_pod("default").items, timeout=5)
    assert sandbox.list("ReplicaSet") == [] and sandbox.list("Pod") == []
    deletes = [w for w in sandbox.requests.writes() if w.method == "DELETE"]
    assert [w.path for w in deletes] == ["/apis/apps/v1/namespaces/default/deployments/web"]  # the server did it


def test_deleting_a_namespace_deletes_its_contents(sandbox, api_client):
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", configmap("c"))
    core.create_namespaced_secret("doomed", {"metadata": {"name": "s"}})
    apps.create_namespaced_deployment("doomed", deployment_manifest(namespace="doomed", replicas=1))
    custom.create_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "doomed", CERT_PLURAL, certificate())
    core.create_namespaced_config_map("default", configmap("survivor"))
    sandbox.wait_for(lambda: core.list_namespaced_pod("doomed").items)

    core.delete_namespace("doomed")

    def emptied() -> bool:
        try:
            core.read_namespace("doomed")
            return False
        except ApiException as exc:
            return exc.status == 404
    sandbox.wait_for(emptied, timeout=5)
    for kind in ("ConfigMap", "Secret", "Deployment", "ReplicaSet", "Pod", "Certificate"):
        assert sandbox.list(kind, "doomed") == [], kind
    assert core.list_namespaced_config_map("doomed").items == []
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["survivor"]

