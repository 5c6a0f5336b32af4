"""Typed targets: every kind has a key naming the object itself, and survives a round trip through JSON."""
from __future__ import annotations

from pydantic import TypeAdapter

from plans.targets import (CertificateTarget, DeploymentTarget, NodePoolTarget, NodeTarget, RepositoryTarget, Target,
                           change_record_key, lock_name)

TARGETS = [
    DeploymentTarget(environment="production", cluster="https://aks:443", service="payments-api", namespace="payments",
                     deployment="payments-api"),
    NodePoolTarget(environment="production", cluster="/subscriptions/s/resourcegroups/rg/providers/"
                   "microsoft.containerservice/managedclusters/aks", pool="user"),
    NodeTarget(environment="production", cluster="https://aks:443", node="aks-user-1-vmss000000"),
    CertificateTarget(environment="production", cluster="https://aks:443", namespace="payments", certificate="tls"),
    RepositoryTarget(environment="production", cluster="github.com", repository="example/payments-api"),
]


def test_each_kind_has_its_own_key_label_and_resource():
    assert [t.key for t in TARGETS] == [
        "https://aks:443/payments/Deployment/payments-api",
        "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks/-/AgentPool/user",
        "https://aks:443/-/Node/aks-user-1-vmss000000", "https://aks:443/payments/Certificate/tls",
        "github.com/-/Repository/example/payments-api"]
    assert [t.label for t in TARGETS] == ["production/payments-api", "production/node pool user",
                                          "production/node aks-user-1-vmss000000", "production/certificate payments/tls",
                                          "production/example/payments-api"]
    assert TARGETS[0].resource == "deployment payments/payments-api" and TARGETS[2].resource == "node aks-user-1-vmss000000"


def test_targets_round_trip_as_the_union_the_run_record_holds():
    adapter = TypeAdapter(Target)
    for target in TARGETS:
        assert adapter.validate_json(target.model_dump_json()) == target


def test_keys_ignore_catalog_names_and_lock_names_are_distinct_per_object():
    staging_name = TARGETS[0].model_copy(update={"environment": "staging", "service": "payments"})
    assert staging_name.key == TARGETS[0].key and lock_name(staging_name.key) == lock_name(TARGETS[0].key)
    names = {lock_name(t.key) for t in TARGETS} | {change_record_key(t.key) for t in TARGETS}
    assert len(names) == 2 * len(TARGETS)
