"""What the alert receiver asks of the Prefect API: post events, list a runbook's live runs, read change records.

Why one object for all three: they must reach the same server with the same credentials (the receiver's
PREFECT_API_URL and auth), and every failure to reach it must mean the same thing to the sender: 503,
retry later, nothing recorded. Reads of the change journal go through `tasks.journal.last_change` (the
kernel's own reader, so the receiver's cooldown and the runbook's agree on what counts as a change), with
this API's URL and auth for the calling thread only.
"""
from __future__ import annotations

import base64
import datetime as dt
import json

import httpx

from tasks.errors import PermanentError, TransientError
from tasks.journal import JournalEntry, last_change

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
MAX_RUNS = 200


class PrefectUnavailable(TransientError):
    """The Prefect API could not be reached or answered 5xx: the sender should retry."""


class PrefectRejected(PermanentError):
    """The Prefect API refused a request (4xx): a receiver or server configuration problem."""


class PrefectApi:
    """Posts events to `{PREFECT_API_URL}/events` and reads runs and change records, authenticating as the
    Prefect client does (PREFECT_API_AUTH_STRING as HTTP basic, or PREFECT_API_KEY as a bearer token)."""

    def __init__(self, api_url: str, *, auth_string: str | None = None, api_key: str | None = None,
                 timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.url = self.api_url + "/events"
        self._auth_string, self._api_key = auth_string, api_key
        headers = {"Content-Type": "application/json"}
        if auth_string:
            headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
        elif api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def post(self, events: list[dict]) -> None:
        body = json.dumps(events, ensure_ascii=True).encode("ascii")
        self._call("POST", self.url, content=body, what="post the events")

    def runs(self, runbook: str, *, started_after: dt.datetime) -> list[dict]:
        """The runbook deployment's runs that are not final, or were due to start after `started_after`
        (a run the trigger created from a recent event may have finished already: it still counts as
        having appeared)."""
        body = {"deployments": {"name": {"any_": [runbook]}},
                "flow_runs": {"operator": "or_", "state": {"type": {"not_any_": list(FINAL_STATES)}},
                              "expected_start_time": {"after_": started_after.isoformat()}},
                "sort": "EXPECTED_START_TIME_DESC", "limit": MAX_RUNS}
        return self._call("POST", f"{self.api_url}/flow_runs/filter", json=body, what="list flow runs").json()

    def last_change(self, key: str) -> JournalEntry | None:
        """The newest change that may have changed the object (raises UnreadableJournal: fail closed)."""
        from prefect.settings import (PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL,
                                      temporary_settings)
        updates = {PREFECT_API_URL: self.api_url, PREFECT_API_AUTH_STRING: self._auth_string,
                   PREFECT_API_KEY: self._api_key}
        try:
            with temporary_settings(updates={k: v for k, v in updates.items() if v}):
                return last_change(key)
        except httpx.HTTPStatusError as exc:
            self._raise_for(exc.response, "read the change records")
            raise
        except (httpx.HTTPError, OSError) as exc:
            raise PrefectUnavailable(f"Prefect API unreachable at {self.api_url}: {type(exc).__name__}: {exc}") from exc

    def _call(self, method: str, url: str, *, what: str, **kwargs) -> httpx.Response:
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise PrefectUnavailable(f"Prefect API unreachable at {url}: {type(exc).__name__}: {exc}") from exc
        self._raise_for(response, what)
        return response

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 500:
            raise PrefectUnavailable(f"Prefect API at {response.request.url} answered {response.status_code}")
        if response.status_code >= 400:
            raise PrefectRejected(f"Prefect API at {response.request.url} refused to {what}: "
                                  f"{response.status_code} {response.text[:300]}")

    def close(self) -> None:
        self._client.close()


__all__ = ["FINAL_STATES", "PrefectApi", "PrefectRejected", "PrefectUnavailable"]
