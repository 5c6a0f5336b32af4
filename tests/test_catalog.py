"""catalog.yaml: typed loading, clear errors, lookups that name the allowed values."""
from __future__ import annotations

import pytest

from sandbox.catalog import demo_catalog
from tasks.catalog import load_catalog
from tasks.errors import CatalogError, TargetNotFound


def test_repository_catalog_and_sandbox_catalog_load(tmp_path):
    assert load_catalog().environments                      # catalog.yaml at the repo root
    import yaml
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(demo_catalog(tmp_path / "kubeconfig")))
    catalog = load_catalog(path)
    assert catalog.service("production", "payments-api").namespace == "payments"
    assert catalog.environment("staging").approval.policy == "auto"


def test_runbooks_catalog_variable_points_at_another_file(tmp_path, monkeypatch):
    path = tmp_path / "other.yaml"
    path.write_text("environments:\n  lab:\n    cluster: {kind: in-cluster}\n")
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(path))
    assert list(load_catalog().environments) == ["lab"]


@pytest.mark.parametrize("text, message", [
    ("environments: {prod: {cluster: {kind: gke}}}", "prod.cluster"),
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


def test_unknown_names_list_the_allowed_values(tmp_path):
    import yaml
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(demo_catalog(tmp_path / "kubeconfig")))
    catalog = load_catalog(path)
    with pytest.raises(TargetNotFound, match="allowed: production, staging"):
        catalog.environment("prod")
    with pytest.raises(TargetNotFound, match="allowed: cart, checkout-web, payments-api"):
        catalog.service("production", "payment-api")
