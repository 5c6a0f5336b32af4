"""Real PyGithub against the GitHub stand-in: authentication (token, GitHub App installation token), GitHub
Enterprise Server paths, rate limits (headers, primary, secondary), conditional requests, faults."""
from __future__ import annotations

import time

import pytest
import requests
from github import Auth, BadCredentialsException, Github, GithubException, UnknownObjectException
from github.GithubException import RateLimitExceededException, RateLimitExceededExceedsMaxWait

from tests.sandbox.github_helpers import REPO, client, quick_retry, start_github

pytestmark = pytest.mark.timeout(30)


def test_a_bad_token_is_401_bad_credentials_and_a_missing_repository_404(gh, github):
    with pytest.raises(BadCredentialsException) as raised:
        client(gh, token="ghp_wrong").get_repo(REPO)
    assert raised.value.status == 401
    with pytest.raises(UnknownObjectException):
        github.get_repo("acme/nothing")
    bare = requests.get(f"{gh.base_url}/repos/{REPO}", timeout=5)
    assert (bare.status_code, bare.json()["message"]) == (401, "Requires authentication")


def test_a_github_app_gets_an_installation_token_and_acts_as_its_bot(gh):
    app = gh.app()
    auth = Auth.AppAuth(app.id, app.private_key).get_installation_auth(app.installation_id)
    g = Github(base_url=gh.base_url, auth=auth, seconds_between_requests=None, seconds_between_writes=None)
    issue = g.get_repo(REPO).create_issue("opened by the app")
    assert issue.user.login == "runbooks-app[bot]"
    [exchange] = [e for e in gh.requests.writes() if e.path.endswith("/access_tokens")]
    assert exchange.status == 201 and exchange.path == f"/api/v3/app/installations/{app.installation_id}/access_tokens"
    gh.auth.expire_tokens()        # PyGithub renews by the expires_at it was given, so it still sends this one
    with pytest.raises(BadCredentialsException):
        g.get_repo(REPO)


def test_a_jwt_not_signed_by_the_apps_key_or_used_outside_the_app_endpoints_is_refused(gh):
    app = gh.app()
    jwt = Auth.AppAuth(app.id, app.private_key).create_jwt()
    itself = requests.get(f"{gh.base_url}/app", headers={"Authorization": f"Bearer {jwt}"}, timeout=5)
    assert itself.json()["id"] == app.id
    header, claims, signature = jwt.split(".")
    forged = ".".join([header, claims, ("A" if signature[0] != "A" else "B") + signature[1:]])   # not the app's key
    refused = requests.get(f"{gh.base_url}/app", headers={"Authorization": f"Bearer {forged}"}, timeout=5)
    assert (refused.status_code, refused.json()["message"]) == (401, "A JSON web token could not be decoded")
    outside = requests.get(f"{gh.base_url}/repos/{REPO}", headers={"Authorization": f"Bearer {jwt}"}, timeout=5)
    assert outside.status_code == 401


def test_both_the_enterprise_api_root_and_bare_paths_answer(gh, github):
    headers = {"Authorization": f"token {gh.config.token}"}
    ghes = requests.get(f"{gh.url}/api/v3/repos/{REPO}", headers=headers, timeout=5)
    bare = requests.get(f"{gh.url}/repos/{REPO}", headers=headers, timeout=5)
    assert ghes.json()["url"] == bare.json()["url"] == f"{gh.base_url}/repos/{REPO}"
    assert github.get_repo(REPO).full_name == REPO
    dated = requests.get(f"{gh.base_url}/repos/{REPO}", timeout=5,
                         headers={**headers, "X-GitHub-Api-Version": "2026-03-10"})
    unknown = requests.get(f"{gh.base_url}/repos/{REPO}", timeout=5,
                           headers={**headers, "X-GitHub-Api-Version": "2019-01-01"})
    assert dated.headers["X-GitHub-Api-Version-Selected"] == "2026-03-10"
    assert (unknown.status_code, unknown.json()["message"]) == (400, "API version '2019-01-01' is not supported.")


def test_it_serves_https_with_its_own_ca_when_asked():
    gh = start_github(tls=True)
    try:
        gh.add_repo(REPO)
        g = client(gh, verify=str(gh.ca_bundle))
        assert gh.base_url.startswith("https://127.0.0.1:") and g.get_repo(REPO).full_name == REPO
    finally:
        gh.stop()


