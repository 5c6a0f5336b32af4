"""The sandbox as the real `kubernetes` Python client sees it: CRUD, concurrency, errors, selectors, paging,
watch, patch types, dry-run, subresources and garbage collection.

Every test asserts what the client put on the wire (the sandbox's request log) and what the server then
holds (state read back), so a sandbox that answered plausibly but stored the wrong thing fails.
"""
from __future__ import annotations

import base64
import collections
import json
import threading
import time
from typing import Iterator

import httpx
import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from sandbox.server import Sandbox
from tests.conftest import deployment_manifest, start_sandbox

pytestmark = pytest.mark.timeout(60)

CERT_GROUP, CERT_VERSION, CERT_PLURAL = "cert-manager.io", "v1", "certificates"


# ----------------------------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture
def quiet() -> Iterator[Sandbox]:
    """A sandbox with no controllers: nothing but the test writes, so resourceVersions and status are
    exactly what the requests made them."""
    sb = start_sandbox(controllers=False)
    sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    yield sb
    sb.stop()


@pytest.fixture
def quiet_client(quiet: Sandbox) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config_dict(quiet.kubeconfig())
    yield api
    api.close()


def status_of(exc: ApiException) -> dict:
    """The Status object the server answered with."""
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == exc.status
    return body


def rv(obj) -> int:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    value = meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
    return int(value)


def configmap(name: str, labels: dict | None = None, data: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, **({"labels": labels} if labels else {})}, "data": data or {"k": "v"}}


