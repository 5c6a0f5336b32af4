"""GitHub `workflow_run` webhooks through the receiver over real HTTP: a signed delivery of a failed run starts
ci-failure-triage (prefect.yaml's trigger, registered in the session's Prefect server, creates the run); a bad
signature, a redelivery and a successful run start nothing. Payloads are built from the GitHub stand-in's own
answers for the run, its workflow and its repository, as GitHub's webhook embeds them."""
from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import httpx
import pytest
import yaml

from deployments.github_webhook import EVENT, GitHubWebhooks, hub_signature
from deployments.receiver import AlertDispatcher, Credentials, PrefectApi, ReceiverServer
from deployments.rules import load_rules
from tasks.catalog import load_catalog

from .github_helpers import REPO, connection, gh  # noqa: F401
from .receiver_helpers import HMAC_KEY, TOKEN, api, settle  # noqa: F401

SECRET = "github-webhook-secret-0123456789"


@pytest.fixture(scope="module")
def triage_armed(prefect_harness) -> str:
    """The ci-failure-triage deployment and its GitHub trigger registered, as `runbooks serve` does."""
    from deployments.serve import runner_deployments
    [deployment_id] = [str(d.apply()) for d in runner_deployments() if d.name == "ci-failure-triage"]
    return deployment_id


@pytest.fixture
def receiver(gh, api, tmp_path):
    env = {"cluster": {"kind": "in-cluster"}, "github": connection(gh).model_dump(exclude_none=True),
           "services": {"payments-api": {"namespace": "payments", "deployment": "payments-api", "github_repo": REPO}}}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"environments": {"production": env}}))
    catalog = load_catalog(path)
    prefect = PrefectApi(api)
    server = ReceiverServer(AlertDispatcher(load_rules(catalog=catalog), catalog, prefect),
                            Credentials(token=TOKEN, hmac_key=HMAC_KEY), port=0,
                            github=GitHubWebhooks(SECRET, catalog, prefect)).start()
    yield server.url
    server.stop()
    prefect.close()


def payload(gh, run_id: int, action: str = "completed") -> bytes:
    """A workflow_run delivery: GitHub embeds the run, its workflow and the repository as the REST API shows them."""
    get = lambda path: httpx.get(f"{gh.base_url}{path}",                                   # noqa: E731
                                 headers={"Authorization": f"token {gh.config.token}"}).json()
    run = get(f"/repos/{REPO}/actions/runs/{run_id}")
    return json.dumps({"action": action, "workflow_run": run, "workflow": get(f"/repos/{REPO}/actions/workflows/ci.yml"),
                       "repository": get(f"/repos/{REPO}"), "sender": {"login": "octocat", "type": "User"}}).encode()


def deliver(url: str, body: bytes, *, delivery: str | None = None, secret: str = SECRET) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "workflow_run",
               "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-Hub-Signature-256": hub_signature(secret, body),
               "User-Agent": "GitHub-Hookshot/7a8e1c3"}
    return httpx.post(f"{url}/webhooks/github", content=body, headers=headers, timeout=30)


def events_for_run(api: str, run_id: int) -> list[dict]:
    response = httpx.post(f"{api}/events/filter", json={"filter": {
        "event": {"name": [EVENT]}, "resource": {"id": [f"runbooks.github.{REPO}.{run_id}"]}}, "limit": 50})
    response.raise_for_status()
    return response.json()["events"]


def triage_run_for(api: str, run_id: int, timeout: float = 30) -> dict:
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).isoformat()
    body = {"deployments": {"name": {"any_": ["ci-failure-triage"]}},
            "flow_runs": {"expected_start_time": {"after_": since}}, "limit": 200}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
                 if r["parameters"].get("run_id") == run_id]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no ci-failure-triage run was started for workflow run {run_id}")


def test_signed_failed_run_starts_triage_and_redelivery_bad_signature_and_success_start_nothing(
        gh, receiver, api, triage_armed):
    failed = gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", age=120)
    passed = gh.add_run(REPO, "ci.yml", conclusion="success", age=120)
    body, delivery = payload(gh, failed.id), str(uuid.uuid4())

    refused = deliver(receiver, body, secret="not-the-webhook-secret-000000")
    assert refused.status_code == 401
    started = deliver(receiver, body, delivery=delivery)
    assert started.status_code == 202 and started.json()["outcome"] == "started"
    again = deliver(receiver, body, delivery=delivery)                   # GitHub's "Redeliver"
    assert again.status_code == 202 and again.json()["outcome"] == "duplicate"
    success = deliver(receiver, payload(gh, passed.id))
    assert success.json()["outcome"] == "ignored" and "conclusion success" in success.json()["reason"]
    in_progress = deliver(receiver, payload(gh, failed.id, action="in_progress"))
    assert in_progress.json()["outcome"] == "ignored"

    run = triage_run_for(api, failed.id)                                # the trigger started triage of that run
    assert run["parameters"]["repository"] == REPO and run["parameters"]["environment"] == "production"
    assert run["parameters"]["requested_by"] == "github:webhook"
    assert run["parameters"]["alert"]["source"] == "github"
    settle(api)
    assert len(events_for_run(api, failed.id)) == 1 and events_for_run(api, passed.id) == []


def test_unsigned_or_malformed_deliveries_are_refused_and_never_logged_with_the_secret(gh, receiver, caplog):
    body = b'{"action": "completed"}'
    unsigned = httpx.post(f"{receiver}/webhooks/github", content=body,
                          headers={"X-GitHub-Event": "workflow_run", "Content-Type": "application/json"})
    assert unsigned.status_code == 401
    malformed = deliver(receiver, body)
    assert malformed.status_code == 400 and "workflow_run" in malformed.json()["error"]
    ping = httpx.post(f"{receiver}/webhooks/github", content=b"{}", headers={
        "X-GitHub-Event": "ping", "X-Hub-Signature-256": hub_signature(SECRET, b"{}")})
    assert ping.status_code == 202 and ping.json()["outcome"] == "ignored"
    assert SECRET not in caplog.text
