"""GitHub `workflow_run` webhooks through the receiver over real HTTP: a signed delivery of a failed run starts
ci-failure-triage (prefect.yaml's trigger, registered in the session's Prefect server, creates the run); a bad
signature, a redelivery and a successful run start nothing. The deliveries are the GitHub stand-in's own: its
repository webhooks post each run's `requested`, `in_progress` and `completed` as GitHub does, signed."""
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


def deliver(url: str, body: bytes, *, delivery: str | None = None, secret: str = SECRET) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "workflow_run",
               "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-Hub-Signature-256": hub_signature(secret, body)}
    return httpx.post(f"{url}/webhooks/github", content=body, headers=headers, timeout=30)


def delivered(gh, hook_id: int, run_id: int, action: str, count: int = 1, timeout: float = 20) -> list:
    """The stand-in's deliveries of `action` for the run to one hook, once `count` of them were answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in gh.deliveries(REPO, hook_id) if d.action == action and d.status_code
                 and json.loads(d.body)["workflow_run"]["id"] == run_id]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {action} delivery for run {run_id}")


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
    """GitHub (the stand-in) delivers every workflow_run event of two hooks: one with the right secret, one
    signed with another; only the right hook's `completed` delivery of the failed run starts triage."""
    good = gh.add_hook(REPO, f"{receiver}/webhooks/github", secret=SECRET)
    bad = gh.add_hook(REPO, f"{receiver}/webhooks/github", secret="not-the-webhook-secret-000000")
    failed = gh.add_run(REPO, "ci.yml", conclusion="failure", job="test")
    passed = gh.add_run(REPO, "ci.yml", conclusion="success")

    [completed] = delivered(gh, good.id, failed.id, "completed")
    assert completed.status_code == 202
    assert [d.status_code for d in delivered(gh, bad.id, failed.id, "completed")] == [401]
    assert {d.status_code for d in delivered(gh, good.id, failed.id, "requested")} == {202}   # answered, ignored
    assert delivered(gh, good.id, passed.id, "completed")[0].status_code == 202               # a success: ignored
    gh.redeliver(REPO, good.id, completed.id)                                                 # GitHub's "Redeliver"
    assert len(delivered(gh, good.id, failed.id, "completed", count=2)) == 2

    run = triage_run_for(api, failed.id)                                # the trigger started triage of that run
    assert run["parameters"]["repository"] == REPO and run["parameters"]["environment"] == "production"
    assert run["parameters"]["requested_by"] == "github:webhook"
    assert run["parameters"]["alert"]["labels"]["delivery"] == completed.guid
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


def test_triage_deployment_has_a_described_form_an_inactive_schedule_and_its_trigger(triage_armed):
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment(triage_armed)
        [schedule] = prefect.read_deployment_schedules(deployment.id)
        [automation] = prefect.read_automations_by_name("github-starts-ci-failure-triage")
    schema = deployment.parameter_openapi_schema
    assert schema["required"] == ["environment", "repository", "requested_by"]        # no default target
    assert all(spec.get("description") for spec in schema["properties"].values())
    assert schedule.slug == "hourly-triage-payments-api" and not schedule.active
    assert automation.trigger.expect == {EVENT}
    assert automation.actions[0].parameters["run_id"]["__prefect_kind"] == "json"     # an integer, not a string