def certificate(name: str = "web-tls") -> dict:
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": name},
            "spec": {"secretName": f"{name}-secret", "dnsNames": ["web.example.com"],
                     "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}}}


def two_container_deployment(name: str = "web") -> dict:
    d = deployment_manifest(name, replicas=2)
    d["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "proxy:1.0"})
    return d


# ----------------------------------------------------------------------------------------------
# CRUD

def test_core_kinds_crud_sets_identity_and_cluster_wide_increasing_resource_versions(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    mark = sandbox.requests.mark()

    ns = core.create_namespace({"metadata": {"name": "team-a"}})
    cm = core.create_namespaced_config_map("team-a", configmap("settings", data={"mode": "fast"}))
    secret = core.create_namespaced_secret("team-a", {
        "metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}, "data": {"user": "YWRtaW4="}})
    svc = core.create_namespaced_service("team-a", {
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})

    created = [ns, cm, secret, svc]
    for obj in created:
        assert obj.metadata.uid and len(obj.metadata.uid) == 36
        assert obj.metadata.creation_timestamp is not None
    versions = [rv(o) for o in created]
    assert versions == sorted(versions) and len(set(versions)) == 4, versions

    # stringData is write-only: folded into base64 data, never stored or returned.
    assert secret.data == {"user": "YWRtaW4=", "password": base64.b64encode(b"hunter2").decode()}
    assert secret.string_data is None
    stored_secret = sandbox.get("Secret", "creds", "team-a")
    assert "stringData" not in stored_secret and stored_secret["type"] == "Opaque"
    assert base64.b64decode(stored_secret["data"]["password"]) == b"hunter2"
    assert svc.spec.ports[0].target_port == 80 and svc.spec.type == "ClusterIP"

    # read back, update, read back
    assert core.read_namespaced_config_map("settings", "team-a").data == {"mode": "fast"}
    cm.data = {"mode": "slow"}
    updated = core.replace_namespaced_config_map("settings", "team-a", cm)
    assert rv(updated) > max(versions)
    assert updated.metadata.uid == cm.metadata.uid
    assert updated.metadata.creation_timestamp == cm.metadata.creation_timestamp
    assert sandbox.get("ConfigMap", "settings", "team-a")["data"] == {"mode": "slow"}

    # delete: gone afterwards
    core.delete_namespaced_config_map("settings", "team-a")
    core.delete_namespaced_secret("creds", "team-a")
    core.delete_namespaced_service("web", "team-a")
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("settings", "team-a")
    assert exc.value.status == 404
    assert core.list_namespaced_secret("team-a").items == []

    writes = [(w.method, w.path, w.status) for w in sandbox.requests.writes(mark)]
    assert writes == [
        ("POST", "/api/v1/namespaces", 201),
        ("POST", "/api/v1/namespaces/team-a/configmaps", 201),
        ("POST", "/api/v1/namespaces/team-a/secrets", 201),
        ("POST", "/api/v1/namespaces/team-a/services", 201),
        ("PUT", "/api/v1/namespaces/team-a/configmaps/settings", 200),
        ("DELETE", "/api/v1/namespaces/team-a/configmaps/settings", 200),
        ("DELETE", "/api/v1/namespaces/team-a/secrets/creds", 200),
        ("DELETE", "/api/v1/namespaces/team-a/services/web", 200),
    ]
    secret_post = sandbox.requests.writes(mark)[2]
    assert secret_post.body["stringData"] == {"password": "hunter2"}  # what the client sent, verbatim
    assert secret_post.content_type in ("", "application/json")   # v37 sends none on create; JSON is implied


def test_delete_answers_like_the_real_server(quiet, quiet_client):
    """ConfigMaps/Deployments answer a Status with the uid; Pods and Services answer the deleted object."""
    core, apps = client.CoreV1Api(quiet_client), client.AppsV1Api(quiet_client)
    cm = core.create_namespaced_config_map("default", configmap("c"))
    dep = apps.create_namespaced_deployment("default", deployment_manifest())
    svc = core.create_namespaced_service("default", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})

    gone = core.delete_namespaced_config_map("c", "default")
    assert gone["kind"] == "Status" and gone["status"] == "Success"
    assert gone["details"] == {"name": "c", "kind": "configmaps", "uid": cm.metadata.uid}
    gone = apps.delete_namespaced_deployment("web", "default")
    assert gone["details"] == {"name": "web", "group": "apps", "kind": "deployments", "uid": dep.metadata.uid}
    gone = core.delete_namespaced_service("s", "default")
    assert gone.kind == "Service" and gone.metadata.uid == svc.metadata.uid
    assert [w.status for w in quiet.requests.writes()[-3:]] == [200, 200, 200]
    assert quiet.list("ConfigMap") == quiet.list("Deployment") == quiet.list("Service") == []


def test_apps_policy_autoscaling_and_custom_resource_crud(sandbox, api_client):
    apps, policy = client.AppsV1Api(api_client), client.PolicyV1Api(api_client)
    hpa_api, custom = client.AutoscalingV2Api(api_client), client.CustomObjectsApi(api_client)
    mark = sandbox.requests.mark()

    dep = apps.create_namespaced_deployment("default", deployment_manifest(replicas=2))
    pdb = policy.create_namespaced_pod_disruption_budget("default", {
        "metadata": {"name": "web"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}})
    hpa = hpa_api.create_namespaced_horizontal_pod_autoscaler("default", {
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 2, "maxReplicas": 6,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}})
    cert = custom.create_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, certificate())

    assert dep.spec.strategy.type == "RollingUpdate" and dep.spec.revision_history_limit == 10  # defaults
    assert pdb.spec.min_available == 1
    assert hpa.spec.metrics[0].resource.target.average_utilization == 70
    assert cert["kind"] == "Certificate" and cert["metadata"]["uid"]
    versions = [rv(dep), rv(pdb), rv(hpa), rv(cert)]
    assert versions == sorted(versions) and len(set(versions)) == 4
    for obj in (dep, pdb, hpa):
        assert obj.metadata.uid and obj.metadata.creation_timestamp is not None
        assert obj.metadata.generation == 1
    assert cert["metadata"]["generation"] == 1 and cert["metadata"]["creationTimestamp"]

    # read back through each API, update specs, read back
    hpa = hpa_api.read_namespaced_horizontal_pod_autoscaler("web", "default")
    hpa.spec.max_replicas = 10
    hpa = hpa_api.replace_namespaced_horizontal_pod_autoscaler("web", "default", hpa)
    assert hpa.spec.max_replicas == 10 and hpa.metadata.generation == 2
    assert sandbox.get("HorizontalPodAutoscaler", "web", "default")["spec"]["maxReplicas"] == 10

    pdb = policy.patch_namespaced_pod_disruption_budget("web", "default", {"spec": {"minAvailable": 2}})
    assert pdb.spec.min_available == 2 and pdb.metadata.generation == 2

    cert = custom.patch_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, "web-tls",
                                                 {"spec": {"dnsNames": ["a.example.com", "b.example.com"]}})
    assert cert["spec"]["dnsNames"] == ["a.example.com", "b.example.com"]
    assert cert["spec"]["secretName"] == "web-tls-secret"        # merge patch keeps other fields
    listed = custom.list_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL)
    assert listed["kind"] == "CertificateList" and [c["metadata"]["name"] for c in listed["items"]] == ["web-tls"]

    policy.delete_namespaced_pod_disruption_budget("web", "default")
    hpa_api.delete_namespaced_horizontal_pod_autoscaler("web", "default")
    custom.delete_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, "web-tls")
    assert policy.list_namespaced_pod_disruption_budget("default").items == []
    assert hpa_api.list_namespaced_horizontal_pod_autoscaler("default").items == []
    assert custom.list_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL)["items"] == []

    paths = [(w.method, w.path) for w in sandbox.requests.writes(mark) if w.user_agent.startswith("OpenAPI")]
    assert ("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets") in paths
    assert ("PUT", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web") in paths
    assert ("PATCH", "/apis/cert-manager.io/v1/namespaces/default/certificates/web-tls") in paths
    cert_patch = next(w for w in sandbox.requests.writes(mark) if w.method == "PATCH" and "certificates" in w.path)
    assert cert_patch.content_type == "application/merge-patch+json"


def test_generation_bumps_on_spec_change_only(quiet, quiet_client):
    apps = client.AppsV1Api(quiet_client)
    dep = apps.create_namespaced_deployment("default", deployment_manifest())
    assert dep.metadata.generation == 1
    start = rv(dep)

    dep = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"team": "a"}}})
    assert dep.metadata.generation == 1 and rv(dep) > start
    dep = apps.patch_namespaced_deployment("web", "default", {"metadata": {"annotations": {"note": "x"}}})
    assert dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment_status("web", "default", {"status": {"replicas": 3}})
    assert dep.metadata.generation == 1 and dep.status.replicas == 3

    dep = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 5}})
    assert dep.metadata.generation == 2
    dep.spec.template.spec.containers[0].image = "web:v2"
    dep = apps.replace_namespaced_deployment("web", "default", dep)
    assert dep.metadata.generation == 3
    stored = quiet.get("Deployment", "web", "default")
    assert stored["metadata"]["generation"] == 3 and stored["metadata"]["labels"] == {"team": "a"}

    # a no-op write stores nothing new: same resourceVersion, same generation
    again = apps.replace_namespaced_deployment("web", "default", dep)
    assert rv(again) == rv(dep) and again.metadata.generation == 3


