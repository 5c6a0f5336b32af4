"""Certificates: what a TLS Secret holds (parsed with `cryptography`), and what to do about each one.

Pure: typed state in, typed findings and a plan out; no Prefect, no SDK, no I/O. A certificate that
cannot be read is a finding (`broken`, with the reason), never an exception: one malformed Secret must
not hide the expiry of every other certificate in the estate.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from pydantic import BaseModel, Field

from .plan import Change, Plan
from .record import Check
from .targets import CertificateSetTarget

RUNBOOK = "certificate-renewal"
DEFAULT_RENEW_WITHIN_DAYS = 30
Decision = Literal["fine", "renew", "manual", "expired", "broken"]
Action = Literal["none", "renew", "report"]


class CertificateDetails(BaseModel):
    """The leaf certificate of a Secret's `tls.crt`, and the chain that follows it."""
    subject: str
    sans: list[str]
    issuer: str
    serial: str = Field(description="hexadecimal, as openssl prints it")
    not_before: dt.datetime
    not_after: dt.datetime
    key_type: str
    key_size: int
    chain: list[str] = Field(description="subjects, leaf first")
    chain_in_order: bool = Field(description="each certificate is issued by the next one")
    fingerprint: str = Field(description="SHA-256 of the leaf's DER encoding")

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def describe(self) -> str:
        return (f"serial {self.serial}, {self.subject}, SANs {', '.join(self.sans) or '(none)'}, issuer "
                f"{self.issuer}, expires {self.not_after:%Y-%m-%d %H:%M} UTC, {self.key_type} {self.key_size}")


class Endpoint(BaseModel):
    """Where an Ingress serves a Secret: its load balancer address and port, and the host (SNI) to ask for."""
    ingress: str
    host: str
    address: str
    port: int = 443

    def describe(self) -> str:
        return f"{self.host} at {self.address}:{self.port} (ingress {self.ingress})"


class TlsSecret(BaseModel):
    """One `kubernetes.io/tls` Secret as inventoried: its certificate, or why it could not be read."""
    namespace: str
    name: str
    resource_version: str = ""
    details: CertificateDetails | None = None
    problem: str | None = Field(None, description="malformed PEM, missing key, key that does not match")
    hosts: list[str] = Field(default_factory=list, description="hosts Ingresses serve it for")
    endpoints: list[Endpoint] = Field(default_factory=list)


class ManagedCertificate(BaseModel):
    """A cert-manager Certificate: the Secret it writes and how its last issuance went."""
    namespace: str
    name: str
    secret_name: str
    issuer: str
    revision: int = 0
    ready: bool = False
    message: str = ""


class Inventory(BaseModel):
    """Everything TLS on one cluster, and what reading it cost (API calls = pages)."""
    cluster: str
    secrets: list[TlsSecret] = Field(default_factory=list)
    certificates: list[ManagedCertificate] = Field(default_factory=list)
    cluster_certificates: list[TlsSecret] = Field(default_factory=list, description="API server, client credentials")
    api_calls: int = 0


class SecretList(BaseModel):
    """A paginated list's items and how many calls (pages) it took."""
    items: list[TlsSecret]
    api_calls: int


class CertificateList(BaseModel):
    items: list[ManagedCertificate]
    api_calls: int
    installed: bool = True               # False: the cluster does not serve cert-manager's API


class EndpointList(BaseModel):
    by_secret: dict[str, list[Endpoint]]  # "namespace/secret" -> where Ingresses serve it
    hosts: dict[str, list[str]]           # "namespace/secret" -> the hosts they serve it for
    api_calls: int


def assemble_inventory(cluster: str, secrets: SecretList, certificates: CertificateList, served: EndpointList,
                       own: list[TlsSecret] | None = None) -> Inventory:
    """Join the lists: each Secret with the hosts and endpoints Ingresses serve it on; `own`: the cluster's
    own certificates (API server, client credentials)."""
    joined = [s.model_copy(update={"hosts": served.hosts.get(f"{s.namespace}/{s.name}", []),
                                   "endpoints": served.by_secret.get(f"{s.namespace}/{s.name}", [])})
              for s in secrets.items]
    return Inventory(cluster=cluster, secrets=joined, certificates=certificates.items, cluster_certificates=own or [],
                     api_calls=secrets.api_calls + certificates.api_calls + served.api_calls)


