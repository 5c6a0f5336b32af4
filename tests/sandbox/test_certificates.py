"""The cert-manager emulation: issuance into a TLS Secret, `cmctl renew`-style re-issue through the real
`kubernetes` client, re-issue on spec change and on schedule, and a broken issuer that never issues.

If the controller manager cannot build every controller yet (sibling controllers are written separately),
the fixture runs the sandbox without its manager and drives CertificateController.sync() in its own thread.
"""
from __future__ import annotations

import base64
import datetime as dt
import threading
import time

import kubernetes
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from sandbox.kubernetes.controllers.certificates import CertificateController, parse_go_duration
from sandbox.server import Sandbox, SandboxConfig

NS = "certs"


def _drive(sandbox: Sandbox, stop: threading.Event) -> threading.Thread:
    controller = CertificateController(sandbox)
    store = sandbox.store

    def run() -> None:
        while not stop.is_set():
            seen = store.resource_version
            controller.sync()
            with store.changed:
                if store.resource_version == seen and not stop.is_set():
                    store.changed.wait(sandbox.config.tick_seconds)

    thread = threading.Thread(target=run, name="test-certificates", daemon=True)
    thread.start()
    return thread


@pytest.fixture
def sandbox():
    config = SandboxConfig(speed=20, tick_seconds=0.02)
    sb = Sandbox(config)
    try:
        sb.controllers.build()
        standalone = False
    except ImportError:   # sibling controllers not written yet: run ours alone
        config.controllers, standalone = False, True
    sb.start()
    stop = threading.Event()
    thread = _drive(sb, stop) if standalone else None
    sb.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    try:
        yield sb
    finally:
        stop.set()
        with sb.store.changed:
            sb.store.changed.notify_all()
        if thread is not None:
            thread.join(timeout=5)
        sb.stop()


def certificate(name="web", issuer="sandbox-ca", **spec) -> dict:
    body = {"secretName": f"{name}-tls", "commonName": f"{name}.example.com",
            "dnsNames": [f"{name}.example.com", f"{name}.{NS}.svc"],
            "issuerRef": {"name": issuer, "kind": "ClusterIssuer"}, **spec}
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


def condition(cert: dict, kind: str) -> dict | None:
    return next((c for c in (cert.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def wait_cert(sb: Sandbox, name: str, check, timeout: float = 10.0) -> dict:
    def probe():
        cert = sb.get("Certificate", name, NS)
        return cert if check(cert) else None
    return sb.wait_for(probe, timeout=timeout)


def ready(revision: int = 1):
    def check(cert: dict) -> bool:
        cond = condition(cert, "Ready")
        return bool(cond and cond["status"] == "True" and (cert["status"].get("revision") or 0) >= revision)
    return check


def leaf(sb: Sandbox, secret_name: str) -> tuple[x509.Certificate, x509.Certificate]:
    data = sb.get("Secret", secret_name, NS)["data"]
    return (x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])),
            x509.load_pem_x509_certificate(base64.b64decode(data["ca.crt"])))


def sans(cert: x509.Certificate) -> list[str]:
    return sorted(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                  .get_values_for_type(x509.DNSName))


def messages(sb: Sandbox, name: str) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in sb.list("Event", NS)
            if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "Certificate"]