# ----------------------------------------------------------------------------------------------
# optimistic concurrency

def test_replace_with_stale_resource_version_conflicts(quiet, quiet_client):
    core, apps = client.CoreV1Api(quiet_client), client.AppsV1Api(quiet_client)
    first = core.create_namespaced_config_map("default", configmap("c", data={"v": "1"}))
    stale = first.metadata.resource_version
    first.data = {"v": "2"}
    current = core.replace_namespaced_config_map("c", "default", first)
    assert current.metadata.resource_version != stale

    first.data, first.metadata.resource_version = {"v": "3"}, stale
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("c", "default", first)
    body = status_of(exc.value)
    assert exc.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on configmaps "c": the object has been modified; '
                               "please apply your changes to the latest version and try again")
    assert body["details"] == {"name": "c", "kind": "configmaps"}
    assert quiet.get("ConfigMap", "c", "default")["data"] == {"v": "2"}
    assert quiet.requests.writes()[-1].body["metadata"]["resourceVersion"] == stale

    # group-qualified resource in the message for apps/v1
    dep = apps.create_namespaced_deployment("default", deployment_manifest())
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}})
    with pytest.raises(ApiException) as exc:
        apps.replace_namespaced_deployment("web", "default", dep)
    body = status_of(exc.value)
    assert body["message"].startswith('Operation cannot be fulfilled on deployments.apps "web": ')
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    assert quiet.get("Deployment", "web", "default")["spec"]["replicas"] == 4

    # no resourceVersion: an unconditional update, accepted for built-in kinds
    first.metadata.resource_version = None
    ok = core.replace_namespaced_config_map("c", "default", first)
    assert ok.data == {"v": "3"} and rv(ok) > rv(current)
    assert "resourceVersion" not in quiet.requests.writes()[-1].body["metadata"]


