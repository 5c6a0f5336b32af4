"""Defaulting and validation of RBAC objects (rbac.authorization.k8s.io/v1), as the real server's
defaulters and validators apply them. Nothing is enforced yet: these objects are stored and served."""
from __future__ import annotations

from typing import Callable

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")
Causes = list[tuple[str, str]]


def default_binding(obj: dict) -> None:
    """roleRef.apiGroup and User/Group subjects' apiGroup default to the RBAC group (SetDefaults_*); a
    ServiceAccount subject's stays empty, so it is not written at all (omitempty)."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for subject in obj.get("subjects") or []:
        if not isinstance(subject, dict):
            continue
        if subject.get("kind") in ("User", "Group"):
            subject.setdefault("apiGroup", GROUP)


def go_role_ref(ref: dict) -> str:
    """Go's %#v of an rbac.RoleRef, as field.Invalid prints it."""
    return (f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
            f'Name:"{ref.get("name", "")}"}}')


def _check_rules(obj: dict, old: dict | None, causes: Causes) -> None:
    for i, rule in enumerate(obj.get("rules") or []):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            causes.append((where, "Invalid value: must be an object"))
            continue
        if not rule.get("verbs"):
            causes.append((f"{where}.verbs", "Required value: verbs must contain at least one value"))
        if rule.get("nonResourceURLs") and (rule.get("resources") or rule.get("apiGroups")):
            causes.append((f"{where}.nonResourceURLs", "Invalid value: rules cannot apply to both regular "
                                                        "resources and non-resource URLs"))
        elif not rule.get("nonResourceURLs") and rule.get("resources") and not rule.get("apiGroups"):
            causes.append((f"{where}.apiGroups", "Required value: resource rules must supply at least one api group"))


def _check_binding(obj: dict, old: dict | None, causes: Causes, kinds: tuple[str, ...], namespaced: bool) -> None:
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        causes.append(("roleRef", "Required value"))
        return
    if ref.get("apiGroup") != GROUP:
        causes.append(("roleRef.apiGroup", f'Unsupported value: "{ref.get("apiGroup", "")}": supported values: '
                                           f'"{GROUP}"'))
    if ref.get("kind") not in kinds:
        causes.append(("roleRef.kind", f'Unsupported value: "{ref.get("kind", "")}": supported values: '
                                       + ", ".join(f'"{k}"' for k in kinds)))
    if not ref.get("name"):
        causes.append(("roleRef.name", "Required value"))
    for i, subject in enumerate(obj.get("subjects") or []):
        where = f"subjects[{i}]"
        kind = subject.get("kind") if isinstance(subject, dict) else None
        if kind not in SUBJECT_KINDS:
            causes.append((f"{where}.kind", f'Unsupported value: "{kind or ""}": supported values: '
                                            + ", ".join(f'"{k}"' for k in SUBJECT_KINDS)))
            continue
        if not subject.get("name"):
            causes.append((f"{where}.name", "Required value"))
        if kind == "ServiceAccount" and not namespaced and not subject.get("namespace"):
            causes.append((f"{where}.namespace", "Required value"))
    if old is not None and old.get("roleRef") != ref:
        causes.append(("roleRef", f"Invalid value: {go_role_ref(ref)}: cannot change roleRef"))


DEFAULTS: dict[str, Callable[[dict], None]] = {"RoleBinding": default_binding, "ClusterRoleBinding": default_binding}
CHECKS: dict[str, Callable[[dict, dict | None, Causes], None]] = {
    "Role": _check_rules, "ClusterRole": _check_rules,
    "RoleBinding": lambda obj, old, causes: _check_binding(obj, old, causes, ("Role", "ClusterRole"), True),
    "ClusterRoleBinding": lambda obj, old, causes: _check_binding(obj, old, causes, ("ClusterRole",), False),
}