def renew_with_kubernetes_client(sb: Sandbox, name: str) -> None:
    """What `cmctl renew` does: add an Issuing=True condition through the status subresource."""
    api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config_dict(sb.kubeconfig()))
    cert = api.get_namespaced_custom_object("cert-manager.io", "v1", NS, "certificates", name)
    conditions = cert["status"]["conditions"] + [{
        "type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
        "message": "Certificate re-issuance manually triggered",
        "observedGeneration": cert["metadata"]["generation"],
        "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]
    api.patch_namespaced_custom_object_status("cert-manager.io", "v1", NS, "certificates", name,
                                              {"status": {"conditions": conditions}})


# ---------------------------------------------------------------- issuance

def test_issues_secret_signed_by_ca(sandbox):
    sandbox.apply_object(certificate())
    cert = wait_cert(sandbox, "web", ready())
    status = cert["status"]
    assert status["revision"] == 1
    assert condition(cert, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": None,
        "message": "Certificate is up to date and has not expired", "observedGeneration": 1}
    secret = sandbox.get("Secret", "web-tls", NS)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"]["controller.cert-manager.io/fao"] == "true"
    notes = secret["metadata"]["annotations"]
    assert notes["cert-manager.io/certificate-name"] == "web"
    assert notes["cert-manager.io/issuer-name"] == "sandbox-ca"
    assert notes["cert-manager.io/issuer-kind"] == "ClusterIssuer"
    assert notes["cert-manager.io/common-name"] == "web.example.com"
    assert notes["cert-manager.io/alt-names"] == f"web.example.com,web.{NS}.svc"
    crt, ca = leaf(sandbox, "web-tls")
    assert crt.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web.example.com"
    assert sans(crt) == sorted(["web.example.com", f"web.{NS}.svc"])
    crt.verify_directly_issued_by(ca)          # signature and issuer name chain to ca.crt
    lifetime = crt.not_valid_after_utc - crt.not_valid_before_utc
    assert lifetime == dt.timedelta(hours=2160)
    assert status["notAfter"] == crt.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    renew_at = dt.datetime.strptime(status["renewalTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert renew_at == crt.not_valid_after_utc - lifetime / 3
    assert ("Normal", "Issuing", "Issuing certificate as Secret does not exist") in messages(sandbox, "web")
    assert ("Normal", "Issuing", "The certificate has been successfully issued") in messages(sandbox, "web")


def test_settled_certificate_is_not_rewritten(sandbox):
    sandbox.apply_object(certificate())
    cert = wait_cert(sandbox, "web", ready())
    secret_rv = sandbox.get("Secret", "web-tls", NS)["metadata"]["resourceVersion"]
    events = len(messages(sandbox, "web"))
    time.sleep(0.5)
    assert sandbox.get("Certificate", "web", NS)["metadata"]["resourceVersion"] == cert["metadata"]["resourceVersion"]
    assert sandbox.get("Secret", "web-tls", NS)["metadata"]["resourceVersion"] == secret_rv
    assert len(messages(sandbox, "web")) == events


def test_existing_secret_keeps_user_keys_and_labels(sandbox):
    sandbox.apply_object({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                          "metadata": {"name": "web-tls", "namespace": NS, "labels": {"team": "blue"}},
                          "data": {"extra": base64.b64encode(b"keep me").decode()}})
    sandbox.apply_object(certificate())
    wait_cert(sandbox, "web", ready())
    secret = sandbox.get("Secret", "web-tls", NS)
    assert base64.b64decode(secret["data"]["extra"]) == b"keep me"
    assert secret["metadata"]["labels"] == {"team": "blue", "controller.cert-manager.io/fao": "true"}
    assert {"tls.crt", "tls.key", "ca.crt"} <= set(secret["data"])
    assert ("Normal", "Issuing", "Issuing certificate as Secret does not contain a private key") \
        in messages(sandbox, "web")


# ---------------------------------------------------------------- re-issuance

def test_manual_renew_through_kubernetes_client_reissues(sandbox):
    sandbox.apply_object(certificate())
    wait_cert(sandbox, "web", ready())
    first, _ = leaf(sandbox, "web-tls")
    renew_with_kubernetes_client(sandbox, "web")
    cert = wait_cert(sandbox, "web", ready(revision=2))
    assert cert["status"]["revision"] == 2
    assert condition(cert, "Issuing") is None
    second, ca = leaf(sandbox, "web-tls")
    assert second.serial_number != first.serial_number
    second.verify_directly_issued_by(ca)
    assert ("Normal", "Issuing", "Certificate re-issuance manually triggered") in messages(sandbox, "web")


def test_dns_names_change_reissues(sandbox):
    sandbox.apply_object(certificate())
    wait_cert(sandbox, "web", ready())
    sandbox.apply_object(certificate(dnsNames=["web.example.com", "www.example.com"]))
    cert = wait_cert(sandbox, "web", ready(revision=2))
    assert condition(cert, "Ready")["observedGeneration"] == cert["metadata"]["generation"] == 2
    crt, _ = leaf(sandbox, "web-tls")
    assert sans(crt) == ["web.example.com", "www.example.com"]
    assert sandbox.get("Secret", "web-tls", NS)["metadata"]["annotations"]["cert-manager.io/alt-names"] == \
        "web.example.com,www.example.com"


def test_scheduled_renewal_uses_wall_clock(sandbox):
    sandbox.apply_object(certificate(duration="3s", renewBefore="2s"))
    wait_cert(sandbox, "web", ready())
    cert = wait_cert(sandbox, "web", ready(revision=2), timeout=8)
    assert any(m.startswith("Renewing certificate as renewal was scheduled at ")
               for _, _, m in messages(sandbox, "web"))
    assert cert["status"]["revision"] >= 2


def test_invalid_duration_falls_back_to_default_with_warning(sandbox):
    sandbox.apply_object(certificate(duration="ninety days"))
    wait_cert(sandbox, "web", ready())
    crt, _ = leaf(sandbox, "web-tls")
    assert crt.not_valid_after_utc - crt.not_valid_before_utc == dt.timedelta(hours=2160)
    assert any(t == "Warning" and r == "InvalidDuration" for t, r, _ in messages(sandbox, "web"))


# ---------------------------------------------------------------- failure

def test_broken_issuer_never_issues(sandbox):
    sandbox.apply_object(certificate(issuer="broken-ca"))
    cert = wait_cert(sandbox, "web", lambda c: condition(c, "Ready") is not None)
    cond = condition(cert, "Ready")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Failed", 'Issuer "broken-ca" not ready')
    assert sandbox.store.find(sandbox.resource("Secret"), NS, "web-tls") is None
    rv = cert["metadata"]["resourceVersion"]
    time.sleep(0.3)
    assert sandbox.get("Certificate", "web", NS)["metadata"]["resourceVersion"] == rv   # written once


def test_renewal_against_broken_issuer_fails(sandbox):
    sandbox.apply_object(certificate())
    wait_cert(sandbox, "web", ready())
    serial = leaf(sandbox, "web-tls")[0].serial_number
    sandbox.apply_object(certificate(issuer="broken-ca"))
    wait_cert(sandbox, "web", lambda c: condition(c, "Ready")["status"] == "False")
    renew_with_kubernetes_client(sandbox, "web")
    cert = wait_cert(sandbox, "web", lambda c: (condition(c, "Issuing") or {}).get("status") == "False")
    assert condition(cert, "Issuing")["reason"] == "Failed"
    assert cert["status"]["failedIssuanceAttempts"] == 1 and cert["status"]["revision"] == 1
    assert leaf(sandbox, "web-tls")[0].serial_number == serial
    sandbox.apply_object(certificate())                      # fixing the issuer issues again
    cert = wait_cert(sandbox, "web", ready(revision=2))
    assert "failedIssuanceAttempts" not in cert["status"] and condition(cert, "Issuing") is None


# ---------------------------------------------------------------- durations

@pytest.mark.parametrize("text,seconds", [
    ("2160h", 2160 * 3600), ("90m", 5400), ("1h30m", 5400), ("1.5h", 5400), ("300ms", 0.3),
    ("0", 0), ("-5s", -5), ("1h0m0s", 3600),
])
def test_parse_go_duration(text, seconds):
    assert parse_go_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "10", "1h30", "ninety days", "1d"])
def test_parse_go_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)
