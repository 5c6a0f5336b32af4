"""The Azure stand-in as `runbooks sandbox` runs it next to the Kubernetes API: its tenant, service principal,
subscription and port are kept in DIR/azure.json, so a restarted sandbox keeps the address and identities
that clients already read from DIR/env; its CA is written to DIR/azure-ca.crt."""
from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .server import AzureConfig, AzureCredentials, AzureSandbox

if TYPE_CHECKING:
    from ..kubernetes.server import Sandbox

KEPT = ("subscription_id", "tenant_id", "client_id", "client_secret", "port")


def start_next_to(kube: "Sandbox", directory: Path, *, speed: float = 1.0) -> AzureSandbox:
    state = directory / "azure.json"
    saved = json.loads(state.read_text()) if state.exists() else {}
    config = AzureConfig(speed=speed, **{key: saved[key] for key in KEPT if key in saved})
    azure = AzureSandbox(config, kubernetes=kube).start()
    directory.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({**{key: getattr(config, key) for key in KEPT}, "port": azure.port}, indent=2))
    state.chmod(0o600)
    assert azure.ca is not None
    (directory / "azure-ca.crt").write_bytes(azure.ca.cert_pem)
    return azure


def credentials_in(azure: AzureSandbox, directory: Path) -> AzureCredentials:
    """The credentials with the CA bundle that outlives the process (DIR/azure-ca.crt)."""
    return replace(azure.credentials(), ca_bundle=(directory / "azure-ca.crt").resolve())


def env_lines(azure: AzureSandbox, directory: Path) -> list[str]:
    return [f"export {key}={shlex.quote(value)}" for key, value in credentials_in(azure, directory).env().items()]
