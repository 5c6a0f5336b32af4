"""What decides whether an alert on an object acts: its change records (cooldown) and its runs (in flight).

Real pieces throughout: prefect.yaml's deployment and alert trigger registered in the session's Prefect
test server (`armed`), so an accepted alert becomes a real flow run (never executed: no worker picks it
up, so it stays in flight until a test ends it); change records written with the kernel's own
`tasks.journal.journal`. Only a change may start a cooldown; a run still in flight is answered 503 so the
sender retries.
"""
from __future__ import annotations

import datetime as dt
import time

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.states import Completed

from plans.plan import Change
from plans.targets import change_record_key
from plans.trigger import AlertContext
from tasks.journal import JournalEntry, journal

from .receiver_helpers import (alertmanager, api, armed, crash_looping, estate, events_for, outcomes,  # noqa: F401
                               post, receiver, rollout_stuck, settle, start_receiver, stub_api, wait_run)


def record_change(estate, svc, *, at: dt.datetime, status: str = "made", run: str = "run-1", step: int = 1) -> None:
    """Journal a step of a runbook run on the service's object, as the kernel does before and after a write."""
    target = estate.catalog.deployment_target("production", svc.name)
    journal(JournalEntry(run=run, runbook="emergency-rollback", step=step, status=status, at=at, target=target,
                         change=Change(resource=target.resource, field="spec.template (image)", before="v2",
                                       after="v1")), flow_run_id=None)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def test_the_trigger_starts_a_run_with_a_typed_alert_and_the_alerts_pod(armed, receiver, api, estate):
    svc = estate.fresh()
    firing = crash_looping(svc, starts_at=now() - dt.timedelta(seconds=30))
    assert outcomes(post(receiver, alertmanager(firing))) == ["started"]
    run = wait_run(api, firing["fingerprint"])
    parameters = run["parameters"]
    assert set(parameters) == {"service", "environment", "requested_by", "reason", "pod", "alert"}
    assert (parameters["service"], parameters["environment"], parameters["requested_by"], parameters["pod"]) == (
        svc.name, "production", "alert:alertmanager", firing["labels"]["pod"])
    assert isinstance(parameters["alert"], dict), "alert must reach the flow as an object, not a string"
    alert = AlertContext.model_validate(parameters["alert"])
    assert alert.starts_at == dt.datetime.fromisoformat(firing["startsAt"]) and alert.labels == firing["labels"]
    deployment = httpx.get(f"{api}/deployments/{armed}").json()
    assert deployment["enforce_parameter_schema"] is True          # the server validated it against the flow


def test_a_run_in_flight_holds_alerts_with_503_and_one_that_changed_nothing_starts_no_cooldown(
        armed, receiver, api, estate):
    svc = estate.fresh()
    first, second = crash_looping(svc), rollout_stuck(svc)
    assert outcomes(post(receiver, alertmanager(first))) == ["started"]
    run = wait_run(api, first["fingerprint"])
    held = post(receiver, alertmanager(second))
    assert held.status_code == 503 and outcomes(held) == ["in-flight"] and held.headers["Retry-After"] == "30"
    assert run["id"] in held.json()["outcomes"][0]["reason"]
    with get_client(sync_client=True) as client:      # the run ends having changed nothing (refused, no-op)
        client.set_flow_run_state(run["id"], Completed(message="nothing to do"), force=True)
    retried = post(receiver, alertmanager(second))
    assert retried.status_code == 202 and outcomes(retried) == ["started"]


def test_a_run_through_another_catalog_entry_for_the_same_object_is_in_flight_too(armed, receiver, api, estate):
    first = crash_looping(estate.alias)
    assert outcomes(post(receiver, alertmanager(first))) == ["started"]
    run = wait_run(api, first["fingerprint"])
    held = post(receiver, alertmanager(rollout_stuck(estate.aliased)))     # other catalog name, same Deployment
    assert held.status_code == 503 and outcomes(held) == ["in-flight"]
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run["id"], Completed(), force=True)


def test_an_event_whose_run_has_not_appeared_holds_alerts_until_its_window_ends(start_receiver, stub_api, estate):
    """Posted events go nowhere here (a stand-in API), so no run ever appears: the wait is bounded."""
    _, api_url = stub_api
    url, _ = start_receiver(api_url, pending_seconds=1.0)
    svc = estate.fresh()
    assert outcomes(post(url, alertmanager(crash_looping(svc)))) == ["started"]
    second = alertmanager(rollout_stuck(svc))
    held = post(url, second)
    assert held.status_code == 503 and "has not appeared yet" in held.json()["outcomes"][0]["reason"]
    deadline = time.monotonic() + 10
    while (answer := post(url, second)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outcomes(answer) == ["started"]


def test_only_a_recent_change_record_starts_a_cooldown(receiver, api, estate):
    settled, failed_attempt, changed = estate.fresh(), estate.fresh(), estate.fresh()
    record_change(estate, settled, at=now() - dt.timedelta(seconds=1000))           # the rules' cooldown is 900 s
    record_change(estate, failed_attempt, at=now(), status="intended", run="run-2")  # journaled before the write,
    record_change(estate, failed_attempt, at=now(), status="failed", run="run-2")    # which then wrote nothing
    record_change(estate, changed, at=now() - dt.timedelta(seconds=60), run="run-3")
    alerts = [crash_looping(settled), crash_looping(failed_attempt), crash_looping(changed)]
    response = post(receiver, alertmanager(*alerts))
    assert response.status_code == 202 and outcomes(response) == ["started", "started", "cooldown"]
    reason = response.json()["outcomes"][2]["reason"]
    assert "changed by run run-3" in reason and "cooldown of 900s" in reason
    settle(api)
    assert events_for(api, alerts[2]["fingerprint"]) == []


def test_an_unreadable_change_record_fails_closed_and_asks_for_a_retry(receiver, api, estate):
    readable, broken = estate.fresh(), estate.fresh()
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(key=change_record_key(estate.key(broken)), type="markdown", data="x",
                                              metadata_={"hand": "edited"}))
    response = post(receiver, alertmanager(crash_looping(readable), crash_looping(broken)))
    assert response.status_code == 503 and outcomes(response) == ["started", "blocked"]
    assert "unreadable" in response.json()["outcomes"][1]["reason"]
