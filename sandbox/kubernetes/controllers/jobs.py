"""Job controller: pods per parallelism and completions, failures against backoffLimit, and the status and
conditions pkg/controller/job writes (startTime, active/ready/succeeded/failed, completionTime,
SuccessCriteriaMet then Complete, or FailureTarget then Failed).

The kubelet runs a Job's containers to completion: they exit 0 after `job_run_seconds` of simulated time,
or 1 at once when the image tag contains `crashloop` (with restartPolicy OnFailure they restart in place
instead, and their restarts count against backoffLimit). Replacements for failed pods wait the real
back-off: 10 s, 20 s, 40 s ... capped at 6 min of simulated time.
"""
from __future__ import annotations

import copy
import random

from ..store import now_rfc3339
from . import Controller
from .pods import pod_ready
from .workloads import owned, owner_reference

COMPLETE = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
BACKOFF_START, BACKOFF_CAP = 10, 360
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"


def finished(job: dict) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or ())


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


class JobController(Controller):
    name = "job-controller"

    def __init__(self, sandbox) -> None:
        super().__init__(sandbox)
        self._failed_at: dict[str, tuple[int, float]] = {}    # job uid -> (failures seen, sim time of the last)
        self._started: dict[str, float] = {}                   # job uid -> sim time it started

    def sync(self) -> None:
        pods = self.store.items(self.kind("Pod"))
        for job in self.store.items(self.kind("Job")):
            if not finished(job):
                mine = owned([p for p in pods if p["metadata"]["namespace"] == job["metadata"]["namespace"]], job)
                self._sync_one(job, mine)

    def _sync_one(self, job: dict, pods: list[dict]) -> None:
        spec, old = job["spec"], job.get("status") or {}
        active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed")
                  and not p["metadata"].get("deletionTimestamp")]
        succeeded = max(old.get("succeeded", 0), sum(1 for p in pods if _phase(p) == "Succeeded"))
        failed = max(old.get("failed", 0), sum(1 for p in pods if _phase(p) == "Failed"))
        outcome = self._outcome(job, active, succeeded, failed)
        if outcome is None and not spec.get("suspend"):
            self._scale(job, active, succeeded, failed)
        elif outcome is not None:
            for pod in active:                           # a finished Job leaves nothing running
                self.store.delete(self.kind("Pod"), pod["metadata"]["namespace"], pod["metadata"]["name"])
            active = []
        self._write_status(job, active, succeeded, failed, outcome)

    def _outcome(self, job: dict, active: list[dict], succeeded: int, failed: int) -> tuple[str, str, str] | None:
        """("Complete"|"Failed", reason, message) once the Job is done, else None."""
        spec = job["spec"]
        completions = spec.get("completions")
        if (completions is not None and succeeded >= completions) or \
                (completions is None and succeeded > 0 and not active):
            return ("Complete", *COMPLETE)
        limit = spec.get("backoffLimit", 6)
        restarts = sum(c.get("restartCount", 0) for p in active
                       for c in (p.get("status") or {}).get("containerStatuses") or ())
        on_failure = (spec["template"].get("spec") or {}).get("restartPolicy") == "OnFailure"
        if failed > limit or (on_failure and limit > 0 and restarts >= limit):
            return ("Failed", *BACKOFF_EXCEEDED)
        deadline, started = spec.get("activeDeadlineSeconds"), self._started.get(job["metadata"]["uid"])
        if deadline is not None and started is not None and self.clock() - started > deadline:
            return ("Failed", *DEADLINE_EXCEEDED)
        return None

    def _scale(self, job: dict, active: list[dict], succeeded: int, failed: int) -> None:
        spec, uid = job["spec"], job["metadata"]["uid"]
        self._started.setdefault(uid, self.clock())
        completions = spec.get("completions")
        want = spec.get("parallelism", 1) if completions is None else min(spec.get("parallelism", 1),
                                                                          completions - succeeded)
        if completions is None and succeeded:
            want = len(active)              # a work queue: once one pod succeeded, start no more, stop none
        if len(active) > want:
            for pod in active[want:]:
                self.store.delete(self.kind("Pod"), pod["metadata"]["namespace"], pod["metadata"]["name"])
            return
        if len(active) < want and self._backed_off(uid, failed):
            for _ in range(want - len(active)):
                self._create(job)

    def _backed_off(self, uid: str, failed: int) -> bool:
        """Whether the back-off after the latest failure has passed (no failure: at once)."""
        seen, at = self._failed_at.get(uid, (0, 0.0))
        if failed > seen:
            self._failed_at[uid] = (failed, self.clock())
            seen, at = failed, self.clock()
        if not failed:
            return True
        return self.clock() - at >= min(BACKOFF_START * 2 ** (failed - 1), BACKOFF_CAP)

    def _create(self, job: dict) -> None:
        template = job["spec"]["template"]
        meta = copy.deepcopy(template.get("metadata") or {})
        meta.pop("creationTimestamp", None)
        name = f"{job['metadata']['name']}-{''.join(random.choices(_SUFFIX, k=5))}"
        pod = self.create_pod({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {**meta, "name": name, "namespace": job["metadata"]["namespace"],
                                            "labels": dict(meta.get("labels") or {}),
                                            "ownerReferences": [owner_reference(job)]},
                               "spec": copy.deepcopy(template.get("spec") or {}),
                               "status": {"phase": "Pending", "qosClass": "BestEffort"}})
        self.record_event(job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")

    def _write_status(self, job: dict, active: list[dict], succeeded: int, failed: int,
                      outcome: tuple[str, str, str] | None) -> None:
        old, now = job.get("status") or {}, now_rfc3339()
        status: dict = {}
        conditions = list(old.get("conditions") or [])
        if outcome is not None:
            kind, reason, message = outcome
            interim = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
            conditions += [{"type": t, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                            "reason": reason, "message": message} for t in (interim, kind)]
        if conditions:
            status["conditions"] = conditions
        status["startTime"] = old.get("startTime") or now
        if outcome is not None and outcome[0] == "Complete":
            status["completionTime"] = now
        for key, value in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
            if value:
                status[key] = value
        status.update(terminating=0, uncountedTerminatedPods={}, ready=sum(1 for p in active if pod_ready(p)))
        if status != old:
            meta = job["metadata"]
            self.store.mutate(self.kind("Job"), meta["namespace"], meta["name"], lambda obj: {**obj, "status": status})
        if outcome is not None:
            warning = outcome[0] == "Failed"
            self.record_event(job, outcome[1] if warning else "Completed",
                              outcome[2] if warning else "Job completed", type="Warning" if warning else "Normal")
