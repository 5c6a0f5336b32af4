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


def bind(sb: Sandbox, name: str, rules: list[dict], *, namespace: str = "default") -> str:
    """A Role with `rules` bound in `namespace` to the ServiceAccount ops/<name>; that account's token."""
    sb.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                     "metadata": {"name": name, "namespace": namespace}, "rules": rules})
    sb.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": name, "namespace": namespace},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                     "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "ops"}]})
    return sb.issue_token("ops", name)


def test_subresources_are_their_own_grants_as_upstream(rbac_sandbox):
    """pods/eviction (create), pods/log (get) and deployments/scale (get, patch) are authorized as
    `<resource>/<subresource>`: `pods` alone grants none of them, and each grants nothing more."""
    rbac_sandbox.apply_object({"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": "web", "namespace": "default"},
                               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
                                   "metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    pods_only = bind(rbac_sandbox, "pods-only", [{"apiGroups": [""], "resources": ["pods"],
                                                  "verbs": ["get", "create"]}])
    sub = bind(rbac_sandbox, "sub", [{"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
                                     {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                                     {"apiGroups": ["apps"], "resources": ["deployments/scale"],
                                      "verbs": ["get", "patch"]}])
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name="web", namespace="default"))
    user = "system:serviceaccount:ops:pods-only"
    api = core(rbac_sandbox, pods_only)
    code, body = status_of(lambda: api.create_namespaced_pod_eviction("web", "default", eviction))
    assert (code, body["message"], body["details"]) == (403, (
        f'pods "web" is forbidden: User "{user}" cannot create resource "pods/eviction" in API group "" in the '
        'namespace "default"'), {"name": "web", "kind": "pods"})
    code, body = status_of(lambda: api.read_namespaced_pod_log("web", "default"))
    assert code == 403 and f'cannot get resource "pods/log" in API group ""' in body["message"]
    apps = client.AppsV1Api(config.new_client_from_config_dict(rbac_sandbox.kubeconfig(token=sub)))
    assert apps.read_namespaced_deployment_scale("web", "default").spec.replicas == 1
    assert apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 2}}).spec.replicas == 2
    code, body = status_of(lambda: apps.read_namespaced_deployment("web", "default"))
    assert code == 403 and 'cannot get resource "deployments" in API group "apps"' in body["message"]
    api = core(rbac_sandbox, sub)
    assert isinstance(api.read_namespaced_pod_log("web", "default"), str)
    api.create_namespaced_pod_eviction("web", "default", eviction)                       # 201: evicted
    assert rbac_sandbox.store.find(rbac_sandbox.resource("Pod"), "default", "web") is None or \
        rbac_sandbox.get("Pod", "web", "default")["metadata"].get("deletionTimestamp")
    code, body = status_of(lambda: api.read_namespaced_pod("web", "other"))
    assert code == 403 and 'cannot get resource "pods"' in body["message"]


def test_a_token_it_never_issued_is_unauthorized_and_a_missing_role_is_the_reason(rbac_sandbox):
    rbac_sandbox.issue_token("ops", "reader")
    stranger = core(rbac_sandbox, "not-a-token-it-issued")
    assert status_of(lambda: stranger.list_namespaced_pod("default")) == (401, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
        "reason": "Unauthorized", "code": 401})
    rbac_sandbox.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                               "metadata": {"name": "dangling"},
                               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                           "name": "gone"},
                               "subjects": [{"kind": "ServiceAccount", "name": "orphan", "namespace": "ops"}]})
    code, body = status_of(lambda: core(rbac_sandbox, rbac_sandbox.issue_token("ops", "orphan")).list_node())
    assert (code, body["message"]) == (403, 'nodes is forbidden: User "system:serviceaccount:ops:orphan" cannot '
                                            'list resource "nodes" in API group "" at the cluster scope: RBAC: '
                                            'clusterrole.rbac.authorization.k8s.io "gone" not found')


def test_an_aggregated_clusterrole_holds_the_rules_of_the_roles_it_selects(sandbox):
    """kube-controller-manager's clusterrole-aggregation: the union, each rule once, kept up to date."""
    label = {"example/aggregate-to-ops": "true"}
    read = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    scale = {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]}
    sandbox.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                          "metadata": {"name": "ops"}, "rules": [],
                          "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": label}]}})
    for name, rules, labels in (("ops-b", [read, scale], label), ("ops-a", [read], label),
                                ("unrelated", [{**read, "verbs": ["delete"]}], {})):
        sandbox.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                              "metadata": {"name": name, "labels": labels}, "rules": rules})
    sandbox.wait_for(lambda: sandbox.get("ClusterRole", "ops")["rules"] == [read, scale])
    sandbox.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                          "metadata": {"name": "ops-b", "labels": label}, "rules": [read]})
    sandbox.wait_for(lambda: sandbox.get("ClusterRole", "ops")["rules"] == [read])
    sandbox.apply_object({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                          "metadata": {"name": "ops"},
                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ops"},
                          "subjects": [{"kind": "ServiceAccount", "name": "ops", "namespace": "default"}]})
    api = core(sandbox, sandbox.issue_token("default", "ops"))
    assert api.list_namespaced_pod("default").items == []
    code, _ = status_of(lambda: api.delete_namespaced_pod("x", "default"))
    assert code == 403, "the unlabelled role's rules are not aggregated"


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
