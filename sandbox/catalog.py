"""The catalog of the sandbox's demo estate, written next to its kubeconfig.

Production and staging live in their own namespaces (`payments`, `checkout` and their `-staging`
copies), so a staging run, which is auto-approved, can never change production."""
from __future__ import annotations

from pathlib import Path

import yaml

DEMO_SERVICES = {
    "payments-api": {"namespace": "payments", "deployment": "payments-api", "tier": "critical",
                     "github_repo": "example/payments-api"},
    "checkout-web": {"namespace": "checkout", "deployment": "checkout-web", "tier": "critical",
                     "github_repo": "example/checkout-web"},
    "cart": {"namespace": "checkout", "deployment": "cart"},
}
STAGING_SUFFIX = "-staging"
DEMO_STAGING_SERVICES = {name: {**service, "namespace": service["namespace"] + STAGING_SUFFIX}
                         for name, service in DEMO_SERVICES.items()}


EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments" / "chaos"


def demo_catalog(kubeconfig: Path, *, context: str = "sandbox") -> dict:
    cluster = {"kind": "kubeconfig", "kubeconfig": str(kubeconfig), "context": context}
    return {"chaos": {"experiments": str(EXPERIMENTS)}, "environments": {
        "production": {"cluster": cluster, "production": True,
                       "approval": {"policy": "one", "timeout_seconds": 900, "escalate_after_seconds": 300},
                       "cooldown_seconds": 300, "verify_timeout_seconds": 300, "services": DEMO_SERVICES},
        "staging": {"cluster": cluster, "approval": {"policy": "auto"}, "cooldown_seconds": 0,
                    "verify_timeout_seconds": 300, "services": DEMO_STAGING_SERVICES},
    }}


def write_demo_catalog(path: Path, kubeconfig: Path) -> Path:
    path.write_text("# Written by `runbooks sandbox`: the demo estate, both environments on the sandbox, each in its "
                    "own namespaces.\n" + yaml.safe_dump(demo_catalog(kubeconfig.resolve()), sort_keys=False))
    return path