def test_custom_resource_put_requires_resource_version(quiet, quiet_client):
    """CRDs do not allow unconditional updates: the real server answers 422 on a PUT without one."""
    custom = client.CustomObjectsApi(quiet_client)
    cert = custom.create_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, certificate())
    body = certificate()
    body["spec"]["dnsNames"] = ["other.example.com"]
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, "web-tls", body)
    status = status_of(exc.value)
    assert exc.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"] == ('certificates.cert-manager.io "web-tls" is invalid: metadata.resourceVersion: '
                                 "Invalid value: 0x0: must be specified for an update")
    assert quiet.get("Certificate", "web-tls", "default")["spec"]["dnsNames"] == ["web.example.com"]

    body["metadata"]["resourceVersion"] = cert["metadata"]["resourceVersion"]
    ok = custom.replace_namespaced_custom_object(CERT_GROUP, CERT_VERSION, "default", CERT_PLURAL, "web-tls", body)
    assert ok["spec"]["dnsNames"] == ["other.example.com"] and ok["metadata"]["generation"] == 2


# ----------------------------------------------------------------------------------------------
# errors

def test_not_found_and_already_exists_are_status_objects(quiet, quiet_client):
    core, apps = client.CoreV1Api(quiet_client), client.AppsV1Api(quiet_client)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("missing", "default")
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"]) == (404, "NotFound")
    assert body["message"] == 'configmaps "missing" not found'
    assert body["details"] == {"name": "missing", "kind": "configmaps"}

    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("missing", "default")
    assert status_of(exc.value)["message"] == 'deployments.apps "missing" not found'
    assert status_of(exc.value)["details"] == {"name": "missing", "group": "apps", "kind": "deployments"}

    # creating into a namespace that does not exist
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("nowhere", configmap("c"))
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"], body["message"]) == (404, "NotFound", 'namespaces "nowhere" not found')
    assert body["details"] == {"name": "nowhere", "kind": "namespaces"}
    assert core.list_config_map_for_all_namespaces().items == []

    core.create_namespaced_config_map("default", configmap("c", data={"first": "1"}))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", configmap("c", data={"second": "2"}))
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == 'configmaps "c" already exists'
    assert body["details"] == {"name": "c", "kind": "configmaps"}
    assert quiet.get("ConfigMap", "c", "default")["data"] == {"first": "1"}
    assert [w.status for w in quiet.requests.writes()] == [404, 201, 409]


