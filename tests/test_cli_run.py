"""`runbooks run`: runs a runbook now; exit 0 only when it succeeded (or was a clean dry run / no-op),
1 when the run failed, 2 for bad input before anything runs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.runbook_helpers import release, wait_healthy, write_catalog

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def cli_env(demo_sandbox, tmp_path):
    from prefect.settings import PREFECT_API_URL
    wait_healthy(demo_sandbox)
    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
            "RUNBOOKS_CATALOG": str(write_catalog(demo_sandbox, tmp_path))}


def runbooks(env, *args):
    return subprocess.run([sys.executable, "-m", "runbooks.cli", "run", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_dry_run_exits_zero_and_writes_nothing(demo_sandbox, cli_env):
    release(demo_sandbox, "ghcr.io/example/payments-api:1.5.0-crashloop")
    since = demo_sandbox.requests.mark()
    result = runbooks(cli_env, "emergency-rollback", "--set", "service=payments-api", "--set",
                      "environment=production", "--set", "requested_by=alice", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "emergency-rollback: dry-run" in result.stdout
    assert demo_sandbox.requests.writes(since) == []


def test_rollback_exits_zero_when_it_succeeded_and_verified(demo_sandbox, cli_env):
    release(demo_sandbox, "ghcr.io/example/payments-api:1.5.0-crashloop")
    result = runbooks(cli_env, "emergency-rollback", "--set", "service=payments-api", "--set",
                      "environment=staging", "--set", "requested_by=alice")
    assert result.returncode == 0, result.stderr
    assert "emergency-rollback: succeeded" in result.stdout


def test_failed_run_exits_one(demo_sandbox, cli_env):
    result = runbooks(cli_env, "emergency-rollback", "--set", "service=payments-api", "--set",
                      "environment=staging", "--set", "target_revision=9")
    assert result.returncode == 1
    assert "allowed revisions: 1, 2" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown runbook 'nope'; allowed: emergency-rollback"),
    (["emergency-rollback", "--set", "servce=x"], "unknown parameter 'servce'; allowed:"),
    (["emergency-rollback", "--set", "service"], "--set expects KEY=VALUE"),
    (["emergency-rollback", "--set", "environment=staging"], "missing required parameter(s): service"),
])
def test_bad_input_exits_two_before_anything_runs(demo_sandbox, cli_env, args, message):
    since = demo_sandbox.requests.mark()
    result = runbooks(cli_env, *args)
    assert result.returncode == 2 and message in result.stderr
    assert demo_sandbox.requests.entries(since) == []
