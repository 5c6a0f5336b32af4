"""The scheduler and the kubelets: Pending pods get a node, bound pods start (or crash-loop) in simulated time.

Both are level-triggered and write only when the pod's status would change, because every store write
re-runs the controller loop. Pod start-up is a pure function of (time the kubelet took the pod up, now),
so recomputing it on every pass gives the same status, and nothing is written until time moves it on.
"""
from __future__ import annotations

import collections
import datetime as dt
import hashlib
import time

from ..store import now_rfc3339
from . import Controller
from .fit import NodeUsage
from .nodes import (UNSCHEDULABLE_TAINT, condition_status, effective_taints, internal_ip, node_affinity_matches,
                    node_ready, tolerates)

TERMINAL = ("Succeeded", "Failed")
BACKOFF_START, BACKOFF_CAP = 10, 300          # kubelet crash back-off, simulated seconds


def pod_logs(sandbox) -> dict:
    """The sandbox-wide log buffers: (namespace, pod, container) -> lines of the latest container instance."""
    logs = getattr(sandbox, "pod_logs", None)
    if logs is None:
        logs = sandbox.pod_logs = {}
    return logs


def pod_ready(pod: dict) -> bool:
    return condition_status(pod, "Ready") == "True"


def set_condition(status: dict, kind: str, value: str, stamp: str, reason: str | None = None,
                  message: str | None = None) -> dict:
    """Put a pod condition in place, keeping its lastTransitionTime when its status did not flip."""
    conditions = status.setdefault("conditions", [])
    old = next((c for c in conditions if c.get("type") == kind), None)
    new = {"type": kind, "status": value, "lastProbeTime": None,
           "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == value else stamp}
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    if old is None:
        conditions.append(new)
    else:
        conditions[conditions.index(old)] = new
    return status


class Scheduler(Controller):
    name = "default-scheduler"

    def __init__(self, sandbox) -> None:
        super().__init__(sandbox)
        self._reported: dict[str, str] = {}    # pod uid -> last FailedScheduling message (one event per message)

    def sync(self) -> None:
        pods = self.store.items(self.kind("Pod"))
        pending = [p for p in pods if _wants_node(p)]
        self._reported = {uid: m for uid, m in self._reported.items()
                          if uid in {p["metadata"]["uid"] for p in pending}}
        if not pending:
            return
        nodes = self.store.items(self.kind("Node"))
        load = collections.Counter(p["spec"].get("nodeName") for p in pods
                                   if p["spec"].get("nodeName") and p.get("status", {}).get("phase") not in TERMINAL)
        usage = NodeUsage(pods)
        for pod in sorted(pending, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"])):
            misfits = {n["metadata"]["name"]: _misfit(pod, n) or usage.misfit(pod, n) for n in nodes}
            fits = [n for n, why in misfits.items() if why is None]
            if fits:
                node = min(fits, key=lambda n: (load[n], n))    # spread: fewest pods first, ties by name
                load[node] += 1
                usage.add(pod, node)
                self._bind(pod, node)
            else:
                self._unschedulable(pod, _fit_error(len(nodes), collections.Counter(misfits.values())))

    def _bind(self, pod: dict, node: str) -> None:
        meta = pod["metadata"]

        def change(current: dict) -> dict | None:
            if current["spec"].get("nodeName"):
                return None
            current["spec"]["nodeName"] = node
            set_condition(current.setdefault("status", {}), "PodScheduled", "True", now_rfc3339())
            return current
        stored = self.store.mutate(self.kind("Pod"), meta["namespace"], meta["name"], change)
        if stored is not None and stored["spec"].get("nodeName") == node:
            self.record_event(stored, "Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} "
                                                   f"to {node}")

    def _unschedulable(self, pod: dict, message: str) -> None:
        meta = pod["metadata"]
        condition = next((c for c in pod.get("status", {}).get("conditions", ()) if c["type"] == "PodScheduled"), {})
        if condition.get("status") != "False" or condition.get("message") != message:
            pod = self.store.mutate(self.kind("Pod"), meta["namespace"], meta["name"], lambda current: {
                **current, "status": set_condition(current.get("status") or {}, "PodScheduled", "False",
                                                   now_rfc3339(), "Unschedulable", message)}) or pod
        if self._reported.get(meta["uid"]) != message:
            self._reported[meta["uid"]] = message
            self.record_event(pod, "FailedScheduling", message, type="Warning")


def _wants_node(pod: dict) -> bool:
    return (not pod["spec"].get("nodeName") and pod.get("status", {}).get("phase", "Pending") == "Pending"
            and pod["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"
            and not pod["metadata"].get("deletionTimestamp"))


def _misfit(pod: dict, node: dict) -> str | None:
    """Why `pod` cannot go on `node` (the first failing filter's reason, as the real scheduler reports), or None."""
    tolerations = pod["spec"].get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(tolerations, UNSCHEDULABLE_TAINT):
        return "node(s) were unschedulable"
    for taint in effective_taints(node):
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    if not node_affinity_matches(pod["spec"], node):
        return "node(s) didn't match Pod's node affinity/selector"
    return None


def _fit_error(total: int, reasons: collections.Counter) -> str:
    if total == 0:
        return "no nodes available to schedule pods"
    histogram = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
    return (f"0/{total} nodes are available: {histogram}. preemption: 0/{total} nodes are available: "
            f"{total} Preemption is not helpful for scheduling.")


class Kubelet(Controller):
    name = "kubelet"

    def __init__(self, sandbox) -> None:
        super().__init__(sandbox)
        self._taken: dict[str, float] = {}        # pod uid -> sim time the kubelet took it up
        self._ips: dict[str, str] = {}            # pod uid -> pod IP
        self._told: dict[str, dict[str, int]] = {}  # pod uid -> container -> instances announced (events, logs)
        self._wall0 = time.time() - self.clock() / self.config.speed
        self.logs = pod_logs(sandbox)

    def sync(self) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.store.items(self.kind("Node"))}
        pods = self.store.items(self.kind("Pod"))
        used = {p.get("status", {}).get("podIP") for p in pods}
        for pod in pods:
            node = nodes.get(pod["spec"].get("nodeName") or "")
            if node is None or not node_ready(node) or pod["metadata"].get("deletionTimestamp") \
                    or pod.get("status", {}).get("phase") in TERMINAL:
                continue                          # an unready node's kubelet makes no progress
            self._step(pod, node, used)
        uids = {p["metadata"]["uid"] for p in pods}
        names = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
        for memory in (self._taken, self._ips, self._told):     # forget deleted pods
            for uid in [u for u in memory if u not in uids]:
                del memory[uid]
        for key in [k for k in list(self.logs) if k[:2] not in names]:
            self.logs.pop(key, None)

    def _step(self, pod: dict, node: dict, used: set) -> None:
        meta, now = pod["metadata"], self.clock()
        if meta["uid"] not in self._taken:       # adopt pods created already running (or kept across restarts)
            running = pod.get("status", {}).get("phase") == "Running"
            self._taken[meta["uid"]] = now - self.config.pod_ready_seconds if running else now
            self._told[meta["uid"]] = {}
        status = self._status(pod, node, self._taken[meta["uid"]], now, used)
        if status != pod.get("status"):
            self.store.mutate(self.kind("Pod"), meta["namespace"], meta["name"],
                              lambda current: {**current, "status": status})
        self._announce(pod, status)

    def _status(self, pod: dict, node: dict, taken: float, now: float, used: set) -> dict:
        """The pod status at `now`, derived only from when the kubelet took the pod up."""
        ready_at = taken + self.config.pod_ready_seconds
        status = {k: v for k, v in (pod.get("status") or {}).items()}
        status["conditions"] = [dict(c) for c in status.get("conditions") or []]
        host = internal_ip(node) or "10.240.0.10"
        status.update(hostIP=host, hostIPs=[{"ip": host}], startTime=self._stamp(taken),
                      phase="Running" if now >= ready_at else "Pending")
        if now >= ready_at:
            ip = self._ip_for(pod, host, used)
            status.update(podIP=ip, podIPs=[{"ip": ip}])
        containers = [self._container(pod, c, ready_at, now) for c in pod["spec"].get("containers") or []]
        status["containerStatuses"] = containers
        unready = [c["name"] for c in containers if not c["ready"]]
        ended = [c["state"]["terminated"] for c in containers if "terminated" in c["state"]]
        for kind in ("PodReadyToStartContainers", "Initialized"):
            set_condition(status, kind, "True", self._stamp(taken))
        if containers and len(ended) == len(containers):       # run to completion: the pod is done
            status["phase"] = "Succeeded" if all(e["exitCode"] == 0 for e in ended) else "Failed"
            finished = max(e["finishedAt"] for e in ended)
            set_condition(status, "PodReadyToStartContainers", "False", finished)
        for kind in ("Ready", "ContainersReady"):
            if ended and len(ended) == len(containers):
                set_condition(status, kind, "False", max(e["finishedAt"] for e in ended), "PodCompleted")
            elif unready:
                set_condition(status, kind, "False", self._stamp(taken), "ContainersNotReady",
                              f"containers with unready status: [{' '.join(unready)}]")
            else:
                set_condition(status, kind, "True", self._stamp(ready_at))
        if condition_status(pod, "PodScheduled") is None:       # created with spec.nodeName: never scheduled
            set_condition(status, "PodScheduled", "True", self._stamp(taken))
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        status["conditions"].sort(key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))
        return status

    def _container(self, pod: dict, container: dict, ready_at: float, now: float) -> dict:
        name, image = container["name"], container["image"]
        status = {"name": name, "image": normalize_image(image), "imageID": "", "ready": False,
                  "started": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}},
                  "lastState": {}}
        if now < ready_at:
            return status
        status["imageID"] = image_id(image)
        crashes, policy = "crashloop" in image, pod["spec"].get("restartPolicy", "Always")
        if policy != "Always" and not (crashes and policy == "OnFailure"):     # runs once, then exits
            finished = ready_at if crashes else ready_at + self.config.job_run_seconds
            if now >= finished:
                status.update(containerID=_container_id(pod, name, 0), state={"terminated": {
                    "exitCode": 1 if crashes else 0, "reason": "Error" if crashes else "Completed",
                    "startedAt": self._stamp(ready_at), "finishedAt": self._stamp(finished),
                    "containerID": _container_id(pod, name, 0)}})
                return status
        if not crashes:
            status.update(ready=True, started=True, containerID=_container_id(pod, name, 0),
                          state={"running": {"startedAt": self._stamp(ready_at)}})
            return status
        restarts, crashed, backoff = crash_schedule(ready_at, now)
        meta = pod["metadata"]
        status.update(restartCount=restarts, containerID=_container_id(pod, name, restarts), state={"waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {backoff}s restarting failed container={name} "
                       f"pod={meta['name']}_{meta['namespace']}({meta['uid']})"}},
            lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": self._stamp(crashed),
                                      "finishedAt": self._stamp(crashed),
                                      "containerID": _container_id(pod, name, restarts)}})
        return status

    def _ip_for(self, pod: dict, host: str, used: set) -> str:
        """A stable pod IP in the node's 10.244.<n>.0/24 (n from the node's address), unique among pods;
        a hostNetwork pod has its node's."""
        if pod["spec"].get("hostNetwork"):
            return host
        uid, subnet = pod["metadata"]["uid"], host.rsplit(".", 1)[-1]
        if uid not in self._ips:
            self._ips[uid] = (pod.get("status") or {}).get("podIP") or next(
                f"10.244.{subnet}.{y}" for y in range(2, 255) if f"10.244.{subnet}.{y}" not in used)
            used.add(self._ips[uid])
        return self._ips[uid]

    def _announce(self, pod: dict, status: dict) -> None:
        """Events and log lines for each container instance not yet announced (start, or a crash restart)."""
        told, meta = self._told[pod["metadata"]["uid"]], pod["metadata"]
        images = {c["name"]: c["image"] for c in pod["spec"].get("containers") or []}
        for cstatus in status["containerStatuses"]:
            name, image = cstatus["name"], images[cstatus["name"]]
            if name not in told:
                told[name] = 0
                self._event(pod, "Pulling", f'Pulling image "{image}"')
            if not cstatus["imageID"] or told[name] >= cstatus["restartCount"] + 1:
                continue                          # not started yet, or this instance was announced
            self._event(pod, "Pulled", f'Container image "{image}" already present on machine' if told[name] else
                        f'Successfully pulled image "{image}" in 1.204s (1.204s including waiting). '
                        f'Image size: {len(image) * 1048573} bytes.')
            told[name] = cstatus["restartCount"] + 1
            self._event(pod, "Created", f"Created container {name}")
            self._event(pod, "Started", f"Started container {name}")
            ended = cstatus["lastState"].get("terminated") or cstatus["state"].get("terminated")
            crash = ended if ended and ended["exitCode"] else None
            self._write_logs(pod, name, image, (ended or cstatus["state"].get("running", {}))["startedAt"],
                             crash is not None, finished=ended is not None and crash is None)
            if crash:
                self._event(pod, "BackOff", f"Back-off restarting failed container {name} in pod "
                                            f"{meta['name']}_{meta['namespace']}({meta['uid']})", "Warning")

    def _event(self, pod: dict, reason: str, message: str, type: str = "Normal") -> None:
        """Record an event, or count a repeat on the existing one as the kubelet's event aggregation does."""
        events, meta = self.kind("Event"), pod["metadata"]
        for event in self.store.items(events, meta["namespace"]):
            if event["involvedObject"].get("uid") == meta["uid"] and event["reason"] == reason \
                    and event["message"] == message:
                self.store.mutate(events, meta["namespace"], event["metadata"]["name"], lambda e: {
                    **e, "count": e.get("count", 1) + 1, "lastTimestamp": now_rfc3339()})
                return
        self.record_event(pod, reason, message, type=type)

    def _write_logs(self, pod: dict, name: str, image: str, stamp: str, crash: bool, finished: bool = False) -> None:
        lines = [f"{stamp} INFO starting {image}"]
        if finished:
            lines += [f"{stamp} INFO work done, exiting"]
        elif crash:
            lines += [f"{stamp} INFO loading configuration from /etc/app/config.yaml",
                      f"panic: {image}: configuration invalid", "", "goroutine 1 [running]:", "main.main()",
                      "\t/app/main.go:42 +0x1d"]
        else:
            lines += [f"{stamp} INFO listening on :8080", f"{stamp} INFO ready to serve requests"]
        self.logs[(pod["metadata"]["namespace"], pod["metadata"]["name"], name)] = lines

    def _stamp(self, sim: float) -> str:
        """The wall-clock time of simulated instant `sim` (fixed mapping, so recomputed statuses compare equal)."""
        wall = self._wall0 + sim / self.config.speed
        return dt.datetime.fromtimestamp(wall, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def crash_schedule(first_crash: float, now: float) -> tuple[int, float, int]:
    """(restartCount, time of the latest crash, current back-off) for a container that crashes on every start:
    it restarts after 10s, 20s, 40s ... capped at 300s, as the kubelet's back-off does."""
    restarts, crashed = 0, first_crash
    while True:
        backoff = min(BACKOFF_START * 2 ** min(restarts, 10), BACKOFF_CAP)
        if crashed + backoff > now:
            return restarts, crashed, backoff
        crashed += backoff
        restarts += 1


def normalize_image(image: str) -> str:
    """The fully qualified reference a container runtime reports: docker.io/library/nginx:latest."""
    ref = image
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        ref += ":latest"
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        ref = f"docker.io/library/{ref}"
    elif "." not in first and ":" not in first and first != "localhost":
        ref = f"docker.io/{ref}"
    return ref


def image_id(image: str) -> str:
    ref = normalize_image(image)
    if "@" in ref:
        return ref
    repo = ref.rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def _container_id(pod: dict, name: str, instance: int) -> str:
    return "containerd://" + hashlib.sha256(f"{pod['metadata']['uid']}/{name}/{instance}".encode()).hexdigest()
