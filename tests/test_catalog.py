"""The catalog: typed loading, clear errors, lookups that name the allowed values, and no silent defaults."""
from __future__ import annotations

import pytest
import yaml

from sandbox.catalog import demo_catalog
from tasks.catalog import EXAMPLE_CATALOG, load_catalog
from tasks.errors import CatalogError, TargetNotFound


def kubeconfig(path, *contexts: str, server: str = "https://127.0.0.1:6443"):
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts]}))
    return path


def write(tmp_path, environments: dict):
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"environments": environments}))
    return path


def test_example_catalog_and_sandbox_catalog_load(tmp_path):
    assert load_catalog(EXAMPLE_CATALOG).environments
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(demo_catalog(kubeconfig(tmp_path / "kubeconfig", "sandbox"))))
    catalog = load_catalog(path)
    assert catalog.service("production", "payments-api").namespace == "payments"
    assert catalog.environment("staging").approval.policy == "auto"
    assert catalog.source == str(path.resolve())


def test_no_catalog_named_is_an_error_never_the_example_estate(monkeypatch):
    monkeypatch.delenv("RUNBOOKS_CATALOG", raising=False)
    with pytest.raises(CatalogError, match="no catalog: set RUNBOOKS_CATALOG.*never used implicitly"):
        load_catalog()


def test_runbooks_catalog_variable_points_at_another_file(tmp_path, monkeypatch):
    path = tmp_path / "other.yaml"
    path.write_text("environments:\n  lab:\n    cluster: {kind: in-cluster}\n")
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(path))
    assert list(load_catalog().environments) == ["lab"]


@pytest.mark.parametrize("text, message", [
    ("environments: {prod: {cluster: {kind: gke}}}", "prod.cluster"),
    ("environments: {prod: {cluster: {kind: kubeconfig}}}", r"prod.cluster.kubeconfig.context\n  Field required"),
    ("environments: {prod: {cluster: {kind: in-cluster}, approval: {policy: three}}}", "policy"),
    ("environments: {prod: {cluster: {kind: in-cluster}, servcies: {}}}", "servcies"),
    ("environments: {prod: {cluster: {kind: in-cluster}, freeze_windows: [{start: 2026-01-02T00:00:00Z, "
     "end: 2026-01-01T00:00:00Z}]}}", "before it starts"),
    ("environments: [", "not valid YAML"),
])
def test_invalid_catalog_names_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)


def test_missing_catalog_says_how_to_point_at_one(tmp_path):
    with pytest.raises(CatalogError, match="RUNBOOKS_CATALOG"):
        load_catalog(tmp_path / "nope.yaml")


def test_two_entries_for_one_deployment_with_different_policies_are_refused(tmp_path):
    """Two contexts of one API server are one cluster: staging (auto) must not reach production's objects."""
    config = kubeconfig(tmp_path / "kubeconfig", "prod", "stage")
    service = {"payments-api": {"namespace": "payments", "deployment": "payments-api"}}
    path = write(tmp_path, {
        "production": {"cluster": {"kind": "kubeconfig", "kubeconfig": str(config), "context": "prod"},
                       "approval": {"policy": "one"}, "services": service},
        "staging": {"cluster": {"kind": "kubeconfig", "kubeconfig": str(config), "context": "stage"},
                    "approval": {"policy": "auto"}, "services": {"payments": service["payments-api"]}}})
    with pytest.raises(CatalogError, match="production/payments-api and staging/payments are the same Deployment "
                                           "payments/payments-api on https://127.0.0.1:6443"):
        load_catalog(path)


def test_the_same_deployment_on_different_clusters_is_two_objects(tmp_path):
    prod = kubeconfig(tmp_path / "prod", "prod", server="https://prod.example:443")
    stage = kubeconfig(tmp_path / "stage", "stage", server="https://stage.example:443")
    service = {"payments-api": {"namespace": "payments", "deployment": "payments-api"}}
    catalog = load_catalog(write(tmp_path, {
        "production": {"cluster": {"kind": "kubeconfig", "kubeconfig": str(prod), "context": "prod"},
                       "approval": {"policy": "one"}, "services": service},
        "staging": {"cluster": {"kind": "kubeconfig", "kubeconfig": str(stage), "context": "stage"},
                    "approval": {"policy": "auto"}, "services": service}}))
    a, b = (catalog.deployment_target(env, "payments-api") for env in ("production", "staging"))
    assert a.key == "https://prod.example:443/payments/Deployment/payments-api" and a.key != b.key


def test_aks_clusters_are_keyed_by_their_resource_id(tmp_path):
    catalog = load_catalog(write(tmp_path, {"production": {
        "cluster": {"kind": "aks", "subscription_id": "SUB", "resource_group": "RG", "name": "AKS-1"},
        "services": {"api": {"namespace": "n", "deployment": "d"}}}}))
    assert catalog.deployment_target("production", "api").cluster == \
        "/subscriptions/sub/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks-1"


def test_unknown_names_list_the_allowed_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(demo_catalog(kubeconfig(tmp_path / "kubeconfig", "sandbox"))))
    catalog = load_catalog(path)
    with pytest.raises(TargetNotFound, match="allowed: production, staging"):
        catalog.environment("prod")
    with pytest.raises(TargetNotFound, match="allowed: cart, checkout-web, payments-api"):
        catalog.service("production", "payment-api")
