"""PATCH bodies applied the way kube-apiserver applies them.

* `apply_merge_patch`: RFC 7386 JSON merge patch (application/merge-patch+json).
* `apply_json_patch`: RFC 6902 JSON patch (application/json-patch+json), with the error texts of
  github.com/evanphx/json-patch, which the real server returns in its 422 Status.
* `apply_strategic_merge_patch`: application/strategic-merge-patch+json, following
  k8s.io/apimachinery/pkg/util/strategicpatch (mergeMap / mergeSlice / normalizeElementOrder),
  driven by the type table in `sandbox.patching_schema`.

All functions are pure: inputs are never mutated and results share no objects with them.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from .patching_schema import KIND_ROOTS, lookup

__all__ = ["PatchError", "StrategicMergeUnsupported", "apply_merge_patch", "apply_json_patch",
           "apply_strategic_merge_patch"]


class PatchError(ValueError):
    """A patch that cannot be applied. `str(err)` is a message like the real kube-apiserver's, shown to the user in a 422/400 Status."""


class StrategicMergeUnsupported(PatchError):
    """Strategic merge patch sent for a kind without a schema (e.g. a custom resource); the real server answers 415."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"strategic merge patch is not supported for {kind}")
        self.kind = kind


# ---------------------------------------------------------------------------------------------
# shared helpers

def _eq(a: Any, b: Any) -> bool:
    """JSON equality: like ==, but booleans never equal numbers (True != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return a == b


def _gofmt(v: Any) -> str:
    """Render a JSON value the way Go's %v prints map[string]interface{} / []interface{}."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_gofmt(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_gofmt(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# ---------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch

def apply_merge_patch(target: dict, patch: dict) -> dict:
    """Apply an RFC 7386 merge patch: objects merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        raise PatchError("Invalid JSON Patch")  # evanphx/json-patch ErrBadJSONPatch
    return _merge_patch(copy.deepcopy(target), patch)


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target


# ---------------------------------------------------------------------------------------------
# RFC 6902 JSON patch

_INDEX = re.compile(r"0|[1-9][0-9]*")
_MISSING = object()
_BAD_INDEX = "Unable to access invalid index: {}: invalid index referenced"


def apply_json_patch(target: dict, operations: list) -> dict:
    """Apply an RFC 6902 patch (add, remove, replace, move, copy, test) to a copy of `target`."""
    if not isinstance(operations, list):
        raise PatchError(f"json: cannot unmarshal {_json_kind(operations)} into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict):
            raise PatchError(f"json: cannot unmarshal {_json_kind(op)} into Go value of type jsonpatch.Operation")
        doc = _json_op(doc, op)
    return doc


def _json_kind(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "bool"}.get(type(v), "number" if v is not None else "null")


def _pointer(op: dict, field: str, name: str) -> list[str]:
    path = op.get(field)
    if not isinstance(path, str):
        raise PatchError(f"{name} operation failed to decode {field}: missing value")
    if path and not path.startswith("/"):
        raise PatchError(f'{name} operation does not apply: doc is missing path: "{path}": missing value')
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


def _list_index(token: str, size: int) -> int | None:
    return int(token) if _INDEX.fullmatch(token) and int(token) < size else None


def _walk(doc: Any, tokens: list[str]) -> Any:
    """The value at `tokens`, or _MISSING."""
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and (i := _list_index(token, len(doc))) is not None:
            doc = doc[i]
        else:
            return _MISSING
    return doc


def _json_op(doc: Any, op: dict) -> Any:
    name = op.get("op")
    if name not in ("add", "remove", "replace", "move", "copy", "test"):
        raise PatchError(f"Unexpected kind: {name if isinstance(name, str) else 'unknown'}")
    tokens, path = _pointer(op, "path", name), op["path"]
    if name == "remove":
        return _remove(doc, tokens, path, name)
    if name in ("move", "copy"):
        source = _pointer(op, "from", name)
        value = _walk(doc, source)
        if value is _MISSING:
            raise PatchError(f"{name} operation does not apply: doc is missing from path: {op['from']}: missing value")
        if name == "copy":
            return _add(doc, tokens, copy.deepcopy(value), path, name)
        if tokens[:len(source)] == source and len(tokens) > len(source):
            raise PatchError(f"move operation does not apply: cannot move {op['from']} into its own child {path}")
        return _add(_remove(doc, source, op["from"], name), tokens, value, path, name)
    if "value" not in op:
        raise PatchError(f"{name} operation does not apply: missing value for path: {path}")
    value = copy.deepcopy(op["value"])
    if name == "add":
        return _add(doc, tokens, value, path, name)
    parent = _walk(doc, tokens[:-1]) if tokens else None
    if name == "test":
        current = _walk(doc, tokens)
        if tokens and not isinstance(parent, (dict, list)):
            raise PatchError(f"test operation does not apply: is missing path: {path}: missing value")
        if current is _MISSING and isinstance(parent, list):
            raise PatchError(f"error in test for path: '{path}': " + _BAD_INDEX.format(tokens[-1]))
        if not _eq(None if current is _MISSING else current, value):  # evanphx: a missing key tests as null
            raise PatchError(f"testing value {path} failed: test failed")
        return doc
    if not tokens:  # replace
        return value
    if not isinstance(parent, (dict, list)):
        raise PatchError(f"replace operation does not apply: doc is missing path: {path}: missing value")
    if _walk(parent, tokens[-1:]) is _MISSING:
        raise PatchError(f"replace operation does not apply: doc is missing key: {path}: missing value")
    parent[tokens[-1] if isinstance(parent, dict) else int(tokens[-1])] = value
    return doc


def _add(doc: Any, tokens: list[str], value: Any, path: str, name: str) -> Any:
    if not tokens:
        return value
    parent, key = _walk(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list) and key == "-":
        parent.append(value)
    elif isinstance(parent, list):
        if (i := _list_index(key, len(parent) + 1)) is None:
            raise PatchError(f"error in {name} for path: '{path}': " + _BAD_INDEX.format(key))
        parent.insert(i, value)
    elif name == "add":
        raise PatchError(f'add operation does not apply: doc is missing path: "{path}": missing value')
    else:
        raise PatchError(f"{name} operation does not apply: doc is missing destination path: {path}: missing value")
    return doc


def _remove(doc: Any, tokens: list[str], path: str, name: str) -> Any:
    parent = _walk(doc, tokens[:-1]) if tokens else None
    if not isinstance(parent, (dict, list)):
        raise PatchError(f'{name} operation does not apply: doc is missing path: "{path}": missing value')
    key = tokens[-1]
    if isinstance(parent, dict) and key in parent:
        del parent[key]
    elif isinstance(parent, dict):
        raise PatchError(f"error in {name} for path: '{path}': Unable to remove nonexistent key: {key}: missing value")
    elif (i := _list_index(key, len(parent))) is not None:
        del parent[i]
    else:
        raise PatchError(f"error in {name} for path: '{path}': " + _BAD_INDEX.format(key))
    return doc


# ---------------------------------------------------------------------------------------------
# Strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"
_DELETE = object()  # "drop this value": result of a map carrying `$patch: delete`


def apply_strategic_merge_patch(target: dict, patch: dict, *, kind: str) -> dict:
    """Apply a strategic merge patch to an object of `kind` (raises StrategicMergeUnsupported for unknown kinds)."""
    root = KIND_ROOTS.get(kind)
    if root is None:
        raise StrategicMergeUnsupported(kind)
    if not isinstance(patch, dict):
        raise PatchError("invalid JSON document")
    result = _merge_map(copy.deepcopy(target) if isinstance(target, dict) else {}, copy.deepcopy(patch), root)
    return {} if result is _DELETE else result


def _is_directive(key: str) -> bool:
    return key in (_DIRECTIVE, _RETAIN_KEYS) or key.startswith((_SET_ORDER, _DELETE_FROM))


def _no_merge_key(m: Any, key: str) -> PatchError:
    return PatchError(f"map: {_gofmt(m)} does not contain declared merge key: {key}")


def _merge_map(orig: dict, patch: dict, type_name: str | None) -> Any:
    """strategicpatch.mergeMap; `orig` and `patch` are private copies and are consumed."""
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "delete":
            return _DELETE
        rest = {k: v for k, v in patch.items() if k != _DIRECTIVE}
        if directive == "replace":
            return _merge_map({}, rest, type_name)
        if directive != "merge":  # the real server rejects `merge` here too; accepting it is harmless
            raise PatchError(f"unknown patch type: {_gofmt(directive)} in map: {_gofmt(patch)}")
        patch = rest
    if _RETAIN_KEYS in patch:
        keep = patch[_RETAIN_KEYS]
        if not isinstance(keep, list):
            raise PatchError("invalid patch format of retainKeys")
        if any(v is not None and not _is_directive(k) and k not in keep for k, v in patch.items()):
            raise PatchError("invalid patch format of retainKeys")
        orig = {k: v for k, v in orig.items() if k in keep}
    ordered = set()
    for key, order in patch.items():
        if key.startswith(_SET_ORDER):
            field = key[len(_SET_ORDER):]
            _set_element_order(orig, patch, field, order, type_name)
            ordered.add(field)
    deletions = []
    for key, value in patch.items():
        if key in ordered or key in (_DIRECTIVE, _RETAIN_KEYS) or key.startswith(_SET_ORDER):
            continue
        if key.startswith(_DELETE_FROM):
            deletions.append((key[len(_DELETE_FROM):], value))
        elif value is None:
            orig.pop(key, None)
        else:
            merged = _merge_value(orig.get(key, _MISSING), value, *lookup(type_name, key))
            if merged is _DELETE:
                orig.pop(key, None)
            else:
                orig[key] = merged
    for field, values in deletions:
        if not isinstance(values, list):
            raise PatchError("invalid patch format of primitive list")
        current = orig.get(field)
        if isinstance(current, list):
            orig[field] = [v for v in current if not any(_eq(v, d) for d in values)]
    return orig


def _merge_value(orig: Any, patch: Any, strategy: str | None, merge_key: str | None, child: str | None) -> Any:
    """A patch value onto an original one (_MISSING when absent); a kind mismatch merges onto nothing."""
    if isinstance(patch, dict):
        return _merge_map(orig if isinstance(orig, dict) else {}, patch, child)
    if isinstance(patch, list):
        return _merge_list(orig if isinstance(orig, list) else [], patch, strategy, merge_key, child)
    return patch


def _strip(value: Any) -> Any:
    """What the real server keeps of a value taken verbatim: no nulls in maps, no directives."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if v is not None and not _is_directive(k) and not (isinstance(v, dict) and _DIRECTIVE in v)}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and _DIRECTIVE in v)]
    return value


def _merge_list(orig: list, patch: list, strategy: str | None, merge_key: str | None, child: str | None) -> list:
    """strategicpatch.mergeSliceHandler / mergeSlice."""
    if strategy is None or "merge" not in strategy.split(","):
        return [_strip(v) for v in patch]
    if not orig and not patch:
        return orig
    elements = orig + patch
    if any(isinstance(e, list) for e in elements):
        raise PatchError("lists of lists are not supported")
    if len({isinstance(e, dict) for e in elements}) > 1:
        raise PatchError(f"list element types are not identical: {_gofmt([orig, patch])}")
    if not isinstance(elements[0], dict):
        merged: list = []
        for v in elements:
            if not any(_eq(v, m) for m in merged):
                merged.append(v)
        return _normalize_order(merged, patch, orig, None)
    if not merge_key:
        raise PatchError("cannot merge lists without merge key for type map")
    plain, replace = [], False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            orig = [o for o in orig if not _eq(o.get(merge_key, _MISSING), item[merge_key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise PatchError(f"unknown patch type: {_gofmt(directive)} in map: {_gofmt(item)}")
    if replace:
        return [_merge_map({}, item, child) for item in plain]
    merged = list(orig)
    for item in plain:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        i = _find(merged, merge_key, item[merge_key])
        if i < 0:
            merged.append(_merge_map({}, item, child))
        else:
            merged[i] = _merge_map(merged[i], item, child)
    return _normalize_order(merged, plain, orig, merge_key)


def _find(items: list, merge_key: str | None, value: Any) -> int:
    """Index of the first element whose merge key (or, for primitives, itself) equals `value`; -1 if none."""
    for i, item in enumerate(items):
        if merge_key is None:
            if _eq(item, value):
                return i
        elif isinstance(item, dict) and merge_key in item and _eq(item[merge_key], value):
            return i
    return -1


def _normalize_order(merged: list, patch_order: list, server_order: list, merge_key: str | None) -> list:
    """strategicpatch.normalizeElementOrder: patch items in patch order, server-only items in server order,
    interleaved by mergeSortedSlice (an item new to the server goes before the server-only items it meets)."""
    def key(item: Any) -> Any:
        if merge_key is None:
            return item
        if not isinstance(item, dict) or merge_key not in item:
            raise _no_merge_key(item, merge_key)
        return item[merge_key]

    def index(items: list, item: Any) -> int:
        return _find(items, merge_key, key(item))

    for item in patch_order:
        key(item)
    in_patch = [m for m in merged if index(patch_order, m) >= 0]
    server_only = [m for m in merged if index(patch_order, m) < 0]
    in_patch.sort(key=lambda m: index(patch_order, m))
    server_only.sort(key=lambda m: i if (i := index(server_order, m)) >= 0 else len(server_order))
    out: list = []
    while server_only or in_patch:
        if not in_patch or (server_only and
                            0 <= index(server_order, server_only[0]) < index(server_order, in_patch[0])):
            out.append(server_only.pop(0))
        else:
            out.append(in_patch.pop(0))
    return out


def _set_element_order(orig: dict, patch: dict, field: str, order: Any, type_name: str | None) -> None:
    """strategicpatch.mergePatchIntoOriginal: merge `field` and reorder it after `$setElementOrder/<field>`."""
    if not isinstance(order, list):
        raise PatchError("invalid patch format of setElementOrder list")
    strategy, merge_key, child = lookup(type_name, field)
    has_orig, has_patch = isinstance(orig.get(field), list), field in patch
    if has_patch and not isinstance(patch[field], list):
        raise PatchError("invalid patch format of setElementOrder list")
    if has_patch:
        _validate_order(patch[field], order, merge_key)
        merged = _merge_list(orig[field] if has_orig else [], patch[field], strategy, merge_key, child)
    elif has_orig:
        merged = orig[field]
    else:
        return
    orig[field] = _normalize_order(merged, order, orig[field] if has_orig else [], merge_key)


def _validate_order(patch_list: list, order: list, merge_key: str | None) -> None:
    """strategicpatch.validatePatchWithSetOrderList: the patch list must follow the order list."""
    if not order or not patch_list:
        return
    items = [e for e in patch_list if not (merge_key and isinstance(e, dict) and e.get(_DIRECTIVE) == "delete")]
    p = s = 0
    while p < len(items) and s < len(order):
        if isinstance(items[p], dict) and _DIRECTIVE in items[p]:
            p += 1
            continue
        if merge_key:
            for m in (items[p], order[s]):
                if not isinstance(m, dict) or merge_key not in m:
                    raise _no_merge_key(m, merge_key)
            same = _eq(items[p][merge_key], order[s][merge_key])
        else:
            same = _eq(items[p], order[s])
        p += same
        s += 1
    if p < len(items) and s >= len(order):
        raise PatchError(f"The order in patch list:\n{_gofmt(patch_list)}\n doesn't match $setElementOrder list:\n"
                         f"{_gofmt(order)}\n")
