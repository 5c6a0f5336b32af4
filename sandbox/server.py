"""The public entry point to the Kubernetes sandbox (kept where callers import it from)."""
from __future__ import annotations

from .kubernetes.server import DEMO_MANIFESTS, Sandbox, SandboxConfig, new_token

__all__ = ["DEMO_MANIFESTS", "Sandbox", "SandboxConfig", "new_token"]
