"""Certificate inventory: the runbook's cluster-wide, paginated inventory against
`kubectl get secrets -A --field-selector type=kubernetes.io/tls -o json` parsed by a plain script.

Not a test: prints API calls and median wall times, side by side, and their ratio (goal: at most 1.2x, and
calls = pages). The estate: 10,000 TLS Secrets across 500 namespaces, plus Opaque Secrets the field
selector must keep out. Both sides parse every certificate with `cryptography`; the runbook also reads
SANs, key type, chain order and checks each key matches its certificate, and lists Certificates and
Ingresses (one page each here). Usage: python benchmarks/certificates.py [--rounds N] [--secrets N]
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from kubernetes import client, config  # noqa: E402

from plans.certificates import Scope, assemble_inventory, findings_for  # noqa: E402
from sandbox.common import pki  # noqa: E402
from sandbox.server import Sandbox, SandboxConfig  # noqa: E402
from tasks.kubernetes.certificates import (PAGE_SIZE, list_certificates, list_ingress_endpoints,  # noqa: E402
                                           list_tls_secrets)

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"
NAMESPACES = 500


def seed(sandbox: Sandbox, secrets: int, opaque: int) -> None:
    """`secrets` TLS Secrets spread over NAMESPACES namespaces (200 distinct key pairs, cycled: parsing costs
    the same per Secret), and `opaque` Opaque Secrets the field selector must leave out."""
    ca = pki.generate_ca("bench-ca")
    now = dt.datetime.now(dt.timezone.utc)
    pairs = [pki.issue(ca, common_name=f"host-{i}.example.com", dns_names=[f"host-{i}.example.com"],
                       duration=dt.timedelta(days=90), not_before=now - dt.timedelta(days=i % 120)) for i in range(200)]
    for n in range(NAMESPACES):
        sandbox.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"team-{n:03d}"}})
    for i in range(secrets):
        pair = pairs[i % len(pairs)]
        sandbox.apply_object({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                              "metadata": {"name": f"tls-{i:05d}", "namespace": f"team-{i % NAMESPACES:03d}"},
                              "data": {"tls.crt": base64.b64encode(pair.cert_pem).decode(),
                                       "tls.key": base64.b64encode(pair.key_pem).decode()}})
    for i in range(opaque):
        sandbox.apply_object({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                              "metadata": {"name": f"app-{i:05d}", "namespace": f"team-{i % NAMESPACES:03d}"},
                              "data": {"password": base64.b64encode(b"not-a-certificate").decode()}})


def runbook_inventory(sandbox: Sandbox) -> tuple[int, int]:
    """The runbook's inventory (the tasks' functions, without Prefect's task-run bookkeeping); (certs, findings)."""
    api = config.new_client_from_config_dict(sandbox.kubeconfig())
    try:
        inventory = assemble_inventory(sandbox.url, list_tls_secrets.fn(client.CoreV1Api(api)),
                                       list_certificates.fn(client.CustomObjectsApi(api)),
                                       list_ingress_endpoints.fn(client.NetworkingV1Api(api)))
        found = findings_for(inventory, scope=Scope(), now=dt.datetime.now(dt.timezone.utc),
                             renew_within=dt.timedelta(days=30), owner="bench")
    finally:
        api.close()
    return len(inventory.secrets), len(found)


def kubectl_inventory(kubeconfig: Path) -> tuple[int, int]:
    """kubectl's list, then a plain script: decode each certificate, read its notAfter."""
    out = subprocess.run([KUBECTL, "get", "secrets", "-A", "--field-selector", "type=kubernetes.io/tls", "-o",
                          "json"], env={**os.environ, "KUBECONFIG": str(kubeconfig),
                                        "KUBECACHEDIR": str(kubeconfig.parent / "cache")},
                         capture_output=True, check=True).stdout
    items = json.loads(out)["items"]
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    expiring = sum(x509.load_pem_x509_certificate(base64.b64decode(s["data"]["tls.crt"])).not_valid_after_utc < soon
                   for s in items)
    return len(items), expiring


def measure(sandbox: Sandbox, fn) -> tuple[float, int, int, int]:
    since = sandbox.requests.mark()
    started = time.perf_counter()
    count, _ = fn()
    seconds = time.perf_counter() - started
    calls = sandbox.requests.entries(since)
    pages = sum(1 for r in calls if r.path == "/api/v1/secrets")
    return seconds, len(calls), pages, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secrets", type=int, default=10_000)
    parser.add_argument("--opaque", type=int, default=5_000)
    args = parser.parse_args()
    sandbox = Sandbox(SandboxConfig(controllers=False, ingress=False)).start()
    try:
        started = time.perf_counter()
        seed(sandbox, args.secrets, args.opaque)
        print(f"seeded {args.secrets} TLS + {args.opaque} Opaque Secrets in {NAMESPACES} namespaces "
              f"({time.perf_counter() - started:.1f} s)")
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = sandbox.write_kubeconfig(Path(tmp) / "kubeconfig")
            kubectl_inventory(kubeconfig)                      # warm kubectl's discovery cache, as on a laptop
            rows = {"runbook": [], "kubectl": []}
            for _ in range(args.rounds):                       # alternate, so both see the same machine load
                rows["runbook"].append(measure(sandbox, lambda: runbook_inventory(sandbox)))
                rows["kubectl"].append(measure(sandbox, lambda: kubectl_inventory(kubeconfig)))
    finally:
        sandbox.stop()
    report(rows, args.secrets)


def report(rows: dict[str, list[tuple[float, int, int, int]]], secrets: int) -> None:
    expected_pages = math.ceil(secrets / PAGE_SIZE)
    print(f"\n| inventory | certificates | API calls | Secret list pages | median wall time |")
    print("|---|---|---|---|---|")
    medians = {}
    for name, results in rows.items():
        medians[name] = statistics.median(r[0] for r in results)
        seconds, calls, pages, count = results[-1]
        print(f"| {name} | {count} | {calls} | {pages} (expected {expected_pages}) | {medians[name]:.2f} s |")
    print(f"\nratio runbook / kubectl+script: {medians['runbook'] / medians['kubectl']:.2f}x (goal: at most 1.2x)")


if __name__ == "__main__":
    main()
