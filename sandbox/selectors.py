"""Label and field selectors, following kube-apiserver semantics.

Mirrors k8s.io/apimachinery/pkg/labels (selector.go: lexer, parser,
NewRequirement validation), metav1.LabelSelectorAsSelector, pkg/fields
(ParseSelector, UnescapeValue) and the per-kind field-label conversion funcs
and ToSelectableFields functions of the real server.  Error strings are the
ones the real server puts into its 400 BadRequest Status message.

Pure code, no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

__all__ = [
    "SelectorError", "Requirement", "LabelSelector", "FieldSelector",
    "parse_label_selector", "label_selector_from_object", "everything", "nothing",
    "parse_field_selector", "object_fields", "supported_fields",
]


class SelectorError(ValueError):
    """Invalid selector; str(err) is the message the real server puts in its
    400 BadRequest Status (e.g. 'unable to parse requirement: ...')."""


# --------------------------------------------------------------------------
# Go-compatible helpers (validation messages, %q quoting, field.Error format)
# --------------------------------------------------------------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_ERR = ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
              "and end with an alphanumeric character")
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_ERR = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_ERR = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric character")
_QNAME_RE = re.compile(_QNAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_INT64_RE = re.compile(r"[+-]?[0-9]+")


def _blen(s: str) -> int:  # Go len(): bytes
    return len(s.encode("utf-8", "surrogatepass"))


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    ex = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {ex}regex used for validation is '{fmt}')"


def _max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def _is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if _blen(value) > 253:
        errs.append(_max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_ERR, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def _is_qualified_name(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in _is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + _regex_error(_QNAME_ERR, _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif _blen(name) > 63:
        errs.append("name part " + _max_len_error(63))
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_QNAME_ERR, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def _is_valid_label_value(value: str) -> list[str]:
    errs = []
    if _blen(value) > 63:
        errs.append(_max_len_error(63))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_regex_error(_LABEL_VALUE_ERR, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


_GO_ESC = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
           "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_quote(s: str) -> str:
    """strconv.Quote / fmt %q."""
    out = []
    for ch in s:
        if ch in _GO_ESC:
            out.append(_GO_ESC[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _invalid(path: str, bad: Any, detail: str) -> str:
    """field.Invalid(path, bad, detail).Error()."""
    if isinstance(bad, str):
        shown = _go_quote(bad)
    else:  # []string: json.Marshal (nil slice -> null)
        shown = json.dumps(list(bad) if bad else None, separators=(",", ":"), ensure_ascii=False)
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(errs: list[str]) -> str | None:
    """utilerrors.NewAggregate(errs).Error()."""
    uniq = list(dict.fromkeys(errs))
    if not uniq:
        return None
    return uniq[0] if len(uniq) == 1 else "[" + ", ".join(uniq) + "]"


# --------------------------------------------------------------------------
# Label selectors
# --------------------------------------------------------------------------

# selection.Operator values
IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
GREATER_THAN, LESS_THAN, EXISTS, DOES_NOT_EXIST = "gt", "lt", "exists", "!"
_BINARY_OPS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]


def _new_requirement(key: str, op: str, vals: list[str], path: str | None) -> "Requirement":
    """labels.NewRequirement; path None means a nil field.Path."""
    def child(name: str) -> str:
        return name if path is None else f"{path}.{name}"

    errs: list[str] = []
    kerrs = _is_qualified_name(key)
    if kerrs:
        errs.append(_invalid(child("key"), key, "; ".join(kerrs)))
    vpath = child("values")
    if op in (IN, NOT_IN):
        if not vals:
            errs.append(_invalid(vpath, vals, "for 'in', 'notin' operators, values set can't be empty"))
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append(_invalid(vpath, vals, "exact-match compatibility requires one single value"))
    elif op in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append(_invalid(vpath, vals, "values set must be empty for exists and does not exist"))
    elif op in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            errs.append(_invalid(vpath, vals, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(vals):
            if _parse_int64(v) is None:
                errs.append(_invalid(f"{vpath}[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        supported = ", ".join(_go_quote(o) for o in _BINARY_OPS + [EXISTS, DOES_NOT_EXIST])
        errs.append(f"{child('operator')}: Unsupported value: {_go_quote(op)}: supported values: {supported}")
    for i, v in enumerate(vals):
        verrs = _is_valid_label_value(v)
        if verrs:
            errs.append(_invalid(f"{vpath}[{i}][{key}]", v, "; ".join(verrs)))
    msg = _aggregate(errs)
    if msg is not None:
        raise SelectorError(msg)
    return Requirement(key, op, tuple(vals))


def _parse_int64(s: str) -> int | None:
    if not _INT64_RE.fullmatch(s):
        return None
    n = int(s)
    return n if -(1 << 63) <= n < (1 << 63) else None


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str          # one of: in notin = == != gt lt exists !
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op, has = self.operator, self.key in labels
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return has and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return not has or labels[self.key] not in self.values
        if op == EXISTS:
            return has
        if op == DOES_NOT_EXIST:
            return not has
        if op in (GREATER_THAN, LESS_THAN):
            if not has or len(self.values) != 1:
                return False
            lv, rv = _parse_int64(str(labels[self.key])), _parse_int64(self.values[0])
            if lv is None or rv is None:
                return False
            return lv > rv if op == GREATER_THAN else lv < rv
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        vals = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({vals})"
        sym = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{sym}{vals}"


@dataclass(frozen=True)
class LabelSelector:
    """AND of requirements (sorted by key).  `selects_nothing` is labels.Nothing()."""
    requirements: tuple[Requirement, ...] = ()
    selects_nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.selects_nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True if the selector does not restrict the selection (matches everything)."""
        return not self.selects_nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def everything() -> LabelSelector:
    return LabelSelector()


