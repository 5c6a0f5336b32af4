"""Fixtures for the sandbox's client-level tests."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import pytest
from kubernetes import client, config

from sandbox.server import Sandbox
from tests.conftest import start_sandbox
from tests.sandbox.github_helpers import REPO, client as github_client, start_github

if TYPE_CHECKING:
    from github import Github

    from sandbox.github import GitHubSandbox


@pytest.fixture
def quiet() -> Iterator[Sandbox]:
    """A sandbox with no controllers: nothing but the test writes, so resourceVersions and status are
    exactly what the requests made them."""
    sb = start_sandbox(controllers=False)
    sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    yield sb
    sb.stop()


@pytest.fixture
def quiet_client(quiet: Sandbox) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config_dict(quiet.kubeconfig())
    yield api
    api.close()


# -- the GitHub stand-in (tests/sandbox/test_github_*.py) -------------------------------------------------

@pytest.fixture
def gh() -> Iterator["GitHubSandbox"]:
    """A GitHub stand-in with one repository (REPO: main, release, tag v1.2.0), runs at 1000x."""
    sandbox = start_github()
    sandbox.add_repo(REPO, branches=["release"], tags=["v1.2.0"])
    yield sandbox
    sandbox.stop()


@pytest.fixture
def github(gh: "GitHubSandbox") -> Iterator["Github"]:
    """Real PyGithub pointed at `gh`."""
    g = github_client(gh)
    yield g
    g.close()
