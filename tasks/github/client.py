"""Building PyGithub clients from the catalog's connection and the standard credential sources.

Credentials, in order: the catalog's Secret block (`token_secret`, or the App's `private_key_secret`), then
the environment (GITHUB_TOKEN; GITHUB_APP_PRIVATE_KEY for an App). Never a flow parameter, never logged:
each value is registered for redaction before anything can log it.

Why `lazy=True`: an object named by the runbook (a repository) needs no GET to build the URLs under it.
Why `retry=None`: PyGithub's default `GithubRetry` re-sends a POST after a 5xx (a second issue, a second
dispatch), sleeps through rate limits without a cap, and logs outside the run's log. Every call goes through
`tasks.calls.call` instead: the taxonomy decides what is transient, rate limits are waited out up to a cap,
each retry is logged in the run, and writes that are not idempotent look before they retry.
"""
from __future__ import annotations

import os
from typing import Mapping

from github import Auth, Github

from tasks.errors import CatalogError
from tasks.redaction import register_secret

from .settings import GitHubConnection

TOKEN_ENV, APP_KEY_ENV = "GITHUB_TOKEN", "GITHUB_APP_PRIVATE_KEY"
PER_PAGE = 100          # GitHub's maximum: fewer pages, fewer calls against the rate limit
TIMEOUT_SECONDS = 30


def _secret_block(name: str) -> str:
    from prefect.blocks.system import Secret
    try:
        value = Secret.load(name, _sync=True).get()
    except ValueError as exc:
        raise CatalogError(f"no Prefect Secret block named {name!r} (the catalog's GitHub credentials)") from exc
    return str(value)


def github_auth(connection: GitHubConnection, environ: Mapping[str, str] = os.environ) -> Auth.Auth:
    """The token or App installation credentials for `connection`.

    Raises:
        CatalogError: no credential is configured, or the named Secret block does not exist.
    """
    if connection.app is not None:
        app = connection.app
        key = _secret_block(app.private_key_secret) if app.private_key_secret else environ.get(APP_KEY_ENV, "")
        if not key.strip():
            raise CatalogError(f"GitHub App {app.app_id}: no private key (set the catalog's private_key_secret "
                               f"or {APP_KEY_ENV})")
        register_secret(key)
        return Auth.AppAuth(app.app_id, key).get_installation_auth(app.installation_id)
    token = _secret_block(connection.token_secret) if connection.token_secret else environ.get(TOKEN_ENV, "")
    if not token.strip():
        raise CatalogError(f"no GitHub credentials for {connection.base_url}: set the catalog's github.token_secret "
                           f"(a Prefect Secret block), github.app, or {TOKEN_ENV}")
    register_secret(token.strip())
    return Auth.Token(token.strip())


def github_client(connection: GitHubConnection, environ: Mapping[str, str] = os.environ) -> Github:
    """A PyGithub client for github.com or a GitHub Enterprise Server (`base_url`)."""
    auth = github_auth(connection, environ)
    client = Github(auth=auth, base_url=connection.base_url, retry=None, lazy=True, per_page=PER_PAGE, timeout=TIMEOUT_SECONDS,
                    seconds_between_requests=None, seconds_between_writes=connection.seconds_between_writes or None)
    if isinstance(auth, Auth.AppInstallationAuth):
        register_secret(auth.token)     # the installation token, fetched now so it is masked before any log line
    return client
