"""Fault injection, the request log, the admin endpoints, TLS and bearer tokens, as the real
`kubernetes` client (and plain HTTP where the client cannot express the request) sees them."""
from __future__ import annotations

import json
import threading
import time
from typing import Iterator

import httpx
import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from sandbox.server import Sandbox
from tests.conftest import start_sandbox

pytestmark = pytest.mark.timeout(60)


def status_of(exc: ApiException) -> dict:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == exc.status, body
    return body


def configmap(name: str) -> dict:
    return {"metadata": {"name": name}, "data": {"k": "v"}}


def no_retry_client(sandbox: Sandbox) -> client.ApiClient:
    """A client whose urllib3 pool does not retry, so a dropped connection surfaces as an error."""
    cfg = client.Configuration()
    config.load_kube_config_from_dict(sandbox.kubeconfig(), client_configuration=cfg)
    cfg.retries = False
    return client.ApiClient(cfg)


@pytest.fixture
def seeded() -> Iterator[Sandbox]:
    sb = start_sandbox(seed=1, controllers=False)
    sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    yield sb
    sb.stop()


# ----------------------------------------------------------------------------------------------
# injected answers

def test_429_fault_carries_retry_after_and_fires_the_given_number_of_times(sandbox):
    api = no_retry_client(sandbox)          # urllib3 would otherwise honour Retry-After itself (next test)
    core = client.CoreV1Api(api)
    rule = sandbox.faults.add(verb="get", path="/api/v1/namespaces/*", status=429, retry_after=3, times=1)
    mark = sandbox.requests.mark()
    with pytest.raises(ApiException) as exc:
        core.read_namespace("default")
    assert exc.value.status == 429
    assert exc.value.headers["Retry-After"] == "3"
    body = status_of(exc.value)
    assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 3

    assert core.read_namespace("default").metadata.name == "default"      # times=1: spent
    api.close()
    assert rule.fired == 1
    assert [(e.verb, e.path, e.status) for e in sandbox.requests.entries(mark)] == [
        ("get", "/api/v1/namespaces/default", 429), ("get", "/api/v1/namespaces/default", 200)]


def test_default_client_waits_out_retry_after_on_429(sandbox, api_client):
    sandbox.faults.add(verb="list", path="/api/v1/namespaces/default/configmaps", status=429, retry_after=1,
                       times=1)
    started = time.monotonic()
    assert client.CoreV1Api(api_client).list_namespaced_config_map("default").items == []
    assert time.monotonic() - started >= 1.0
    entries = sandbox.requests.entries()[-2:]
    assert [e.status for e in entries] == [429, 200] and entries[1].time - entries[0].time >= 1.0


@pytest.mark.parametrize("code, reason", [(500, "InternalError"), (503, "ServiceUnavailable"),
                                          (504, "Timeout")])
def test_server_error_faults_are_status_objects(sandbox, api_client, code, reason):
    core = client.CoreV1Api(api_client)
    sandbox.faults.add(verb="list", path="/api/v1/namespaces/default/configmaps", status=code, times=1)
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map("default")
    body = status_of(exc.value)
    assert (exc.value.status, body["reason"]) == (code, reason)
    assert body["message"]
    assert core.list_namespaced_config_map("default").items == []
    assert [e.status for e in sandbox.requests.entries()[-2:]] == [code, 200]