def test_every_answer_carries_the_rate_limit_headers_and_each_request_counts(gh, github):
    repo = github.get_repo(REPO)
    before = github.get_rate_limit().resources.core.remaining          # /rate_limit itself is free
    with pytest.raises(UnknownObjectException) as raised:
        repo.get_issue(99)
    headers = raised.value.headers
    assert int(headers["x-ratelimit-limit"]) == 5000 and headers["x-ratelimit-resource"] == "core"
    assert int(headers["x-ratelimit-remaining"]) == before - 1
    assert int(headers["x-ratelimit-reset"]) > time.time()


def test_a_conditional_request_answers_304_and_does_not_count(gh, github):
    repo = github.get_repo(REPO)
    remaining = github.rate_limiting[0]
    assert repo.update() is False                   # PyGithub sent If-None-Match: 304, nothing changed
    assert github.rate_limiting[0] == remaining
    assert [e.status for e in gh.requests.entries() if e.path == f"/api/v3/repos/{REPO}"] == [200, 304]
    gh.add_commit(REPO, branch="main")
    gh.add_issue(REPO, "changes the repository's open issue count")
    assert repo.update() is True


def test_the_primary_limit_is_403_with_remaining_zero_and_a_capped_wait_gives_up_at_once(gh):
    gh.rate_limits.exhaust(reset_in=600)
    with pytest.raises(RateLimitExceededException) as raised:
        client(gh, retry=None).get_repo(REPO)
    assert raised.value.status == 403 and raised.value.headers["x-ratelimit-remaining"] == "0"
    started = time.monotonic()
    with pytest.raises(RateLimitExceededExceedsMaxWait):
        client(gh, retry=quick_retry(max_rate_limit_wait=5)).get_repo(REPO)
    assert time.monotonic() - started < 5
    gh.rate_limits.exhaust(reset_in=600, status=429)          # GitHub may answer the primary limit with 429 too
    answer = requests.get(f"{gh.base_url}/repos/{REPO}", headers={"Authorization": f"token {gh.config.token}"},
                          timeout=5)
    assert (answer.status_code, answer.headers["X-RateLimit-Remaining"]) == (429, "0")
    assert answer.json()["message"].startswith("API rate limit exceeded for user ID")
    assert int(answer.headers["X-RateLimit-Reset"]) >= time.time() + 599 and "Retry-After" not in answer.headers


def test_the_primary_limit_is_ridden_out_until_its_reset(gh):
    gh.rate_limits.exhaust(reset_in=0.5, status=403)
    assert client(gh, retry=quick_retry(max_rate_limit_wait=5)).get_repo(REPO).full_name == REPO
    assert [e.status for e in gh.requests.entries()] == [403, 200]


def test_the_secondary_limit_is_429_with_retry_after_and_is_ridden_out(gh):
    gh.rate_limits.secondary(retry_after=1, times=1)
    answer = requests.get(f"{gh.base_url}/repos/{REPO}", headers={"Authorization": f"token {gh.config.token}"},
                          timeout=5)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    assert answer.json()["message"].startswith("You have exceeded a secondary rate limit")
    gh.rate_limits.secondary(retry_after=0, times=1)
    assert client(gh, retry=quick_retry()).get_repo(REPO).full_name == REPO
    assert [e.status for e in gh.requests.entries()][-2:] == [429, 200]


def test_injected_server_errors_are_github_shaped_and_retried(gh):
    gh.faults.add(verb="create", path="*/issues", status=502, times=1)
    repo = client(gh, retry=quick_retry()).get_repo(REPO)
    issue = repo.create_issue("after a 502")        # PyGithub's retry re-sends the POST: one issue, two tries
    assert [e.status for e in gh.requests.writes()] == [502, 201]
    assert [i.number for i in gh.issues(REPO)] == [issue.number]
    gh.faults.add(verb="get", path=f"*/repos/{REPO}", status=503, times=5)
    with pytest.raises(GithubException) as raised:
        client(gh, retry=None).get_repo(REPO)
    assert raised.value.status == 503 and raised.value.data["message"] == "Service Unavailable"


def test_a_lost_answer_after_a_write_makes_pygithubs_retry_create_a_second_issue(gh):
    gh.lost_answers.add(verb="create", path="*/issues", status=502, times=1)
    client(gh, retry=quick_retry()).get_repo(REPO).create_issue("incident INC-7")
    assert [e.status for e in gh.requests.writes()] == [502, 201]
    assert [i.title for i in gh.issues(REPO)] == ["incident INC-7", "incident INC-7"]   # why callers dedupe
