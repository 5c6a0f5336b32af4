"""Emergency rollback: the runbook's wall time against the same API calls made by a plain script, and
against `kubectl rollout undo` + `kubectl rollout status`, each on a fresh identical sandbox.

Not a test: prints medians and ratios. Also the time from the sandbox reaching "rollout complete" to the
runbook noticing it. Usage: python benchmarks/rollback.py [--rounds N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")   # loopback only
os.environ.setdefault("DO_NOT_TRACK", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client, config, watch  # noqa: E402

from sandbox.server import DEMO_MANIFESTS, Sandbox, SandboxConfig  # noqa: E402
from tests.runbook_helpers import release, wait_healthy, write_catalog  # noqa: E402

BAD = "ghcr.io/example/payments-api:1.5.0-crashloop"
NS, NAME = "payments", "payments-api"
KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"


SCENARIOS = {
    # v1's pods all still run (maxUnavailable rounds to 0): the rollback itself needs no new pod.
    "no-new-pods": dict(speed=10.0, strategy=None),
    # The bad release replaced one v1 pod (maxUnavailable 1): the rollback restarts it, 2 s at real speed.
    "one-pod-restart": dict(speed=1.0, strategy={"type": "RollingUpdate",
                                                  "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
}
SCENARIO = dict(SCENARIOS["no-new-pods"])


def fresh_sandbox() -> Sandbox:
    sandbox = Sandbox(SandboxConfig(speed=SCENARIO["speed"], tick_seconds=0.02, manifests=(DEMO_MANIFESTS,))).start()
    wait_healthy(sandbox)
    if SCENARIO["strategy"]:
        apps = client.AppsV1Api(config.new_client_from_config_dict(sandbox.kubeconfig()))
        apps.patch_namespaced_deployment(NAME, NS, [{"op": "replace", "path": "/spec/strategy",
                                                     "value": SCENARIO["strategy"]}])
        wait_healthy(sandbox)
    release(sandbox, BAD)
    if SCENARIO["strategy"]:   # wait until the bad release has replaced a v1 pod
        sandbox.wait_for(lambda: sum(1 for p in sandbox.list("Pod", NS) if "crashloop" in
                                     p["spec"]["containers"][0]["image"]) == 1, timeout=30)
    return sandbox


def completion_watcher(sandbox: Sandbox) -> dict:
    """Record when the sandbox's own state first shows the rollout complete on the restored image."""
    seen: dict = {}

    def complete() -> bool:
        d = sandbox.get("Deployment", NAME, NS)
        s = d.get("status", {})
        image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        return ("crashloop" not in image and s.get("observedGeneration") == d["metadata"]["generation"]
                and s.get("updatedReplicas") == s.get("availableReplicas") == s.get("replicas") == 3)

    def loop() -> None:
        while "at" not in seen and not sandbox.stopping.is_set():
            if complete():
                seen["at"] = time.time()
            time.sleep(0.002)
    threading.Thread(target=loop, daemon=True).start()
    return seen


def plain_script(sandbox: Sandbox) -> None:
    """The same calls the runbook makes, without Prefect: read, list revisions, patch, watch, count pods."""
    api = config.new_client_from_config_dict(sandbox.kubeconfig())
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    dep = apps.read_namespaced_deployment(NAME, NS, _preload_content=False)
    import json
    dep = json.loads(dep.data)
    rss = json.loads(apps.list_namespaced_replica_set(NS, label_selector="app.kubernetes.io/name=payments-api",
                                                      _preload_content=False).data)["items"]
    core.list_namespaced_pod(NS, label_selector="app.kubernetes.io/name=payments-api")
    current = int(dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
    target = max((rs for rs in rss if int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
                  < current), key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
    template = target["spec"]["template"]
    template["metadata"]["labels"].pop("pod-template-hash")
    apps.read_namespaced_deployment(NAME, NS)
    apps.patch_namespaced_deployment(NAME, NS, [
        {"op": "test", "path": "/spec/template", "value": dep["spec"]["template"]},
        {"op": "replace", "path": "/spec/template", "value": template}])
    for event in watch.Watch().stream(apps.list_namespaced_deployment, NS, field_selector=f"metadata.name={NAME}",
                                      timeout_seconds=120):
        s, d = event["object"].status, event["object"]
        if (s.observed_generation or 0) >= d.metadata.generation and s.updated_replicas == 3 \
                and (s.available_replicas or 0) == 3 and (s.replicas or 0) == 3:
            break
    core.list_namespaced_pod(NS, label_selector="app.kubernetes.io/name=payments-api")


def kubectl(sandbox: Sandbox, directory: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(sandbox.write_kubeconfig(directory / "kubeconfig"))}
    for args in (["rollout", "undo", f"deployment/{NAME}"], ["rollout", "status", f"deployment/{NAME}"]):
        subprocess.run([KUBECTL, "-n", NS, *args], env=env, check=True, capture_output=True)


def runbook(sandbox: Sandbox, directory: Path) -> float:
    from flows.rollback import emergency_rollback
    os.environ["RUNBOOKS_CATALOG"] = str(write_catalog(sandbox, directory))
    record = emergency_rollback(service=NAME, environment="staging", requested_by="bench")
    assert record.outcome == "succeeded", record.outcome
    return next(e.at for e in record.timeline if e.step == "verification").timestamp()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append",
                        help="default: both")
    args = parser.parse_args()
    for name in args.scenario or sorted(SCENARIOS):
        SCENARIO.clear()
        SCENARIO.update(SCENARIOS[name])
        print(f"== scenario {name} ==")
        measure(args.rounds)


def measure(rounds: int) -> None:
    from prefect.testing.utilities import prefect_test_harness
    results: dict[str, list[float]] = {"runbook": [], "script": [], "kubectl": []}
    notice: list[float] = []
    with prefect_test_harness(server_startup_timeout=90), tempfile.TemporaryDirectory() as tmp:
        runbook(fresh_sandbox(), Path(tmp))                     # warm-up: imports, first flow run
        for i in range(rounds):
            for name in ("script", "kubectl", "runbook"):       # interleaved so noise hits all alike
                sandbox = fresh_sandbox()
                try:
                    done = completion_watcher(sandbox)
                    work = Path(tmp, f"{name}{i}")
                    work.mkdir()
                    if name == "runbook":
                        stamp: dict = {}
                        results[name].append(timed(lambda: stamp.setdefault("v", runbook(sandbox, work))))
                        notice.append(stamp["v"] - done["at"])
                    elif name == "script":
                        results[name].append(timed(lambda: plain_script(sandbox)))
                    else:
                        results[name].append(timed(lambda: kubectl(sandbox, work)))
                finally:
                    sandbox.stop()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"rounds: {rounds}, sandbox speed {SCENARIO['speed']:g}x, the same rollback in each")
    for name in ("script", "kubectl", "runbook"):
        print(f"  {name:<8} median {med[name]:6.2f} s   (min {min(results[name]):.2f}, max {max(results[name]):.2f})")
    print(f"runbook / plain script: {med['runbook'] / med['script']:.2f}x   (goal <= 1.3x)")
    print(f"runbook / kubectl undo+status: {med['runbook'] / med['kubectl']:.2f}x")
    print(f"rollout complete in the sandbox -> runbook's verification done: median "
          f"{statistics.median(notice) * 1000:.0f} ms (max {max(notice) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
