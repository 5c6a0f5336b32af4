"""TLS Secrets, cert-manager Certificates and the Ingresses that serve them.

Lists are cluster-wide and paginated (`limit`/`continue`), and the Secret list asks the server for TLS
Secrets only (field selector `type=kubernetes.io/tls`), so the number of calls grows with pages, never
with namespaces or objects. Read-only probes first; the one mutating action is `renew_certificate`.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import time
from typing import Callable

from kubernetes import watch
from kubernetes.client import CoreV1Api, CustomObjectsApi, NetworkingV1Api
from prefect import task
from pydantic import BaseModel

from plans.certificates import (CertificateList, Endpoint, EndpointList, ManagedCertificate, SecretList, TlsSecret,
                                read_tls_pair)
from plans.record import Check

from ..calls import TASK_RETRIES, call_json, retry_if_transient
from ..errors import ConflictError, TargetNotFound, TransientError, classify

GROUP, VERSION, PLURAL = "cert-manager.io", "v1", "certificates"
TLS_TYPE = "kubernetes.io/tls"
PAGE_SIZE = 500                          # kubectl's default --chunk-size
MANUAL_REASON, MANUAL_MESSAGE = "ManuallyTriggered", "Certificate re-issuance manually triggered"


def _pages(fetch: Callable[..., dict], page_size: int) -> tuple[list[dict], int]:
    items, token, calls = [], None, 0
    while True:
        page = fetch(limit=page_size, **({"_continue": token} if token else {}))
        calls += 1
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items, calls


def _decode(data: dict, key: str) -> bytes | None:
    try:
        return base64.b64decode(data[key], validate=True) if data.get(key) else None
    except (binascii.Error, ValueError):
        return b"(not base64)"


def tls_secret(raw: dict) -> TlsSecret:
    meta, data = raw["metadata"], raw.get("data") or {}
    details, problem = read_tls_pair(_decode(data, "tls.crt"), _decode(data, "tls.key"))
    return TlsSecret(namespace=meta["namespace"], name=meta["name"], resource_version=meta.get("resourceVersion", ""),
                     details=details, problem=problem)


@task(name="list_tls_secrets", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_tls_secrets(api: CoreV1Api, *, page_size: int = PAGE_SIZE) -> SecretList:
    """Every `kubernetes.io/tls` Secret in the cluster, each certificate parsed (a bad one is a finding)."""
    raw, calls = _pages(lambda **page: call_json(api.list_secret_for_all_namespaces,
                                                 field_selector=f"type={TLS_TYPE}", **page), page_size)
    return SecretList(items=[tls_secret(s) for s in raw], api_calls=calls)


@task(name="read_tls_secret", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def read_tls_secret(api: CoreV1Api, *, namespace: str, name: str) -> TlsSecret:
    """One TLS Secret, its certificate parsed."""
    return tls_secret(call_json(api.read_namespaced_secret, name, namespace))


def managed_certificate(raw: dict) -> ManagedCertificate:
    spec, status = raw.get("spec") or {}, raw.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    issuer = spec.get("issuerRef") or {}
    return ManagedCertificate(namespace=raw["metadata"]["namespace"], name=raw["metadata"]["name"],
                              secret_name=spec.get("secretName", ""),
                              issuer=f"{issuer.get('kind', 'Issuer')}/{issuer.get('name', '')}",
                              revision=int(status.get("revision") or 0), ready=ready.get("status") == "True",
                              message=ready.get("message", ""))


@task(name="list_certificates", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_certificates(api: CustomObjectsApi, *, page_size: int = PAGE_SIZE) -> CertificateList:
    """Every cert-manager Certificate in the cluster (none, and `installed=False`, without cert-manager)."""
    try:
        raw, calls = _pages(lambda **page: call_json(api.list_cluster_custom_object, GROUP, VERSION, PLURAL, **page),
                            page_size)
    except TargetNotFound:
        return CertificateList(items=[], api_calls=1, installed=False)
    return CertificateList(items=[managed_certificate(c) for c in raw], api_calls=calls)


@task(name="list_ingress_endpoints", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_ingress_endpoints(api: NetworkingV1Api, *, page_size: int = PAGE_SIZE) -> EndpointList:
    """Which Secret each Ingress serves, for which hosts, and where (its load balancer's address and ports)."""
    raw, calls = _pages(lambda **page: call_json(api.list_ingress_for_all_namespaces, **page), page_size)
    by_secret: dict[str, list[Endpoint]] = {}
    hosts: dict[str, list[str]] = {}
    for ingress in raw:
        namespace, name = ingress["metadata"]["namespace"], ingress["metadata"]["name"]
        balancers = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        addresses = [(lb.get("ip") or lb.get("hostname"), port) for lb in balancers
                     for port in [p.get("port", 443) for p in lb.get("ports") or []] or [443]]
        for tls in (ingress.get("spec") or {}).get("tls") or []:
            key = f"{namespace}/{tls.get('secretName', '')}"
            for host in tls.get("hosts") or []:
                hosts.setdefault(key, []).append(host)
                by_secret.setdefault(key, []).extend(
                    Endpoint(ingress=f"{namespace}/{name}", host=host, address=address, port=port)
                    for address, port in addresses if address)
    return EndpointList(by_secret=by_secret, hosts=hosts, api_calls=calls)


# -- renewing ---------------------------------------------------------------------------------------

class RenewResult(BaseModel):
    """What `renew_certificate` did, and the revision its wait starts from."""
    changed: bool
    previous_revision: int


def _issuing(cert: dict) -> dict | None:
    return next((c for c in (cert.get("status") or {}).get("conditions") or [] if c.get("type") == "Issuing"), None)


@task(name="renew_certificate", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def renew_certificate(api: CustomObjectsApi, *, namespace: str, name: str, dry_run: bool = False) -> RenewResult:
    """Ask cert-manager to re-issue, as `cmctl renew` does: set the Issuing condition to True and update
    the status (a PUT carrying the resourceVersion read). Idempotent: no write when an issuance is already
    requested. The Secret is never deleted: cert-manager replaces its keys when the new certificate is
    signed, so a failed issuance leaves the old certificate in place and served."""
    for _ in range(5):
        cert = call_json(api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        revision = int((cert.get("status") or {}).get("revision") or 0)
        current = _issuing(cert)
        if dry_run or (current and current.get("status") == "True"):
            return RenewResult(changed=False, previous_revision=revision)
        status = cert.setdefault("status", {})
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Issuing"] + [{
            "type": "Issuing", "status": "True", "reason": MANUAL_REASON, "message": MANUAL_MESSAGE,
            "observedGeneration": cert["metadata"].get("generation", 1),
            "lastTransitionTime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}]
        try:
            call_json(api.replace_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name, cert)
        except ConflictError:
            continue                     # cert-manager wrote its status meanwhile: read again
        return RenewResult(changed=True, previous_revision=revision)
    raise ConflictError(f"certificate {namespace}/{name} kept changing while requesting its renewal; re-run")


@task(name="certificate_issued", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def certificate_issued(api: CustomObjectsApi, *, namespace: str, name: str, after_revision: int,
                       timeout_seconds: float) -> Check:
    """Watch the Certificate until cert-manager issues a revision after `after_revision` (passed), the
    issuance fails (the Issuing condition turns False: failed, with the issuer's reason), or time runs out."""
    started = time.monotonic()
    deadline = started + timeout_seconds
    field = f"metadata.name={name}"
    version, last = None, "not observed yet"
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            if version is None:
                listed = call_json(api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                   field_selector=field)
                if not listed["items"]:
                    return Check(name=f"{name} issued", passed=False, detail=f"certificate {namespace}/{name} is gone")
                done = _issued(listed["items"][0], after_revision, started)
                if done is not None:
                    return done
                version = listed["metadata"]["resourceVersion"]
            for event in watch.Watch().stream(api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                              field_selector=field, resource_version=version,
                                              timeout_seconds=max(1, int(remaining)), _request_timeout=remaining + 5):
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                done = _issued(obj, after_revision, started)
                if done is not None:
                    return done
                last = (_issuing(obj) or {}).get("message") or last
        except Exception as exc:
            if getattr(exc, "status", None) == 410:
                version = None
                continue
            if not isinstance(classify(exc), TransientError):
                raise
            time.sleep(0.2)
    return Check(name=f"{name} issued", passed=False, detail=f"not issued within {timeout_seconds:.0f}s ({last})")


def _issued(cert: dict, after_revision: int, started: float) -> Check | None:
    name, status = cert["metadata"]["name"], cert.get("status") or {}
    revision = int(status.get("revision") or 0)
    if revision > after_revision and not _issuing(cert):
        return Check(name=f"{name} issued", passed=True, seconds=time.monotonic() - started,
                     detail=f"cert-manager issued revision {revision}")
    issuing = _issuing(cert)
    if issuing and issuing.get("status") == "False":
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        return Check(name=f"{name} issued", passed=False, seconds=time.monotonic() - started,
                     detail=f"cert-manager could not issue {name}: {ready.get('message') or issuing.get('message')}")
    return None
