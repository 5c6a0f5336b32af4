"""`runbooks sandbox --dir DIR`: foreground process, ready files, clean stop on signals."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runbooks.cli", "sandbox", "--dir", str(tmp_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(tmp_path: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (tmp_path / "env").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "sandbox did not become ready"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sandbox_command_writes_kubeconfig_and_env_then_stops_on_signal(tmp_path, sig):
    proc = start(tmp_path, "--tls", "--token", "t0ken")
    try:
        wait_ready(tmp_path, proc)
        env = dict(line.removeprefix("export ").split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
        assert Path(env["KUBECONFIG"]) == (tmp_path / "kubeconfig").resolve()
        assert env["SANDBOX_URL"].startswith("https://127.0.0.1:")
        kubeconfig = yaml.safe_load((tmp_path / "kubeconfig").read_text())
        api = config.new_client_from_config_dict(kubeconfig)
        names = {d.metadata.name for d in client.AppsV1Api(api).list_deployment_for_all_namespaces().items}
        assert {"payments-api", "checkout-web", "cart"} <= names      # the demo estate
        api.close()
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "sandbox: stopped" in output


def test_sandbox_command_refuses_missing_manifests(tmp_path):
    result = subprocess.run([sys.executable, "-m", "runbooks.cli", "sandbox", "--dir", str(tmp_path),
                             "--manifests", str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "manifests not found" in result.stderr
    assert not (tmp_path / "kubeconfig").exists()
