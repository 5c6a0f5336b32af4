"""RBAC enforcement for ServiceAccount tokens: what a token bound to a Role may do, and the real 403 otherwise.

Real clients: the `kubernetes` client raises its ApiException with the Status the sandbox sent, and kubectl
prints the server's message. The message format is kube-apiserver's (responsewriters.forbiddenMessage
wrapped by apierrors.NewForbidden).
"""
from __future__ import annotations

import json

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sandbox.server import Sandbox
from tests.conftest import start_sandbox

from .kubectl_helpers import Kubectl, available_versions, kubectl_binary

USER = "system:serviceaccount:ops:reader"


@pytest.fixture
def rbac_sandbox():
    """TLS and an admin token, as a real API server: kubectl sends a bearer token only over HTTPS."""
    sb = start_sandbox(controllers=False, tls=True, token="admin-token-0123456789")
    for name in ("default", "ops", "other"):
        sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    for namespace in ("default", "other"):
        sb.apply_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": namespace},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    sb.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                     "metadata": {"name": "pod-reader", "namespace": "default"},
                     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                               {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]},
                               {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"],
                                "resourceNames": ["web"]}]})
    sb.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "reader", "namespace": "default"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                     "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "ops"}]})
    yield sb
    sb.stop()


def core(sb: Sandbox, token: str) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config_dict(sb.kubeconfig(token=token)))


def status_of(call) -> tuple[int, dict]:
    with pytest.raises(ApiException) as raised:
        call()
    return raised.value.status, json.loads(raised.value.body)


def test_a_bound_token_may_do_what_its_role_allows_and_gets_the_real_403_otherwise(rbac_sandbox):
    api = core(rbac_sandbox, rbac_sandbox.issue_token("ops", "reader"))
    assert api.read_namespaced_pod("web", "default").metadata.name == "web"            # allowed: get pods
    assert status_of(lambda: api.list_namespaced_pod("default")) == (403, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'pods is forbidden: User "{USER}" cannot list resource "pods" in API group "" in the '
                   'namespace "default"',
        "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
    code, body = status_of(lambda: api.read_namespaced_pod("web", "other"))            # bound in default only
    assert code == 403 and body["message"] == (f'pods "web" is forbidden: User "{USER}" cannot get resource '
                                               '"pods" in API group "" in the namespace "other"')
    assert body["details"] == {"name": "web", "kind": "pods"}
    code, body = status_of(lambda: api.list_node())
    assert body["message"] == (f'nodes is forbidden: User "{USER}" cannot list resource "nodes" in API group "" '
                               "at the cluster scope")


def test_groups_subresource_wildcards_and_resource_names_match_as_upstream(rbac_sandbox):
    apps = client.AppsV1Api(config.new_client_from_config_dict(
        rbac_sandbox.kubeconfig(token=rbac_sandbox.issue_token("ops", "reader"))))
    code, body = status_of(lambda: apps.read_namespaced_deployment_scale("web", "default"))
    assert code == 404, "*/scale allows the scale subresource: past RBAC, the Deployment does not exist"
    code, body = status_of(lambda: apps.read_namespaced_deployment("web", "default"))
    assert body["message"] == (f'deployments.apps "web" is forbidden: User "{USER}" cannot get resource '
                               '"deployments" in API group "apps" in the namespace "default"')
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    code, _ = status_of(lambda: apps.patch_namespaced_deployment("web", "default", {"metadata": {}}))
    assert code == 404, "resourceNames [web] allows patching web"
    code, body = status_of(lambda: apps.patch_namespaced_deployment("api", "default", {"metadata": {}}))
    assert code == 403 and 'cannot patch resource "deployments" in API group "apps"' in body["message"]
    code, body = status_of(lambda: apps.patch_namespaced_deployment_scale("web", "default", {"spec": {}}))
    assert code == 403 and 'cannot patch resource "deployments/scale"' in body["message"]


def test_the_admin_and_unknown_paths_and_decisions_are_kept(rbac_sandbox):
    token = rbac_sandbox.issue_token("ops", "reader")
    admin = client.CoreV1Api(config.new_client_from_config_dict(rbac_sandbox.kubeconfig()))
    assert [p.metadata.namespace for p in admin.list_pod_for_all_namespaces().items] == ["default", "other"]
    api = core(rbac_sandbox, token)
    api.read_namespaced_pod("web", "default")
    status_of(lambda: api.delete_namespaced_pod("web", "default"))
    decided = [(d.attributes.verb, d.attributes.resource, d.allowed, d.rule) for d in rbac_sandbox.rbac.decisions]
    assert decided == [("get", "pods", True, ("Role", "pod-reader", 0)), ("delete", "pods", False, None)]


@pytest.mark.kubectl
@pytest.mark.parametrize("version", available_versions() or ["missing"])
def test_kubectl_prints_the_servers_forbidden_message(rbac_sandbox, tmp_path, version):
    binary = kubectl_binary(version) or ("kubectl" if version == "path" else None)
    if binary is None:
        pytest.skip("no kubectl on this machine")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(rbac_sandbox.kubeconfig(token=rbac_sandbox.issue_token("ops", "reader"))))
    kubectl = Kubectl(binary, kubeconfig)
    assert kubectl.run("-n", "default", "get", "pod", "web", "-o", "name").stdout.strip() == "pod/web"
    denied = kubectl.run("-n", "default", "get", "pods", check=False)
    assert denied.returncode == 1
    assert (f'Error from server (Forbidden): pods is forbidden: User "{USER}" cannot list resource "pods" in API '
            'group "" in the namespace "default"') in denied.stderr
