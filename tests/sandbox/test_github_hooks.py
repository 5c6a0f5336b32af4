"""The GitHub stand-in delivers repository webhooks as GitHub does: a ping when the hook is made, then each run's
`workflow_run` events, signed with `X-Hub-Signature-256`; a redelivery keeps the delivery's GUID."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from tests.sandbox.azure_helpers import wait_for
from tests.sandbox.github_helpers import REPO

pytestmark = pytest.mark.timeout(30)
SECRET = "It's a Secret to Everybody"


class Inbox(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.received: list[tuple[dict, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Inbox

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    server = Inbox()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def events(inbox: Inbox) -> list[tuple[str, str | None]]:
    return [(h["x-github-event"], json.loads(b).get("action")) for h, b in inbox.received]


def test_a_run_is_announced_as_requested_in_progress_and_completed_signed_with_the_secret(gh, github, inbox):
    gh.add_workflow(REPO, "ci.yml")
    gh.add_run(REPO, "ci.yml", age=3600)                # before the hook: never announced
    repo = github.get_repo(REPO)
    hook = repo.create_hook("web", {"url": f"http://127.0.0.1:{inbox.server_port}/github", "content_type": "json",
                                    "secret": SECRET}, events=["workflow_run"])
    wait_for(lambda: events(inbox) == [("ping", None)])
    [made] = gh.requests.writes()
    assert made.body["config"]["secret"] == "REDACTED" and SECRET not in str(gh.requests.entries())
    gh.next_outcome(REPO, "ci.yml", conclusion="failure", stuck=True, hold=True)
    run = repo.get_workflow("ci.yml").create_dispatch("main", return_run_details=True)
    wait_for(lambda: len(inbox.received) == 2)
    gh.begin(run.id)
    wait_for(lambda: len(inbox.received) == 3)
    gh.finish(run.id)
    wait_for(lambda: len(inbox.received) == 4)
    assert events(inbox)[1:] == [("workflow_run", "requested"), ("workflow_run", "in_progress"),
                                 ("workflow_run", "completed")]
    headers, body = inbox.received[-1]
    assert headers["x-hub-signature-256"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    payload = json.loads(body)
    assert (payload["workflow_run"]["id"], payload["workflow_run"]["conclusion"]) == (run.id, "failure")
    assert payload["repository"]["full_name"] == REPO and headers["x-github-hook-id"] == str(hook.id)


def test_a_redelivery_keeps_the_guid_and_says_so(gh, github, inbox):
    gh.add_workflow(REPO, "ci.yml")
    hook = gh.add_hook(REPO, f"http://127.0.0.1:{inbox.server_port}/github", secret=SECRET)
    gh.add_run(REPO, "ci.yml", conclusion="failure")
    wait_for(lambda: ("workflow_run", "completed") in events(inbox))
    repo = github.get_repo(REPO)
    [completed] = [d for d in repo.get_hook_deliveries(hook.id) if d.action == "completed"]
    assert completed.status_code == 204 and completed.redelivery is False
    status, _, _ = repo._requester.requestJson(
        "POST", f"{repo.url}/hooks/{hook.id}/deliveries/{completed.id}/attempts")
    assert status == 202
    wait_for(lambda: events(inbox).count(("workflow_run", "completed")) == 2)
    completions = [(h, b) for h, b in inbox.received if json.loads(b).get("action") == "completed"]
    (first, body), (again, body_again) = completions
    assert again["x-github-delivery"] == first["x-github-delivery"] and body_again == body
    assert [d.redelivery for d in gh.deliveries(REPO)][-1] is True


def test_a_hook_must_point_at_loopback(gh, github):
    from github import GithubException
    with pytest.raises(GithubException) as raised:
        github.get_repo(REPO).create_hook("web", {"url": "https://hooks.example.com/github"}, events=["workflow_run"])
    assert raised.value.status == 422
    assert gh.repo(REPO).hooks == {}