def test_fault_on_a_write_stores_nothing(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    sandbox.faults.add(verb="create", path="/api/v1/namespaces/default/configmaps", status=500)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", configmap("c"))
    assert exc.value.status == 500 and status_of(exc.value)["reason"] == "InternalError"
    assert sandbox.list("ConfigMap") == []
    assert sandbox.requests.writes()[-1].status == 500


def test_write_faults_leave_reads_alone(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map("default", configmap("existing"))
    sandbox.faults.add(verb="write", status=503)
    mark = sandbox.requests.mark()

    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["existing"]
    assert core.read_namespaced_config_map("existing", "default").data == {"k": "v"}
    for call in (lambda: core.create_namespaced_config_map("default", configmap("new")),
                 lambda: core.patch_namespaced_config_map("existing", "default", {"data": {"k": "2"}}),
                 lambda: core.replace_namespaced_config_map("existing", "default", configmap("existing")),
                 lambda: core.delete_namespaced_config_map("existing", "default")):
        with pytest.raises(ApiException) as exc:
            call()
        assert exc.value.status == 503
    assert [c["metadata"]["name"] for c in sandbox.list("ConfigMap")] == ["existing"]
    assert sandbox.get("ConfigMap", "existing", "default")["data"] == {"k": "v"}
    assert [(e.verb, e.status) for e in sandbox.requests.entries(mark)] == [
        ("list", 200), ("get", 200), ("create", 503), ("patch", 503), ("update", 503), ("delete", 503)]


def test_fault_path_glob_matches_only_its_paths(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    sandbox.faults.add(path="/api/v1/namespaces/*/secrets*", status=500)
    core.create_namespaced_config_map("default", configmap("fine"))
    assert core.list_namespaced_config_map("default").items
    with pytest.raises(ApiException):
        core.list_namespaced_secret("default")
    with pytest.raises(ApiException):
        core.read_namespaced_secret("x", "default")


# ----------------------------------------------------------------------------------------------
# connections

def test_dropped_connection_raises_without_retries(sandbox):
    api = no_retry_client(sandbox)
    core = client.CoreV1Api(api)
    sandbox.faults.add(verb="get", path="/api/v1/namespaces/default", drop=True, times=1)
    try:
        with pytest.raises((urllib3.exceptions.ProtocolError, ConnectionError)):
            core.read_namespace("default")
        assert core.read_namespace("default").metadata.name == "default"
    finally:
        api.close()
    assert [e.status for e in sandbox.requests.entries()[-2:]] == [0, 200]      # 0: no answer was sent


def test_dropped_get_is_retried_by_a_default_client(sandbox, api_client):
    sandbox.faults.add(verb="get", path="/api/v1/namespaces/default", drop=True, times=1)
    assert client.CoreV1Api(api_client).read_namespace("default").metadata.name == "default"
    assert [(e.path, e.status) for e in sandbox.requests.entries()[-2:]] == [
        ("/api/v1/namespaces/default", 0), ("/api/v1/namespaces/default", 200)]


def test_latency_fault_slows_only_matching_calls(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    core.list_namespaced_config_map("default")                        # warm the connection
    sandbox.faults.add(verb="list", path="/api/v1/namespaces/default/configmaps", latency=0.3)
    started = time.monotonic()
    assert core.list_namespaced_config_map("default").items == []
    slow = time.monotonic() - started
    started = time.monotonic()
    core.read_namespace("default")
    fast = time.monotonic() - started
    assert 0.3 <= slow < 1.5 and fast < 0.2, (slow, fast)


def test_cut_watch_ends_the_stream_early_without_the_final_chunk(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map("default", configmap("seen"))
    sandbox.faults.add(verb="watch", path="/api/v1/namespaces/default/configmaps", cut_watch_after=0.3)
    events: list[str] = []
    started = time.monotonic()
    ended_with: BaseException | None = None
    try:
        for event in watch.Watch().stream(core.list_namespaced_config_map, namespace="default",
                                          timeout_seconds=5):
            events.append(event["type"])
    except Exception as exc:        # urllib3 may report the truncated chunked body
        ended_with = exc
    elapsed = time.monotonic() - started
    assert events == ["ADDED"]
    assert elapsed < 2.0, elapsed                         # well before timeoutSeconds=5
    assert ended_with is None or isinstance(ended_with, (urllib3.exceptions.HTTPError, ConnectionError))

    # the same watch without the fault runs to its timeout and ends cleanly
    sandbox.faults.clear()
    r = httpx.get(f"{sandbox.url}/api/v1/namespaces/default/configmaps",
                  params={"watch": "1", "timeoutSeconds": "1"})
    assert r.status_code == 200 and [json.loads(x)["type"] for x in r.text.splitlines()] == ["ADDED"]


def _fire_pattern(sb: Sandbox, n: int) -> list[bool]:
    api = config.new_client_from_config_dict(sb.kubeconfig())
    core = client.CoreV1Api(api)
    pattern = []
    try:
        for _ in range(n):
            try:
                core.list_namespaced_config_map("default")
                pattern.append(False)
            except ApiException as exc:
                assert exc.status == 500
                pattern.append(True)
    finally:
        api.close()
    return pattern


def test_probability_fires_about_that_share_reproducibly_with_a_seed(seeded):
    seeded.faults.add(verb="list", status=500, probability=0.25)
    pattern = _fire_pattern(seeded, 200)
    assert 30 <= sum(pattern) <= 70, sum(pattern)
    assert sum(e.status == 500 for e in seeded.requests.entries()) == sum(pattern)
    assert seeded.faults.rules()[0].fired == sum(pattern)

    again = start_sandbox(seed=1, controllers=False)
    try:
        again.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        again.faults.add(verb="list", status=500, probability=0.25)
        assert _fire_pattern(again, 200) == pattern                    # same seed, same requests: same faults
    finally:
        again.stop()


# ----------------------------------------------------------------------------------------------
# admin endpoints

def test_faults_admin_endpoint_adds_lists_and_clears(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    base = f"{sandbox.url}/_sandbox/faults"
    r = httpx.post(base, json={"verb": "list", "path": "/api/v1/namespaces/default/configmaps",
                               "status": 503, "times": 2})
    assert r.status_code == 201
    rule = r.json()
    assert rule["status"] == 503 and rule["times"] == 2 and rule["fired"] == 0 and rule["id"]

    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            core.list_namespaced_config_map("default")
        assert status_of(exc.value)["reason"] == "ServiceUnavailable"
    assert core.list_namespaced_config_map("default").items == []
    (listed,) = httpx.get(base).json()["faults"]
    assert listed["id"] == rule["id"] and listed["fired"] == 2

    second = httpx.post(base, json={"verb": "get", "status": 500}).json()
    assert httpx.delete(f"{base}/{second['id']}").json() == {"removed": True}
    assert httpx.delete(f"{base}/{second['id']}").status_code == 404
    assert [f["id"] for f in httpx.get(base).json()["faults"]] == [rule["id"]]
    assert httpx.delete(base).status_code == 200
    assert httpx.get(base).json() == {"faults": []}
    assert not any(e.path.startswith("/_sandbox") for e in sandbox.requests.entries())   # admin calls unlogged


@pytest.mark.parametrize("payload", [
    {"verb": "get", "colour": "red"},                  # unknown field
    {"status": 200},                                   # not an error status
    {"status": "500"},                                 # wrong type
    {"probability": 1.5},
    {"latency": "slow"},
    {"latency": -1},
    {"times": -1},
    {"verb": "fetch"},                                 # not a verb the sandbox knows
    {"drop": "yes"},
    {"cut_watch_after": "soon"},
    ["verb", "get"],                                   # not an object
])
def test_faults_admin_endpoint_rejects_bad_rules(sandbox, api_client, payload):
    r = httpx.post(f"{sandbox.url}/_sandbox/faults", json=payload)
    assert r.status_code == 400, r.text
    assert (r.json()["kind"], r.json()["reason"]) == ("Status", "BadRequest")
    assert sandbox.faults.rules() == []
    assert client.CoreV1Api(api_client).read_namespace("default").metadata.name == "default"   # still serving


def test_faults_admin_endpoint_rejects_malformed_json(sandbox):
    r = httpx.post(f"{sandbox.url}/_sandbox/faults", content=b"{verb: get",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    assert sandbox.faults.rules() == []


def test_request_log_endpoint_returns_and_clears_requests(sandbox, api_client):
    core = client.CoreV1Api(api_client)
    httpx.delete(f"{sandbox.url}/_sandbox/requests")
    core.create_namespaced_config_map("default", configmap("logged"))
    core.list_namespaced_config_map("default", label_selector="app=x", limit=5)
    core.patch_namespaced_config_map("logged", "default", {"data": {"k": "2"}})

    entries = httpx.get(f"{sandbox.url}/_sandbox/requests").json()["requests"]
    assert [(e["method"], e["path"], e["verb"], e["status"]) for e in entries] == [
        ("POST", "/api/v1/namespaces/default/configmaps", "create", 201),
        ("GET", "/api/v1/namespaces/default/configmaps", "list", 200),
        ("PATCH", "/api/v1/namespaces/default/configmaps/logged", "patch", 200)]
    create, listing, patch = entries
    assert create["body"] == configmap("logged") and create["is_write"] is True
    assert listing["query"] == {"labelSelector": "app=x", "limit": "5"} and listing["body"] is None
    assert listing["is_write"] is False
    assert patch["content_type"] == "application/strategic-merge-patch+json"
    assert patch["body"] == {"data": {"k": "2"}}
    assert all(e["user_agent"].startswith("OpenAPI-Generator") for e in entries)

    since = entries[-1]["time"]
    assert [e["method"] for e in httpx.get(f"{sandbox.url}/_sandbox/requests",
                                           params={"since": since}).json()["requests"]] == ["PATCH"]
    assert httpx.delete(f"{sandbox.url}/_sandbox/requests").json() == {"cleared": True}
    assert httpx.get(f"{sandbox.url}/_sandbox/requests").json() == {"requests": []}
    assert sandbox.requests.entries() == []


def test_read_only_calls_log_no_writes(sandbox, api_client):
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    core.create_namespaced_config_map("default", configmap("c"))
    mark = sandbox.requests.mark()
    core.read_namespaced_config_map("c", "default")
    core.list_config_map_for_all_namespaces()
    apps.list_namespaced_deployment("default")
    core.list_node()
    list(watch.Watch().stream(core.list_namespaced_config_map, namespace="default", timeout_seconds=1))
    with pytest.raises(ApiException):
        core.read_namespaced_secret("missing", "default")
    assert sandbox.requests.writes(mark) == []
    assert [e.verb for e in sandbox.requests.entries(mark)] == ["get", "list", "list", "list", "watch", "get"]


def test_a_watch_is_logged_while_it_streams(sandbox, api_client):
    """An entry is recorded as the answer starts, so the log already shows a request whose answer the client
    holds (and a watch that is still open)."""
    core = client.CoreV1Api(api_client)
    w = watch.Watch()
    seen = threading.Event()

    def consume() -> None:
        for _ in w.stream(core.list_namespaced_config_map, namespace="default", timeout_seconds=5):
            seen.set()
            w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        entry = sandbox.wait_for(lambda: next((e for e in sandbox.requests.entries() if e.verb == "watch"), None),
                                 timeout=2)
        assert entry.status == 200 and entry.query["watch"] == "true"
        assert thread.is_alive()
        core.create_namespaced_config_map("default", configmap("wake"))
        assert seen.wait(3)
    finally:
        thread.join(timeout=5)
    for i in range(20):
        core.create_namespaced_config_map("default", configmap(f"n{i}"))
        last = sandbox.requests.entries()[-1]
        assert (last.path, last.status, last.body["metadata"]["name"]) == (
            "/api/v1/namespaces/default/configmaps", 201, f"n{i}")


# ----------------------------------------------------------------------------------------------
# TLS and tokens

def test_tls_client_from_kubeconfig_verifies_the_generated_ca():
    sb = start_sandbox(tls=True, controllers=False)
    try:
        sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        assert sb.url.startswith("https://127.0.0.1:")
        kubeconfig = sb.kubeconfig()
        assert kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
        api = config.new_client_from_config_dict(kubeconfig)
        try:
            assert api.configuration.verify_ssl is True
            core = client.CoreV1Api(api)
            core.create_namespaced_config_map("default", configmap("secure"))
            assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["secure"]
        finally:
            api.close()
        assert [e.verb for e in sb.requests.entries()] == ["create", "list"]

        cfg = client.Configuration(host=sb.url)               # no CA: the system trust store does not know it
        cfg.retries = False
        stranger = client.ApiClient(cfg)
        try:
            with pytest.raises((ApiException, urllib3.exceptions.SSLError)) as exc:
                client.CoreV1Api(stranger).list_namespace()
            assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)
        finally:
            stranger.close()
        assert len(sb.requests.entries()) == 2                # the handshake failed: no request was served
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{sb.url}/version")
    finally:
        sb.stop()


def test_bearer_token_is_required_when_configured():
    sb = start_sandbox(token="s3cret", controllers=False)
    try:
        sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        url = f"{sb.url}/api/v1/namespaces/default/configmaps"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = httpx.get(url, headers=headers)
            assert r.status_code == 401
            assert (r.json()["kind"], r.json()["reason"], r.json()["code"]) == ("Status", "Unauthorized", 401)
        r = httpx.post(url, json=configmap("sneaky"))
        assert r.status_code == 401 and sb.list("ConfigMap") == []
        assert httpx.get(f"{sb.url}/healthz").text == "ok"                     # health stays open

        api = config.new_client_from_config_dict(sb.kubeconfig())
        try:
            core = client.CoreV1Api(api)
            core.create_namespaced_config_map("default", configmap("allowed"))
            assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["allowed"]
        finally:
            api.close()

        cfg = client.Configuration(host=sb.url, api_key={"BearerToken": "nope"},
                                   api_key_prefix={"BearerToken": "Bearer"})
        wrong = client.ApiClient(cfg)
        try:
            with pytest.raises(ApiException) as exc:
                client.CoreV1Api(wrong).list_namespaced_config_map("default")
            assert exc.value.status == 401 and status_of(exc.value)["reason"] == "Unauthorized"
        finally:
            wrong.close()
        assert [e.status for e in sb.requests.entries() if e.path != "/healthz"] == [401, 401, 401, 401, 201, 200, 401]
    finally:
        sb.stop()
