"""The alert receiver over real HTTP, posting real events to the session's Prefect test server.

Every test uses fresh fingerprints and fresh services (tests/receiver_helpers.py says why). A test that
asserts "no event" first posts a marker event of its own and waits until the server has stored it
(`settle`): Prefect persists events asynchronously and in order, so anything the receiver posted before
the marker is stored by then. Runs in flight and cooldowns: tests/test_receiver_state.py; bursts and
signatures: tests/test_receiver_delivery.py.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid

import httpx
import pytest

from deployments.alerts import detect_and_parse
from deployments.receiver import AlertDispatcher, PrefectApi, PrefectUnavailable
from deployments.rules import load_rules
from plans.trigger import AlertContext

from .receiver_helpers import (EVENT, HMAC_KEY, ROOT, TOKEN, Svc, alertmanager, api, crash_looping,  # noqa: F401
                               estate, events_for, free_port, outcomes, post, receiver, replicas_mismatch,
                               rollout_stuck, sample, settle, start_receiver, stub_api)


# -- accepted alerts become events -----------------------------------------------------------------------

def test_pod_alert_becomes_one_event_naming_service_pod_and_a_typed_alert(receiver, api, estate):
    svc = estate.fresh()
    firing = crash_looping(svc)
    response = post(receiver, alertmanager(firing))
    assert response.status_code == 202 and outcomes(response) == ["started"]
    settle(api)
    [event] = events_for(api, firing["fingerprint"])
    assert event["event"] == EVENT and event["id"] == response.json()["outcomes"][0]["event_id"]
    assert event["resource"] == {"prefect.resource.id": f"runbooks.alert.{firing['fingerprint']}",
                                 "prefect.resource.name": "KubePodCrashLooping",
                                 "runbooks.runbook": "emergency-rollback", "runbooks.target": svc.target}
    parameters = event["payload"]["parameters"]
    assert (parameters["service"], parameters["environment"], parameters["pod"]) == (
        svc.name, "production", firing["labels"]["pod"])
    assert parameters["requested_by"] == "alert:alertmanager" and "alert" not in parameters
    assert f"{svc.namespace}/{firing['labels']['pod']}" in parameters["reason"]
    assert all(isinstance(value, str) for value in parameters.values())
    context = AlertContext.model_validate(event["payload"]["alert"])       # what the flow's parameter takes
    assert (context.source, context.name, context.fingerprint, context.severity) == (
        "alertmanager", "KubePodCrashLooping", firing["fingerprint"], "warning")
    assert context.starts_at.isoformat() == firing["startsAt"] and context.labels == firing["labels"]


def test_deployment_alerts_of_the_mixin_start_the_runbook_without_a_pod(receiver, api, estate):
    stuck, mismatch = rollout_stuck(estate.fresh()), replicas_mismatch(estate.fresh())
    response = post(receiver, alertmanager(stuck, mismatch))
    assert response.status_code == 202 and outcomes(response) == ["started", "started"]
    settle(api)
    for firing in (stuck, mismatch):
        [event] = events_for(api, firing["fingerprint"])
        assert event["payload"]["parameters"]["pod"] == ""
        assert event["payload"]["parameters"]["service"] == firing["labels"]["deployment"]


def test_same_fingerprint_again_is_a_duplicate_and_posts_no_second_event(receiver, api, estate):
    firing = crash_looping(estate.fresh())
    assert outcomes(post(receiver, alertmanager(firing))) == ["started"]
    again = post(receiver, alertmanager(firing))
    assert again.status_code == 202 and outcomes(again) == ["duplicate"]
    settle(api)
    assert len(events_for(api, firing["fingerprint"])) == 1


def test_resolved_alert_starts_nothing(receiver, api, estate):
    firing, resolved = crash_looping(estate.fresh()), crash_looping(estate.fresh(), status="resolved")
    assert outcomes(post(receiver, alertmanager(firing))) == ["started"]      # the same path starts a run
    response = post(receiver, alertmanager(resolved))
    assert response.status_code == 202 and outcomes(response) == ["resolved"]
    settle(api)
    assert events_for(api, resolved["fingerprint"]) == []


@pytest.mark.parametrize("source, name", [("azure-monitor", "azure-monitor-prometheus"), ("grafana", "grafana-firing")])
def test_azure_monitor_and_grafana_alerts_start_the_runbook_too(receiver, api, estate, source, name):
    document, svc, fingerprint = sample(name), estate.fresh(), uuid.uuid4().hex
    if source == "azure-monitor":
        document["data"]["essentials"]["alertId"] = fingerprint
        labels = document["data"]["alertContext"]["labels"]
    else:
        document["alerts"][0]["fingerprint"] = fingerprint
        labels = document["alerts"][0]["labels"]
    labels.update(namespace=svc.namespace, deployment=svc.deployment)
    response = post(receiver, document, source=source)
    assert response.status_code == 202 and outcomes(response) == ["started"]
    settle(api)
    [event] = events_for(api, fingerprint)
    assert event["payload"]["parameters"]["requested_by"] == f"alert:{source}"
    assert event["payload"]["parameters"]["service"] == svc.name


# -- nothing starts ------------------------------------------------------------------------------------

def test_malformed_json_is_400_with_the_parse_error(receiver):
    response = post(receiver, b'{"alerts": [')
    assert response.status_code == 400 and "not JSON" in response.json()["error"]
    wrong_type = post(receiver, alertmanager({**crash_looping(FRAUD), "labels": {"alertname": "X", "replicas": 3}}))
    assert wrong_type.status_code == 400 and "alerts[0].labels.replicas" in wrong_type.json()["error"]


FRAUD = Svc("fraud-api", "payments", "fraud-api")       # in no catalog


def test_alerts_no_rule_can_act_on_are_422_with_the_reason_and_post_no_event(receiver, api, estate):
    svc, stateful = estate.fresh(), estate.fresh()
    unknown = {**crash_looping(svc), "labels": {**crash_looping(svc)["labels"], "alertname": "HighMemoryUsage"}}
    cases = {
        "no rule matches": unknown,
        "no catalog service in production runs deployment payments/fraud-api": rollout_stuck(FRAUD),
        "derived from pod fraud-api-": crash_looping(FRAUD),
        "is not named like a Deployment's pod": crash_looping(stateful, pod=f"{stateful.deployment}-0"),
        "has no 'cluster' label, which chooses the environment": crash_looping(svc, cluster=None),
        "cluster='aks-platform-dev' maps to no environment": rollout_stuck(svc, cluster="aks-platform-dev"),
    }
    response = post(receiver, alertmanager(*cases.values()))
    assert response.status_code == 422 and outcomes(response) == ["ignored"] * len(cases)
    for expected, outcome in zip(cases, response.json()["outcomes"]):
        assert expected in outcome["reason"], (expected, outcome["reason"])
    started = post(receiver, alertmanager(crash_looping(svc)))            # the same service, labelled fully
    assert outcomes(started) == ["started"]
    settle(api)
    assert [events_for(api, a["fingerprint"]) for a in cases.values()] == [[]] * len(cases)


def test_oversized_body_is_413_before_the_body_is_read(receiver):
    host, port = receiver.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:      # announce 1 MiB + 1, send none
        sock.sendall(f"POST /alerts/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {(1 << 20) + 1}\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"413"
    assert post(receiver, b" " * ((1 << 20) + 1)).status_code == 413


def test_unknown_source_is_404_and_healthz_answers(receiver):
    assert post(receiver, alertmanager(), source="pagerduty").status_code == 404
    assert httpx.get(f"{receiver}/healthz").json() == {"status": "ok"}


# -- Prefect unreachable: 503, nothing recorded, the retry starts the run ------------------------------

def test_unreachable_prefect_api_is_503_and_the_retry_starts_the_run(start_receiver, api, estate):
    url, dispatcher = start_receiver(f"http://127.0.0.1:{free_port()}/api")
    firing = crash_looping(estate.fresh())
    response = post(url, alertmanager(firing))
    assert response.status_code == 503 and "unreachable" in response.json()["error"]
    assert response.headers["Retry-After"]
    dispatcher.api = PrefectApi(api)                        # the API is back; the sender retries
    retried = post(url, alertmanager(firing))
    dispatcher.api.close()
    assert retried.status_code == 202 and outcomes(retried) == ["started"]
    settle(api)
    assert len(events_for(api, firing["fingerprint"])) == 1


def test_prefect_5xx_is_503_and_records_nothing(start_receiver, stub_api, estate):
    stub, api_url = stub_api
    stub.status = 500
    url, _ = start_receiver(api_url)
    firing = crash_looping(estate.fresh())
    assert post(url, alertmanager(firing)).status_code == 503
    stub.status = 204
    assert outcomes(post(url, alertmanager(firing))) == ["started"]
    assert len([path for path, _, _ in stub.requests if path == "/api/events"]) == 2


def test_api_auth_string_is_sent_as_basic_auth_like_the_prefect_client(stub_api):
    stub, api_url = stub_api
    prefect = PrefectApi(api_url, auth_string="admin:s3cret-pass")
    prefect.post([{"event": "x"}])
    assert prefect.runs("emergency-rollback", started_after=dt.datetime.now(dt.timezone.utc)) == []
    prefect.close()
    [(path, headers, body), (runs_path, runs_headers, _)] = stub.requests
    assert path == "/api/events" and body == [{"event": "x"}] and runs_path == "/api/flow_runs/filter"
    assert headers["Authorization"] == runs_headers["Authorization"] == "Basic YWRtaW46czNjcmV0LXBhc3M="


class FakeApi:
    """Dispatcher-level stand-in: what was posted; no runs and no change records in Prefect."""

    def __init__(self) -> None:
        self.fail, self.posted = False, []

    def post(self, events):
        if self.fail:
            raise PrefectUnavailable("down")
        self.posted.extend(events)

    def runs(self, runbook, *, started_after):
        return []

    def last_change(self, key):
        return None


def test_windows_expire_and_a_failed_post_records_nothing(estate):
    """Dedupe (600 s) and a posted event's wait for its run (30 s) are windows of receiver memory."""
    now, api = [0.0], FakeApi()
    dispatcher = AlertDispatcher(load_rules(catalog=estate.catalog), estate.catalog, api, clock=lambda: now[0])
    svc = estate.fresh()
    first, other = ([*detect_and_parse(json.dumps(alertmanager(a)).encode(), "", source="alertmanager")]
                    for a in (crash_looping(svc), rollout_stuck(svc)))
    api.fail = True
    with pytest.raises(PrefectUnavailable):
        dispatcher.dispatch(first)
    api.fail = False
    assert [o.outcome for o in dispatcher.dispatch(first)] == ["started"]
    now[0] = 29
    assert [o.outcome for o in dispatcher.dispatch(other)] == ["in-flight"]     # its run has not appeared
    now[0] = 31
    assert [o.outcome for o in dispatcher.dispatch(other)] == ["started"]       # no run came: not in flight
    now[0] = 599
    assert [o.outcome for o in dispatcher.dispatch(first)] == ["duplicate"]     # dedupe_seconds 600
    now[0] = 601
    assert [o.outcome for o in dispatcher.dispatch(first)] == ["started"]       # no change record: no cooldown
    assert len(api.posted) == 3


