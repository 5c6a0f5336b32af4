"""An ingress controller stand-in: each Ingress's TLS Secrets served with real TLS on a loopback port.

What a certificate runbook must prove on the wire is what an ingress controller presents, so this does
what ingress-nginx does with an Ingress's `spec.tls`, minus the routing:

- One listener per Ingress that has `spec.tls`, on 127.0.0.1 and a free port (a real controller shares
  :443 among every Ingress; here each gets its own port so a test can tell them apart). SNI chooses the
  `tls` entry whose `hosts` match (wildcards as `*.example.com`); no SNI, or no match, gets the default
  certificate.
- A Secret that is missing, is not PEM, or whose key does not match its certificate is not served:
  ingress-nginx then presents its default "Kubernetes Ingress Controller Fake Certificate", and so does this.
- It reloads when an Ingress or a Secret changes: it watches the store (no polling), so a renewed Secret
  is served from the next handshake on, after a short delay, as with a real controller.
- Where it listens is published as a cloud load balancer publishes it, in the Ingress's status:
  `status.loadBalancer.ingress: [{ip: 127.0.0.1, ports: [{port: N, protocol: TCP}]}]` (networking/v1's
  IngressPortStatus). Clients discover endpoints from the Ingress, as they would on a real cluster.
- Each connection answers one HTTP/1.1 request with 200 and a short text naming the Ingress, so
  `curl --resolve HOST:N:127.0.0.1 https://HOST:N/` works too.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import logging
import os
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass

from ..common import pki
from .resources import BY_KIND
from .store import Watcher

log = logging.getLogger("sandbox.ingress")
FAKE_CN = "Kubernetes Ingress Controller Fake Certificate"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TlsEntry:
    hosts: tuple[str, ...]
    secret: str


def tls_entries(ingress: dict) -> list[TlsEntry]:
    return [TlsEntry(tuple(t.get("hosts") or ()), t.get("secretName") or "")
            for t in (ingress.get("spec") or {}).get("tls") or []]


class Listener:
    """One Ingress's TLS listener: an accept thread and the SSL contexts it currently serves."""

    def __init__(self, name: str, fake: ssl.SSLContext) -> None:
        self.name = name
        self.fake = fake
        self.by_host: list[tuple[str, ssl.SSLContext]] = []
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.default = self._server_context()
        self.default.sni_callback = self._choose
        self._closed = False
        threading.Thread(target=self._accept, name=f"ingress-{name}", daemon=True).start()

    def _server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pair = _FAKE.pair()
        _load(context, pair.cert_pem, pair.key_pem)
        return context

    def _choose(self, sock: ssl.SSLSocket, server_name: str | None, _context: ssl.SSLContext) -> None:
        for pattern, context in self.by_host:
            if server_name and fnmatch.fnmatchcase(server_name.lower(), pattern.lower()):
                sock.context = context
                return
        sock.context = self.fake

    def load(self, by_host: list[tuple[str, ssl.SSLContext]]) -> None:
        self.by_host = by_host            # one assignment: a handshake sees the old list or the new one

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self.default.wrap_socket(conn, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                body = f"ingress {self.name}\n".encode()
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        except (OSError, ssl.SSLError):
            pass                          # a client that only wanted the handshake, or went away
        finally:
            conn.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()


class _FakeCertificate:
    """ingress-nginx's self-signed default certificate, generated once per process."""

    def __init__(self) -> None:
        self._pair: pki.KeyPair | None = None
        self._lock = threading.Lock()

    def pair(self) -> pki.KeyPair:
        with self._lock:
            if self._pair is None:
                self._pair = pki.generate_ca(FAKE_CN, days=365)
            return self._pair


_FAKE = _FakeCertificate()


def _load(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """`load_cert_chain` reads files only: write both to a private temporary file, load, delete."""
    fd, path = tempfile.mkstemp(prefix="sandbox-ingress-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(cert_pem + b"\n" + key_pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


class IngressStandIn:
    """Watches Ingresses and Secrets in the store and keeps one Listener per TLS Ingress current."""

    def __init__(self, sandbox) -> None:
        self.store = sandbox.store
        self.listeners: dict[tuple[str, str], Listener] = {}
        self._lock = threading.RLock()
        self._watchers: list[Watcher] = []
        self._fake: ssl.SSLContext | None = None

    def start(self) -> "IngressStandIn":
        self._fake = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pair = _FAKE.pair()
        _load(self._fake, pair.cert_pem, pair.key_pem)
        with self.store.lock:
            since = str(self.store.resource_version)
            self._watchers = [self.store.watch(BY_KIND[kind], None, lambda _obj: True, since)
                              for kind in ("Ingress", "Secret")]
            ingresses = self.store.items(BY_KIND["Ingress"])
        for watcher in self._watchers:
            threading.Thread(target=self._follow, args=(watcher,), name="sandbox-ingress-watch", daemon=True).start()
        for ingress in ingresses:
            self.sync(ingress["metadata"]["namespace"], ingress["metadata"]["name"])
        return self

    def stop(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        with self._lock:
            for listener in self.listeners.values():
                listener.close()
            self.listeners.clear()

    def _follow(self, watcher: Watcher) -> None:
        while True:
            item = watcher.events.get()
            if item is None:
                return
            kind, obj = item
            meta = obj.get("metadata") or {}
            try:
                if watcher.resource.kind == "Ingress":
                    self.sync(meta.get("namespace", ""), meta.get("name", ""))
                else:
                    self._secret_changed(meta.get("namespace", ""), meta.get("name", ""))
            except Exception:                 # noqa: BLE001 - one bad object must not stop the controller
                log.exception("ingress stand-in: %s %s/%s", kind, meta.get("namespace"), meta.get("name"))

    def _secret_changed(self, namespace: str, name: str) -> None:
        for ingress in self.store.items(BY_KIND["Ingress"], namespace):
            if any(entry.secret == name for entry in tls_entries(ingress)):
                self.sync(namespace, ingress["metadata"]["name"])

    def sync(self, namespace: str, name: str) -> None:
        """Make the Ingress's listener serve what its Secrets hold now; publish its port in its status."""
        with self._lock:
            ingress = self.store.find(BY_KIND["Ingress"], namespace, name)
            key = (namespace, name)
            entries = tls_entries(ingress) if ingress and not ingress["metadata"].get("deletionTimestamp") else []
            if not entries:
                listener = self.listeners.pop(key, None)
                if listener is not None:
                    listener.close()
                return
            listener = self.listeners.get(key)
            if listener is None:
                listener = self.listeners[key] = Listener(f"{namespace}/{name}", self._fake)
            listener.load([(host, self._context(namespace, entry.secret)) for entry in entries for host in entry.hosts])
            self._publish(namespace, name, listener.port)

    def _context(self, namespace: str, secret_name: str) -> ssl.SSLContext:
        secret = self.store.find(BY_KIND["Secret"], namespace, secret_name)
        data = (secret or {}).get("data") or {}
        try:
            cert, key = base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            _load(context, cert, key)
            return context
        except (KeyError, binascii.Error, ssl.SSLError, ValueError) as exc:
            log.info("ingress stand-in: secret %s/%s is not a usable TLS pair (%s); serving the default "
                     "certificate", namespace, secret_name, type(exc).__name__)
            return self._fake

    def _publish(self, namespace: str, name: str, port: int) -> None:
        wanted = {"ingress": [{"ip": LOOPBACK, "ports": [{"port": port, "protocol": "TCP"}]}]}

        def change(obj: dict) -> dict | None:
            if (obj.get("status") or {}).get("loadBalancer") == wanted:
                return None
            obj["status"] = {**(obj.get("status") or {}), "loadBalancer": wanted}
            return obj
        self.store.mutate(BY_KIND["Ingress"], namespace, name, change)
