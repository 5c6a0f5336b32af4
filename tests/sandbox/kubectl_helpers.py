"""Run the real kubectl binaries that are on this machine against a sandbox."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SDK_BIN = Path("/usr/lib/google-cloud-sdk/bin")


def kubectl_binary(version: str) -> str | None:
    """The kubectl of that minor version (the machine ships 1.27..1.33 side by side), if present."""
    candidate = SDK_BIN / f"kubectl.{version}"
    if candidate.exists():
        return str(candidate)
    return None


def available_versions() -> list[str]:
    versions = [v for v in ("1.27", "1.33") if kubectl_binary(v)]
    if not versions and shutil.which("kubectl"):
        versions = ["path"]
    return versions


@dataclass
class Kubectl:
    binary: str
    kubeconfig: Path

    def run(self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
            ) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.kubeconfig.parent / "cache")}
        result = subprocess.run([self.binary, *args], env=env, capture_output=True, text=True, timeout=timeout,
                                input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                                 f"{result.stderr}")
        return result

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def popen(self, *args: str) -> subprocess.Popen:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.kubeconfig.parent / "cache")}
        return subprocess.Popen([self.binary, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
