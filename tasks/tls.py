"""What a TLS endpoint presents, read by a real handshake (the proof that a renewed certificate is served).

The handshake does not verify the chain: the question is which certificate the endpoint presents (its
serial and fingerprint, compared with the Secret's), not whether this machine trusts it, and an expired
or broken certificate must still be readable to be reported.
"""
from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from cryptography import x509
from prefect import task
from prefect.cache_policies import NO_CACHE

from plans.certificates import CertificateDetails, Endpoint, TlsSecret, details_of, read_tls_pair
from plans.record import Check

HANDSHAKE_TIMEOUT = 5.0


def presented_certificate(address: str, port: int, server_name: str | None) -> CertificateDetails:
    """Handshake with `address:port` sending `server_name` as SNI; the leaf certificate it presents.

    Raises:
        OSError / ssl.SSLError: no TLS server answered.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=HANDSHAKE_TIMEOUT) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    return details_of([x509.load_der_x509_certificate(der)])


@task(name="endpoint_presents", cache_policy=NO_CACHE)
def endpoint_presents(endpoint: Endpoint, *, serial: str, timeout_seconds: float, interval: float = 0.1) -> Check:
    """A TLS handshake to the endpoint presents the certificate with `serial`, before the deadline.

    Retried until then: an ingress controller reloads a changed Secret a moment after it changes, and there
    is no API to watch on the wire.
    """
    return _handshake_until(f"served at {endpoint.host}", endpoint.describe(), (endpoint.address, endpoint.port),
                            endpoint.host, lambda seen: seen.serial == serial,
                            lambda seen: f"presents serial {seen.serial} ({seen.subject}), not {serial}",
                            timeout_seconds, interval)


def _handshake_until(name: str, where: str, address: tuple[str, int], server_name: str | None,
                     wanted: Callable[[CertificateDetails], bool], not_yet: Callable[[CertificateDetails], str],
                     timeout_seconds: float, interval: float) -> Check:
    """Handshake until the presented certificate is `wanted` or the deadline passes; the Check either way."""
    started = time.monotonic()
    last = "no answer"
    while True:
        try:
            seen = presented_certificate(*address, server_name)
            if wanted(seen):
                return Check(name=name, passed=True, seconds=time.monotonic() - started,
                             detail=f"TLS handshake with {where} presents serial {seen.serial} "
                                    f"(expires {seen.not_after:%Y-%m-%d})")
            last = not_yet(seen)
        except (OSError, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - started >= timeout_seconds:
            return Check(name=name, passed=False, seconds=time.monotonic() - started,
                         detail=f"TLS handshake with {where}: {last}")
        time.sleep(interval)


@task(name="read_cluster_certificates", cache_policy=NO_CACHE)
def read_cluster_certificates(api) -> list[TlsSecret]:
    """The cluster's own certificates, as the run's client meets them: the API server's (a TLS handshake
    with it) and the client certificate its credentials hold (AKS user credentials carry one), if any.

    Args:
        api: the run's kubernetes ApiClient (its configuration has the server URL and the client cert file).
    """
    conf = api.configuration
    found: list[TlsSecret] = []
    url = urlparse(conf.host)
    if url.scheme == "https" and url.hostname:
        try:
            details, problem = presented_certificate(url.hostname, url.port or 443, url.hostname), None
        except (OSError, ssl.SSLError) as exc:
            details, problem = None, f"no TLS handshake with {url.hostname}:{url.port or 443} ({exc})"
        found.append(TlsSecret(namespace="(cluster)", name="API server certificate", details=details,
                               problem=problem, hosts=[url.hostname]))
    if conf.cert_file:
        key = Path(conf.key_file).read_bytes() if conf.key_file else None
        details, problem = read_tls_pair(Path(conf.cert_file).read_bytes(), key)
        found.append(TlsSecret(namespace="(credentials)", name="client certificate", details=details,
                               problem=problem))
    return found


@task(name="api_server_rotated", cache_policy=NO_CACHE)
def api_server_rotated(api, *, previous_serial: str, timeout_seconds: float, interval: float = 0.2) -> Check:
    """A TLS handshake with the cluster's API server presents a certificate other than `previous_serial`
    (the proof a certificate rotation took effect), before the deadline; retried until then, as the API
    server comes back from a rotation a moment after the operation ends."""
    url = urlparse(api.configuration.host)
    address = (url.hostname or "", url.port or 443)
    return _handshake_until("API server certificate rotated", f"the API server {address[0]}:{address[1]} (was "
                            f"serial {previous_serial})", address, address[0],
                            lambda seen: seen.serial != previous_serial,
                            lambda seen: f"still presents serial {previous_serial}", timeout_seconds, interval)
