"""The pods/eviction and pods/log subresources.

Eviction follows the real registry (pkg/registry/core/pod/storage/eviction.go): the decision is made from the
PodDisruptionBudget's *status* as the disruption controller last wrote it, and an allowed eviction of a
Ready pod is recorded in that status (disruptionsAllowed - 1, disruptedPods) before the pod is deleted, so two
evictions racing on the same budget cannot both pass. `kubectl drain` and client libraries rely on the exact
429 body to decide to retry.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from . import errors
from .api import Api, Request, Response, query_int
from .controllers.pods import pod_logs, pod_ready
from .resources import BY_KIND
from .routing import Target
from .selectors import SelectorError, label_selector_from_object
from .store import copy_of, now_rfc3339

if TYPE_CHECKING:
    from .server import Sandbox

VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
SUCCESS = {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?Z\s")


def install(sandbox: "Sandbox") -> None:
    api = sandbox.api
    api.subhandlers[("pods", "eviction")] = lambda request, target: evict(api, request, target)
    api.subhandlers[("pods", "log")] = lambda request, target: read_log(sandbox, request, target)


# -- eviction ------------------------------------------------------------------------------------------

def evict(api: Api, request: Request, target: Target) -> Response:
    if request.method != "POST":
        raise errors.method_not_allowed()
    body = api.decode_json(request)
    if not isinstance(body, dict) or body.get("kind") not in (None, "", "Eviction"):
        raise errors.bad_request("the object provided is unrecognized (expected kind \"Eviction\")")
    if (body.get("metadata") or {}).get("name") != target.name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    options = body.get("deleteOptions") or {}
    dry_run = request.query.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])
    store, pods = api.store, BY_KIND["Pod"]
    with store.lock:
        pod = store.get(pods, target.namespace, target.name)
        if not _ignores_budget(pod):
            budgets = budgets_for(api, pod)
            if len(budgets) > 1:
                raise errors.internal_error(MULTIPLE)
            if budgets and not _unhealthy_may_go(pod, budgets[0]):
                _take_disruption(api, budgets[0], pod, dry_run)
        pre = options.get("preconditions") or {}
        store.delete(pods, target.namespace, target.name, dry_run=dry_run, uid=pre.get("uid"),
                     resource_version=pre.get("resourceVersion"))
    return Response(201, dict(SUCCESS))


def _ignores_budget(pod: dict) -> bool:
    """Pods that are finished, not yet running, or already going are evicted without consulting a budget."""
    return pod.get("status", {}).get("phase") in ("Pending", "Succeeded", "Failed") \
        or bool(pod["metadata"].get("deletionTimestamp"))


def budgets_for(api: Api, pod: dict) -> list[dict]:
    """PDBs in the pod's namespace selecting it; an empty selector selects nothing here (as in eviction.go)."""
    found = []
    for pdb in api.store.items(BY_KIND["PodDisruptionBudget"], pod["metadata"]["namespace"]):
        try:
            selector = label_selector_from_object((pdb.get("spec") or {}).get("selector"))
        except SelectorError:
            continue
        if not selector.empty and selector.matches(pod["metadata"].get("labels") or {}):
            found.append(pdb)
    return found


def _unhealthy_may_go(pod: dict, pdb: dict) -> bool:
    """A not-Ready pod does not count towards the budget: evict it when the budget is met (IfHealthyBudget)
    or always (AlwaysAllow), without spending a disruption."""
    if pod_ready(pod):
        return False
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    status = pdb.get("status") or {}
    desired = status.get("desiredHealthy", 0)
    return status.get("currentHealthy", 0) >= desired and desired > 0


