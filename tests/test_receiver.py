"""The alert receiver over real HTTP, posting real events to the session's Prefect test server.

Every test uses fresh fingerprints, so events from other tests never count. A test that asserts "no event"
first posts a marker event of its own and waits until the server has stored it: Prefect persists events
asynchronously and in order, so anything the receiver posted before the marker is stored by then.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from deployments.receiver import (AlertDispatcher, Credentials, PrefectEvents, PrefectUnavailable,
                                  ReceiverServer, SIGNATURE_HEADER)
from deployments.rules import load_rules
from sandbox.catalog import demo_catalog
from tasks.catalog import Catalog, load_catalog

TOKEN = "test-token-0123456789abcdef"
HMAC_KEY = "test-hmac-key-0123456789abcdef"
EVENT = "runbooks.alert.emergency-rollback"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("receiver")
    path = directory / "catalog.yaml"
    path.write_text(yaml.safe_dump(demo_catalog(directory / "kubeconfig")))
    return path


@pytest.fixture(scope="module")
def catalog(catalog_file) -> Catalog:
    return load_catalog(catalog_file)


@pytest.fixture
def api(prefect_harness) -> str:
    import prefect.settings
    return prefect.settings.PREFECT_API_URL.value()


@pytest.fixture
def start_receiver(catalog):
    """Start receivers (shipped rules, demo catalog) against an API URL; stopped after the test."""
    started: list[tuple[ReceiverServer, PrefectEvents]] = []

    def start(api_url: str) -> tuple[str, AlertDispatcher]:
        events = PrefectEvents(api_url)
        dispatcher = AlertDispatcher(load_rules(catalog=catalog), catalog, events)
        server = ReceiverServer(dispatcher, Credentials(token=TOKEN, hmac_key=HMAC_KEY), port=0).start()
        started.append((server, events))
        return server.url, dispatcher

    yield start
    for server, events in started:
        server.stop()
        events.close()


@pytest.fixture
def receiver(start_receiver, api) -> str:
    return start_receiver(api)[0]


def alertmanager(*alerts: dict) -> dict:
    return {"version": "4", "status": "firing", "receiver": "runbooks", "groupKey": "{}:{}", "truncatedAlerts": 0,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
            "alerts": list(alerts)}


def alert(deployment: str = "payments-api", namespace: str = "payments", *, name: str = "KubePodCrashLooping",
          status: str = "firing", fingerprint: str | None = None) -> dict:
    return {"status": status, "fingerprint": fingerprint or uuid.uuid4().hex[:16],
            "labels": {"alertname": name, "namespace": namespace, "deployment": deployment, "severity": "critical"},
            "annotations": {"summary": f"{deployment} is crash looping"},
            "startsAt": "2024-05-14T09:52:26.739Z", "endsAt": "0001-01-01T00:00:00Z"}


def post(url: str, payload: dict | bytes, *, source: str = "alertmanager", token: str | None = TOKEN,
         headers: dict | None = None) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {})}
    return httpx.post(f"{url}/alerts/{source}", content=body, headers=sent, timeout=30)


def events_for(api: str, fingerprint: str) -> list[dict]:
    response = httpx.post(f"{api}/events/filter", json={"filter": {
        "event": {"name": [EVENT]}, "resource": {"id": [f"runbooks.alert.{fingerprint}"]}}, "limit": 50})
    response.raise_for_status()
    return response.json()["events"]


def settle(api: str, timeout: float = 60) -> None:
    """Post a marker event and wait until the server has stored it (and so everything posted before it)."""
    marker = str(uuid.uuid4())
    event = {"occurred": dt.datetime.now(dt.timezone.utc).isoformat(), "event": "runbooks.test.marker",
             "resource": {"prefect.resource.id": f"runbooks.test.{marker}"}, "id": marker}
    httpx.post(f"{api}/events", json=[event]).raise_for_status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = httpx.post(f"{api}/events/filter", json={"filter": {"id": {"id": [marker]}}, "limit": 1})
        if found.json()["events"]:
            return
        time.sleep(0.2)
    raise AssertionError("the Prefect server did not store the marker event")


def outcomes(response: httpx.Response) -> list[str]:
    return [o["outcome"] for o in response.json()["outcomes"]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- accepted alerts become events -----------------------------------------------------------------------

def test_firing_alert_becomes_exactly_one_event_with_the_runbook_parameters(receiver, api):
    firing = alert()
    response = post(receiver, alertmanager(firing))
    assert response.status_code == 202 and outcomes(response) == ["started"]
    settle(api)
    [event] = events_for(api, firing["fingerprint"])
    assert event["event"] == EVENT and event["id"] == response.json()["outcomes"][0]["event_id"]
    assert event["resource"] == {"prefect.resource.id": f"runbooks.alert.{firing['fingerprint']}",
                                 "prefect.resource.name": "KubePodCrashLooping",
                                 "runbooks.runbook": "emergency-rollback", "runbooks.target": "production/payments-api"}
    parameters = event["payload"]["parameters"]
    assert parameters["service"] == "payments-api" and parameters["environment"] == "production"
    assert parameters["requested_by"] == "alert:alertmanager"
    assert parameters["alert"] == (f"alertmanager alert KubePodCrashLooping (critical) fingerprint "
                                   f"{firing['fingerprint']}: payments-api is crash looping")
    assert "payments/payments-api" in parameters["reason"]
    assert all(isinstance(value, str) for value in parameters.values())
    assert event["payload"]["alert"]["labels"]["deployment"] == "payments-api"


def test_same_fingerprint_again_is_a_duplicate_and_posts_no_second_event(receiver, api):
    firing = alert()
    assert outcomes(post(receiver, alertmanager(firing))) == ["started"]
    again = post(receiver, alertmanager(firing))
    assert again.status_code == 202 and outcomes(again) == ["duplicate"]
    settle(api)
    assert len(events_for(api, firing["fingerprint"])) == 1


def test_resolved_alert_starts_nothing(receiver, api):
    resolved = alert(status="resolved")
    response = post(receiver, alertmanager(resolved))
    assert response.status_code == 202 and outcomes(response) == ["resolved"]
    settle(api)
    assert events_for(api, resolved["fingerprint"]) == []


def test_cooldown_holds_other_alerts_on_the_same_target_but_not_other_targets(receiver, api):
    first, same_target, other_target = alert(), alert(name="KubeDeploymentRolloutStuck"), alert("cart", "checkout")
    assert outcomes(post(receiver, alertmanager(first))) == ["started"]
    response = post(receiver, alertmanager(same_target, other_target))
    assert outcomes(response) == ["cooldown", "started"]
    assert response.json()["outcomes"][0]["target"] == "production/payments-api"
    settle(api)
    assert len(events_for(api, first["fingerprint"])) == 1
    assert events_for(api, same_target["fingerprint"]) == []
    assert len(events_for(api, other_target["fingerprint"])) == 1


def test_hmac_signed_delivery_is_accepted(receiver, api):
    firing = alert("checkout-web", "checkout")
    body = json.dumps(alertmanager(firing)).encode()
    signature = hmac.new(HMAC_KEY.encode(), body, hashlib.sha256).hexdigest()
    response = post(receiver, body, token=None, headers={SIGNATURE_HEADER: f"sha256={signature}"})
    assert response.status_code == 202 and outcomes(response) == ["started"]


@pytest.mark.parametrize("source, sample", [("azure-monitor", "azure-monitor-prometheus"), ("grafana", "grafana-firing")])
def test_azure_monitor_and_grafana_alerts_start_the_runbook_too(receiver, api, source, sample):
    document = json.loads((ROOT / "tests" / "data" / "alerts" / f"{sample}.json").read_text())
    fingerprint = uuid.uuid4().hex
    if source == "azure-monitor":
        document["data"]["essentials"]["alertId"] = fingerprint
    else:
        document["alerts"][0]["fingerprint"] = fingerprint
    response = post(receiver, document, source=source)
    assert response.status_code == 202 and outcomes(response) == ["started"]
    settle(api)
    [event] = events_for(api, fingerprint)
    assert event["payload"]["parameters"]["requested_by"] == f"alert:{source}"


# -- nothing starts ------------------------------------------------------------------------------------

BAD_AUTH = {"wrong token": {"Authorization": "Bearer wrong-token-0123456789"},
            "not bearer": {"Authorization": f"Basic {TOKEN}"},
            "bad signature": {SIGNATURE_HEADER: "sha256=" + "0" * 64},
            "wrong algorithm": {SIGNATURE_HEADER: f"md5={'0' * 32}"},
            "none": {}}


def test_unauthenticated_delivery_is_401_and_posts_no_event(receiver, api, caplog):
    sent = {}
    with caplog.at_level(logging.DEBUG):
        for case, headers in BAD_AUTH.items():      # one settle for all cases: each costs seconds
            firing = alert()
            response = post(receiver, alertmanager(firing), token=None, headers=headers)
            assert (case, response.status_code, response.headers.get("WWW-Authenticate")) == (case, 401, "Bearer")
            sent[case] = firing["fingerprint"]
    settle(api)
    assert {case: events_for(api, fingerprint) for case, fingerprint in sent.items()} == {case: [] for case in sent}
    assert TOKEN not in caplog.text and HMAC_KEY not in caplog.text


def test_malformed_json_is_400_with_the_parse_error(receiver):
    response = post(receiver, b'{"alerts": [')
    assert response.status_code == 400 and "not JSON" in response.json()["error"]
    wrong_type = post(receiver, alertmanager({**alert(), "labels": {"alertname": "X", "replicas": 3}}))
    assert wrong_type.status_code == 400 and "alerts[0].labels.replicas" in wrong_type.json()["error"]


def test_alert_no_rule_wants_is_422_and_posts_no_event(receiver, api):
    unknown, not_in_catalog = alert(name="HighMemoryUsage"), alert("fraud-api", "payments")
    response = post(receiver, alertmanager(unknown, not_in_catalog))
    assert response.status_code == 422 and outcomes(response) == ["ignored", "ignored"]
    reasons = [o["reason"] for o in response.json()["outcomes"]]
    assert "no rule matches" in reasons[0] and "payments/fraud-api" in reasons[1]
    settle(api)
    assert events_for(api, unknown["fingerprint"]) == events_for(api, not_in_catalog["fingerprint"]) == []


def test_oversized_body_is_413_before_the_body_is_read(receiver):
    host, port = receiver.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:      # announce 1 MiB + 1, send none
        sock.sendall(f"POST /alerts/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {(1 << 20) + 1}\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"413"
    assert post(receiver, b" " * ((1 << 20) + 1)).status_code == 413


def test_unknown_source_is_404_and_healthz_answers(receiver):
    assert post(receiver, alertmanager(alert()), source="pagerduty").status_code == 404
    assert httpx.get(f"{receiver}/healthz").json() == {"status": "ok"}


# -- Prefect unreachable: 503, nothing recorded, the retry succeeds -----------------------------------

def test_unreachable_prefect_api_is_503_and_the_retry_starts_the_run(start_receiver, api):
    url, dispatcher = start_receiver(f"http://127.0.0.1:{free_port()}/api")
    firing = alert()
    response = post(url, alertmanager(firing))
    assert response.status_code == 503 and "unreachable" in response.json()["error"]
    dispatcher.events = PrefectEvents(api)                  # the API is back; the sender retries
    retried = post(url, alertmanager(firing))
    dispatcher.events.close()
    assert retried.status_code == 202 and outcomes(retried) == ["started"]
    settle(api)
    assert len(events_for(api, firing["fingerprint"])) == 1


class _StubApi(BaseHTTPRequestHandler):
    """A stand-in Prefect API that records what it was sent and answers with `status`."""
    status, requests = 204, []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub_api():
    _StubApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield _StubApi, f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def test_prefect_5xx_is_503_and_records_nothing(start_receiver, stub_api):
    stub, api_url = stub_api
    stub.status = 500
    url, _ = start_receiver(api_url)
    firing = alert()
    assert post(url, alertmanager(firing)).status_code == 503
    stub.status = 204
    assert outcomes(post(url, alertmanager(firing))) == ["started"]
    assert len(stub.requests) == 2


def test_api_auth_string_is_sent_as_basic_auth_like_the_prefect_client(stub_api):
    stub, api_url = stub_api
    stub.status = 204
    events = PrefectEvents(api_url, auth_string="admin:s3cret-pass")
    events.post([{"event": "x"}])
    events.close()
    [(path, headers, body)] = stub.requests
    assert path == "/api/events" and body == [{"event": "x"}]
    assert headers["Authorization"] == "Basic YWRtaW46czNjcmV0LXBhc3M="       # base64("admin:s3cret-pass")


def test_windows_expire_and_a_failed_post_records_nothing(catalog):
    class Sink:
        fail, posted = False, []

        def post(self, events):
            if self.fail:
                raise PrefectUnavailable("down")
            self.posted.extend(events)

    now, sink = [0.0], Sink()
    dispatcher = AlertDispatcher(load_rules(catalog=catalog), catalog, sink, clock=lambda: now[0])
    from deployments.alerts import detect_and_parse
    first = detect_and_parse(json.dumps(alertmanager(alert())).encode(), "", source="alertmanager")
    sink.fail = True
    with pytest.raises(PrefectUnavailable):
        dispatcher.dispatch(first)
    sink.fail = False
    assert [o.outcome for o in dispatcher.dispatch(first)] == ["started"]
    now[0] = 599
    assert [o.outcome for o in dispatcher.dispatch(first)] == ["duplicate"]      # dedupe_seconds 600
    now[0] = 601
    assert [o.outcome for o in dispatcher.dispatch(first)] == ["cooldown"]       # cooldown_seconds 900
    now[0] = 901
    assert [o.outcome for o in dispatcher.dispatch(first)] == ["started"]
    assert len(sink.posted) == 2


# -- the command -------------------------------------------------------------------------------------

def _cli(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runbooks.cli", "receiver", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture
def cli_env(api, catalog_file) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOKS_RECEIVER_")}
    return {**env, "PREFECT_API_URL": api, "RUNBOOKS_CATALOG": str(catalog_file)}


def test_command_refuses_to_start_without_a_secret_or_on_a_remote_address(cli_env):
    no_secret = _cli("--port", "0", env=cli_env)
    assert no_secret.wait(60) == 2 and "RUNBOOKS_RECEIVER_TOKEN" in no_secret.stderr.read()
    remote = _cli("--host", "0.0.0.0", env={**cli_env, "RUNBOOKS_RECEIVER_TOKEN": TOKEN})
    assert remote.wait(60) == 2 and "--allow-remote" in remote.stderr.read()


def test_command_prints_its_url_serves_and_stops_on_sigterm(cli_env, api):
    process = _cli("--port", "0", env={**cli_env, "RUNBOOKS_RECEIVER_TOKEN": TOKEN})
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, process.stderr.read()
        url = line.split("listening on ")[1].split()[0]
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert post(url, alertmanager(alert()), token="wrong-token-0123456789").status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert TOKEN not in process.stdout.read() + process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
