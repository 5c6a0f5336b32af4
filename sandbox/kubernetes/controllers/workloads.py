"""Helpers shared by the Deployment and ReplicaSet controllers (the real `deployment/util` package's parts)."""
from __future__ import annotations

import copy
import json
import math

from ..store import controller_of

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Deployment annotations that are not copied onto its ReplicaSets (as in the real controller).
SKIPPED_ANNOTATIONS = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
                                 "deprecated.deployment.rollback.to"})
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def template_hash(template: dict, collision_count: int = 0) -> str:
    """A pod-template-hash in the real format: fnv32a of the template, safe-encoded."""
    digest = fnv32a(json.dumps(without_hash(template), sort_keys=True).encode() + str(collision_count).encode())
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in str(digest).encode())


def without_hash(template: dict) -> dict:
    """The template minus the pod-template-hash label: what `EqualIgnoreHash` compares."""
    clean = copy.deepcopy(template)
    labels = (clean.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return clean


def equal_ignore_hash(a: dict, b: dict) -> bool:
    return without_hash(a) == without_hash(b)


def revision_of(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("annotations", {}).get(REVISION, "0"))
    except ValueError:
        return 0


def resolve(value: int | str | None, total: int, round_up: bool) -> int:
    """An int-or-percent field (maxSurge, maxUnavailable, minAvailable) against `total`."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        fraction = int(text[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(text)


def surge_and_unavailable(deployment: dict) -> tuple[int, int]:
    """`ResolveFenceposts`: maxSurge rounds up, maxUnavailable down; both zero means one may be unavailable."""
    spec = deployment["spec"]
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    replicas = spec.get("replicas", 1)
    surge = resolve(rolling.get("maxSurge", "25%"), replicas, True)
    unavailable = resolve(rolling.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(deployment: dict) -> int:
    replicas = deployment["spec"].get("replicas", 1)
    if replicas == 0:
        return 0
    _, unavailable = surge_and_unavailable(deployment)
    return min(unavailable, replicas)


def owned(objs: list[dict], owner: dict) -> list[dict]:
    uid = owner["metadata"]["uid"]
    return [o for o in objs if (controller_of(o) or {}).get("uid") == uid]


def owner_reference(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def spec_replicas(obj: dict) -> int:
    return obj["spec"].get("replicas", 0)


def status_count(obj: dict, field: str) -> int:
    return (obj.get("status") or {}).get(field, 0)


def set_condition(status: dict, condition: dict, now: str) -> bool:
    """Replace a condition of the same type; keep lastTransitionTime when the status did not flip.
    Returns whether anything changed (besides timestamps when reason and message are equal)."""
    conditions = status.setdefault("conditions", [])
    existing = next((c for c in conditions if c["type"] == condition["type"]), None)
    if existing and all(existing.get(k) == condition.get(k) for k in ("status", "reason", "message")):
        return False
    condition = dict(condition)
    condition.setdefault("lastUpdateTime", now)
    condition["lastTransitionTime"] = existing["lastTransitionTime"] if existing and \
        existing["status"] == condition["status"] else now
    status["conditions"] = [c for c in conditions if c["type"] != condition["type"]] + [condition]
    return True


def get_condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), None)