class Finding(BaseModel):
    """What to do about one certificate, and why."""
    namespace: str
    secret: str
    certificate: str | None = Field(None, description="the cert-manager Certificate managing the Secret")
    details: CertificateDetails | None = None
    decision: Decision
    action: Action
    reason: str
    owner: str = Field("", description="who must act when the runbook cannot")
    urgent: bool = False
    endpoints: list[Endpoint] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.certificate or self.secret}"

    def expires_in(self, now: dt.datetime) -> str:
        if self.details is None:
            return "unknown"
        days = self.details.days_left(now)
        return f"expired {-days:.0f} days ago" if days < 0 else f"{days:.0f} days"


# -- reading ---------------------------------------------------------------------------------------

def _key_kind(key) -> tuple[str, int]:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, 0


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*names.get_values_for_type(x509.DNSName), *map(str, names.get_values_for_type(x509.IPAddress))]


def details_of(chain: list[x509.Certificate]) -> CertificateDetails:
    leaf = chain[0]
    key_type, key_size = _key_kind(leaf.public_key())
    return CertificateDetails(
        subject=leaf.subject.rfc4514_string(), sans=_sans(leaf), issuer=leaf.issuer.rfc4514_string(),
        serial=format(leaf.serial_number, "X"), not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc, key_type=key_type, key_size=key_size,
        chain=[c.subject.rfc4514_string() for c in chain],
        chain_in_order=all(a.issuer == b.subject for a, b in zip(chain, chain[1:])),
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest())


def read_tls_pair(crt: bytes | None, key: bytes | None) -> tuple[CertificateDetails | None, str | None]:
    """Parse `tls.crt` (leaf first, then its chain) and check `tls.key` is the leaf's private key.

    Returns:
        (details, None) for a good pair; (details or None, problem) otherwise. Never raises on bad input.
    """
    if not crt:
        return None, "the Secret has no tls.crt"
    try:
        chain = x509.load_pem_x509_certificates(crt)
        details = details_of(chain)         # extensions are parsed lazily: a bad one raises here
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        return None, f"tls.crt is not a PEM certificate ({exc})"
    if not key:
        return details, "the Secret has no tls.key"
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        return details, f"tls.key is not a PEM private key ({type(exc).__name__})"
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        return details, "tls.key does not match the certificate in tls.crt"
    return details, None


def covers(sans: list[str], host: str) -> bool:
    """Whether a certificate for `sans` is valid for `host` (a wildcard covers exactly one label)."""
    host = host.lower().rstrip(".")
    for name in (s.lower() for s in sans):
        if name == host or (name.startswith("*.") and fnmatch.fnmatchcase(host, name)
                            and host.count(".") == name.count(".")):
            return True
    return False


# -- deciding --------------------------------------------------------------------------------------

UNMANAGED = "no cert-manager Certificate manages this Secret: {owner} must renew it and replace the Secret " \
            "(or put it under a Certificate)"


