"""Shared pieces of the GitHub runbook tests: a fresh GitHub stand-in per test (milliseconds), the runbooks' own
PyGithub client pointed at it, and a seeded repository with a CI workflow and a rollback workflow."""
from __future__ import annotations

from typing import Iterator

import pytest
from github import Github

from sandbox.github import GitHubSandbox, JobSpec, WorkflowInput
from tasks.github.client import github_client
from tasks.github.settings import GitHubConnection

from .sandbox.github_helpers import start_github as start_standin
REPO = "acme/payments-api"
STEPS = ("Set up job", "Run actions/checkout@v4", "Run make test", "Complete job")
ROLLBACK_INPUTS = {"confirm": WorkflowInput(required=True, type="choice", options=["ROLLBACK PRODUCTION"]),
                   "reason": WorkflowInput(required=True), "correlation_id": WorkflowInput(required=True)}


def start_github(**overrides) -> GitHubSandbox:
    """1000x simulated time: a run is queued 2 ms and runs 30 ms."""
    gh = start_standin(**overrides)
    gh.add_repo(REPO, branches=["release"], tags=["v1.4.0"])
    gh.add_workflow(REPO, "ci.yml", name="CI", jobs=["build", JobSpec("test", steps=STEPS)])
    gh.add_workflow(REPO, "payments-api-rollback.yml", name="Rollback", inputs=ROLLBACK_INPUTS,
                    run_name="Rollback ${{ inputs.correlation_id }}", jobs=[JobSpec("rollback")])
    return gh


def connection(gh: GitHubSandbox) -> GitHubConnection:
    return GitHubConnection(base_url=gh.base_url, seconds_between_writes=0)


def client_for(gh: GitHubSandbox, token: str | None = None) -> Github:
    return github_client(connection(gh), {"GITHUB_TOKEN": token or gh.config.token})


@pytest.fixture
def gh() -> Iterator[GitHubSandbox]:
    sandbox = start_github()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def github(gh: GitHubSandbox) -> Github:
    return client_for(gh)


def requests_to(gh: GitHubSandbox, fragment: str) -> list:
    return [e for e in gh.requests.entries() if fragment in e.path]
