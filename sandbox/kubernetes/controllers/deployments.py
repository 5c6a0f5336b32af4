"""Deployment controller: ReplicaSet per pod template, revisions, RollingUpdate/Recreate, status and conditions.

Mirrors pkg/controller/deployment (sync.go, rolling.go, progress.go) closely enough that kubectl's
`rollout status`, `rollout history` and `rollout undo` behave as they do on a real cluster.
"""
from __future__ import annotations

import copy

from ..store import now_rfc3339
from . import Controller
from .workloads import (DESIRED_REPLICAS, HASH_LABEL, MAX_REPLICAS, REVISION, REVISION_HISTORY,
                        SKIPPED_ANNOTATIONS, equal_ignore_hash, get_condition, max_unavailable, owned,
                        owner_reference, revision_of, set_condition, spec_replicas, status_count,
                        surge_and_unavailable, template_hash)

NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"


class DeploymentController(Controller):
    name = "deployment-controller"

    def __init__(self, sandbox) -> None:
        super().__init__(sandbox)
        self._progress_at: dict[str, float] = {}   # deployment uid -> sim time of the last Progressing update

    def sync(self) -> None:
        for deployment in self.store.items(self.kind("Deployment")):
            self._sync_one(deployment)

    # -- one deployment ----------------------------------------------------------------------------

    def _sync_one(self, d: dict) -> None:
        namespace = d["metadata"]["namespace"]
        rs_list = owned(self.store.items(self.kind("ReplicaSet"), namespace), d)
        if d["spec"].get("paused"):
            new_rs = self._find_new_rs(d, rs_list)
            self._sync_status(d, rs_list, new_rs)
            return
        new_rs, old_rss = self._new_and_old(d, rs_list)
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            changed = self._recreate(d, new_rs, old_rss)
        else:
            changed = self._reconcile_new(d, new_rs, old_rss) or self._reconcile_old(d, new_rs, old_rss)
        d = self.store.find(self.kind("Deployment"), namespace, d["metadata"]["name"]) or d
        rs_list = owned(self.store.items(self.kind("ReplicaSet"), namespace), d)
        new_rs = self._find_new_rs(d, rs_list)
        if not changed and self._complete(d, rs_list, new_rs):
            self._cleanup(d, [rs for rs in rs_list if rs is not new_rs])
        self._sync_status(d, rs_list, new_rs)

    @staticmethod
    def _find_new_rs(d: dict, rs_list: list[dict]) -> dict | None:
        matching = [rs for rs in rs_list if equal_ignore_hash(rs["spec"]["template"], d["spec"]["template"])]
        return min(matching, key=lambda rs: rs["metadata"]["creationTimestamp"]) if matching else None

    def _new_and_old(self, d: dict, rs_list: list[dict]) -> tuple[dict, list[dict]]:
        """Find or create the ReplicaSet for the current template and give it the next revision."""
        existing = self._find_new_rs(d, rs_list)
        old_rss = [rs for rs in rs_list if rs is not existing]
        new_revision = max((revision_of(rs) for rs in old_rss), default=0) + 1
        if existing is None:
            new_rs = self._create_rs(d, old_rss, new_revision)
        else:
            new_rs = self._adopt_revision(d, existing, old_rss, new_revision)
        self._set_deployment_revision(d, revision_of(new_rs))
        return new_rs, old_rss

    def _create_rs(self, d: dict, old_rss: list[dict], revision: int) -> dict:
        template = copy.deepcopy(d["spec"]["template"])
        pod_hash = template_hash(template, d.get("status", {}).get("collisionCount", 0))
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        surge, _ = surge_and_unavailable(d)
        annotations = {k: v for k, v in (d["metadata"].get("annotations") or {}).items()
                       if k not in SKIPPED_ANNOTATIONS}
        annotations.update({REVISION: str(revision), DESIRED_REPLICAS: str(spec_replicas(d)),
                            MAX_REPLICAS: str(spec_replicas(d) + surge)})
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{d['metadata']['name']}-{pod_hash}", "namespace": d["metadata"]["namespace"],
                           "labels": dict(template["metadata"]["labels"]), "annotations": annotations,
                           "ownerReferences": [owner_reference(d)]},
              "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                       "selector": selector, "template": template}}
        rs["spec"]["replicas"] = self._new_rs_replicas(d, rs, old_rss)
        created = self.store.create(self.kind("ReplicaSet"), rs)
        self.record_event(d, "ScalingReplicaSet",
                          f"Scaled up replica set {created['metadata']['name']} from 0 to {spec_replicas(created)}")
        self._set_progressing(d, "True", "NewReplicaSetCreated",
                              f'Created new replica set "{created["metadata"]["name"]}"')
        return created

    def _adopt_revision(self, d: dict, rs: dict, old_rss: list[dict], revision: int) -> dict:
        """An existing ReplicaSet matches the template again (e.g. `rollout undo`): it becomes the newest
        revision, and its former revision is remembered in revision-history, as the real controller does."""
        annotations = rs["metadata"].get("annotations") or {}
        current = revision_of(rs)
        wanted = {k: v for k, v in (d["metadata"].get("annotations") or {}).items() if k not in SKIPPED_ANNOTATIONS}
        needs_revision = current < revision
        if not needs_revision and all(annotations.get(k) == v for k, v in wanted.items()):
            if get_condition(d, "Progressing") is None:
                self._set_progressing(d, "True", "FoundNewReplicaSet",
                                      f'Found new replica set "{rs["metadata"]["name"]}"')
            return rs

        def change(obj: dict) -> dict:
            notes = obj["metadata"].setdefault("annotations", {})
            notes.update(wanted)
            if needs_revision:
                if current:
                    history = [h for h in notes.get(REVISION_HISTORY, "").split(",") if h]
                    notes[REVISION_HISTORY] = ",".join(history + [str(current)])
                notes[REVISION] = str(revision)
            return obj
        return self.store.mutate(self.kind("ReplicaSet"), rs["metadata"]["namespace"], rs["metadata"]["name"],
                                 change) or rs

    def _set_deployment_revision(self, d: dict, revision: int) -> None:
        if (d["metadata"].get("annotations") or {}).get(REVISION) == str(revision):
            return

        def change(obj: dict) -> dict:
            obj["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            return obj
        self.store.mutate(self.kind("Deployment"), d["metadata"]["namespace"], d["metadata"]["name"], change)

    # -- rolling update ----------------------------------------------------------------------------

    def _new_rs_replicas(self, d: dict, new_rs: dict, old_rss: list[dict]) -> int:
        """`NewRSNewReplicas`: scale up the new ReplicaSet as far as maxSurge allows."""
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            return spec_replicas(d)
        surge, _ = surge_and_unavailable(d)
        current = sum(spec_replicas(rs) for rs in old_rss) + spec_replicas(new_rs)
        max_total = spec_replicas(d) + surge
        if current >= max_total:
            return spec_replicas(new_rs)
        step = min(max_total - current, spec_replicas(d) - spec_replicas(new_rs))
        return spec_replicas(new_rs) + step

    def _reconcile_new(self, d: dict, new_rs: dict, old_rss: list[dict]) -> bool:
        want = spec_replicas(d)
        if spec_replicas(new_rs) == want:
            return False
        target = want if spec_replicas(new_rs) > want else self._new_rs_replicas(d, new_rs, old_rss)
        return self._scale_rs(d, new_rs, target)

    def _reconcile_old(self, d: dict, new_rs: dict, old_rss: list[dict]) -> bool:
        old_rss = [rs for rs in old_rss if spec_replicas(rs) > 0]
        if not old_rss:
            return False
        all_pods = sum(spec_replicas(rs) for rs in old_rss) + spec_replicas(new_rs)
        min_available = spec_replicas(d) - max_unavailable(d)
        new_unavailable = spec_replicas(new_rs) - status_count(new_rs, "availableReplicas")
        budget = all_pods - min_available - new_unavailable
        if budget <= 0:
            return False
        cleaned = 0
        for rs in sorted(old_rss, key=lambda r: r["metadata"]["creationTimestamp"]):   # unhealthy first
            if cleaned >= budget:
                break
            unhealthy = spec_replicas(rs) - status_count(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            step = min(budget - cleaned, unhealthy)
            self._scale_rs(d, rs, spec_replicas(rs) - step)
            cleaned += step
        if cleaned:
            return True
        available = sum(status_count(rs, "availableReplicas") for rs in old_rss + [new_rs])
        to_scale_down = available - min_available
        scaled = 0
        for rs in sorted(old_rss, key=lambda r: r["metadata"]["creationTimestamp"]):
            if scaled >= to_scale_down:
                break
            step = min(spec_replicas(rs), to_scale_down - scaled)
            self._scale_rs(d, rs, spec_replicas(rs) - step)
            scaled += step
        return scaled > 0

    def _recreate(self, d: dict, new_rs: dict, old_rss: list[dict]) -> bool:
        active = [rs for rs in old_rss if spec_replicas(rs) > 0]
        if active:
            for rs in active:
                self._scale_rs(d, rs, 0)
            return True
        if any(status_count(rs, "replicas") > 0 for rs in old_rss):
            return False   # wait for old pods to go before starting new ones
        return self._scale_rs(d, new_rs, spec_replicas(d))

    def _scale_rs(self, d: dict, rs: dict, replicas: int) -> bool:
        before = spec_replicas(rs)
        if before == replicas:
            return False
        surge, _ = surge_and_unavailable(d)

        def change(obj: dict) -> dict:
            obj["spec"]["replicas"] = replicas
            notes = obj["metadata"].setdefault("annotations", {})
            notes[DESIRED_REPLICAS] = str(spec_replicas(d))
            notes[MAX_REPLICAS] = str(spec_replicas(d) + surge)
            return obj
        self.store.mutate(self.kind("ReplicaSet"), rs["metadata"]["namespace"], rs["metadata"]["name"], change)
        direction = "up" if replicas > before else "down"
        self.record_event(d, "ScalingReplicaSet",
                          f"Scaled {direction} replica set {rs['metadata']['name']} from {before} to {replicas}")
        return True

    # -- status ------------------------------------------------------------------------------------

    @staticmethod
    def _complete(d: dict, rs_list: list[dict], new_rs: dict | None) -> bool:
        want = spec_replicas(d)
        updated = status_count(new_rs, "replicas") if new_rs else 0
        return (updated == want and sum(status_count(rs, "replicas") for rs in rs_list) == want
                and sum(status_count(rs, "availableReplicas") for rs in rs_list) >= want)

    def _cleanup(self, d: dict, old_rss: list[dict]) -> None:
        """Delete old, scaled-down ReplicaSets beyond revisionHistoryLimit, oldest first."""
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [rs for rs in old_rss if spec_replicas(rs) == 0 and status_count(rs, "replicas") == 0]
        excess = len(idle) - limit
        for rs in sorted(idle, key=revision_of)[: max(0, excess)]:
            self.store.delete(self.kind("ReplicaSet"), rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _sync_status(self, d: dict, rs_list: list[dict], new_rs: dict | None) -> None:
        def total(field: str) -> int:
            return sum(status_count(rs, field) for rs in rs_list)
        want = spec_replicas(d)
        old_status = d.get("status") or {}
        available = total("availableReplicas")
        status = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": total("replicas"),
                  "updatedReplicas": status_count(new_rs, "replicas") if new_rs else 0,
                  "readyReplicas": total("readyReplicas"), "availableReplicas": available,
                  "unavailableReplicas": max(0, sum(spec_replicas(rs) for rs in rs_list) - available)}
        now = now_rfc3339()
        conditions = {"conditions": copy.deepcopy(old_status.get("conditions", []))}
        if available >= want - max_unavailable(d):
            set_condition(conditions, {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                       "message": "Deployment has minimum availability."}, now)
        else:
            set_condition(conditions, {"type": "Available", "status": "False",
                                       "reason": "MinimumReplicasUnavailable",
                                       "message": "Deployment does not have minimum availability."}, now)
        self._progress(d, old_status, status, conditions, new_rs, now)
        status["conditions"] = conditions["conditions"]
        if "collisionCount" in old_status:
            status["collisionCount"] = old_status["collisionCount"]
        if status != old_status:
            def change(obj: dict) -> dict:
                obj["status"] = status
                return obj
            self.store.mutate(self.kind("Deployment"), d["metadata"]["namespace"], d["metadata"]["name"], change)

    def _progress(self, d: dict, old: dict, new: dict, conditions: dict, new_rs: dict | None, now: str) -> None:
        """The Progressing condition and the progress deadline (progress.go)."""
        uid = d["metadata"]["uid"]
        current = next((c for c in conditions["conditions"] if c["type"] == "Progressing"), None)
        want = spec_replicas(d)
        if d["spec"].get("paused"):
            if set_condition(conditions, {"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused",
                                          "message": "Deployment is paused"}, now):
                self._progress_at[uid] = self.clock()
            return
        name = new_rs["metadata"]["name"] if new_rs else ""
        if new["replicas"] == new["updatedReplicas"] and current and current.get("reason") == NEW_RS_AVAILABLE:
            return
        complete = (new["updatedReplicas"] == want and new["replicas"] == want and new["availableReplicas"] == want
                    and new["observedGeneration"] >= d["metadata"].get("generation", 1))
        progressing = (new["updatedReplicas"] > old.get("updatedReplicas", 0)
                       or new["replicas"] - new["updatedReplicas"]
                       < old.get("replicas", 0) - old.get("updatedReplicas", 0)
                       or new["readyReplicas"] > old.get("readyReplicas", 0)
                       or new["availableReplicas"] > old.get("availableReplicas", 0))
        if complete:
            self._replace_progressing(conditions, "True", NEW_RS_AVAILABLE,
                                      f'ReplicaSet "{name}" has successfully progressed.', now, uid)
        elif progressing:
            self._replace_progressing(conditions, "True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.',
                                      now, uid, keep_transition=True)
        elif current is not None and current.get("reason") != TIMED_OUT and self._timed_out(d):
            self._replace_progressing(conditions, "False", TIMED_OUT,
                                      f'ReplicaSet "{name}" has timed out progressing.', now, uid)

    def _replace_progressing(self, conditions: dict, status: str, reason: str, message: str, now: str,
                             uid: str, keep_transition: bool = False) -> None:
        """Set Progressing; every update restarts the progress deadline, as lastUpdateTime does for real."""
        old = next((c for c in conditions["conditions"] if c["type"] == "Progressing"), None)
        transition = old["lastTransitionTime"] if old and (keep_transition or old["status"] == status) else now
        condition = {"type": "Progressing", "status": status, "lastUpdateTime": now, "lastTransitionTime": transition,
                     "reason": reason, "message": message}
        conditions["conditions"] = [c for c in conditions["conditions"] if c["type"] != "Progressing"] + [condition]
        self._progress_at[uid] = self.clock()

    def _set_progressing(self, d: dict, status: str, reason: str, message: str) -> None:
        now = now_rfc3339()

        def change(obj: dict) -> dict | None:
            st = obj.setdefault("status", {})
            holder = {"conditions": st.get("conditions", [])}
            self._replace_progressing(holder, status, reason, message, now, d["metadata"]["uid"])
            st["conditions"] = holder["conditions"]
            return obj
        self.store.mutate(self.kind("Deployment"), d["metadata"]["namespace"], d["metadata"]["name"], change)

    def _timed_out(self, d: dict) -> bool:
        deadline = d["spec"].get("progressDeadlineSeconds")
        if deadline is None:
            return False
        since = self._progress_at.setdefault(d["metadata"]["uid"], self.clock())
        return self.clock() - since > deadline
