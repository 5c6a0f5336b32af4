"""The catalog's GitHub parts: how to reach GitHub (or GitHub Enterprise Server) and what a service runs there.

Why secrets are named, never written here: a catalog is a reviewed file in a repository, and a flow
parameter is stored by the Prefect API and shown in its UI. So the catalog names a Prefect Secret block
(or the process environment supplies the value), and `tasks/github/client.py` reads it at run time.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PUBLIC_API = "https://api.github.com"
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_INPUT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitHubApp(_Strict):
    """A GitHub App installation: the private key comes from a Secret block or GITHUB_APP_PRIVATE_KEY."""
    app_id: int = Field(gt=0)
    installation_id: int = Field(gt=0)
    private_key_secret: str | None = Field(None, description="Prefect Secret block holding the PEM key")


class GitHubConnection(_Strict):
    """Where GitHub is and how to authenticate. Default: github.com with a token from GITHUB_TOKEN."""
    base_url: str = Field(PUBLIC_API, description="REST API root; GitHub Enterprise Server: https://HOST/api/v3")
    token_secret: str | None = Field(None, description="Prefect Secret block holding a token")
    app: GitHubApp | None = None
    seconds_between_writes: float = Field(1.0, ge=0, description="GitHub asks integrators to pace writes")
    run_details: bool = Field(True, description="ask a workflow dispatch for its run's id (`return_run_details`); "
                              "false for a GitHub Enterprise Server that refuses the key: the run is then found "
                              "by its correlation id")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> "GitHubConnection":
        if self.token_secret and self.app:
            raise ValueError("give token_secret or app, not both")
        return self

    @property
    def host(self) -> str:
        """The host that identifies this GitHub (github.com for the public API)."""
        host = urlsplit(self.base_url).netloc
        return "github.com" if host == "api.github.com" else host


class RollbackWorkflow(_Strict):
    """A release workflow that rolls the service back (`gh workflow run <file> -f ...`)."""
    workflow: str = Field(min_length=1, description="workflow file name or id, e.g. payments-api-rollback.yml")
    ref: str = Field("main", min_length=1, description="branch or tag to run it on")
    inputs: dict[str, str] = Field(default_factory=dict, description="fixed inputs, e.g. confirm")
    reason_input: str | None = Field("reason", description="input that receives the run's reason")
    correlation_input: str | None = Field(None, description="input that receives the correlation id; the "
                                          "workflow's run-name must show it when the server returns no run details")
    timeout_seconds: int = Field(1800, gt=0, description="deadline for the workflow run to complete")

    @field_validator("inputs")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not _INPUT.fullmatch(k)]
        if bad:
            raise ValueError(f"invalid input names {bad}")
        return value


class ServiceGitHub(_Strict):
    """What a service runs on GitHub Actions (its repository is the service's `github_repo`)."""
    ci_workflows: tuple[str, ...] = Field((), description="workflow files triage looks at; empty: all")
    rerun_flaky: bool = Field(False, description="triage may re-run failed jobs once to detect a flaky failure")
    stuck_after_minutes: int = Field(30, gt=0, description="a run queued longer than this is stuck")
    rollback_workflow: RollbackWorkflow | None = None


def check_repository(name: str | None) -> str | None:
    if name is not None and not _REPO.fullmatch(name):
        raise ValueError(f"github_repo must be owner/name, got {name!r}")
    return name
