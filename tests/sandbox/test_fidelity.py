"""Answers byte-for-byte where independent clients noticed the sandbox differed from a real API server:
Service allocation and defaults, the status a create answers with, Status field order, trailing newlines."""
from __future__ import annotations

import ipaddress
import json

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import deployment_manifest
from tests.sandbox.client_helpers import configmap, status_of

pytestmark = pytest.mark.timeout(60)

STATUS_ORDER = ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]
SERVICE_CIDR = ipaddress.ip_network("10.0.0.0/16")


def service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                     **spec}}


def test_service_create_and_read_carry_allocations_defaults_and_status(quiet):
    created = httpx.post(f"{quiet.url}/api/v1/namespaces/default/services", json=service("web")).json()
    spec = created["spec"]
    ip = ipaddress.ip_address(spec["clusterIP"])
    assert ip in SERVICE_CIDR and ip not in (SERVICE_CIDR[0], SERVICE_CIDR[1], SERVICE_CIDR[-1])
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert {k: spec[k] for k in ("type", "sessionAffinity", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy")} \
        == {"type": "ClusterIP", "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster"}
    assert spec["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}]
    assert created["status"] == {"loadBalancer": {}}
    assert "generation" not in created["metadata"]
    read = httpx.get(f"{quiet.url}/api/v1/namespaces/default/services/web").json()
    assert read == created


def test_cluster_ips_are_unique_headless_stays_none_and_updates_keep_the_ip(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    ips = {core.create_namespaced_service("default", service(f"s{i}")).spec.cluster_ip for i in range(40)}
    assert len(ips) == 40
    headless = core.create_namespaced_service("default", service("db", clusterIP="None"))
    assert headless.spec.cluster_ip == "None" and headless.spec.cluster_ips == ["None"]

    body = service("s0")                      # a PUT that leaves the allocation out keeps it (patchAllocatedValues)
    body["metadata"]["labels"] = {"tier": "web"}
    before = core.read_namespaced_service("s0", "default").spec.cluster_ip
    after = core.replace_namespaced_service("s0", "default", body)
    assert after.spec.cluster_ip == before and after.metadata.labels == {"tier": "web"}
    moved = "10.0.250.250" if before != "10.0.250.250" else "10.0.250.251"
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_service("s0", "default", {"spec": {"clusterIP": moved, "clusterIPs": [moved]}})
    assert exc.value.status == 422
    assert status_of(exc.value)["details"]["causes"][0]["field"] == "spec.clusterIPs[0]"
    taken = core.read_namespaced_service("s1", "default").spec.cluster_ip
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service("default", service("copy", clusterIP=taken))
    assert exc.value.status == 422 and "provided IP is already allocated" in status_of(exc.value)["message"]


def test_load_balancer_services_get_node_ports_that_updates_keep(quiet, quiet_client):
    core = client.CoreV1Api(quiet_client)
    lb = core.create_namespaced_service("default", service("edge", type="LoadBalancer"))
    assert 30000 <= lb.spec.ports[0].node_port <= 32767
    assert lb.spec.external_traffic_policy == "Cluster" and lb.spec.allocate_load_balancer_node_ports is True
    again = core.patch_namespaced_service("edge", "default", {"metadata": {"labels": {"a": "b"}}})
    assert again.spec.ports[0].node_port == lb.spec.ports[0].node_port


def test_deployment_create_answers_an_empty_status(quiet):
    raw = httpx.post(f"{quiet.url}/apis/apps/v1/namespaces/default/deployments", json=deployment_manifest())
    assert raw.status_code == 201 and raw.json()["status"] == {}
    assert raw.json()["metadata"]["generation"] == 1


def _keys(raw: bytes) -> list[str]:
    return list(json.loads(raw, object_pairs_hook=lambda pairs: dict(pairs)).keys())


def test_status_errors_order_their_fields_like_metav1_status(quiet, quiet_client):
    missing = httpx.get(f"{quiet.url}/apis/apps/v1/namespaces/default/deployments/nope")
    body = missing.json()
    assert _keys(missing.content) == STATUS_ORDER
    assert list(body["details"]) == ["name", "group", "kind"]
    invalid = httpx.post(f"{quiet.url}/api/v1/namespaces/default/configmaps",
                         json={"metadata": {"name": "Bad_Name"}, "data": {}})
    assert _keys(invalid.content) == STATUS_ORDER
    assert list(invalid.json()["details"]) == ["name", "kind", "causes"]        # core group: no group
    quiet.faults.add(path="/api/v1/namespaces/default/configmaps", status=429, retry_after=2, times=1)
    throttled = httpx.get(f"{quiet.url}/api/v1/namespaces/default/configmaps")
    assert _keys(throttled.content) == [k for k in STATUS_ORDER]
    assert list(throttled.json()["details"]) == ["retryAfterSeconds"]


def test_every_json_answer_ends_with_one_newline(quiet, quiet_client):
    client.CoreV1Api(quiet_client).create_namespaced_config_map("default", configmap("one"))
    answers = [httpx.get(f"{quiet.url}{path}") for path in (
        "/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/configmaps/one",
        "/api/v1/namespaces/default/configmaps/missing", "/apis", "/api/v1", "/version")]
    answers.append(httpx.get(f"{quiet.url}/api/v1/namespaces/default/configmaps",
                             headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}))
    answers.append(httpx.post(f"{quiet.url}/api/v1/namespaces/default/configmaps", json=configmap("two")))
    for answer in answers:
        assert answer.headers["content-type"] == "application/json"
        assert answer.content.endswith(b"}\n") and not answer.content.endswith(b"\n\n"), answer.request.url
        assert int(answer.headers["content-length"]) == len(answer.content)