def decide(secret: TlsSecret, certificate: ManagedCertificate | None, *, now: dt.datetime,
           renew_within: dt.timedelta, owner: str, remedy: str = UNMANAGED) -> Finding:
    """fine / renew / manual (nothing here can renew it: `remedy` says who and how) / expired / broken."""
    base = dict(namespace=secret.namespace, secret=secret.name, certificate=certificate.name if certificate else None,
                details=secret.details, owner=owner, endpoints=secret.endpoints)
    managed, by_hand = certificate is not None, remedy.format(owner=owner)
    if secret.problem:
        action: Action = "renew" if managed else "report"
        return Finding(**base, decision="broken", action=action, urgent=True, reason=secret.problem + (
            "; re-issuing replaces the pair" if managed else f"; {by_hand}"))
    details = secret.details
    assert details is not None                      # read_tls_pair gives details whenever there is no problem
    uncovered = [h for h in secret.hosts if not covers(details.sans, h)]
    if uncovered:
        where = f"the Certificate's dnsNames ({certificate.name})" if managed else "the certificate"
        return Finding(**base, decision="broken", action="report", urgent=True,
                       reason=f"served for {', '.join(uncovered)}, which its SANs "
                              f"({', '.join(details.sans) or 'none'}) do not cover; {owner} must add them to {where}")
    left = details.not_after - now
    if left <= dt.timedelta(0):
        return Finding(**base, decision="expired", action="renew" if managed else "report", urgent=True,
                       reason=f"expired {details.not_after:%Y-%m-%d %H:%M} UTC" + ("" if managed else f"; {by_hand}"))
    if left > renew_within:
        return Finding(**base, decision="fine", action="none",
                       reason=f"{left.days} days left (renewal within {renew_within.days} days)")
    if managed:
        return Finding(**base, decision="renew", action="renew",
                       reason=f"{left.days} days left, inside the {renew_within.days}-day threshold")
    return Finding(**base, decision="manual", action="report", reason=f"{left.days} days left and {by_hand}")


def cluster_remedy(aks: bool) -> str:
    """Who renews a cluster's own certificates (API server, client credentials), and how."""
    if aks:
        return ("{owner} must rotate the cluster's certificates (az aks rotate-certs: disruptive, the API server "
                "is unavailable for up to 30 minutes; always behind approval), then fetch new credentials; "
                "this runbook does it when run with rotate_cluster_certificates")
    return "{owner} must renew the cluster's certificates with its own tooling (e.g. kubeadm certs renew)"


def findings_for(inventory: Inventory, *, scope: "Scope", now: dt.datetime, renew_within: dt.timedelta,
                 owner: str, cluster_remedy: str = "") -> list[Finding]:
    """A finding per TLS Secret in scope, per Certificate in scope that has no Secret, and per certificate
    of the cluster itself (its API server's, its credentials'), which `cluster_remedy` says how to renew."""
    by_secret = {(c.namespace, c.secret_name): c for c in inventory.certificates}
    in_scope = scope.__contains__
    found = [decide(s, by_secret.get((s.namespace, s.name)), now=now, renew_within=renew_within, owner=owner)
             for s in inventory.secrets if in_scope(s.namespace)]
    present = {(s.namespace, s.name) for s in inventory.secrets}
    for cert in inventory.certificates:
        if in_scope(cert.namespace) and (cert.namespace, cert.secret_name) not in present:
            found.append(Finding(namespace=cert.namespace, secret=cert.secret_name, certificate=cert.name,
                                 decision="broken", action="renew", urgent=True, owner=owner,
                                 reason=f"Certificate {cert.name} has not written its Secret "
                                        f"({cert.message or 'not issued yet'})"))
    found += [decide(c, None, now=now, renew_within=renew_within, owner=owner, remedy=cluster_remedy or UNMANAGED)
              for c in inventory.cluster_certificates]
    return sorted(found, key=lambda f: (f.namespace, f.secret))


def plan_renewals(target: CertificateSetTarget, findings: list[Finding], *, now: dt.datetime) -> Plan:
    """One change per Certificate to re-issue (the `cmctl renew` way); the rest is evidence for the gate."""
    renew = [f for f in findings if f.action == "renew"]
    report = [f for f in findings if f.action == "report"]
    changes = [Change(resource=f"certificate {f.namespace}/{f.certificate}", field="status.conditions[Issuing]",
                      before=(f"serial {f.details.serial}, expires in {f.expires_in(now)}" if f.details
                              else f.reason),
                      after="re-issued by cert-manager (Issuing=True, as `cmctl renew`)") for f in renew]
    summary = (f"{len(findings)} certificate(s) on {target.cluster}: renew {len(renew)}"
               f" ({sum(f.decision == 'expired' for f in renew)} expired), {len(report)} need a person, "
               f"{sum(f.action == 'none' for f in findings)} fine")
    evidence = [f"{f.decision.upper()} {f.key}: {f.reason}" for f in findings if f.action != "none"]
    return Plan(runbook=RUNBOOK, target=target, summary=summary, changes=changes, evidence=evidence,
                noop_reason=None if renew else "no cert-manager Certificate needs renewing")


