"""The shipped least-privilege RBAC (deployments/kubernetes/rbac.yaml) inside a sandbox that enforces it.

Why: the rollback runbook's flow tests run as the `runbooks` ServiceAccount bound to the shipped ClusterRole
(the catalog's kubeconfig carries its token), so a call the ClusterRole does not grant fails a test with the
real 403; what the tests did is kept, so a granted (group, resource, verb) that no test used shows up.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from sandbox.server import Sandbox

RBAC_YAML = Path(__file__).resolve().parent.parent / "deployments" / "kubernetes" / "rbac.yaml"
NAMESPACE = "runbooks"                     # kustomization.yaml's namespace
USER = f"system:serviceaccount:{NAMESPACE}:runbooks"


def shipped(kind: str, rules: list | None = None) -> list[dict]:
    """The rbac.yaml objects, namespaced as kustomize namespaces them (and `rules` replaced, when given)."""
    documents = [d for d in yaml.safe_load_all(RBAC_YAML.read_text()) if d]
    for document in documents:
        if document["kind"] == "ServiceAccount":
            document["metadata"]["namespace"] = NAMESPACE
        if document["kind"] == "ClusterRole" and rules is not None:
            document["rules"] = rules
    return documents if kind == "*" else [d for d in documents if d["kind"] == kind]


def runbooks_token(sandbox: Sandbox, *, rules: list | None = None) -> str:
    """Apply the shipped ServiceAccount, ClusterRole (or one with `rules`) and binding; the account's token."""
    sandbox.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    for document in shipped("*", rules):
        sandbox.apply_object(document)
    return sandbox.issue_token(NAMESPACE, "runbooks")


def granted() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) for every grant of the shipped ClusterRole."""
    [role] = shipped("ClusterRole")
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def exercised(sandbox: Sandbox) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every request the runbooks' account made and the ClusterRole allowed."""
    return {(d.attributes.group, d.attributes.combined, d.attributes.verb) for d in sandbox.rbac.decisions
            if d.user == USER and d.allowed and d.rule and d.rule[:2] == ("ClusterRole", "runbooks")}


def denied(sandbox: Sandbox) -> list[str]:
    return [f"{d.attributes.verb} {d.attributes.combined} ({d.attributes.group or 'core'})"
            for d in sandbox.rbac.decisions if d.user == USER and not d.allowed]
