"""Controllers that make sandbox state change over time, as a cluster's control plane and kubelets do.

They run in one thread, in a fixed order, each time the store changes or a tick passes; each `sync()` is
level-triggered (it looks at the whole state), so a missed change is caught on the next pass.
Simulated time (`clock()`) runs `speed` times faster than the wall clock.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from ..resources import BY_KIND, ResourceType
from ..store import now_rfc3339

if TYPE_CHECKING:
    from ..server import Sandbox

log = logging.getLogger("sandbox.controllers")


class Controller:
    name = "controller"

    def __init__(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self.store = sandbox.store
        self.config = sandbox.config

    def clock(self) -> float:
        """Simulated seconds (monotonic, scaled by `speed`)."""
        return self.sandbox.controllers.clock()

    def sync(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def kind(self, kind: str) -> ResourceType:
        return BY_KIND[kind]

    def create_pod(self, pod: dict) -> dict:
        """Create a pod as a controller does: through the API, so pod defaulting and admission apply."""
        from ..admission_workloads import default_pod
        default_pod(pod)
        return self.store.create(BY_KIND["Pod"], pod)

    def record_event(self, involved: dict, reason: str, message: str, *, type: str = "Normal",
                     component: str | None = None) -> None:
        """Write a core/v1 Event about `involved`, as controllers and kubelets do."""
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        if self.store.find(BY_KIND["Namespace"], None, namespace) is None:
            return
        stamp = now_rfc3339()
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {"kind": involved.get("kind"), "namespace": meta.get("namespace"),
                               "name": meta["name"], "uid": meta.get("uid"),
                               "apiVersion": involved.get("apiVersion"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": type,
            "source": {"component": component or self.name},
            "reportingComponent": component or self.name, "reportingInstance": "",
            "firstTimestamp": stamp, "lastTimestamp": stamp, "eventTime": None, "count": 1,
        }
        self.store.create(BY_KIND["Event"], event)


class ControllerManager:
    def __init__(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._origin = time.monotonic()
        self.controllers: list[Controller] = []
        self.passes = 0
        self._hold = threading.Lock()

    def clock(self) -> float:
        return (time.monotonic() - self._origin) * self.sandbox.config.speed

    def build(self) -> list[Controller]:
        from .certificates import CertificateController
        from .daemonsets import DaemonSetController
        from .deployments import DeploymentController
        from .hpa import HorizontalPodAutoscalerController
        from .jobs import JobController
        from .nodes import NodeController
        from .pdb import DisruptionController
        from .pods import Kubelet, Scheduler
        from .rbac import ClusterRoleAggregationController
        from .replicasets import ReplicaSetController
        from .serviceaccounts import ServiceAccountController
        return [NodeController(self.sandbox), ServiceAccountController(self.sandbox),
                DeploymentController(self.sandbox), ReplicaSetController(self.sandbox),
                DaemonSetController(self.sandbox), JobController(self.sandbox),
                HorizontalPodAutoscalerController(self.sandbox), Scheduler(self.sandbox),
                Kubelet(self.sandbox), DisruptionController(self.sandbox), CertificateController(self.sandbox),
                ClusterRoleAggregationController(self.sandbox)]

    def start(self) -> None:
        self.controllers = self.build()
        self._thread = threading.Thread(target=self._run, name="sandbox-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.sandbox.store.changed:
            self.sandbox.store.changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @contextmanager
    def held(self) -> Iterator[None]:
        """No controller makes progress inside: a slow control plane, which a client has to watch for (the
        API server still answers; `sync_once` still runs a pass when asked)."""
        with self._hold:
            yield

    def sync_once(self) -> None:
        for controller in self.controllers:
            try:
                controller.sync()
            except Exception:  # one controller's bug must not stop the others; it is logged loudly
                log.exception("controller %s failed", controller.name)
        self.passes += 1

    def _run(self) -> None:
        store = self.sandbox.store
        tick = self.sandbox.config.tick_seconds
        while not self._stop.is_set():
            seen = store.resource_version
            with self._hold:
                self.sync_once()
            with store.changed:
                if store.resource_version == seen and not self._stop.is_set():
                    store.changed.wait(tick)