# -- scope and verification ------------------------------------------------------------------------

class Scope(BaseModel):
    """Which namespaces' certificates belong to an environment: `only` those (None: all) minus `exclude`."""
    only: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    def __contains__(self, namespace: object) -> bool:
        return namespace not in self.exclude and (self.only is None or namespace in self.only)

    @property
    def owns_cluster(self) -> bool:
        """The cluster's own certificates (API server, credentials) go with the environment owning the rest."""
        return self.only is None

    def describe(self) -> str:
        if self.only is not None:
            return "namespaces " + ", ".join(sorted(self.only))
        return "every namespace" + (f" except {', '.join(sorted(self.exclude))}" if self.exclude else "")


def certificate_scope(environment: str, environments: dict[str, tuple[str, bool, set[str]]]) -> Scope:
    """The namespaces whose certificates belong to `environment`.

    `environments` maps each catalog environment to (cluster identity, production?, its services'
    namespaces). An environment alone on its cluster owns all of it. Environments sharing a cluster own
    their services' namespaces; namespaces nobody claims go to the strictest sharer (production first,
    then by name), so every certificate has exactly one environment and one approval policy.
    """
    cluster, _, own = environments[environment]
    sharers = sorted((name for name, (c, _, _) in environments.items() if c == cluster),
                     key=lambda n: (not environments[n][1], n))
    if sharers[0] != environment:
        return Scope(only=frozenset(own))
    claimed = {ns for name in sharers if name != environment for ns in environments[name][2]}
    return Scope(exclude=frozenset(claimed - own))


def renewed(before: CertificateDetails | None, after: CertificateDetails | None, problem: str | None, *,
            now: dt.datetime, renew_within: dt.timedelta, name: str) -> Check:
    """The Secret holds a new certificate (new serial) valid beyond the renewal threshold."""
    if after is None or problem:
        return Check(name=f"{name} renewed", passed=False, detail=f"{name}: {problem or 'no certificate'}")
    if before is not None and after.serial == before.serial:
        return Check(name=f"{name} renewed", passed=False,
                     detail=f"{name} still holds serial {after.serial} (expires {after.not_after:%Y-%m-%d})")
    if after.not_after - now <= renew_within:
        return Check(name=f"{name} renewed", passed=False,
                     detail=f"{name}: new serial {after.serial} expires {after.not_after:%Y-%m-%d}, inside the "
                            f"{renew_within.days}-day threshold (is the Certificate's duration too short?)")
    return Check(name=f"{name} renewed", passed=True,
                 detail=f"{name}: serial {before.serial if before else '(none)'} -> {after.serial}, expires "
                        f"{after.not_after:%Y-%m-%d} ({after.days_left(now):.0f} days)")


def table_rows(findings: list[Finding], results: dict[str, str], *, cluster: str, now: dt.datetime) -> list[dict]:
    """The report table: certificate, namespace, cluster, expires in, action, result."""
    action_text = {"none": "none", "renew": "renew (cmctl renew)", "report": "report: a person must act"}
    return [{"certificate": f.certificate or f.secret, "namespace": f.namespace, "cluster": cluster,
             "expires in": f.expires_in(now), "decision": f.decision, "action": action_text[f.action],
             "result": results.get(f.key) or default_result(f)} for f in findings]


def default_result(finding: Finding) -> str:
    if finding.action == "none":
        return "fine"
    if finding.action == "report":
        return f"{finding.owner} must act: {finding.reason}"
    return "not renewed"
