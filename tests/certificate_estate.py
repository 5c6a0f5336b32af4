"""A seeded certificate estate in a sandbox: one of each kind the certificate runbook must tell apart."""
from __future__ import annotations

import base64
import datetime as dt

from sandbox.common import pki
from sandbox.kubernetes.controllers.certificates import CertificateController
from sandbox.server import Sandbox

NS = "shop"
NOW = dt.datetime.now(dt.timezone.utc)
BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cert_manager_ca(sb: Sandbox) -> pki.KeyPair:
    return next(c for c in sb.controllers.controllers if isinstance(c, CertificateController)).authority()


def tls_secret(sb: Sandbox, name: str, pair: pki.KeyPair, *, key_pem: bytes | None = None, crt: bytes | None = None,
               namespace: str = NS) -> None:
    sb.apply_object({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                     "metadata": {"name": name, "namespace": namespace},
                     "data": {"tls.crt": b64(crt or pair.cert_pem), "tls.key": b64(key_pem or pair.key_pem)}})


def ingress(sb: Sandbox, name: str, host: str, secret: str, namespace: str = NS) -> None:
    sb.apply_object({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                     "metadata": {"name": name, "namespace": namespace},
                     "spec": {"tls": [{"hosts": [host], "secretName": secret}],
                              "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                                                          "backend": {"service": {
                                                                              "name": name, "port": {"number": 80}}}}]}}]}})


def managed(sb: Sandbox, name: str, *, days_left: float | None = None, issuer: str = "sandbox-ca",
            namespace: str = NS) -> pki.KeyPair | None:
    """A cert-manager Certificate for NAME.example.com served by an Ingress. With `days_left`, its Secret
    is then given a certificate issued 90 days before it expires (as if issued long ago), with renewBefore
    short enough that cert-manager itself does not renew it yet."""
    host = f"{name}.example.com"
    sb.apply_object({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                     "metadata": {"name": name, "namespace": namespace},
                     "spec": {"secretName": f"{name}-tls", "commonName": host, "dnsNames": [host],
                              "renewBefore": "24h", "issuerRef": {"name": issuer, "kind": "ClusterIssuer"}}})
    ingress(sb, name, host, f"{name}-tls", namespace)
    if issuer.startswith("broken-"):
        return None
    sb.wait_for(lambda: (sb.get("Certificate", name, namespace).get("status") or {}).get("revision"))
    if days_left is None:
        return None
    old = pki.issue(cert_manager_ca(sb), common_name=host, dns_names=[host], duration=dt.timedelta(days=90),
                    not_before=NOW - dt.timedelta(days=90 - days_left))
    secret = sb.get("Secret", f"{name}-tls", namespace)
    secret["data"].update({"tls.crt": b64(old.cert_pem), "tls.key": b64(old.key_pem)})
    sb.apply_object(secret)
    return old


def seed_estate(sb: Sandbox) -> dict[str, pki.KeyPair | None]:
    """valid, expiring (managed), expired, unmanaged, malformed PEM, key mismatch, SAN mismatch."""
    sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    other = pki.generate_ca("partner-ca")
    seeded: dict[str, pki.KeyPair | None] = {"web": managed(sb, "web"), "api": managed(sb, "api", days_left=10)}
    legacy = pki.issue(other, common_name="legacy.example.com", dns_names=["legacy.example.com"],
                       duration=dt.timedelta(days=90), not_before=NOW - dt.timedelta(days=100))
    partner = pki.issue(other, common_name="partner.example.com", dns_names=["partner.example.com"],
                        duration=dt.timedelta(days=90), not_before=NOW - dt.timedelta(days=80))
    shop = pki.issue(other, common_name="old.example.com", dns_names=["old.example.com"])
    tls_secret(sb, "legacy-tls", legacy)
    tls_secret(sb, "partner-tls", partner)
    tls_secret(sb, "garbled-tls", partner, crt=BROKEN_PEM)
    tls_secret(sb, "mismatch-tls", partner, key_pem=legacy.key_pem)
    tls_secret(sb, "shop-tls", shop)
    ingress(sb, "shop", "shop.example.com", "shop-tls")
    seeded.update(legacy=legacy, partner=partner, shop=shop)
    return seeded
