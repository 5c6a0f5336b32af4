"""Field selectors, following kube-apiserver semantics (k8s.io/apimachinery/pkg/fields: ParseSelector,
UnescapeValue) and the real server's per-kind field-label conversion and ToSelectableFields functions.
Error strings are the ones the real server puts in its 400 BadRequest Status message. Pure code, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .selector_errors import SelectorError, _go_quote


_DEFAULT_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def _escape_field_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, str, str], ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        # fields.Set.Get returns "" for an absent field
        for f, op, v in self.terms:
            if (fields.get(f, "") == v) != (op == "="):
                return False
        return True

    def requirements(self) -> tuple[tuple[str, str, str], ...]:
        return self.terms

    @property
    def empty(self) -> bool:
        return not self.terms

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{_escape_field_value(v)}" for f, op, v in self.terms)


def _split_terms(s: str) -> list[str]:
    if not s:
        return []
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(s):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape_value(s: str) -> str:
    if not any(c in s for c in "\\,="):
        return s
    out, in_slash = [], False
    for c in s:
        if in_slash:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":  # Go prints the rune with %v, i.e. as its code point number
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(text: str | None, *, supported: Iterable[str], kind: str | None = None) -> FieldSelector:
    """fields.ParseSelector followed by the kind's field-label conversion.

    An unsupported field raises the real server's message: 'field label not supported: <field>'
    for kinds with their own conversion func; kinds that only have the default conversion
    (supported == {metadata.name, metadata.namespace}) get
    '"<field>" is not a known field selector: only "metadata.name", "metadata.namespace"'.
    Pass `kind` to pick the message by kind instead of by the supported set."""
    text = text or ""
    parts = sorted(_split_terms(text))
    parsed: list[tuple[str, str, str]] = []
    for part in parts:
        if part == "":
            continue
        t = _split_term(part)
        if t is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = t
        parsed.append((lhs, "!=" if op == "!=" else "=", _unescape_value(rhs)))
    supported = frozenset(supported)
    if kind is not None:
        _, reject = _FIELD_RULES.get(kind, (_DEFAULT_FIELDS, _default_reject))
    else:
        reject = _default_reject if supported == _DEFAULT_FIELDS else _not_supported
    out = []
    for f, op, v in parsed:
        if f not in supported and f in _ALIASES and _ALIASES[f] in supported:
            f = _ALIASES[f]  # Pod: spec.host -> spec.nodeName (old v1 clients)
        elif f not in supported:
            raise SelectorError(reject(f))
        out.append((f, op, v))
    return FieldSelector(tuple(out))


def _not_supported(f: str) -> str:
    return f"field label not supported: {f}"


def _default_reject(f: str) -> str:
    return f'{_go_quote(f)} is not a known field selector: only "metadata.name", "metadata.namespace"'


_ALIASES = {"spec.host": "spec.nodeName"}

# kind -> (accepted field labels, rejection message) as registered by the real server's
# AddFieldLabelConversionFunc.  Kinds not listed use runtime.DefaultMetaV1FieldSelectorConversion
# (note: apps/v1 ReplicaSet registers none, so status.replicas is rejected by the real server).
_FIELD_RULES: dict[str, tuple[frozenset[str], Any]] = {
    "Pod": (frozenset({"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
                       "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                       "status.podIP", "status.podIPs", "status.nominatedNodeName"}), _not_supported),
    "Node": (frozenset({"metadata.name", "spec.unschedulable"}), _not_supported),
    "Namespace": (frozenset({"metadata.name", "status.phase"}), _not_supported),
    "Secret": (frozenset({"metadata.name", "metadata.namespace", "type"}), _not_supported),
    "ReplicationController": (frozenset({"metadata.name", "metadata.namespace", "status.replicas"}),
                              _not_supported),
    "Service": (frozenset({"metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"}),
                _not_supported),
    "Event": (frozenset({"metadata.name", "metadata.namespace", "involvedObject.kind",
                         "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                         "involvedObject.apiVersion", "involvedObject.resourceVersion",
                         "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}),
              _not_supported),
    "Job": (frozenset({"metadata.name", "metadata.namespace", "status.successful"}),
            lambda f: f"field label {_go_quote(f)} not supported for batchv1.Job"),
    "CertificateSigningRequest": (frozenset({"metadata.name", "spec.signerName"}), _not_supported),
}

CLUSTER_SCOPED_KINDS = frozenset({
    "Node", "Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass",
    "CustomResourceDefinition", "APIService", "PriorityClass", "CSIDriver", "CSINode",
    "VolumeAttachment", "IngressClass", "RuntimeClass", "CertificateSigningRequest",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "FlowSchema", "PriorityLevelConfiguration", "ComponentStatus",
})


def supported_fields(kind: str) -> frozenset[str]:
    """Field labels the real server accepts in fieldSelector for `kind`."""
    return _FIELD_RULES.get(kind, (_DEFAULT_FIELDS, None))[0]


def _get(obj: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(p)
    return obj


def _s(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _b(v: Any) -> str:
    return "true" if v is True or v == "true" else "false"


def _i(v: Any) -> str:
    try:
        return str(int(v or 0))
    except (TypeError, ValueError):
        return "0"


def object_fields(kind: str, obj: Mapping) -> dict[str, str]:
    """The field set (ToSelectableFields) the real server matches field selectors against."""
    g = lambda *p: _s(_get(obj, *p))  # noqa: E731
    fields = {"metadata.name": g("metadata", "name")}
    if kind not in CLUSTER_SCOPED_KINDS:
        fields["metadata.namespace"] = g("metadata", "namespace")
    if kind == "Pod":
        ips = _get(obj, "status", "podIPs")
        pod_ip = _s(_get(ips[0], "ip")) if isinstance(ips, list) and ips else g("status", "podIP")
        fields.update({
            "spec.nodeName": g("spec", "nodeName"), "spec.restartPolicy": g("spec", "restartPolicy"),
            "spec.schedulerName": g("spec", "schedulerName"),
            "spec.serviceAccountName": g("spec", "serviceAccountName"),
            "spec.hostNetwork": _b(_get(obj, "spec", "hostNetwork")), "status.phase": g("status", "phase"),
            "status.podIP": pod_ip, "status.nominatedNodeName": g("status", "nominatedNodeName"),
        })
    elif kind == "Secret":
        fields["type"] = g("type")
    elif kind == "Node":
        fields["spec.unschedulable"] = _b(_get(obj, "spec", "unschedulable"))
    elif kind == "Namespace":
        fields["status.phase"] = g("status", "phase")
    elif kind in ("ReplicaSet", "ReplicationController"):
        fields["status.replicas"] = _i(_get(obj, "status", "replicas"))
    elif kind == "Job":
        fields["status.successful"] = _i(_get(obj, "status", "succeeded"))
    elif kind == "Service":
        fields["spec.clusterIP"] = g("spec", "clusterIP")
        fields["spec.type"] = g("spec", "type")
    elif kind == "CertificateSigningRequest":
        fields["spec.signerName"] = g("spec", "signerName")
    elif kind == "Event":
        io = lambda k: g("involvedObject", k)  # noqa: E731
        fields.update({f"involvedObject.{k}": io(k) for k in (
            "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")})
        fields.update({
            "reason": g("reason"), "reportingComponent": g("reportingComponent"),
            "source": g("source", "component") or g("reportingComponent"), "type": g("type"),
        })
    return fields
