"""One error taxonomy for every API: real SDK exceptions, raised by the real SDKs over real HTTP from a loopback
server answering as each service does, mapped by `classify` in one place."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError, map_error
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from github import Auth, Github
from kubernetes import client as k8s

from tasks.errors import (AccessDenied, ConflictError, PermanentError, TargetNotFound, TransientError, classify,
                          is_transient)

# path -> (status, headers, body): what each service answers
ANSWERS: dict[str, tuple[int, dict[str, str], dict]] = {
    "/arm/conflict": (409, {}, {"error": {"code": "OperationNotAllowed",
                                          "message": "Operation is not allowed: Another operation is in progress"}}),
    "/arm/precondition": (412, {}, {"error": {"code": "PreconditionFailed", "message": "eTag mismatch"}}),
    "/arm/quota": (409, {}, {"error": {"code": "QuotaExceeded", "message": "quota exceeded for Standard_D8s_v5"}}),
    "/arm/throttled": (429, {"Retry-After": "7"}, {"error": {"code": "TooManyRequests", "message": "slow down"}}),
    "/arm/gone": (404, {}, {"error": {"code": "ResourceNotFound", "message": "agentPool 'x' not found"}}),
    "/gh/repos/o/missing": (404, {}, {"message": "Not Found"}),
    "/gh/repos/o/limited": (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "{reset}"},
                            {"message": "API rate limit exceeded"}),
    "/gh/repos/o/secondary": (429, {"retry-after": "3"}, {"message": "You have exceeded a secondary rate limit"}),
    "/gh/repos/o/forbidden": (403, {"x-ratelimit-remaining": "4999"}, {"message": "Resource not accessible"}),
    "/gh/repos/o/creds": (401, {}, {"message": "Bad credentials"}),
    "/k8s/api/v1/namespaces/ns/pods/p": (429, {"Retry-After": "2"}, {"kind": "Status", "code": 429,
                                                                     "message": "too many requests"}),
    "/prefect/api/flow_runs/x": (503, {}, {"detail": "database is locked"}),
}


@pytest.fixture(scope="module")
def server():
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            status, headers, body = ANSWERS[self.path.split("?")[0]]
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value.replace("{reset}", str(int(time.time()) + 5)))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        do_GET = do_PUT = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def azure_error(server: str, path: str) -> HttpResponseError:
    """What azure-mgmt-containerservice raises: the status mapped by `map_error`, else HttpResponseError."""
    pipeline = PipelineClient(base_url=server)
    response = pipeline.send_request(HttpRequest("PUT", f"{server}{path}"))
    try:
        map_error(status_code=response.status_code, response=response, error_map={})
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    except HttpResponseError as exc:
        return exc


@pytest.mark.parametrize("path, kind, text", [
    ("/arm/conflict", ConflictError, "OperationNotAllowed"), ("/arm/precondition", ConflictError, "412"),
    ("/arm/quota", PermanentError, "QuotaExceeded"), ("/arm/throttled", TransientError, "429"),
    ("/arm/gone", TargetNotFound, "ResourceNotFound")])
def test_azure_errors_by_status_and_arm_code(server, path, kind, text):
    mapped = classify(azure_error(server, path))
    assert type(mapped) is kind and text in str(mapped)
    if path == "/arm/throttled":
        assert mapped.retry_after == 7.0


def github_error(server: str, name: str) -> Exception:
    gh = Github(auth=Auth.Token("ghp_test_token_000"), base_url=f"{server}/gh", retry=None)
    try:
        gh.get_repo(f"o/{name}")
    except Exception as exc:     # noqa: BLE001 - PyGithub's own exception types are the subject
        return exc
    raise AssertionError("PyGithub did not raise")


@pytest.mark.parametrize("name, kind", [("missing", TargetNotFound), ("limited", TransientError),
                                        ("secondary", TransientError), ("forbidden", AccessDenied),
                                        ("creds", AccessDenied)])
def test_github_errors_rate_limits_are_transient_and_the_rest_are_not(server, name, kind):
    mapped = classify(github_error(server, name))
    assert type(mapped) is kind, mapped
    if name == "limited":
        assert 0 < mapped.retry_after <= 6          # waits until the primary limit resets (capped)
    if name == "secondary":
        assert mapped.retry_after == 3.0


def test_kubernetes_429_honours_retry_after(server):
    configuration = k8s.Configuration()
    configuration.host = f"{server}/k8s"
    api = k8s.CoreV1Api(k8s.ApiClient(configuration))
    with pytest.raises(k8s.ApiException) as info:
        api.read_namespaced_pod("p", "ns")
    mapped = classify(info.value)
    assert isinstance(mapped, TransientError) and mapped.retry_after == 2.0 and is_transient(info.value)


def test_prefect_api_errors_and_a_dead_server(server):
    response = httpx.get(f"{server}/prefect/api/flow_runs/x")
    with pytest.raises(httpx.HTTPStatusError) as info:
        response.raise_for_status()
    assert isinstance(classify(info.value), TransientError)
    with pytest.raises(httpx.TransportError) as dead:
        httpx.get("http://127.0.0.1:9/api/health", timeout=2)
    assert isinstance(classify(dead.value), TransientError)


def test_unknown_exceptions_stay_as_they_are_so_bugs_are_never_retried():
    bug = ZeroDivisionError("division by zero")
    assert classify(bug) is bug and not is_transient(bug)