def _take_disruption(api: Api, pdb: dict, pod: dict, dry_run: bool) -> None:
    """checkAndDecrement: refuse with 429 unless the budget allows one more disruption, then record it."""
    status = pdb.get("status") or {}
    name = pdb["metadata"]["name"]
    if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
        raise _violation(f"The disruption budget {name} is still being processed by the server.", retry=10)
    allowed = status.get("disruptionsAllowed", 0)
    if allowed < 0:
        raise errors.ApiError(403, "Forbidden", "pdb disruptions allowed is negative")
    if len(status.get("disruptedPods") or {}) > 2000:
        raise errors.ApiError(403, "Forbidden",
                              "DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise _violation(f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} healthy pods "
                         f"and has {status.get('currentHealthy', 0)} currently")
    if dry_run:
        return
    updated = copy_of(pdb)
    new_status = updated.setdefault("status", {})
    new_status["disruptionsAllowed"] = allowed - 1
    new_status.setdefault("disruptedPods", {})[pod["metadata"]["name"]] = now_rfc3339()
    if allowed - 1 == 0:
        for condition in new_status.get("conditions") or []:
            if condition.get("type") == "DisruptionAllowed" and condition.get("status") != "False":
                condition.update(status="False", reason="InsufficientPods", lastTransitionTime=now_rfc3339())
    api.store.replace(BY_KIND["PodDisruptionBudget"], updated)


def _violation(cause: str, retry: int = 0) -> errors.ApiError:
    details = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry:
        return errors.too_many_requests(VIOLATION, retry, details)
    return errors.ApiError(429, "TooManyRequests", VIOLATION, details=details)


# -- logs ----------------------------------------------------------------------------------------------

def read_log(sandbox: "Sandbox", request: Request, target: Target) -> Response:
    """GET pods/{name}/log: the kubelet's answer, including its errors for containers that have not started."""
    if request.method != "GET":
        raise errors.method_not_allowed()
    pod = sandbox.store.get(BY_KIND["Pod"], target.namespace, target.name)
    name = _container_name(pod, request.query.get("container"))
    if not pod["spec"].get("nodeName"):
        return Response(200, "", "text/plain")        # not scheduled: the server has no kubelet to ask
    cstatus = next((c for c in pod.get("status", {}).get("containerStatuses") or [] if c.get("name") == name), {})
    if request.flag("previous"):
        if not (cstatus.get("lastState") or {}).get("terminated"):
            raise errors.bad_request(f'previous terminated container "{name}" in pod "{target.name}" not found')
    elif "running" not in (cstatus.get("state") or {}) and \
            not (cstatus.get("lastState") or {}).get("terminated"):
        reason = ((cstatus.get("state") or {}).get("waiting") or {}).get("reason") or "ContainerCreating"
        raise errors.bad_request(f'container "{name}" in pod "{target.name}" is waiting to start: {reason}')
    lines = list(pod_logs(sandbox).get((pod["metadata"]["namespace"], target.name, name), []))
    started = ((cstatus.get("state") or {}).get("running") or {}).get("startedAt") or now_rfc3339()
    if request.flag("timestamps"):
        lines = _with_timestamps(lines, started)
    tail = query_int(request.query.get("tailLines"), "tailLines")
    if tail is not None:
        lines = lines[len(lines) - tail:] if tail else []
    text = "".join(line + "\n" for line in lines)
    limit = query_int(request.query.get("limitBytes"), "limitBytes")
    if limit:
        text = text.encode()[:limit].decode(errors="ignore")
    return Response(200, text, "text/plain")


def _container_name(pod: dict, asked: str | None) -> str:
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    pod_name = pod["metadata"]["name"]
    if not asked:
        if len(names) == 1:
            return names[0]
        message = f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(names)}]"
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if inits:
            message += f" or one of the init containers: [{' '.join(inits)}]"
        raise errors.bad_request(message)
    if asked not in names:
        raise errors.bad_request(f"container {asked} is not valid for pod {pod_name}")
    return asked


def _with_timestamps(lines: list[str], fallback: str) -> list[str]:
    """Prefix each line with an RFC3339Nano time as the kubelet does; lines carry their own time when logged."""
    out, stamp = [], fallback.rstrip("Z")
    for line in lines:
        match = _STAMP.match(line + " ")
        if match:
            stamp = match.group(1)
        out.append(f"{stamp}.000000000Z {line}")
    return out
