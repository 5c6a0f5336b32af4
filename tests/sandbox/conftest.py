"""Fixtures for the sandbox's client-level tests."""
from __future__ import annotations

from typing import Iterator

import pytest
from kubernetes import client, config

from sandbox.server import Sandbox
from tests.conftest import start_sandbox


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
