"""Real PyGithub pointed at the GitHub stand-in, as at GitHub Enterprise Server (`base_url` = the API root)."""
from __future__ import annotations

from github import Auth, Github, GithubRetry

from sandbox.github import GitHubConfig, GitHubSandbox

# 1000x: a run is queued 2 ms and runs 30 ms.
FAST = dict(speed=1000.0)
REPO = "acme/payments"


def start_github(**overrides) -> GitHubSandbox:
    return GitHubSandbox(GitHubConfig(**{**FAST, **overrides})).start()


def client(gh: GitHubSandbox, *, token: str | None = None, retry: object = "default", **kwargs) -> Github:
    """PyGithub with its default retry (or `retry`), without its default throttle (0.25 s between requests, 1 s
    between writes: pointless against loopback)."""
    options = {"seconds_between_requests": None, "seconds_between_writes": None, **kwargs}
    if retry != "default":
        options["retry"] = retry
    return Github(base_url=gh.base_url, auth=Auth.Token(token or gh.config.token), **options)


def quick_retry(**kwargs) -> GithubRetry:
    """GitHub's retry policy with a short backoff, so a test that rides out a 5xx does not wait seconds."""
    return GithubRetry(total=3, backoff_factor=0.01, **kwargs)
