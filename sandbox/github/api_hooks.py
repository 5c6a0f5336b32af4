"""Repository webhooks: create (GitHub pings a new hook at once), list, get, delete, their deliveries, and
redelivery (`POST .../deliveries/{id}/attempts`: 202, the same `X-GitHub-Delivery` GUID, `redelivery: true`).
Shapes after the OpenAPI description's `hook`, `hook-delivery-item` and `hook-delivery`."""
from __future__ import annotations

import json

from .api import Answer, Ctx, invalid, not_found, page, route
from .hooks import Delivery, Hook, headers, loopback_url
from .model import Repo, iso


def hook_json(ctx: Ctx, repo: Repo, hook: Hook) -> dict:
    url = f"{ctx.urls.repo(repo)}/hooks/{hook.id}"
    last = hook.deliveries[-1] if hook.deliveries else None
    config = {"content_type": "json", "insecure_ssl": "0", "url": hook.url}
    if hook.secret:
        config["secret"] = "********"
    return {"type": "Repository", "id": hook.id, "name": "web", "active": hook.active, "events": list(hook.events),
            "config": config, "updated_at": iso(hook.created), "created_at": iso(hook.created), "url": url,
            "test_url": f"{url}/test", "ping_url": f"{url}/pings", "deliveries_url": f"{url}/deliveries",
            "last_response": {"code": last.status_code if last else None, "status": last.status if last else "unused",
                              "message": None}}


def delivery_json(repo: Repo, d: Delivery) -> dict:
    return {"id": d.id, "guid": d.guid, "delivered_at": iso(d.delivered_at), "redelivery": d.redelivery,
            "duration": round(d.duration, 3), "status": d.status, "status_code": d.status_code, "event": d.event,
            "action": d.action, "installation_id": None, "repository_id": repo.id, "throttled_at": None}


def _hook(ctx: Ctx) -> Hook:
    text = ctx.params["hook"]
    found = ctx.repo.hooks.get(int(text)) if text.isdigit() else None
    if found is None:
        raise not_found()
    return found


def _delivery(ctx: Ctx, hook: Hook) -> Delivery:
    for delivery in hook.deliveries:
        if str(delivery.id) == ctx.params["delivery"]:
            return delivery
    raise not_found()


@route("POST", "/repos/{owner}/{repo}/hooks")
def create_hook(ctx: Ctx) -> Answer:
    repo, body = ctx.repo, ctx.json()
    config = body.get("config") or {}
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise invalid("Validation Failed", [{"resource": "Hook", "code": "custom",
                                             "message": "Config must contain URL"}])
    if not loopback_url(url):
        raise invalid("Validation Failed", [{"resource": "Hook", "code": "custom",
                                             "message": "The sandbox delivers webhooks to loopback addresses only"}])
    events = tuple(body.get("events") or ("push",))
    hook = ctx.gh.add_hook(repo.full_name, url, secret=config.get("secret") or None, events=events,
                           active=bool(body.get("active", True)))
    return Answer(201, hook_json(ctx, repo, hook))


@route("GET", "/repos/{owner}/{repo}/hooks")
def list_hooks(ctx: Ctx) -> Answer:
    repo = ctx.repo
    return page(ctx, [hook_json(ctx, repo, h) for h in repo.hooks.values()])


@route("GET", "/repos/{owner}/{repo}/hooks/{hook}")
def get_hook(ctx: Ctx) -> Answer:
    return Answer(200, hook_json(ctx, ctx.repo, _hook(ctx)))


@route("DELETE", "/repos/{owner}/{repo}/hooks/{hook}")
def delete_hook(ctx: Ctx) -> Answer:
    del ctx.repo.hooks[_hook(ctx).id]
    return Answer(204)


@route("GET", "/repos/{owner}/{repo}/hooks/{hook}/deliveries")
def list_deliveries(ctx: Ctx) -> Answer:
    repo = ctx.repo
    return page(ctx, [delivery_json(repo, d) for d in reversed(_hook(ctx).deliveries)])


@route("GET", "/repos/{owner}/{repo}/hooks/{hook}/deliveries/{delivery}")
def get_delivery(ctx: Ctx) -> Answer:
    repo, hook = ctx.repo, _hook(ctx)
    d = _delivery(ctx, hook)
    return Answer(200, {**delivery_json(repo, d), "url": hook.url,
                        "request": {"headers": headers(hook, d, repo.id), "payload": json.loads(d.body)},
                        "response": {"headers": {}, "payload": None}})


@route("POST", "/repos/{owner}/{repo}/hooks/{hook}/deliveries/{delivery}/attempts")
def redeliver(ctx: Ctx) -> Answer:
    hook = _hook(ctx)
    ctx.gh.redeliver(ctx.repo.full_name, hook.id, _delivery(ctx, hook).id, wait=False)
    return Answer(202, {})
