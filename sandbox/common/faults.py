"""Fault injection: make chosen requests fail, slow down, drop, or cut a stream (a watch) mid-way.

Rules match on a verb each service maps its requests onto (the Kubernetes verbs; ARM and GitHub map their
methods the same way) and a glob on the path. What a failed request's body and headers look like is the
service's business (`StandIn.fault_error` and `render_error`)."""
from __future__ import annotations

import fnmatch
import random
import threading
import uuid
from dataclasses import asdict, dataclass, field

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
VERBS = WRITE_VERBS | {"get", "list", "watch", "write", "read", "*"}


@dataclass
class Fault:
    """One rule. `verb` is get, list, watch, create, update, patch, delete, deletecollection, `write`,
    `read`, or `*`; `path` is a glob on the URL path. What happens: `status` (429/500/503...) with optional
    `retry_after`, `latency` seconds before answering, `drop` the connection without an answer, or
    `cut_watch_after` seconds into a streamed answer. `probability` and `times` bound how often it fires."""

    verb: str = "*"
    path: str = "*"
    status: int | None = None
    retry_after: int | None = None
    latency: float = 0.0
    drop: bool = False
    cut_watch_after: float | None = None
    probability: float = 1.0
    times: int | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    fired: int = 0

    def applies(self, verb: str, path: str) -> bool:
        if self.verb == "write":
            verb_ok = verb in WRITE_VERBS
        elif self.verb == "read":
            verb_ok = verb in ("get", "list", "watch")
        else:
            verb_ok = self.verb in ("*", verb)
        return verb_ok and fnmatch.fnmatchcase(path, self.path)

    def as_dict(self) -> dict:
        return asdict(self)


class Faults:
    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(self, fault: Fault | None = None, **fields) -> Fault:
        rule = fault or Fault(**fields)
        _check(rule)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != fault_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[Fault]:
        with self._lock:
            return list(self._rules)

    def seed(self, seed: int) -> None:
        with self._lock:
            self._random.seed(seed)

    def pick(self, verb: str, path: str) -> Fault | None:
        """The first rule that fires for this request, counting it; None when the request goes through."""
        if path.startswith("/_sandbox"):
            return None
        with self._lock:
            for rule in self._rules:
                if not rule.applies(verb, path):
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None


def _check(rule: Fault) -> None:
    """Reject a rule that could never fire or would break the request it fires on (ValueError)."""
    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def count(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if rule.verb not in VERBS:
        raise ValueError(f"fault verb must be one of {sorted(VERBS)}, got {rule.verb!r}")
    if not isinstance(rule.path, str) or not rule.path:
        raise ValueError(f"fault path must be a non-empty glob, got {rule.path!r}")
    if rule.status is not None and not (count(rule.status) and 400 <= rule.status <= 599):
        raise ValueError(f"fault status must be 4xx or 5xx, got {rule.status!r}")
    if rule.retry_after is not None and not count(rule.retry_after):
        raise ValueError(f"fault retry_after must be a non-negative integer, got {rule.retry_after!r}")
    if not number(rule.latency) or rule.latency < 0:
        raise ValueError(f"fault latency must be a non-negative number of seconds, got {rule.latency!r}")
    if not isinstance(rule.drop, bool):
        raise ValueError(f"fault drop must be true or false, got {rule.drop!r}")
    if rule.cut_watch_after is not None and (not number(rule.cut_watch_after) or rule.cut_watch_after < 0):
        raise ValueError(f"fault cut_watch_after must be a non-negative number, got {rule.cut_watch_after!r}")
    if not number(rule.probability) or not 0.0 <= rule.probability <= 1.0:
        raise ValueError(f"fault probability must be within 0..1, got {rule.probability!r}")
    if rule.times is not None and not count(rule.times):
        raise ValueError(f"fault times must be a non-negative integer, got {rule.times!r}")
