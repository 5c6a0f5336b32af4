"""cert-manager v1 emulation: issues `Certificate` objects from a per-sandbox CA into kubernetes.io/tls Secrets.

What `cmctl` and users observe is reproduced: the Secret's data, annotations and label; status notBefore,
notAfter, renewalTime, revision and the Ready condition; `cmctl renew` (an `Issuing` condition set to True)
re-issues; spec changes and scheduled renewals re-issue; and events as cert-manager's trigger and issuing
controllers emit them. Certificate lifetimes run on the wall clock (sandbox `speed` does not shorten them).
An issuerRef whose name starts with "broken-" never issues (Ready False, reason Failed), so tests can make
issuance and renewal fail. The loop re-runs on every store change, so nothing is written unless it changes.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from ...common import pki
from .. import errors
from ..store import copy_of
from . import Controller

log = logging.getLogger("sandbox.controllers.certificates")

DEFAULT_DURATION = dt.timedelta(hours=2160)
READY_MESSAGE = "Certificate is up to date and has not expired"
ISSUED_MESSAGE = "The certificate has been successfully issued"
MANUAL_MESSAGE = "Certificate re-issuance manually triggered"
TRIGGER_COMPONENT = "cert-manager-certificates-trigger"
ANNOTATION = "cert-manager.io/"
FAO_LABEL = "controller.cert-manager.io/fao"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)?")


def parse_go_duration(text: str) -> dt.timedelta:
    """Go's `time.ParseDuration`: "2160h", "90m", "1h30m", "1.5h", "300ms", "-5s", "0"."""
    if not isinstance(text, str):
        raise ValueError(f"time: invalid duration {text!r}")
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return dt.timedelta(0)
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    pos, seconds = 0, 0.0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            raise ValueError(f'time: invalid duration "{text}"')
        if match.group(2) is None:
            raise ValueError(f'time: missing unit in duration "{text}"')
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return dt.timedelta(seconds=-seconds if text.startswith("-") else seconds)


