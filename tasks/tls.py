"""What a TLS endpoint presents, read by a real handshake (the proof that a renewed certificate is served).

The handshake does not verify the chain: the question is which certificate the endpoint presents (its
serial and fingerprint, compared with the Secret's), not whether this machine trusts it, and an expired
or broken certificate must still be readable to be reported.
"""
from __future__ import annotations

import socket
import ssl
import time

from cryptography import x509
from prefect import task
from prefect.cache_policies import NO_CACHE

from plans.certificates import CertificateDetails, Endpoint, details_of
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
    started = time.monotonic()
    last = "no answer"
    while True:
        try:
            seen = presented_certificate(endpoint.address, endpoint.port, endpoint.host)
            if seen.serial == serial:
                return Check(name=f"served at {endpoint.host}", passed=True, seconds=time.monotonic() - started,
                             detail=f"TLS handshake with {endpoint.describe()} presents serial {seen.serial} "
                                    f"(expires {seen.not_after:%Y-%m-%d})")
            last = f"presents serial {seen.serial} ({seen.subject}), not {serial}"
        except (OSError, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - started >= timeout_seconds:
            return Check(name=f"served at {endpoint.host}", passed=False, seconds=time.monotonic() - started,
                         detail=f"TLS handshake with {endpoint.describe()}: {last}")
        time.sleep(interval)