@pytest.mark.parametrize("mutate, field, reason, fragment", [
    (lambda d: d["spec"]["template"]["metadata"].update(labels={"app": "other"}),
     "spec.template.metadata.labels", "FieldValueInvalid",
     'Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`'),
    (lambda d: d["spec"].update(replicas=-1),
     "spec.replicas", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("image"),
     "spec.template.spec.containers[0].image", "FieldValueRequired", "Required value"),
])
def test_invalid_deployment_is_422_with_causes_and_not_stored(quiet, quiet_client, mutate, field, reason, fragment):
    apps = client.AppsV1Api(quiet_client)
    manifest = deployment_manifest()
    mutate(manifest)
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment("default", manifest)
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith(f'Deployment.apps "web" is invalid: {field}: ')
    assert fragment in body["message"]
    assert body["details"]["name"] == "web" and body["details"]["kind"] == "Deployment"
    assert body["details"]["group"] == "apps"
    causes = body["details"]["causes"]
    assert {"field": field, "reason": reason} in [{"field": c["field"], "reason": c["reason"]} for c in causes]
    assert any(fragment in c["message"] for c in causes)
    assert apps.list_namespaced_deployment("default").items == []
    assert quiet.requests.writes()[-1].status == 422


def test_invalid_update_keeps_the_stored_object(quiet, quiet_client):
    apps = client.AppsV1Api(quiet_client)
    apps.create_namespaced_deployment("default", deployment_manifest())
    before = quiet.get("Deployment", "web", "default")
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": -3}})
    assert exc.value.status == 422
    assert status_of(exc.value)["details"]["causes"][0]["field"] == "spec.replicas"
    assert quiet.get("Deployment", "web", "default") == before


