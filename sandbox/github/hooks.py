"""Repository webhooks, delivered as GitHub delivers them: a `workflow_run` event (`requested`, `in_progress`,
`completed`) each time a run's attempt reaches that state, POSTed as JSON with `X-GitHub-Event`,
`X-GitHub-Delivery` (a GUID a redelivery keeps), `X-GitHub-Hook-ID` and, when the hook has a secret,
`X-Hub-Signature-256: sha256=<HMAC of the body>`. Runs change state on the clock, so a watcher thread looks
every `interval` seconds and delivers what changed. Unlike GitHub, hook URLs must be on loopback: nothing here
may reach another address."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .model import next_id

if TYPE_CHECKING:
    from .model import Repo, Run

log = logging.getLogger("sandbox.github.hooks")
ACTIONS = {"queued": "requested", "in_progress": "in_progress", "completed": "completed"}


def loopback_url(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@dataclass
class Delivery:
    id: int
    guid: str
    event: str
    action: str | None
    body: bytes
    status_code: int = 0
    status: str = ""
    delivered_at: float = 0.0
    redelivery: bool = False
    duration: float = 0.0


@dataclass
class Hook:
    id: int
    url: str
    secret: str | None
    events: tuple[str, ...] = ("workflow_run",)
    active: bool = True
    created: float = field(default_factory=time.time)
    deliveries: list[Delivery] = field(default_factory=list)

    def wants(self, event: str) -> bool:
        return self.active and (event in self.events or "*" in self.events)


def headers(hook: Hook, delivery: Delivery, repo_id: int) -> dict[str, str]:
    sent = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/sandbox",
            "X-GitHub-Event": delivery.event, "X-GitHub-Delivery": delivery.guid, "X-GitHub-Hook-ID": str(hook.id),
            "X-GitHub-Hook-Installation-Target-ID": str(repo_id),
            "X-GitHub-Hook-Installation-Target-Type": "repository"}
    if hook.secret:
        digest = hmac.new(hook.secret.encode(), delivery.body, hashlib.sha256).hexdigest()
        sent["X-Hub-Signature-256"] = f"sha256={digest}"
        sent["X-Hub-Signature"] = "sha1=" + hmac.new(hook.secret.encode(), delivery.body, hashlib.sha1).hexdigest()
    return sent


def post(hook: Hook, delivery: Delivery, repo_id: int, timeout: float = 10.0) -> None:
    """Deliver once, recording the answer (GitHub gives a receiver 10 s)."""
    request = urllib.request.Request(hook.url, data=delivery.body, method="POST",
                                     headers=headers(hook, delivery, repo_id))
    started = time.time()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            delivery.status_code, delivery.status = answer.status, "OK"
    except urllib.error.HTTPError as exc:
        delivery.status_code, delivery.status = exc.code, f"Invalid HTTP Response: {exc.code}"
    except (OSError, ValueError) as exc:
        delivery.status_code, delivery.status = 0, f"failed to connect: {exc}"
    delivery.delivered_at, delivery.duration = started, time.time() - started


class Watcher:
    """Notices run state changes and hands `workflow_run` payloads to `deliver` (outside the sandbox lock)."""

    def __init__(self, snapshot: Callable[[], list[tuple["Repo", "Run", str]]],
                 deliver: Callable[["Repo", "Run", str], None], stopping: threading.Event,
                 interval: float = 0.02) -> None:
        self._snapshot, self._deliver, self._stopping = snapshot, deliver, stopping
        self._interval = interval
        self._seen: dict[tuple[int, int], str] = {}
        self._thread = threading.Thread(target=self._loop, name="sandbox.github-hooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.tick()
            except Exception:   # a stand-in bug must not stop later deliveries
                log.exception("webhook watcher failed")

    def seen(self, run: "Run", status: str) -> None:
        """Take `status` as already announced (a hook added now hears only what happens next)."""
        self._seen[(run.id, run.latest.number)] = status

    def tick(self) -> None:
        for repo, run, status in self._snapshot():
            key = (run.id, run.latest.number)
            before = self._seen.get(key)
            if before == status:
                continue
            self._seen[key] = status
            order = list(ACTIONS)
            # a state passed between two looks is still announced, in order, as GitHub would have
            for state in order[order.index(before) + 1 if before in order else 0: order.index(status) + 1]:
                self._deliver(repo, run, ACTIONS[state])


def new_delivery(event: str, action: str | None, payload: dict, guid: str | None = None) -> Delivery:
    """A delivery of one event; every hook that hears the same event gets the same GUID."""
    return Delivery(next_id(), guid or str(uuid.uuid4()), event, action, json.dumps(payload).encode())