# -- the command -------------------------------------------------------------------------------------

def _cli(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runbooks.cli", "receiver", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture
def cli_env(api, estate) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOKS_RECEIVER_")}
    return {**env, "PREFECT_API_URL": api, "RUNBOOKS_CATALOG": str(estate.path)}


def test_command_refuses_to_start_without_a_secret_or_on_a_remote_address(cli_env):
    no_secret = _cli("--port", "0", env=cli_env)
    assert no_secret.wait(60) == 2 and "RUNBOOKS_RECEIVER_TOKEN" in no_secret.stderr.read()
    remote = _cli("--host", "0.0.0.0", env={**cli_env, "RUNBOOKS_RECEIVER_TOKEN": TOKEN})
    assert remote.wait(60) == 2 and "--allow-remote" in remote.stderr.read()


def test_command_help_documents_the_signature_scheme():
    shown = subprocess.run([sys.executable, "-m", "runbooks.cli", "receiver", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60).stdout
    assert "X-Runbooks-Timestamp" in shown and 'v1:<timestamp>:<body>' in shown and "300 s" in shown


def test_command_prints_its_url_serves_and_stops_on_sigterm(cli_env, api, estate, caplog):
    process = _cli("--port", "0", env={**cli_env, "RUNBOOKS_RECEIVER_TOKEN": TOKEN})
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, process.stderr.read()
        url = line.split("listening on ")[1].split()[0]
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert outcomes(post(url, alertmanager(crash_looping(estate.fresh())))) == ["started"]
        assert post(url, alertmanager(), token="wrong-token-0123456789").status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert TOKEN not in process.stdout.read() + process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_no_secret_is_logged(receiver, caplog, estate):
    with caplog.at_level(logging.DEBUG, logger="runbooks.receiver"):
        assert outcomes(post(receiver, alertmanager(crash_looping(estate.fresh())))) == ["started"]
        assert post(receiver, alertmanager(), token="wrong-token-0123456789").status_code == 401
    assert "started" in caplog.text and "401" in caplog.text          # the receiver did log both
    assert TOKEN not in caplog.text and HMAC_KEY not in caplog.text
