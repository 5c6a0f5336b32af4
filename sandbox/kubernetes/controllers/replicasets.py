"""ReplicaSet controller: keeps `spec.replicas` pods that match the template, and reports their readiness."""
from __future__ import annotations

import random

from ..store import controller_of
from . import Controller
from .workloads import owned, owner_reference, spec_replicas

_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", ()))


class ReplicaSetController(Controller):
    name = "replicaset-controller"

    def __init__(self, sandbox) -> None:
        super().__init__(sandbox)
        self._ready_since: dict[str, float] = {}      # pod uid -> sim time first seen Ready

    def sync(self) -> None:
        pods_kind, rs_kind = self.kind("Pod"), self.kind("ReplicaSet")
        all_pods = [p for p in self.store.items(pods_kind) if not p["metadata"].get("deletionTimestamp")]
        for rs in self.store.items(rs_kind):
            pods = [p for p in owned(all_pods, rs)]
            self._scale(rs, pods)
            current = self.store.find(rs_kind, rs["metadata"]["namespace"], rs["metadata"]["name"])
            if current is not None:
                pods = owned([p for p in self.store.items(pods_kind, rs["metadata"]["namespace"])], current)
                self._update_status(current, pods)
        live = {p["metadata"]["uid"] for p in all_pods}
        for uid in [u for u in self._ready_since if u not in live]:
            del self._ready_since[uid]

    def _scale(self, rs: dict, pods: list[dict]) -> None:
        want, have = spec_replicas(rs), len(pods)
        if have < want:
            for _ in range(want - have):
                self._create_pod(rs)
            self.record_event(rs, "SuccessfulCreate", f"Created {want - have} pod(s)")
        elif have > want:
            # Delete the least useful first: unscheduled, then not ready, then the newest.
            victims = sorted(pods, key=lambda p: (bool(p["spec"].get("nodeName")), pod_ready(p),
                                                  p["metadata"]["creationTimestamp"]), reverse=False)
            for pod in victims[: have - want]:
                meta = pod["metadata"]
                self.store.delete(self.kind("Pod"), meta["namespace"], meta["name"])
                self.record_event(rs, "SuccessfulDelete", f"Deleted pod: {meta['name']}")

    def _create_pod(self, rs: dict) -> None:
        template = rs["spec"]["template"]
        meta = dict(template.get("metadata") or {})
        meta.pop("creationTimestamp", None)
        name = f"{rs['metadata']['name']}-{''.join(random.choices(_SUFFIX, k=5))}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {**meta, "name": name, "namespace": rs["metadata"]["namespace"],
                            "labels": dict(meta.get("labels") or {}), "ownerReferences": [owner_reference(rs)]},
               "spec": dict(template.get("spec") or {}),
               "status": {"phase": "Pending", "qosClass": "BestEffort"}}
        self.create_pod(pod)

    def _update_status(self, rs: dict, pods: list[dict]) -> None:
        min_ready = rs["spec"].get("minReadySeconds", 0)
        now = self.clock()
        ready = available = 0
        for pod in pods:
            if not pod_ready(pod):
                self._ready_since.pop(pod["metadata"]["uid"], None)
                continue
            ready += 1
            since = self._ready_since.setdefault(pod["metadata"]["uid"], now)
            if now - since >= min_ready:
                available += 1
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": available, "observedGeneration": rs["metadata"].get("generation", 1)}
        old = rs.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()):
            return

        def change(obj: dict) -> dict:
            obj["status"] = {**(obj.get("status") or {}), **status}
            return obj
        self.store.mutate(self.kind("ReplicaSet"), rs["metadata"]["namespace"], rs["metadata"]["name"], change)


def owner_name(pod: dict) -> str | None:
    ref = controller_of(pod)
    return ref["name"] if ref else None