def test_malformed_json_and_bad_selectors_are_400(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    url = f"{quiet.url}/api/v1/namespaces/default/configmaps"
    r = httpx.post(url, content=b'{"metadata": {"name": "broken"', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert (body["kind"], body["code"], body["reason"]) == ("Status", 400, "BadRequest")
    logged = quiet.requests.entries()[-1]
    assert (logged.method, logged.status, logged.body) == ("POST", 400, '{"metadata": {"name": "broken"')

    r = httpx.post(url, content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"

    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map("default", label_selector="app in (web")
    assert exc.value.status == 400 and status_of(exc.value)["reason"] == "BadRequest"
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map("default", label_selector="=web")
    assert exc.value.status == 400 and status_of(exc.value)["reason"] == "BadRequest"
    assert [e.query.get("labelSelector") for e in quiet.requests.entries()[-2:]] == ["app in (web", "=web"]

    assert core.list_namespaced_config_map("default").items == []
    assert quiet.store.resource_version == 1        # only the fixture's namespace was ever stored


# ----------------------------------------------------------------------------------------------
# selectors

def _names(listing) -> list[str]:
    return [o.metadata.name for o in listing.items]


def test_label_selectors_equality_and_set_based(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    for name, labels in [("a", {"app": "web", "tier": "fe"}), ("b", {"app": "api", "tier": "be"}),
                         ("c", {"app": "db"}), ("d", {})]:
        core.create_namespaced_config_map("default", configmap(name, labels))

    def select(selector: str) -> list[str]:
        return _names(core.list_namespaced_config_map("default", label_selector=selector))

    assert select("app=web") == ["a"]
    assert select("app==api") == ["b"]
    assert select("app!=web") == ["b", "c", "d"]          # != also matches objects without the label
    assert select("app in (web, api)") == ["a", "b"]
    assert select("app notin (web,api)") == ["c", "d"]
    assert select("tier") == ["a", "b"]
    assert select("!tier") == ["c", "d"]
    assert select("app in (web,api),tier=be") == ["b"]
    assert select("") == ["a", "b", "c", "d"]
    assert quiet.requests.entries()[-2].query == {"labelSelector": "app in (web,api),tier=be"}


def test_field_selectors_on_names_namespaces_pods_and_secrets(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_config_map("default", configmap("one"))
    core.create_namespaced_config_map("default", configmap("two"))
    core.create_namespaced_config_map("other", configmap("one"))

    assert _names(core.list_namespaced_config_map("default", field_selector="metadata.name=one")) == ["one"]
    assert _names(core.list_namespaced_config_map("default", field_selector="metadata.name!=one")) == ["two"]
    everywhere = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=other")
    assert [(o.metadata.namespace, o.metadata.name) for o in everywhere.items] == [("other", "one")]
    both = core.list_config_map_for_all_namespaces(field_selector="metadata.name=one")
    assert [o.metadata.namespace for o in both.items] == ["default", "other"]

    for name, node in [("p1", "node-0"), ("p2", "node-1"), ("p3", "node-0")]:
        core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": {
            "nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]}})
    core.patch_namespaced_pod_status("p3", "default", {"status": {"phase": "Running"}})
    assert _names(core.list_namespaced_pod("default", field_selector="spec.nodeName=node-0")) == ["p1", "p3"]
    assert _names(core.list_namespaced_pod("default", field_selector="status.phase=Running")) == ["p3"]
    assert _names(core.list_namespaced_pod("default", field_selector="status.phase!=Running")) == ["p1", "p2"]
    assert _names(core.list_namespaced_pod(
        "default", field_selector="spec.nodeName=node-0,status.phase=Pending")) == ["p1"]

    core.create_namespaced_secret("default", {"metadata": {"name": "plain"}, "stringData": {"k": "v"}})
    core.create_namespaced_secret("default", {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                                              "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}})
    assert _names(core.list_namespaced_secret("default", field_selector="type=kubernetes.io/tls")) == ["tls"]
    assert _names(core.list_namespaced_secret("default", field_selector="type=Opaque")) == ["plain"]


def test_unsupported_field_selector_is_400(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespaced_config_map("default", configmap("one"))
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", field_selector="spec.hostname=x")
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == "field label not supported: spec.hostname"
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map("default", field_selector="data.k=v")
    assert exc.value.status == 400 and "data.k" in status_of(exc.value)["message"]
    assert quiet.requests.entries()[-1].query == {"fieldSelector": "data.k=v"}


# ----------------------------------------------------------------------------------------------
# pagination

def test_list_pagination_follows_continue_tokens(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    expected = [f"cm-{i:02d}" for i in range(25)]
    for name in reversed(expected):               # creation order must not matter: lists are sorted by name
        core.create_namespaced_config_map("default", configmap(name))
    mark = quiet.requests.mark()

    seen: list[str] = []
    remaining: list[int | None] = []
    token = None
    while True:
        page = core.list_namespaced_config_map("default", limit=10, _continue=token)
        seen += _names(page)
        remaining.append(page.metadata.remaining_item_count)
        token = page.metadata._continue
        if not token:
            break
    assert seen == expected
    assert remaining == [15, 5, None]
    queries = [e.query for e in quiet.requests.entries(mark)]
    assert [q.get("limit") for q in queries] == ["10", "10", "10"]
    assert "continue" not in queries[0] and all("continue" in q for q in queries[1:])

    # a selector applies before paging
    page = core.list_namespaced_config_map("default", limit=2, field_selector="metadata.name!=cm-00")
    assert _names(page) == ["cm-01", "cm-02"] and page.metadata.remaining_item_count == 22


# ----------------------------------------------------------------------------------------------
# watch

def _stream(list_fn, **kwargs) -> list[tuple[str, str, int]]:
    """All events of one watch as (type, name, resourceVersion)."""
    out = []
    for event in watch.Watch().stream(list_fn, **kwargs):
        raw = event["raw_object"]
        out.append((event["type"], raw["metadata"].get("name", ""), int(raw["metadata"]["resourceVersion"])))
    return out


def test_watch_from_resource_version_replays_changes_in_order(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespaced_config_map("default", configmap("before"))
    since = core.list_namespaced_config_map("default").metadata.resource_version

    core.create_namespaced_config_map("default", configmap("c"))
    core.patch_namespaced_config_map("c", "default", {"data": {"k": "v2"}})
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}})          # another kind: not seen
    core.delete_namespaced_config_map("c", "default")
    mark = quiet.requests.mark()

    started = time.monotonic()
    events = _stream(core.list_namespaced_config_map, namespace="default", resource_version=since,
                     timeout_seconds=1)
    assert time.monotonic() - started >= 0.9      # the server kept the stream open until timeoutSeconds
    assert [(t, n) for t, n, _ in events] == [("ADDED", "c"), ("MODIFIED", "c"), ("DELETED", "c")]
    versions = [v for _, _, v in events]
    assert versions == sorted(versions) and versions[0] > int(since)
    assert versions[-1] == quiet.store.resource_version
    (req,) = quiet.requests.entries(mark)
    assert req.verb == "watch" and req.query["resourceVersion"] == since and req.query["timeoutSeconds"] == "1"


def test_watch_delivers_live_events(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    since = core.list_namespaced_config_map("default").metadata.resource_version
    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume() -> None:
        for event in w.stream(core.list_namespaced_config_map, namespace="default", resource_version=since,
                              timeout_seconds=5):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    # the request is logged as the stream starts, after the server subscribed it
    quiet.wait_for(lambda: any(e.verb == "watch" for e in quiet.requests.entries()), timeout=2)
    core.create_namespaced_config_map("default", configmap("live"))
    core.replace_namespaced_config_map("live", "default", configmap("live", data={"k": "new"}))
    core.delete_namespaced_config_map("live", "default")
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert events == [("ADDED", "live"), ("MODIFIED", "live"), ("DELETED", "live")]


@pytest.mark.parametrize("resource_version", ["0", None])
def test_watch_without_version_starts_with_synthetic_added_events(quiet, quiet_client, resource_version):
    core = client.CoreV1Api(quiet_client)
    for name in ("x", "y"):
        core.create_namespaced_config_map("default", configmap(name))
    core.patch_namespaced_config_map("x", "default", {"data": {"k": "changed"}})
    kwargs = {"resource_version": resource_version} if resource_version is not None else {}
    events = _stream(core.list_namespaced_config_map, namespace="default", timeout_seconds=1, **kwargs)
    # current state only: one ADDED per existing object, at its current version, no MODIFIED history
    assert [(t, n) for t, n, _ in events] == [("ADDED", "x"), ("ADDED", "y")]
    assert events[0][2] == rv(quiet.get("ConfigMap", "x", "default"))


def test_selector_filtered_watch_turns_label_changes_into_deleted_and_added(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespaced_config_map("default", configmap("m", {"app": "web"}))
    since = core.list_namespaced_config_map("default").metadata.resource_version
    core.patch_namespaced_config_map("m", "default", {"data": {"k": "2"}})              # still matches
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"app": "api"}}})   # leaves
    core.create_namespaced_config_map("default", configmap("other", {"app": "api"}))     # never matches
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"app": "web"}}})   # returns

    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, namespace="default",
                                      label_selector="app=web", resource_version=since, timeout_seconds=1):
        seen.append((event["type"], event["raw_object"]))
    assert [(t, o["metadata"]["name"]) for t, o in seen] == [("MODIFIED", "m"), ("DELETED", "m"), ("ADDED", "m")]
    deleted = seen[1][1]
    # like the real watch cache: DELETED carries the last state that matched, at the event's version
    assert deleted["metadata"]["labels"] == {"app": "web"} and deleted["data"] == {"k": "2"}
    assert int(deleted["metadata"]["resourceVersion"]) > int(seen[0][1]["metadata"]["resourceVersion"])
    assert seen[2][1]["metadata"]["labels"] == {"app": "web"}
    assert quiet.requests.entries()[-1].query["labelSelector"] == "app=web"


