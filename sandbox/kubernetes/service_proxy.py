"""The services/proxy subresource: `GET /api/v1/namespaces/NS/services/NAME[:PORT]/proxy/PATH`.

A real API server forwards the request to one of the Service's ready endpoints, and answers 503
`no endpoints available for service "NAME"` when it has none. The sandbox has no processes behind its
pods, so a ready endpoint answers `200 ok` for any path: a health URL that reflects the Service's ready
pods, which the chaos drill's health probe reads, and which fault injection can slow down or break
(faults match on the request path like any other request).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors
from .api import Request, Response
from .controllers.pods import pod_ready
from .resources import BY_KIND
from .routing import Target
from .selectors import SelectorError, label_selector_from_object

if TYPE_CHECKING:
    from .server import Sandbox


def install(sandbox: "Sandbox") -> None:
    sandbox.api.subhandlers[("services", "proxy")] = lambda request, target: proxy(sandbox, request, target)


def proxy(sandbox: "Sandbox", request: Request, target: Target) -> Response:
    if request.method not in ("GET", "HEAD"):
        raise errors.method_not_allowed()
    name = (target.name or "").split(":", 1)[0]
    service = sandbox.api.store.get(BY_KIND["Service"], target.namespace, name)
    if not ready_endpoints(sandbox, service):
        raise errors.ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    return Response(200, "ok", content_type="text/plain")


def ready_endpoints(sandbox: "Sandbox", service: dict) -> list[str]:
    """Names of the ready, not terminating pods the Service selects (an empty selector selects none)."""
    try:
        selector = label_selector_from_object({"matchLabels": (service.get("spec") or {}).get("selector") or {}})
    except SelectorError:
        return []
    if selector.empty:
        return []
    pods = sandbox.api.store.items(BY_KIND["Pod"], service["metadata"]["namespace"])
    return [p["metadata"]["name"] for p in pods if selector.matches(p["metadata"].get("labels") or {})
            and pod_ready(p) and not p["metadata"].get("deletionTimestamp")]
