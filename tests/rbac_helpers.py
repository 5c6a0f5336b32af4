"""Run a runbook's flow tests as the `runbooks` ServiceAccount under the shipped RBAC, on a sandbox that
enforces it (sandbox/kubernetes/rbac.py).

Why: least privilege is only proven by running the runbooks under it. The RBAC objects are taken from
`kubectl kustomize deployments/kubernetes`, exactly what a cluster gets: the `runbooks` ClusterRole is
aggregated from one ClusterRole per runbook (deployments/kubernetes/rbac/<runbook>.yaml). Three checks:

- a call the shipped ClusterRole does not grant fails the test that made it (the real 403 reaches the
  runbook as AccessDenied; the fixture's teardown names the call);
- a call allowed only by another runbook's rules fails too: each runbook's own ClusterRole must cover it;
- `assert_every_grant_used` (the module's last test) fails when a (group, resource, verb) of the module's own
  ClusterRole was never used by its tests: a rule too wide is visible and must go, or get a test.

Use, in a runbook's flow test module (docs/sandbox.md, "RBAC: running a runbook's tests under its role"):

    from tests.rbac_helpers import assert_every_grant_used, rbac_ledger, runbooks_token  # noqa: F401
    RBAC_ROLE = "runbooks-scale-service"          # its ClusterRole in deployments/kubernetes/rbac/

    @pytest.fixture
    def catalog(demo_sandbox, tmp_path, monkeypatch, runbooks_token):
        kubeconfig_token = runbooks_token(demo_sandbox)    # write_catalog(..., token=kubeconfig_token)

    def test_every_grant_of_the_scale_service_role_is_used(request):     # last in the module
        assert_every_grant_used(request)
"""
from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from sandbox.kubernetes.controllers.rbac import aggregated_rules
from sandbox.kubernetes.rbac import Decision, rule_allows
from sandbox.server import Sandbox

KUSTOMIZATION = Path(__file__).resolve().parent.parent / "deployments" / "kubernetes"
NAMESPACE = "runbooks"                     # kustomization.yaml's namespace
ACCOUNT = "runbooks"
USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding")
Grant = tuple[str, str, str]               # (API group, resource[/subresource], verb)