def test_watch_bookmarks_carry_the_current_resource_version(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    core.create_namespaced_config_map("default", configmap("b"))
    since = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_secret("default", {"metadata": {"name": "unrelated"}})   # bumps the cluster version
    events = list(watch.Watch().stream(core.list_namespaced_config_map, namespace="default",
                                       resource_version=since, allow_watch_bookmarks=True, timeout_seconds=2))
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2, [e["type"] for e in events]             # every 0.5 s in the fixture
    assert all(e["type"] == "BOOKMARK" for e in events)
    for b in bookmarks:
        assert b["raw_object"]["kind"] == "ConfigMap"
        assert b["raw_object"]["metadata"]["resourceVersion"] == str(quiet.store.resource_version)
    assert quiet.requests.entries()[-1].query["allowWatchBookmarks"] == "true"

    # without allowWatchBookmarks: none
    plain = _stream(core.list_namespaced_config_map, namespace="default", resource_version=since,
                    timeout_seconds=1)
    assert plain == []


def test_watch_timeout_seconds_ends_the_stream(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    started = time.monotonic()
    assert _stream(core.list_namespaced_config_map, namespace="default", timeout_seconds=1) == []
    assert 0.9 <= time.monotonic() - started < 2.5


def test_watch_from_compacted_resource_version_is_410_expired(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    quiet.store._history = collections.deque(maxlen=5)
    core.create_namespaced_config_map("default", configmap("c", data={"n": "0"}))
    old = core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(1, 9):
        core.replace_namespaced_config_map("c", "default", configmap("c", data={"n": str(i)}))

    with pytest.raises(ApiException) as exc:
        _stream(core.list_namespaced_config_map, namespace="default", resource_version=old, timeout_seconds=1)
    assert exc.value.status == 410
    assert "Expired" in exc.value.reason and "too old resource version" in exc.value.reason

    # on the wire: the watch is accepted and the error is the one event of the stream, as the real server sends it
    r = httpx.get(f"{quiet.url}/api/v1/namespaces/default/configmaps",
                  params={"watch": "true", "resourceVersion": old, "timeoutSeconds": "1"})
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith(f"too old resource version: {old} (")

    # a version still in the history replays fine
    recent = str(quiet.store.resource_version - 2)
    events = _stream(core.list_namespaced_config_map, namespace="default", resource_version=recent,
                     timeout_seconds=1)
    assert [t for t, _, _ in events] == ["MODIFIED", "MODIFIED"]


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


# ----------------------------------------------------------------------------------------------
# dry run

def test_dry_run_validates_and_answers_but_stores_nothing(quiet, quiet_client):
    core, apps = client.CoreV1Api(quiet_client), client.AppsV1Api(quiet_client)
    apps.create_namespaced_deployment("default", deployment_manifest(replicas=2))
    listed = apps.list_namespaced_deployment("default").metadata.resource_version
    stored = quiet.get("Deployment", "web", "default")
    mark = quiet.requests.mark()

    made = core.create_namespaced_config_map("default", configmap("ghost"), dry_run="All")
    assert made.metadata.name == "ghost" and made.data == {"k": "v"} and made.metadata.uid
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("ghost", "default")
    assert exc.value.status == 404

    with pytest.raises(ApiException) as exc:                                  # still validated
        apps.create_namespaced_deployment("default", {**deployment_manifest("bad"),
                                                      "spec": {**deployment_manifest()["spec"], "replicas": -1}},
                                          dry_run="All")
    assert exc.value.status == 422

    patched = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 7}}, dry_run="All")
    assert patched.spec.replicas == 7 and patched.metadata.generation == 2
    gone = apps.delete_namespaced_deployment("web", "default", dry_run="All")
    assert gone["status"] == "Success" and gone["details"]["uid"] == stored["metadata"]["uid"]

    assert quiet.get("Deployment", "web", "default") == stored
    assert core.list_namespaced_config_map("default").items == []
    assert apps.list_namespaced_deployment("default").metadata.resource_version == listed
    writes = quiet.requests.writes(mark)
    assert [(w.method, w.query.get("dryRun")) for w in writes] == [
        ("POST", "All"), ("POST", "All"), ("PATCH", "All"), ("DELETE", "All")]


# ----------------------------------------------------------------------------------------------
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
    assert "status" not in quiet.get("Deployment", "web", "default")    # create ignores status

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
