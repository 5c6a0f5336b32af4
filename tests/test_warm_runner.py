"""The warm runner's start-up checks: a runbook that does not import stops it; the fast path is pinned."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import prefect

from deployments.warm_worker import TESTED_PREFECT_MINORS, fast_path_problem

ROOT = Path(__file__).resolve().parent.parent


def test_a_runbook_that_fails_to_import_stops_serve_with_the_import_error():
    env = {**os.environ, "RUNBOOKS_PREFECT_YAML": str(ROOT / "tests" / "data" / "prefect-broken.yaml"),
           "PREFECT_API_URL": "http://127.0.0.1:9/api"}          # never reached: it stops before registering
    result = subprocess.run([sys.executable, "-m", "runbooks.cli", "serve"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "runbook module tests.data.broken_runbook failed to import" in result.stderr
    assert "No module named 'no_such_module_for_the_test'" in result.stderr


def test_the_fast_path_runs_on_the_installed_prefect_and_only_on_tested_minors(monkeypatch):
    assert ".".join(prefect.__version__.split(".")[:2]) in TESTED_PREFECT_MINORS
    assert fast_path_problem() is None
    monkeypatch.setattr(prefect, "__version__", "3.99.0")
    assert "Prefect 3.99.0 is not a version the fast path was tested on" in fast_path_problem()


def test_make_run_repeats_the_runners_fallback_warning(tmp_path):
    from runbooks.up_cmd import _fast_path_warning
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "serve.log").write_text(
        "INFO fork server ready in 3.1s (fast path on)\n"                  # an earlier start
        "WARNING FAST PATH OFF: Prefect 3.99.0 is not a version the fast path was tested on (3.8, 3.9). Every run\n"
        "INFO fork server ready in 3.0s (fast path OFF)\n")
    assert _fast_path_warning(tmp_path).startswith("Prefect 3.99.0 is not a version the fast path was tested on")
    (logs / "serve.log").write_text("INFO fork server ready in 3.1s (fast path on)\n")
    assert _fast_path_warning(tmp_path) is None