@functools.lru_cache(maxsize=1)
def _built() -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to build deployments/kubernetes (it is on every machine here)"
    done = subprocess.run([kubectl, "kustomize", str(KUSTOMIZATION)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def shipped() -> list[dict]:
    """The runbooks' ServiceAccount, and every ClusterRole and ClusterRoleBinding, as kustomize builds them."""
    documents = [d for d in yaml.safe_load_all(_built()) if d]
    return [d for d in documents if d["kind"] in RBAC_KINDS
            or (d["kind"] == "ServiceAccount" and d["metadata"]["name"] == ACCOUNT)]


def role_rules(name: str) -> list[dict]:
    role = next((d for d in shipped() if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name), None)
    assert role is not None, f"no ClusterRole {name} in deployments/kubernetes (add rbac/<runbook>.yaml there)"
    return role.get("rules") or []


def grants(rules: list[dict]) -> set[Grant]:
    """Every (group, resource, verb) the rules grant (the shipped ones have no wildcards: a test checks)."""
    return {(group, resource, verb) for rule in rules for group in rule.get("apiGroups", [])
            for resource in rule.get("resources", []) for verb in rule["verbs"]}


def without(documents: list[dict], grant: Grant) -> list[dict]:
    """The same objects with `grant` taken out of every ClusterRole (the proof that a missing grant fails)."""
    group, resource, verb = grant
    out = yaml.safe_load(yaml.safe_dump(documents))
    for document in out:
        for rule in document.get("rules") or []:
            if group in rule.get("apiGroups", []) and resource in rule.get("resources", []):
                rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return out


def apply_shipped(sandbox: Sandbox, documents: list[dict] | None = None) -> str:
    """Apply the shipped RBAC (or `documents`), wait for the control plane to aggregate the `runbooks`
    ClusterRole, and return a token of the runbooks ServiceAccount."""
    documents = shipped() if documents is None else documents
    sandbox.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    for document in documents:
        sandbox.apply_object(document)
    roles = sorted((d for d in documents if d["kind"] == "ClusterRole"), key=lambda d: d["metadata"]["name"])
    for role in roles:
        selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors")
        if selectors is not None:
            expected = aggregated_rules(role["metadata"]["name"], selectors, roles)
            sandbox.wait_for(lambda: sandbox.get("ClusterRole", role["metadata"]["name"]).get("rules") == expected,
                             timeout=10)
    return sandbox.issue_token(NAMESPACE, ACCOUNT)


def calls(sandbox: Sandbox) -> list[Decision]:
    return [d for d in sandbox.rbac.decisions if d.user == USER]


def describe(decision: Decision) -> str:
    a = decision.attributes
    where = f" in {a.namespace}" if a.namespace else ""
    return f"{a.verb} {a.combined} (group {a.group or 'core'!r}){where}"


@dataclass
class Ledger:
    """What one test module's runs did as the runbooks' account, against its runbook's own ClusterRole."""
    role: str
    granted: set[Grant]
    rules: list[dict]
    used: set[Grant] = field(default_factory=set)
    tests: set[str] = field(default_factory=set)

    def record(self, sandbox: Sandbox) -> tuple[list[str], list[str]]:
        """Add the sandbox's allowed calls; return (denied calls, calls outside this runbook's own role)."""
        made = calls(sandbox)
        allowed = [d for d in made if d.allowed and d.attributes.resource_request]
        self.used |= {(d.attributes.group, d.attributes.combined, d.attributes.verb) for d in allowed}
        outside = [describe(d) for d in allowed if not any(rule_allows(r, d.attributes) for r in self.rules)]
        return [describe(d) for d in made if not d.allowed], sorted(set(outside))


@pytest.fixture(scope="module")
def rbac_ledger(request) -> Ledger:
    """The module's ledger; the module names its runbook's ClusterRole in `RBAC_ROLE`."""
    role = getattr(request.module, "RBAC_ROLE", None)
    assert role, f"{request.module.__name__} must set RBAC_ROLE to its runbook's ClusterRole name"
    rules = role_rules(role)
    return Ledger(role, grants(rules), rules)


@pytest.fixture
def runbooks_token(rbac_ledger: Ledger, request) -> Iterator[Callable[[Sandbox], str]]:
    """`runbooks_token(sandbox)`: apply the shipped RBAC there and return the account's token. After the
    test, every call made with it must have been allowed, and allowed by the module's own ClusterRole."""
    used: list[Sandbox] = []

    def issue(sandbox: Sandbox) -> str:
        used.append(sandbox)
        return apply_shipped(sandbox)
    yield issue
    denied, outside = [], []
    for sandbox in used:
        d, o = rbac_ledger.record(sandbox)
        denied += d
        outside += o
    rbac_ledger.tests.add(request.node.nodeid)
    assert denied == [], f"the shipped ClusterRole does not grant these calls: {denied}"
    assert outside == [], f"allowed only by another runbook's rules; add them to {rbac_ledger.role}: {outside}"


def assert_every_grant_used(request) -> None:
    """Fail when a grant of the module's own ClusterRole was never used by the module's tests (run last)."""
    ledger: Ledger = request.getfixturevalue("rbac_ledger")
    config = request.config
    expected = {item.nodeid for item in request.session.items
                if getattr(item, "module", None) is request.module and "runbooks_token" in item.fixturenames}
    this_file = Path(request.module.__file__).resolve()
    picked = [a for a in map(str, config.args) if "::" in a and Path(a.split("::")[0]).resolve() == this_file]
    partial = (config.option.keyword or config.option.markexpr or picked or config.getoption("lf", False)
               or expected - ledger.tests)
    if partial:
        pytest.skip("needs every test of the module to have run (run the whole file)")
    unused = sorted(ledger.granted - ledger.used)
    assert unused == [], (f"{ledger.role} grants (group, resource, verb) that no test of this module used: "
                          f"{unused}. Remove them from its rbac/*.yaml, or add a test that needs them.")
