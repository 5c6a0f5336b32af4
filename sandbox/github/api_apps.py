"""GitHub App endpoints: the app itself (`GET /app`), its installations, a repository's installation, and the
exchange of the app's JWT for an installation access token (`POST /app/installations/{id}/access_tokens`,
201 with `token` and `expires_at`). Only a JWT is accepted here, and a JWT only here."""
from __future__ import annotations

from . import render
from .api import Answer, Ctx, GitHubError, not_found, page, route
from .auth import App
from .model import iso


def _app(ctx: Ctx) -> App:
    if ctx.identity.kind != "app":
        raise GitHubError(401, "A JSON web token could not be decoded")
    return next(a for a in ctx.gh.auth.apps.values() if a.slug == ctx.identity.login)


def installation(ctx: Ctx, app: App) -> dict:
    api = ctx.urls.api
    return {"id": app.installation_id, "account": render.user(ctx.urls, app.owner),
            "repository_selection": "all",
            "access_tokens_url": f"{api}/app/installations/{app.installation_id}/access_tokens",
            "repositories_url": f"{api}/installation/repositories",
            "html_url": f"{ctx.urls.web}/settings/installations/{app.installation_id}", "app_id": app.id,
            "app_slug": app.slug, "target_id": render.user(ctx.urls, app.owner)["id"], "target_type": "Organization",
            "permissions": app.permissions, "events": ["workflow_run", "issues"], "single_file_name": None,
            "created_at": iso(0), "updated_at": iso(0), "suspended_at": None, "suspended_by": None}


@route("GET", "/app")
def get_app(ctx: Ctx) -> Answer:
    app = _app(ctx)
    return Answer(200, {"id": app.id, "slug": app.slug, "node_id": render.node_id("App", app.id),
                        "owner": render.user(ctx.urls, app.owner), "name": app.slug, "description": "",
                        "external_url": ctx.urls.web, "html_url": f"{ctx.urls.web}/apps/{app.slug}",
                        "created_at": iso(0), "updated_at": iso(0), "permissions": app.permissions,
                        "events": ["workflow_run", "issues"], "installations_count": 1})


@route("GET", "/app/installations")
def list_installations(ctx: Ctx) -> Answer:
    return page(ctx, [installation(ctx, _app(ctx))])


@route("GET", "/app/installations/{installation}")
def get_installation(ctx: Ctx) -> Answer:
    app = _app(ctx)
    if ctx.params["installation"] != str(app.installation_id):
        raise not_found()
    return Answer(200, installation(ctx, app))


@route("GET", "/repos/{owner}/{repo}/installation")
def repo_installation(ctx: Ctx) -> Answer:
    app = _app(ctx)
    if ctx.gh.repo(f"{ctx.params['owner']}/{ctx.params['repo']}") is None:
        raise not_found()
    return Answer(200, installation(ctx, app))


@route("POST", "/app/installations/{installation}/access_tokens")
def create_access_token(ctx: Ctx) -> Answer:
    app = _app(ctx)
    if ctx.params["installation"] != str(app.installation_id):
        raise not_found()
    token, expires = ctx.gh.auth.issue_installation_token(app)
    permissions = ctx.json().get("permissions") or app.permissions
    return Answer(201, {"token": token, "expires_at": iso(expires), "permissions": permissions,
                        "repository_selection": "all"})
