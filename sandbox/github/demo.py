"""The demo estate's repositories, as `runbooks sandbox` seeds them: one per service of the demo catalog that
names a `github_repo`, each with a CI workflow (build, test), a rollback workflow whose run-name shows the
correlation id, and a short history of CI runs (the newest failed, with a log to triage)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Outcome, WorkflowInput

if TYPE_CHECKING:
    from .server import GitHubSandbox

ROLLBACK_INPUTS = {
    "confirm": WorkflowInput(description='Type "ROLLBACK PRODUCTION" to confirm', required=True),
    "reason": WorkflowInput(description="Why", required=False),
    "correlation_id": WorkflowInput(description="Shown in the run name, to find the run", required=False),
}


def demo_repositories() -> list[tuple[str, str]]:
    """(service, owner/name) for each demo service with a repository."""
    from ..catalog import DEMO_SERVICES
    return sorted((name, svc["github_repo"]) for name, svc in DEMO_SERVICES.items() if svc.get("github_repo"))


def seed_demo(gh: "GitHubSandbox") -> None:
    for service, full_name in demo_repositories():
        gh.add_repo(full_name, tags=["v1.0.0"])
        gh.add_workflow(full_name, "ci.yml", name="CI", jobs=["build", "test"])
        gh.add_workflow(full_name, f"{service}-rollback.yml", name=f"{service} rollback", jobs=["rollback"],
                        inputs=ROLLBACK_INPUTS, run_name="Rollback ${{ inputs.correlation_id }}")
        for hours in (5, 4, 3):
            gh.add_run(full_name, "ci.yml", age=hours * 3600)
        gh.add_run(full_name, "ci.yml", Outcome(conclusion="failure", job="test", step="Run make test",
                                                log=("FAILED tests/test_api.py::test_refund - AssertionError",)),
                   age=3600)
