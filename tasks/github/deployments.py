"""Deployments and their statuses: how a change that deploys (a rollback) is recorded on the repository."""
from __future__ import annotations

from typing import Literal

from github import Github
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ..calls import call
from .rest import create_once, post, repo_of

State = Literal["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]


class DeploymentRecord(BaseModel):
    changed: bool
    dry_run: bool
    deployment_id: int | None = None
    state: str = ""


def _find(gh: Github, repository: str, environment: str, marker: str) -> int | None:
    url = f"{repo_of(gh, repository).url}/deployments"
    listed = call(lambda: gh.requester.requestJsonAndCheck("GET", url, parameters={
        "environment": environment, "per_page": 100})[1]) or []
    return next((d["id"] for d in listed if marker in (d.get("description") or "")), None)


def default_branch(gh: Github, repository: str) -> str:
    """The repository's default branch (one GET): what a deploy without a named ref deploys from."""
    return call(lambda: repo_of(gh, repository).default_branch)


@task(name="record_deployment_status", cache_policy=NO_CACHE)   # retried inside, looking first
def record_deployment_status(gh: Github, *, repository: str, environment: str, ref: str, state: State,
                             description: str, marker: str, log_url: str = "", dry_run: bool = False
                             ) -> DeploymentRecord:
    """Record a deployment of `ref` to `environment` with a status (the repository's Environments page shows
    it). One deployment per marker (the run), whatever a retry does; each call adds one status."""
    if dry_run:
        return DeploymentRecord(changed=False, dry_run=True)
    base = f"{repo_of(gh, repository).url}/deployments"

    def create() -> int:
        return post(gh, base, {"ref": ref, "environment": environment, "auto_merge": False,
                               "required_contexts": [], "description": f"{marker} {description}"[:140],
                               "production_environment": environment == "production"})["id"]
    deployment_id = _find(gh, repository, environment, marker) or create_once(
        create, lambda: _find(gh, repository, environment, marker))
    call(post, gh, f"{base}/{deployment_id}/statuses",
         {"state": state, "description": description[:140], "log_url": log_url, "environment": environment})
    return DeploymentRecord(changed=True, dry_run=False, deployment_id=deployment_id, state=state)
