"""RBAC enforcement for ServiceAccount tokens, as kube-apiserver's RBAC authorizer decides.

Why: a least-privilege ClusterRole is only proven by running the runbooks under it. A token issued with
`Sandbox.issue_token(namespace, name)` authenticates as `system:serviceaccount:<ns>:<name>` (groups
`system:serviceaccounts`, `system:serviceaccounts:<ns>`, `system:authenticated`), and each of its requests
is allowed only when a rule of a Role or ClusterRole bound to it (RoleBindings in the request's namespace,
ClusterRoleBindings) matches the verb, API group, resource (with subresource) and name, with the upstream
matching rules (`*`, `*/subresource`, resourceNames, nonResourceURLs). Anything else is 403 Forbidden with
the real server's Status and message. The admin token (and, on a sandbox with no token, any request) is
unrestricted, as a cluster-admin kubeconfig is. Discovery and version paths are open to every
authenticated token, as the default `system:discovery` and `system:public-info-viewer` bindings make them.

Every decision is kept (`decisions`), so a test can list which granted rules were never used.
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import errors

if TYPE_CHECKING:
    from ..common.http import Request
    from .store import Store

DISCOVERY_PATHS = ("/api", "/apis", "/version", "/openapi", "/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    namespace: str = ""
    service_account: str = ""


@dataclass(frozen=True)
class Attributes:
    """What is asked, as authorizer.Attributes names it."""
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True

    @property
    def combined(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Decision:
    user: str
    attributes: Attributes
    allowed: bool
    rule: tuple[str, str, int] | None = None      # (Role|ClusterRole, name, rule index) that allowed it


class Authorizer:
    def __init__(self, store: "Store") -> None:
        self.store = store
        self.tokens: dict[str, User] = {}
        self.decisions: list[Decision] = []
        self._lock = threading.Lock()

    def issue_token(self, namespace: str, service_account: str) -> str:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = User(f"system:serviceaccount:{namespace}:{service_account}",
                                  ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                   "system:authenticated"), namespace, service_account)
        return token

    def user_for(self, authorization: str) -> User | None:
        scheme, _, token = authorization.partition(" ")
        return self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None

    def check(self, user: User, request: "Request") -> None:
        """Raise Forbidden unless RBAC allows the request; record the decision either way."""
        attributes = attributes_of(request)
        rule, missing = self.allowing_rule(user, attributes)
        allowed = rule is not None or (not attributes.resource_request and attributes.path.startswith(DISCOVERY_PATHS))
        with self._lock:
            self.decisions.append(Decision(user.name, attributes, allowed, rule))
        if not allowed:
            raise forbidden(user, attributes, rbac_reason(missing))

    def allowing_rule(self, user: User, attributes: Attributes) -> tuple[tuple[str, str, int] | None, list[str]]:
        """The first rule (as the RBAC authorizer visits them) that allows the request, or None; and the
        bound roles that do not exist (the authorizer's reason when it denies)."""
        missing = []
        for kind, role_name, namespace in self._roles_of(user, attributes.namespace):
            role = self._find(kind, role_name, namespace)
            if role is None:
                missing.append(f'{kind.lower()}.rbac.authorization.k8s.io "{role_name}" not found')
            for index, rule in enumerate((role or {}).get("rules") or []):
                if rule_allows(rule, attributes):
                    return (kind, role_name, index), missing
        return None, missing

    def _roles_of(self, user: User, namespace: str) -> list[tuple[str, str, str | None]]:
        roles = []
        for binding in self._items("ClusterRoleBinding", None):
            if any(_subject_matches(s, user, None) for s in binding.get("subjects") or []):
                roles.append(("ClusterRole", binding["roleRef"]["name"], None))
        if namespace:
            for binding in self._items("RoleBinding", namespace):
                if any(_subject_matches(s, user, namespace) for s in binding.get("subjects") or []):
                    ref = binding["roleRef"]
                    roles.append((ref["kind"], ref["name"], namespace if ref["kind"] == "Role" else None))
        return roles

    def _items(self, kind: str, namespace: str | None) -> list[dict]:
        from .resources import RESOURCES
        resource = next(r for r in RESOURCES if r.kind == kind)
        with self.store.lock:
            return list(self.store.items(resource, namespace))

    def _find(self, kind: str, name: str, namespace: str | None) -> dict | None:
        from .resources import RESOURCES
        resource = next(r for r in RESOURCES if r.kind == kind)
        with self.store.lock:
            return self.store.find(resource, namespace, name)


def attributes_of(request: "Request") -> Attributes:
    """The request's authorization attributes, as RequestInfoFactory builds them (a list or watch with a
    `metadata.name=` field selector asks for that one name)."""
    from .routing import k8s_verb
    target = request.state.get("target")
    if target is None:
        return Attributes(verb=request.method.lower(), path=request.path, resource_request=False)
    verb = k8s_verb(request.method, target, request.flag("watch"))
    name = target.name or ""
    selector = request.query.get("fieldSelector", "")
    if verb in ("list", "watch") and selector.startswith("metadata.name=") and "," not in selector:
        name = selector.removeprefix("metadata.name=")
    return Attributes(verb=verb, group=target.resource.group, resource=target.resource.plural,
                      subresource=target.subresource or "", namespace=target.namespace or "", name=name,
                      path=request.path)


def rule_allows(rule: dict, a: Attributes) -> bool:
    """rbac/v1 PolicyRule matching, as pkg/apis/rbac/v1/evaluation_helpers.go does it."""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.resource_request:
        return any(url == "*" or url == a.path or (url.endswith("*") and a.path.startswith(url[:-1]))
                   for url in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    if not any(r == "*" or r == a.combined or (a.subresource and r == f"*/{a.subresource}")
               for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _subject_matches(subject: dict, user: User, binding_namespace: str | None) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        return (name == user.service_account
                and (subject.get("namespace") or binding_namespace or "") == user.namespace)
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    return False


def rbac_reason(missing: list[str]) -> str:
    """The RBAC authorizer's reason: its visitor's errors, aggregated as utilerrors.NewAggregate prints them."""
    if not missing:
        return ""
    return "RBAC: " + (missing[0] if len(missing) == 1 else "[" + ", ".join(missing) + "]")


def forbidden(user: User, a: Attributes, reason: str = "") -> errors.ApiError:
    """403 as responsewriters.Forbidden writes it (apierrors.NewForbidden around forbiddenMessage, then
    `: <reason>` when the authorizer gave one)."""
    suffix = f": {reason}" if reason else ""
    if not a.resource_request:
        return errors.ApiError(403, "Forbidden",
                               f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"{suffix}')
    scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    why = (f'User "{user.name}" cannot {a.verb} resource "{a.combined}" in API group "{a.group}" {scope}{suffix}')
    qualified = f"{a.resource}.{a.group}" if a.group else a.resource
    message = f'{qualified} "{a.name}" is forbidden: {why}' if a.name else f"{qualified} is forbidden: {why}"
    details = {"name": a.name} if a.name else {}
    if a.group:
        details["group"] = a.group
    details["kind"] = a.resource
    return errors.ApiError(403, "Forbidden", message, details=details)


__all__ = ["Attributes", "Authorizer", "Decision", "User", "attributes_of", "forbidden", "rule_allows"]