def nothing() -> LabelSelector:
    return LabelSelector(selects_nothing=True)


# Lexer tokens
_ERR, _EOS, _CPAR, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPAR = range(14)
_STRING2TOKEN = {")": _CPAR, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN,
                 "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPAR}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    pos = 0

    def read() -> str:  # Go returns byte 0 at end of input (and for a literal NUL)
        nonlocal pos
        if pos < len(s):
            pos += 1
            return s[pos - 1]
        return "\0"

    items: list[tuple[int, str]] = []
    while True:
        ch = read()
        while ch in _WHITESPACE:
            ch = read()
        if ch == "\0":
            items.append((_EOS, ""))
            return items
        pos -= 1
        buf = ""
        if ch in _SPECIAL:
            last: tuple[int, str] | None = None
            while True:
                c = read()
                if c == "\0":
                    break
                if c in _SPECIAL:
                    buf += c
                    if buf in _STRING2TOKEN:
                        last = (_STRING2TOKEN[buf], buf)
                    elif last is not None:
                        pos -= 1
                        break
                else:
                    pos -= 1
                    break
            items.append(last or (_ERR, f"error expected: keyword found '{buf}'"))
        else:
            while True:
                c = read()
                if c == "\0":
                    break
                if c in _SPECIAL or c in _WHITESPACE:
                    pos -= 1
                    break
                buf += c
            items.append((_STRING2TOKEN.get(buf, _ID), buf))


class _Parser:
    def __init__(self, text: str):
        self.items = _lex(text)
        self.pos = 0

    def lookahead(self, values_ctx: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        if values_ctx and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def consume(self, values_ctx: bool = True) -> tuple[int, str]:
        r = self.lookahead(values_ctx)
        self.pos += 1
        return r

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_ID, _NOT):
                try:
                    reqs.append(self.parse_requirement())
                except SelectorError as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                t, l = self.consume()
                if t == _EOS:
                    return reqs
                if t == _COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_ID, _NOT):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{l}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return reqs
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        op = ""
        tok, key = self.consume()
        if tok == _NOT:
            op = DOES_NOT_EXIST
            tok, key = self.consume()
        if tok != _ID:
            raise SelectorError(f"found '{key}', expected: identifier")
        kerrs = _is_qualified_name(key)
        if kerrs:
            raise SelectorError(_invalid("<nil>", key, "; ".join(kerrs)))
        if self.lookahead()[0] in (_EOS, _COMMA) and op != DOES_NOT_EXIST:
            op = EXISTS
        if op in (EXISTS, DOES_NOT_EXIST):
            return _new_requirement(key, op, [], None)
        tok, lit = self.consume(values_ctx=False)
        op = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
              _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}.get(tok, "")
        if not op:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPS)}")
        values = self.parse_values() if op in (IN, NOT_IN) else self.parse_exact_value()
        return _new_requirement(key, op, sorted(values), None)

    def parse_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPAR:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_ID, _COMMA):
            s = self.parse_identifiers_list()
            self.consume()  # the ')' seen by parse_identifiers_list
            return s
        if tok == _CPAR:  # "()" means the empty-string value
            self.consume()
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        s: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _ID:
                s.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CPAR:
                    return s
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == _COMMA:
                if not s:
                    s.add("")  # "(,"
                tok2, _ = self.lookahead()
                if tok2 == _CPAR:
                    s.add("")  # ",)"
                    return s
                if tok2 == _COMMA:
                    self.consume()
                    s.add("")  # ",,"
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead()
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _ID:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """labels.Parse: the `labelSelector` query parameter syntax. ''/None selects everything."""
    if not text:
        return everything()
    reqs = _Parser(text).parse()
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


_OBJ_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_object(selector: Mapping | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None selects nothing, {} selects everything."""
    if selector is None:
        return nothing()
    if not isinstance(selector, Mapping):
        raise SelectorError(f"invalid label selector: {selector!r}")
    match_labels = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(exprs, (list, tuple)):
        raise SelectorError("invalid label selector: matchLabels must be a map, matchExpressions a list")
    if len(match_labels) + len(exprs) == 0:
        return everything()
    reqs: list[Requirement] = []
    for k, v in match_labels.items():
        reqs.append(_new_requirement(str(k), EQUALS, [v if isinstance(v, str) else str(v)], None))
    for expr in exprs:
        if not isinstance(expr, Mapping):
            raise SelectorError(f"invalid label selector requirement: {expr!r}")
        raw_op = expr.get("operator") or ""
        op = _OBJ_OPS.get(raw_op)
        if op is None:
            raise SelectorError(f"{_go_quote(str(raw_op))} is not a valid label selector operator")
        values = [str(x) for x in (expr.get("values") or [])]
        reqs.append(_new_requirement(str(expr.get("key") or ""), op, values, None))
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


# --------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------

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
