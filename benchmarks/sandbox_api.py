"""Sandbox API throughput and added latency, against a bare HTTP server on the same stack (the baseline).

Not a test: prints figures. Run with `make bench` or `python benchmarks/sandbox_api.py [--quick]`.
Measures requests per second for GET of one object, LIST of 5,000 ConfigMaps and PATCH (JSON merge),
and the median latency per request the sandbox adds over a server that answers a canned body.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sandbox.server import Sandbox, SandboxConfig


class _Canned(BaseHTTPRequestHandler):
    """The floor: same http.server stack, no Kubernetes semantics."""
    protocol_version = "HTTP/1.1"
    body = b"{}"
    disable_nagle_algorithm = True   # headers and body go out as separate writes: avoid a 40 ms delayed-ACK stall

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_PATCH = do_GET

    def log_message(self, *args) -> None:
        pass


def _timed(port: int, method: str, path: str, count: int, body: bytes | None = None,
           content_type: str = "application/json") -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    headers = {"Content-Type": content_type} if body is not None else {}
    for _ in range(count):
        start = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - start)
        assert response.status < 300, (response.status, path)
    conn.close()
    return times


def _rate(times: list[float]) -> float:
    return len(times) / sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    n = 300 if args.quick else 2000
    n_list = 5 if args.quick else 20

    sandbox = Sandbox(SandboxConfig(controllers=False)).start()
    sandbox.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
    for i in range(5000):
        sandbox.apply_object({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": f"cm-{i:05d}", "namespace": "bench", "labels": {"i": str(i % 10)}},
                              "data": {"key": "value" * 10}})
    one = "/api/v1/namespaces/bench/configmaps/cm-00001"
    canned_body = json.dumps(sandbox.get("ConfigMap", "cm-00001", "bench")).encode()
    _Canned.body = canned_body
    baseline = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=baseline.serve_forever, daemon=True).start()
    bport = baseline.server_address[1]

    # Interleave sandbox and baseline rounds so machine noise hits both alike.
    sb_get, base_get, sb_patch, base_patch = [], [], [], []
    for _ in range(5):
        sb_get += _timed(sandbox.port, "GET", one, n // 5)
        base_get += _timed(bport, "GET", one, n // 5)
        sb_patch += _timed(sandbox.port, "PATCH", one, n // 5, b'{"data":{"key":"v"}}',
                           "application/merge-patch+json")
        base_patch += _timed(bport, "PATCH", one, n // 5, b'{"data":{"key":"v"}}')
    sb_list = _timed(sandbox.port, "GET", "/api/v1/namespaces/bench/configmaps", n_list)
    _Canned.body = json.dumps({"items": sandbox.list("ConfigMap", "bench")}).encode()
    base_list = _timed(bport, "GET", "/list", n_list)
    sb_sel = _timed(sandbox.port, "GET", "/api/v1/namespaces/bench/configmaps?labelSelector=i%3D3", n_list)

    rows = [("GET one object", sb_get, base_get), ("PATCH (merge)", sb_patch, base_patch),
            ("LIST 5,000 objects", sb_list, base_list)]
    print(f"{'operation':<22}{'sandbox req/s':>15}{'baseline req/s':>16}{'ratio':>8}{'median added':>15}")
    for name, sb, base in rows:
        added = (statistics.median(sb) - statistics.median(base)) * 1000
        print(f"{name:<22}{_rate(sb):>15.0f}{_rate(base):>16.0f}{_rate(base) / _rate(sb):>7.2f}x"
              f"{added:>12.2f} ms")
    print(f"{'LIST, selector 1/10':<22}{_rate(sb_sel):>15.0f}")
    print(f"median added latency per request (GET): "
          f"{(statistics.median(sb_get) - statistics.median(base_get)) * 1e6:.0f} us")
    baseline.shutdown()
    sandbox.stop()


if __name__ == "__main__":
    main()
