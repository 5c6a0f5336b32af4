"""`runbooks sandbox` starts the GitHub stand-in with the demo repositories and writes what a client needs into
DIR/env; a restart keeps its address, token and App. Its `/_sandbox/github/...` endpoints seed and steer it from
another process."""
from __future__ import annotations

import signal
import stat

import pytest
import requests
from github import Auth, Github

from sandbox.github import local
from tests.sandbox.test_cli import start, wait_ready

pytestmark = pytest.mark.timeout(60)


def test_sandbox_command_serves_github_with_the_demo_repositories_and_writes_its_settings(tmp_path):
    proc = start(tmp_path, "--no-azure")
    try:
        wait_ready(tmp_path, proc)
        env = dict(line.removeprefix("export ").split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
        app_id, installation = int(env["RUNBOOKS_GITHUB_APP_ID"]), int(env["RUNBOOKS_GITHUB_APP_INSTALLATION_ID"])
        key = open(env["RUNBOOKS_GITHUB_APP_PRIVATE_KEY_FILE"]).read()
        auth = Auth.AppAuth(app_id, key).get_installation_auth(installation)
        unthrottled = dict(seconds_between_requests=None, seconds_between_writes=None)
        g = Github(base_url=env["RUNBOOKS_GITHUB_URL"], auth=auth, **unthrottled)
        repo = g.get_repo("example/payments-api")
        assert {w.path for w in repo.get_workflows()} == {".github/workflows/ci.yml",
                                                          ".github/workflows/payments-api-rollback.yml"}
        assert [r.conclusion for r in repo.get_workflow_runs()] == ["failure", "success", "success", "success"]
        token = Github(base_url=env["RUNBOOKS_GITHUB_URL"], auth=Auth.Token(env["RUNBOOKS_GITHUB_TOKEN"]),
                       **unthrottled)
        assert token.get_repo("example/checkout-web").default_branch == "main"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0 and f"GitHub REST API at {env['RUNBOOKS_GITHUB_URL']}" in output
    assert stat.S_IMODE((tmp_path / "github.json").stat().st_mode) == 0o600


def test_a_restarted_github_stand_in_keeps_its_address_token_and_app(tmp_path):
    first = local.start_local(tmp_path, demo=False)
    before = (first.base_url, first.config.token, first.app().id, first.app().private_key)
    first.stop()
    second = local.start_local(tmp_path, demo=False)
    try:
        after = (second.base_url, second.config.token, second.app().id, second.app().private_key)
        jwt = Auth.AppAuth(before[2], before[3]).create_jwt()
        answer = requests.get(f"{second.base_url}/app", headers={"Authorization": f"Bearer {jwt}"}, timeout=5)
    finally:
        second.stop()
    assert after == before and answer.status_code == 200


def test_the_admin_endpoints_seed_and_steer_it_over_http(tmp_path):
    gh = local.start_local(tmp_path, demo=False)
    try:
        admin = f"{gh.url}/_sandbox/github"
        requests.post(f"{admin}/repos", json={"full_name": "acme/api"}, timeout=5).raise_for_status()
        requests.post(f"{admin}/workflows", json={"repo": "acme/api", "file": "ci.yml", "jobs": ["unit"]},
                      timeout=5).raise_for_status()
        run = requests.post(f"{admin}/runs", json={"repo": "acme/api", "workflow": "ci.yml",
                                                   "outcome": {"conclusion": "failure", "stuck": True}}, timeout=5)
        run_id = run.json()["id"]
        assert gh.run_status(run_id) == ("queued", None)
        finished = requests.post(f"{admin}/runs/{run_id}/finish", timeout=5).json()
        assert finished == {"status": "completed", "conclusion": "failure"}
        bad = requests.post(f"{admin}/outcomes", json={"repo": "acme/api", "workflow": "ci.yml",
                                                       "outcome": {"conclusion": "exploded"}}, timeout=5)
        assert bad.status_code == 400 and "conclusion must be one of" in bad.json()["message"]
        requests.post(f"{admin}/rate-limit", json={"primary": {"reset_in": 600}}, timeout=5).raise_for_status()
        limited = requests.get(f"{gh.base_url}/repos/acme/api", timeout=5,
                               headers={"Authorization": f"token {gh.config.token}"})
        assert limited.status_code == 403 and limited.headers["X-RateLimit-Remaining"] == "0"
        assert gh.requests.entries()[-1].path == "/api/v3/repos/acme/api"          # admin calls are not logged
    finally:
        gh.stop()
