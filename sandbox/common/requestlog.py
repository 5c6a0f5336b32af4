"""Every request a stand-in served, so tests can assert exactly what a client sent."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class LoggedRequest:
    time: float
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any            # parsed JSON when it parses, else text, else None
    verb: str            # the service's verb for it (get, list, watch, create, update, patch, delete, ...)
    status: int          # the status answered (0: the connection was dropped)
    user_agent: str = ""

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS and not self.path.startswith("/_sandbox")

    def as_dict(self) -> dict:
        return {**asdict(self), "is_write": self.is_write}


def decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", "replace")


class RequestLog:
    def __init__(self, limit: int = 100_000) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._limit = limit

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)
            if len(self._entries) > self._limit:
                del self._entries[: len(self._entries) - self._limit]

    def entries(self, since: float = 0.0) -> list[LoggedRequest]:
        with self._lock:
            return [e for e in self._entries if e.time >= since]

    def writes(self, since: float = 0.0) -> list[LoggedRequest]:
        """Requests that asked for a change (POST/PUT/PATCH/DELETE), dry-run ones included."""
        return [e for e in self.entries(since) if e.is_write]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def mark(self) -> float:
        """A point in time to pass as `since`."""
        return time.time()
