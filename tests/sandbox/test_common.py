"""The shared stand-in layer (sandbox/common) used without Kubernetes: a service of its own gets the threaded
server, TLS from a generated CA, faults, the request log and the admin endpoints, and renders its own error
bodies and rate-limit headers. This is what the Azure and GitHub stand-ins will build on."""
from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from sandbox.common.errors import HttpError
from sandbox.common.faults import Fault
from sandbox.common.http import Handler, Request
from sandbox.common.standin import StandIn, StandInConfig

pytestmark = pytest.mark.timeout(30)


class ArmLike(StandIn):
    """A toy Azure-Resource-Manager-shaped service: `{"value": [...]}` lists, `{"error": {...}}` errors, and
    ARM's throttling header on a 429."""

    server_name = "arm-like"

    def serve(self, request: Request, responder: Handler) -> int:
        if request.path != "/subscriptions/s1/resourceGroups":
            raise HttpError(404, "ResourceGroupNotFound", f"Resource group '{request.path}' could not be found.")
        return responder.send_json(200, {"value": [{"name": "rg-demo"}]})

    def fault_error(self, fault: Fault) -> HttpError:
        error = super().fault_error(fault)
        if fault.status == 429:
            error.headers["x-ms-ratelimit-remaining-subscription-reads"] = "0"
        return error


@pytest.fixture
def arm() -> Iterator[ArmLike]:
    service = ArmLike(StandInConfig(seed=3))
    service.start_server()
    yield service
    service.stop_server()


def test_common_imports_nothing_kubernetes_specific():
    code = ("import sys, sandbox.common.http, sandbox.common.standin, sandbox.common.admin, sandbox.common.pki; "
            "print([m for m in sys.modules if m.startswith('sandbox.kubernetes') or m.split('.')[0] == 'kubernetes'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"


def test_a_service_renders_its_own_errors_and_rate_limit_headers(arm):
    ok = httpx.get(f"{arm.url}/subscriptions/s1/resourceGroups")
    assert ok.json() == {"value": [{"name": "rg-demo"}]} and ok.text.endswith("}\n")
    assert ok.headers["server"].startswith("arm-like")
    missing = httpx.get(f"{arm.url}/subscriptions/s1/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceGroupNotFound"

    arm.faults.add(verb="read", path="/subscriptions/*", status=429, retry_after=7, times=1)
    throttled = httpx.get(f"{arm.url}/subscriptions/s1/resourceGroups")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    assert throttled.json() == {"error": {"code": "TooManyRequests", "message": "injected fault 429"}}
    assert httpx.get(f"{arm.url}/subscriptions/s1/resourceGroups").status_code == 200     # times=1

    log = [(e.method, e.path, e.verb, e.status) for e in arm.requests.entries()]
    assert log == [("GET", "/subscriptions/s1/resourceGroups", "get", 200),
                   ("GET", "/subscriptions/s1/nope", "get", 404),
                   ("GET", "/subscriptions/s1/resourceGroups", "get", 429),
                   ("GET", "/subscriptions/s1/resourceGroups", "get", 200)]


def test_admin_endpoints_steer_any_service_and_are_never_logged(arm):
    added = httpx.post(f"{arm.url}/_sandbox/faults", json={"path": "/subscriptions/*", "status": 503, "times": 1})
    assert added.status_code == 201
    assert httpx.get(f"{arm.url}/subscriptions/s1/resourceGroups").status_code == 503
    listed = httpx.get(f"{arm.url}/_sandbox/faults").json()["faults"]
    assert [(f["status"], f["fired"]) for f in listed] == [(503, 1)]
    bad = httpx.post(f"{arm.url}/_sandbox/faults", json={"status": 200})
    assert bad.status_code == 400 and "4xx or 5xx" in bad.json()["error"]["message"]   # rendered by the service
    requests = httpx.get(f"{arm.url}/_sandbox/requests").json()["requests"]
    assert [(r["path"], r["status"]) for r in requests] == [("/subscriptions/s1/resourceGroups", 503)]


def test_dropped_connections_and_bearer_tokens_and_tls(tmp_path):
    service = ArmLike(StandInConfig(tls=True, token="s3cret"))
    service.start_server()
    try:
        ca = tmp_path / "ca.crt"
        ca.write_bytes(service.ca.cert_pem)
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as https:
            assert https.get(f"{service.url}/subscriptions/s1/resourceGroups").status_code == 401
            auth = {"Authorization": "Bearer s3cret"}
            assert https.get(f"{service.url}/subscriptions/s1/resourceGroups", headers=auth).status_code == 200
            service.faults.add(path="/subscriptions/*", drop=True, times=1)
            with pytest.raises(httpx.TransportError):
                https.get(f"{service.url}/subscriptions/s1/resourceGroups", headers=auth)
        assert service.url.startswith("https://127.0.0.1:")
        assert [e.status for e in service.requests.entries()] == [401, 200, 0]
    finally:
        service.stop_server()


def test_a_stand_in_binds_to_loopback_only():
    with pytest.raises(ValueError, match="loopback only"):
        StandInConfig(host="0.0.0.0")
    assert json.loads(ArmLike(StandInConfig()).encode({"a": 1})) == {"a": 1}
