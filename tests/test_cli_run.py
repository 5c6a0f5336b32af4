"""`runbooks run`: runs a runbook now; exit 0 only when it succeeded (or was a clean dry run / no-op),
1 when the run failed or was cancelled, 2 for bad input before anything runs."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.states import Cancelling

from runbooks.registry import RUNBOOKS
from tests.runbook_helpers import release, wait_for_paused_run, wait_healthy, write_catalog

pytestmark = pytest.mark.usefixtures("prefect_harness")
BAD = "ghcr.io/example/payments-api:1.5.0-crashloop"
RUN = ["emergency-rollback", "--set", "service=payments-api", "--set", "requested_by=alice"]


@pytest.fixture
def cli_env(demo_sandbox, tmp_path):
    from prefect.settings import PREFECT_API_URL
    wait_healthy(demo_sandbox)
    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
            "RUNBOOKS_CATALOG": str(write_catalog(demo_sandbox, tmp_path, "staging")),
            "PRODUCTION_CATALOG": str(write_catalog(demo_sandbox, tmp_path, "production"))}


def runbooks(env, *args, command: str = "run"):
    return subprocess.run([sys.executable, "-m", "runbooks.cli", command, *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_dry_run_exits_zero_writes_nothing_and_names_the_catalog(demo_sandbox, cli_env):
    release(demo_sandbox, BAD)
    since = demo_sandbox.requests.mark()
    result = runbooks(cli_env, *RUN, "--set", "environment=staging", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "emergency-rollback: dry-run" in result.stdout
    assert f"catalog: {cli_env['RUNBOOKS_CATALOG']}" in result.stderr
    assert demo_sandbox.requests.writes(since) == []


def test_rollback_exits_zero_when_it_succeeded_and_verified(demo_sandbox, cli_env, tmp_path):
    release(demo_sandbox, BAD)
    storage = tmp_path / "storage"
    result = runbooks({**cli_env, "PREFECT_LOCAL_STORAGE_PATH": str(storage)}, *RUN, "--set", "environment=staging")
    assert result.returncode == 0, result.stderr
    assert "emergency-rollback: succeeded" in result.stdout
    assert not storage.exists() or not any(storage.iterdir()), "no run results are pickled to local storage"


def test_failed_run_exits_one_with_a_message_not_a_traceback(demo_sandbox, cli_env):
    result = runbooks(cli_env, *RUN, "--set", "environment=staging", "--set", "target_revision=9")
    assert result.returncode == 1
    assert "allowed revisions: 1, 2" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown runbook 'nope'; allowed: " + ", ".join(sorted(RUNBOOKS))),
    ([*RUN, "--set", "servce=x"], "unknown parameter 'servce'; allowed:"),
    ([*RUN, "--set", "service"], "--set expects KEY=VALUE"),
    (["emergency-rollback", "--set", "environment=staging"], "missing required parameter(s): service, requested_by"),
    ([*RUN, "--set", "environment=staging", "--set", "target_revision=two"], "parameter 'target_revision'"),
    ([*RUN, "--set", "environment=prod"], "unknown environment 'prod'; allowed: staging"),
    ([*RUN[:2], "service=payment-api", *RUN[3:], "--set", "environment=staging"], "unknown service 'payment-api'"),
])
def test_bad_input_exits_two_before_anything_runs(demo_sandbox, cli_env, args, message, monkeypatch, capsys):
    """In-process (the command's own `main`), so each case does not pay a fresh interpreter's imports."""
    from runbooks.cli import main
    monkeypatch.setenv("RUNBOOKS_CATALOG", cli_env["RUNBOOKS_CATALOG"])
    since = demo_sandbox.requests.mark()
    assert main(["run", *args]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and "nothing was run" in stderr and "Traceback" not in stderr
    assert demo_sandbox.requests.entries(since) == []


def test_bad_input_from_a_real_shell_exits_two(demo_sandbox, cli_env):
    result = runbooks(cli_env, *RUN, "--set", "environment=prod")
    assert result.returncode == 2 and "unknown environment 'prod'" in result.stderr


def test_no_catalog_is_bad_input_not_the_example_estate(demo_sandbox, cli_env):
    env = {k: v for k, v in cli_env.items() if k != "RUNBOOKS_CATALOG"}
    result = runbooks(env, *RUN, "--set", "environment=production")
    assert result.returncode == 2 and "no catalog: set RUNBOOKS_CATALOG" in result.stderr


def _start_gated(cli_env, demo_sandbox):
    release(demo_sandbox, BAD)
    env = {**cli_env, "RUNBOOKS_CATALOG": cli_env["PRODUCTION_CATALOG"]}
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    process = subprocess.Popen([sys.executable, "-m", "runbooks.cli", "run", *RUN, "--set", "environment=production"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = wait_for_paused_run("emergency-rollback", after=started, timeout=90)
    return process, run_id, env


def _report_outcome(run_id: str) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return next(a.metadata_["outcome"] for a in artifacts if a.key and a.key.startswith("runbook-report-"))


def test_cancel_from_the_ui_stops_a_cli_run_at_once_and_frees_its_lock(demo_sandbox, cli_env):
    process, run_id, env = _start_gated(cli_env, demo_sandbox)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Cancelling(message="cancelled from the UI"), force=True)
    process.wait(timeout=30)                       # not the 5 minutes a stuck step would take
    assert process.returncode == 1 and "cancelled" in process.stderr.read()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).state.is_cancelled()
    assert _report_outcome(run_id) == "cancelled"
    again = runbooks(env, *RUN, "--set", "environment=production", "--dry-run")   # the lock is free again
    assert again.returncode == 0, again.stderr


def test_a_lost_terminal_ends_the_run_and_approve_says_so(demo_sandbox, cli_env):
    process, run_id, env = _start_gated(cli_env, demo_sandbox)
    process.send_signal(signal.SIGHUP)
    process.wait(timeout=30)
    result = runbooks(env, run_id, "--as", "bob", command="approve")
    assert result.returncode == 2
    assert "not waiting at a gate (it is Cancelled" in result.stderr and "nothing was sent" in result.stderr
    assert _report_outcome(run_id) == "cancelled"
