"""The sandbox as the real `kubernetes` Python client sees it: CRUD, concurrency, errors and dry-run.

Every test asserts what the client put on the wire (the sandbox's request log) and what the server then
holds (state read back), so a sandbox that answered plausibly but stored the wrong thing fails.
"""
from __future__ import annotations

import base64

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import deployment_manifest
from tests.sandbox.client_helpers import CERT_GROUP, CERT_PLURAL, CERT_VERSION, certificate, configmap, rv, status_of

pytestmark = pytest.mark.timeout(60)


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