def _optional_duration(text: object) -> dt.timedelta | None:
    try:
        value = parse_go_duration(text)  # type: ignore[arg-type]
    except ValueError:
        return None
    return value if value > dt.timedelta(0) else None


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_time(when: dt.datetime) -> str:
    """How Go prints a metav1.Time in messages ("2024-01-02 03:04:05 +0000 UTC")."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Issued:
    """What matters about the certificate currently stored in a Secret."""
    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    serial: int


def read_issued(pem: bytes) -> Issued:
    cert = x509.load_pem_x509_certificate(pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    return Issued(str(cns[0].value) if cns else "", dns, ips, cert.not_valid_before_utc,
                  cert.not_valid_after_utc, cert.serial_number)


def find_condition(conditions: list[dict], kind: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def set_condition(conditions: list[dict], kind: str, status: str, reason: str, message: str,
                  generation: int) -> None:
    """Set a condition in place; lastTransitionTime changes only when its status does."""
    old = find_condition(conditions, kind)
    stamp = old.get("lastTransitionTime") if old and old.get("status") == status else None
    new = {"type": kind, "status": status, "lastTransitionTime": stamp or rfc3339(_now()),
           "reason": reason, "message": message, "observedGeneration": generation}
    if old is None:
        conditions.append(new)
    else:
        conditions[conditions.index(old)] = new


def issuer_ref(cert: dict) -> tuple[str, str, str]:
    ref = (cert.get("spec") or {}).get("issuerRef") or {}
    return ref.get("name") or "", ref.get("kind") or "Issuer", ref.get("group") or "cert-manager.io"


def mismatched_fields(spec: dict, issued: Issued) -> list[str]:
    fields = []
    if spec.get("commonName") and spec["commonName"] != issued.common_name:
        fields.append("spec.commonName")
    if sorted(spec.get("dnsNames") or []) != sorted(issued.dns_names):
        fields.append("spec.dnsNames")
    if sorted(spec.get("ipAddresses") or []) != sorted(issued.ip_addresses):
        fields.append("spec.ipAddresses")
    return fields


def renewal_time(spec: dict, issued: Issued) -> dt.datetime:
    """notAfter - renewBefore; renewBefore defaults to (and is capped at) a third of the lifetime."""
    lifetime = issued.not_after - issued.not_before
    before = _optional_duration(spec.get("renewBefore"))
    if before is None or before >= lifetime:
        before = lifetime / 3
    return issued.not_after - before


class CertificateController(Controller):
    name = "cert-manager-certificates-issuing"

    def __init__(self, sandbox) -> None:
        super().__init__(sandbox)
        self.ca: pki.KeyPair | None = None
        self._parsed: dict[str, Issued | None] = {}

    def authority(self) -> pki.KeyPair:
        if self.ca is None:
            self.ca = pki.generate_ca("cert-manager-sandbox-ca")
        return self.ca

    def sync(self) -> None:
        resource = self.kind("Certificate")
        for cert in self.store.items(resource):
            meta = cert["metadata"]
            if meta.get("deletionTimestamp") or not (cert.get("spec") or {}).get("secretName"):
                continue
            with self.store.lock:     # one certificate's read-decide-write is atomic against API writes
                current = self.store.find(resource, meta.get("namespace"), meta["name"])
                if current is None:
                    continue
                try:
                    self.reconcile(current)
                except errors.ApiError as exc:  # e.g. namespace terminating: retried on a later pass
                    log.info("certificate %s/%s: %s", meta.get("namespace"), meta["name"], exc.message)

    def reconcile(self, cert: dict) -> None:
        secret = self.store.find(self.kind("Secret"), cert["metadata"].get("namespace"), cert["spec"]["secretName"])
        reason = self.trigger(cert, secret)
        issuer = issuer_ref(cert)[0]
        if issuer.startswith("broken-"):
            self.fail(cert, reason, f'Issuer "{issuer}" not ready')
        elif reason:
            self.issue(cert, secret, reason)

    # -- deciding ----------------------------------------------------------------------------------

    def issued_in(self, secret: dict | None) -> Issued | None:
        data = (secret or {}).get("data") or {}
        text = data.get("tls.crt")
        if not text:
            return None
        if text not in self._parsed:
            if len(self._parsed) > 512:
                self._parsed.clear()
            try:
                self._parsed[text] = read_issued(base64.b64decode(text))
            except (ValueError, binascii.Error):
                self._parsed[text] = None
        return self._parsed[text]

    def trigger(self, cert: dict, secret: dict | None) -> str | None:
        """Why the certificate must be (re-)issued now, as cert-manager words it; None if it needn't."""
        status = cert.get("status") or {}
        conditions = status.get("conditions") or []
        issuing = find_condition(conditions, "Issuing")
        if issuing and issuing.get("status") == "True":
            return issuing.get("message") or MANUAL_MESSAGE
        problem = self.secret_problem(cert, secret)
        if problem:
            return f"Issuing certificate as {problem}"
        generation = cert["metadata"].get("generation", 1)
        observed = int((find_condition(conditions, "Ready") or {}).get("observedGeneration") or 0)
        if generation > observed:
            return f"Issuing certificate as the Certificate spec changed (generation {generation}, " \
                   f"last issued for {observed})"
        due = renewal_time(cert["spec"], self.issued_in(secret))  # type: ignore[arg-type]
        if _now() >= due:
            return f"Renewing certificate as renewal was scheduled at {go_time(due)}"
        return None

    def secret_problem(self, cert: dict, secret: dict | None) -> str | None:
        if secret is None:
            return "Secret does not exist"
        data = secret.get("data") or {}
        if not data.get("tls.key"):
            return "Secret does not contain a private key"
        if not data.get("tls.crt"):
            return "Secret does not contain a certificate"
        issued = self.issued_in(secret)
        if issued is None:
            return "Secret contains an invalid certificate"
        annotations = secret["metadata"].get("annotations") or {}
        previous = annotations.get(ANNOTATION + "issuer-name")
        if previous is not None and previous != issuer_ref(cert)[0]:
            kind = annotations.get(ANNOTATION + "issuer-kind", "Issuer")
            group = annotations.get(ANNOTATION + "issuer-group", "cert-manager.io")
            return f'Secret was previously issued by "{kind}.{group}/{previous}"'
        fields = mismatched_fields(cert["spec"], issued)
        if fields:
            return f"Existing issued Secret is not up to date for spec: [{' '.join(fields)}]"
        return None

    # -- acting ------------------------------------------------------------------------------------

    def duration(self, cert: dict) -> dt.timedelta:
        text = cert["spec"].get("duration")
        if not text:
            return DEFAULT_DURATION
        value = _optional_duration(text)
        if value is None:
            self.record_event(cert, "InvalidDuration", f"spec.duration {text!r} is not a valid positive Go "
                              f"duration; using the default 2160h0m0s", type="Warning")
            return DEFAULT_DURATION
        return value

    def issue(self, cert: dict, secret: dict | None, reason: str) -> None:
        spec = cert["spec"]
        try:
            pair = pki.issue(self.authority(), common_name=spec.get("commonName") or "",
                             dns_names=list(spec.get("dnsNames") or []),
                             ip_addresses=list(spec.get("ipAddresses") or []), duration=self.duration(cert))
        except ValueError as exc:   # e.g. a malformed spec.ipAddresses entry
            self.fail(cert, reason, f"Failed to issue certificate: {exc}")
            return
        self.record_event(cert, "Issuing", reason, component=TRIGGER_COMPONENT)
        self.write_secret(cert, secret, pair)
        stored = self.store.replace(self.kind("Certificate"), self.issued_status(cert, pair))
        self.record_event(stored, "Issuing", ISSUED_MESSAGE)

    def write_secret(self, cert: dict, secret: dict | None, pair: pki.KeyPair) -> None:
        """Create the Secret, or replace its TLS keys keeping the user's other keys, labels and annotations."""
        spec, meta = cert["spec"], cert["metadata"]
        name, kind, group = issuer_ref(cert)
        new = copy_of(secret) if secret is not None else {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": spec["secretName"], "namespace": meta.get("namespace")}}
        smeta = new["metadata"]
        smeta["annotations"] = {**(smeta.get("annotations") or {}), **{
            ANNOTATION + "alt-names": ",".join(spec.get("dnsNames") or []),
            ANNOTATION + "certificate-name": meta["name"],
            ANNOTATION + "common-name": spec.get("commonName") or "",
            ANNOTATION + "ip-sans": ",".join(spec.get("ipAddresses") or []),
            ANNOTATION + "issuer-group": group,
            ANNOTATION + "issuer-kind": kind,
            ANNOTATION + "issuer-name": name,
            ANNOTATION + "uri-sans": ",".join(spec.get("uris") or []),
        }}
        smeta["labels"] = {**(smeta.get("labels") or {}), FAO_LABEL: "true"}
        new["data"] = {**(new.get("data") or {}), "tls.crt": _b64(pair.cert_pem), "tls.key": _b64(pair.key_pem),
                       "ca.crt": _b64(self.authority().cert_pem)}
        if secret is None:
            self.store.create(self.kind("Secret"), new)
        else:
            self.store.replace(self.kind("Secret"), new)

    def issued_status(self, cert: dict, pair: pki.KeyPair) -> dict:
        new = copy_of(cert)
        status = new.get("status") or {}
        new["status"] = status
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Issuing"]
        set_condition(conditions, "Ready", "True", "Ready", READY_MESSAGE, cert["metadata"].get("generation", 1))
        issued = Issued("", (), (), pair.not_before, pair.not_after, pair.serial)
        status.update(conditions=conditions, notBefore=rfc3339(pair.not_before), notAfter=rfc3339(pair.not_after),
                      renewalTime=rfc3339(renewal_time(cert["spec"], issued)),
                      revision=int(status.get("revision") or 0) + 1)
        status.pop("lastFailureTime", None)
        status.pop("failedIssuanceAttempts", None)
        return new

    def fail(self, cert: dict, reason: str | None, message: str) -> None:
        """Ready False (reason Failed); a pending Issuing=True request becomes Issuing=False. Writes on change only."""
        new = copy_of(cert)
        status = new.get("status") or {}
        new["status"] = status
        conditions = list(status.get("conditions") or [])
        generation = cert["metadata"].get("generation", 1)
        set_condition(conditions, "Ready", "False", "Failed", message, generation)
        retry = f"The certificate request has failed to complete and will be retried: {message}"
        issuing = find_condition(conditions, "Issuing")
        if issuing is not None and issuing.get("status") == "True":
            set_condition(conditions, "Issuing", "False", "Failed", retry, generation)
            status["lastFailureTime"] = rfc3339(_now())
            status["failedIssuanceAttempts"] = int(status.get("failedIssuanceAttempts") or 0) + 1
        status["conditions"] = conditions
        if new == cert:
            return
        if reason:
            self.record_event(cert, "Issuing", reason, component=TRIGGER_COMPONENT)
        stored = self.store.replace(self.kind("Certificate"), new)
        self.record_event(stored, "Failed", retry, type="Warning")
