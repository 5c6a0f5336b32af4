"""GitHub webhooks in (`workflow_run`), CI triage out: one Prefect event per failed run, as alerts become events.

Why these rules: GitHub signs each delivery with `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body with the
webhook secret>`, so an unsigned or wrongly signed request is refused (401) before its body is parsed. A run is
triaged once it has completed and failed (a `requested` or `in_progress` delivery, a success, a skipped run
start nothing). GitHub delivers again on "Redeliver" and after a timeout with the same `X-GitHub-Delivery`
id, so a delivery id that started triage once is a duplicate, for DEDUPE_SECONDS. The repository chooses the
environment: the catalog's environments whose services name it and that have a GitHub connection, first by
name (so the catalog, not the sender, decides what a delivery may act on).

The secret comes from RUNBOOKS_GITHUB_WEBHOOK_SECRET, or the Prefect Secret block RUNBOOKS_GITHUB_WEBHOOK_SECRET_BLOCK
names. It is never logged.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from typing import Callable, Mapping

from pydantic import BaseModel

from plans.ci import FAILED_CONCLUSIONS
from plans.ci_triage import RUNBOOK
from tasks.catalog import Catalog

from .prefect_api import PrefectApi

log = logging.getLogger("runbooks.receiver")

SECRET_ENV, SECRET_BLOCK_ENV = "RUNBOOKS_GITHUB_WEBHOOK_SECRET", "RUNBOOKS_GITHUB_WEBHOOK_SECRET_BLOCK"
EVENT = f"runbooks.github.{RUNBOOK}"
DEDUPE_SECONDS = 24 * 3600
MIN_SECRET_CHARS = 16


def hub_signature(secret: str | bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def webhook_secret(environ: Mapping[str, str] = os.environ) -> str | None:
    """The webhook secret from the environment or its Secret block; None when neither is set."""
    if environ.get(SECRET_ENV):
        return environ[SECRET_ENV]
    if environ.get(SECRET_BLOCK_ENV):
        from prefect.blocks.system import Secret
        return str(Secret.load(environ[SECRET_BLOCK_ENV], _sync=True).get())
    return None


class Delivery(BaseModel):
    """What happened to one delivery; returned to GitHub (its delivery log shows it) and logged."""
    delivery: str
    outcome: str                    # started | duplicate | ignored
    reason: str = ""
    repository: str | None = None
    run_id: int | None = None
    environment: str | None = None
    event_id: str | None = None


class GitHubWebhooks:
    """Checks signatures, decides each delivery's outcome, and posts the accepted ones as events."""

    def __init__(self, secret: str, catalog: Catalog, api: PrefectApi, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET_CHARS} characters")
        self._secret, self.catalog, self.api, self.clock = secret.encode(), catalog, api, clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def authentic(self, headers: Mapping[str, str], body: bytes) -> bool:
        sent = (headers.get("X-Hub-Signature-256") or "").strip().lower()
        return hmac.compare_digest(sent.encode("utf-8", "replace"), hub_signature(self._secret, body).encode())

    def handle(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Decide and (for a failed run) post. Raises ValueError for a body that is not a workflow_run payload;
        PrefectUnavailable/PrefectRejected from the post (nothing is recorded then)."""
        delivery = (headers.get("X-GitHub-Delivery") or "").strip() or "-"
        kind = headers.get("X-GitHub-Event") or ""
        if kind == "ping":
            return Delivery(delivery=delivery, outcome="ignored", reason="ping")
        if kind != "workflow_run":
            return Delivery(delivery=delivery, outcome="ignored", reason=f"event {kind!r} starts nothing")
        payload = json.loads(body)
        run, repository = _field(payload, "workflow_run", dict), _field(payload, "repository", dict)
        name = str(_field(repository, "full_name", str))
        base = dict(delivery=delivery, repository=name, run_id=_field(run, "id", int))
        if payload.get("action") != "completed" or run.get("conclusion") not in FAILED_CONCLUSIONS:
            return Delivery(**base, outcome="ignored", reason=f"{payload.get('action')} run, conclusion "
                                                              f"{run.get('conclusion')}: only failed runs are triaged")
        environment = self._environment(name)
        if environment is None:
            return Delivery(**base, outcome="ignored", reason=f"no catalog environment with a GitHub connection "
                                                              f"names repository {name}")
        with self._lock:
            now = self.clock()
            self._seen = {k: t for k, t in self._seen.items() if now - t < DEDUPE_SECONDS}
            if delivery in self._seen:
                return Delivery(**base, environment=environment, outcome="duplicate",
                                reason="this delivery started triage already (a redelivery)")
            event = _event(delivery, name, run, environment)
            self.api.post([event])
            self._seen[delivery] = now
        return Delivery(**base, environment=environment, outcome="started", event_id=event["id"])

    def _environment(self, repository: str) -> str | None:
        for name, env in sorted(self.catalog.environments.items()):
            if env.github is not None and any(s.github_repo == repository for s in env.services.values()):
                return name
        return None


def _field(data: dict, name: str, kind: type):
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise ValueError(f"workflow_run payload: {name} is missing or not a {kind.__name__}")
    return value


def _event(delivery: str, repository: str, run: dict, environment: str) -> dict:
    conclusion, attempt = run.get("conclusion"), run.get("run_attempt") or 1
    parameters = {"environment": environment, "repository": repository, "run_id": run["id"],
                  "requested_by": "github:webhook",
                  "reason": f"GitHub: {run.get('name') or 'workflow'} run {run['id']} (attempt {attempt}) on "
                            f"{run.get('head_branch')}: {conclusion}"}
    alert = {"source": "github", "name": "workflow_run", "fingerprint": f"{repository}#{run['id']}.{attempt}",
             "severity": "warning", "summary": parameters["reason"][:2000],
             "labels": {"delivery": delivery, "repository": repository, "workflow": str(run.get("path") or ""),
                        "conclusion": str(conclusion)}}
    return {"occurred": dt.datetime.now(dt.timezone.utc).isoformat(), "event": EVENT,
            "resource": {"prefect.resource.id": f"runbooks.github.{repository}.{run['id']}",
                         "prefect.resource.name": repository, "runbooks.runbook": RUNBOOK},
            "payload": {"parameters": parameters, "alert": alert}, "id": str(uuid.uuid4())}
