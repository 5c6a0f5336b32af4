"""Label selectors (and, re-exported from field_selectors.py, field selectors), following kube-apiserver semantics.

Mirrors k8s.io/apimachinery/pkg/labels (selector.go: lexer, parser,
NewRequirement validation), metav1.LabelSelectorAsSelector, pkg/fields
(ParseSelector, UnescapeValue) and the per-kind field-label conversion funcs
and ToSelectableFields functions of the real server.  Error strings are the
ones the real server puts into its 400 BadRequest Status message.

Pure code, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = [
    "SelectorError", "Requirement", "LabelSelector", "FieldSelector",
    "parse_label_selector", "label_selector_from_object", "everything", "nothing",
    "parse_field_selector", "object_fields", "supported_fields",
]


from .selector_errors import (  # noqa: F401 - SelectorError is part of this module's API
    SelectorError, _INT64_RE, _aggregate, _go_quote, _invalid, _is_qualified_name, _is_valid_label_value)


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


# Field selectors live in their own module; imported here so callers keep one import path.
from .field_selectors import (FieldSelector, object_fields, parse_field_selector,  # noqa: E402,F401
                              supported_fields)
