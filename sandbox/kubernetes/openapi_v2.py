"""`/openapi/v2` as kubectl <= 1.27 reads it: a protobuf-encoded gnostic `openapi.v2.Document`.

kubectl only needs each resource's PATCH operation with the `x-kubernetes-group-version-kind` extension
and the `fieldValidation` query parameter: that tells it the server validates fields itself. Field
numbers follow gnostic's OpenAPIv2.proto.
"""
from __future__ import annotations

import functools

from .resources import RESOURCES

MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # what the real server sends


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (strings and embedded messages)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _query_parameter(name: str) -> bytes:
    sub_schema = _field(2, "query") + _field(4, name) + _field(6, "string")   # QueryParameterSubSchema
    non_body = _field(3, sub_schema)                                           # NonBodyParameter
    return _field(1, _field(2, non_body))                                      # ParametersItem{Parameter}


def _gvk_extension(group: str, version: str, kind: str) -> bytes:
    yaml_text = f"group: {group!r}\nkind: {kind}\nversion: {version}\n" if group == "" else \
        f"group: {group}\nkind: {kind}\nversion: {version}\n"
    named_any = _field(1, "x-kubernetes-group-version-kind") + _field(2, _field(2, yaml_text))
    return _field(13, named_any)                                               # Operation.vendor_extension


@functools.cache
def document() -> bytes:
    paths = b""
    for r in RESOURCES:
        prefix = f"/api/{r.version}" if not r.group else f"/apis/{r.group}/{r.version}"
        if r.namespaced:
            prefix += "/namespaces/{namespace}"
        operation = (_field(5, f"patch{r.kind}") + _query_parameter("fieldValidation")
                     + _query_parameter("dryRun") + _gvk_extension(r.group, r.version, r.kind))
        path_item = _field(8, operation)                                       # PathItem.patch
        paths += _field(2, _field(1, f"{prefix}/{r.plural}/{{name}}") + _field(2, path_item))
    info = _field(1, "Kubernetes") + _field(2, "v1.31.0")
    return _field(1, "2.0") + _field(2, info) + _field(8, paths)
