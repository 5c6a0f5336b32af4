"""The certificate planner on typed fixtures, no server: parsing, the five decisions, scope and the plan."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from plans.certificates import (CertificateDetails, CertificateList, EndpointList, ManagedCertificate,
                                Scope, SecretList, TlsSecret, assemble_inventory, certificate_scope, covers, decide,
                                findings_for, plan_renewals, read_tls_pair, renewed)
from plans.targets import CertificateSetTarget
from sandbox.common import pki
from tests.certificate_estate import BROKEN_PEM

NOW = dt.datetime.now(dt.timezone.utc)
WITHIN = dt.timedelta(days=30)
CA = pki.generate_ca("test-ca")


def details(days_left: float, sans=("a.example.com",), serial="0A") -> CertificateDetails:
    return CertificateDetails(subject="CN=a.example.com", sans=list(sans), issuer="CN=test-ca", serial=serial,
                              not_before=NOW - dt.timedelta(days=60), not_after=NOW + dt.timedelta(days=days_left),
                              key_type="EC secp256r1", key_size=256, chain=["CN=a.example.com"], chain_in_order=True,
                              fingerprint="00")


def secret(days_left: float | None = 60, *, problem: str | None = None, hosts=(), name="a-tls") -> TlsSecret:
    return TlsSecret(namespace="shop", name=name, details=None if days_left is None else details(days_left),
                     problem=problem, hosts=list(hosts))


CERT = ManagedCertificate(namespace="shop", name="a", secret_name="a-tls", issuer="ClusterIssuer/ca", revision=3,
                          ready=True)


def decision(s: TlsSecret, managed: ManagedCertificate | None = CERT):
    found = decide(s, managed, now=NOW, renew_within=WITHIN, owner="team-edge")
    return found.decision, found.action


def test_reads_subject_sans_issuer_serial_expiry_key_and_chain_order():
    leaf = pki.issue(CA, common_name="a.example.com", dns_names=["a.example.com", "*.a.example.com"],
                     ip_addresses=["127.0.0.1"])
    found, problem = read_tls_pair(leaf.cert_pem + CA.cert_pem, leaf.key_pem)
    assert problem is None
    assert found.subject == "CN=a.example.com" and found.issuer == "CN=test-ca"
    assert found.sans == ["a.example.com", "*.a.example.com", "127.0.0.1"]
    assert found.serial == format(leaf.serial, "X") and found.not_after == leaf.not_after
    assert (found.key_type, found.key_size) == ("EC secp256r1", 256)
    assert found.chain == ["CN=a.example.com", "CN=test-ca"] and found.chain_in_order
    reversed_chain, _ = read_tls_pair(CA.cert_pem + leaf.cert_pem, leaf.key_pem)
    assert reversed_chain.subject == "CN=test-ca" and not reversed_chain.chain_in_order


def test_reads_an_rsa_certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa.example.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    found, problem = read_tls_pair(cert.public_bytes(serialization.Encoding.PEM), pem)
    assert problem is None and (found.key_type, found.key_size, found.serial, found.sans) == ("RSA", 1024, "7", [])


@pytest.mark.parametrize("crt, key, expected", [
    (BROKEN_PEM, b"", "tls.crt is not a PEM certificate"),
    (b"", b"", "the Secret has no tls.crt"),
    (b"just text", b"", "tls.crt is not a PEM certificate"),
    ("leaf", b"", "the Secret has no tls.key"),
    ("leaf", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "tls.key is not a PEM private key"),
    ("leaf", "other", "tls.key does not match the certificate in tls.crt"),
])
def test_a_bad_pair_is_a_problem_never_an_exception(crt, key, expected):
    leaf, other = pki.issue(CA, common_name="a"), pki.issue(CA, common_name="b")
    crt = leaf.cert_pem if crt == "leaf" else crt
    key = other.key_pem if key == "other" else key
    _, problem = read_tls_pair(crt, key)
    assert problem is not None and problem.startswith(expected)


@pytest.mark.parametrize("sans, host, covered", [
    (["a.example.com"], "a.example.com", True), (["A.Example.com"], "a.example.com.", True),
    (["*.example.com"], "a.example.com", True), (["*.example.com"], "b.a.example.com", False),
    (["*.example.com"], "example.com", False), (["a.example.com"], "b.example.com", False), ([], "a", False),
])
def test_sans_cover_hosts_as_tls_clients_match_them(sans, host, covered):
    assert covers(sans, host) is covered


def test_the_five_decisions():
    assert decision(secret(60)) == ("fine", "none")
    assert decision(secret(29)) == ("renew", "renew")
    assert decision(secret(29), None) == ("manual", "report")
    assert decision(secret(-1)) == ("expired", "renew")
    assert decision(secret(-1), None) == ("expired", "report")
    assert decision(secret(None, problem="tls.crt is not a PEM certificate"), None) == ("broken", "report")
    assert decision(secret(None, problem="tls.crt is not a PEM certificate")) == ("broken", "renew")
    assert decision(secret(60, hosts=["shop.example.com"])) == ("broken", "report")
    assert decision(secret(60, hosts=["a.example.com"])) == ("fine", "none")


def test_unmanaged_findings_name_who_must_act_and_expired_ones_are_urgent():
    manual = decide(secret(10), None, now=NOW, renew_within=WITHIN, owner="team-edge")
    assert "team-edge must renew it" in manual.reason and not manual.urgent
    assert decide(secret(-3), None, now=NOW, renew_within=WITHIN, owner="team-edge").urgent
    assert manual.expires_in(NOW) == "10 days"


def test_inventory_joins_ingress_hosts_and_a_certificate_without_its_secret_is_broken():
    served = EndpointList(by_secret={}, hosts={"shop/a-tls": ["a.example.com"]}, api_calls=1)
    never = ManagedCertificate(namespace="shop", name="b", secret_name="b-tls", issuer="Issuer/x",
                               message='Issuer "broken-x" not ready')
    inventory = assemble_inventory("c", SecretList(items=[secret(60)], api_calls=2),
                                   CertificateList(items=[CERT, never], api_calls=1), served)
    assert inventory.api_calls == 4 and inventory.secrets[0].hosts == ["a.example.com"]
    found = findings_for(inventory, scope=Scope(), now=NOW, renew_within=WITHIN, owner="o")
    assert [(f.certificate, f.decision) for f in found] == [("a", "fine"), ("b", "broken")]
    assert "broken-x" in found[1].reason
    assert findings_for(inventory, scope=Scope(only=frozenset({"other"})), now=NOW, renew_within=WITHIN,
                        owner="o") == []


def test_environments_sharing_a_cluster_split_it_by_namespace_and_production_owns_the_rest():
    envs = {"production": ("c1", True, {"payments"}), "staging": ("c1", False, {"payments-staging"}),
            "dev": ("c2", False, {"x"})}
    production, staging, dev = (certificate_scope(e, envs) for e in ("production", "staging", "dev"))
    assert "payments" in production and "ingress-nginx" in production and "payments-staging" not in production
    assert "payments-staging" in staging and "ingress-nginx" not in staging
    assert "anything" in dev and dev.describe() == "every namespace"


def test_plan_has_one_cmctl_renewal_per_due_certificate_and_a_noop_otherwise():
    target = CertificateSetTarget(environment="staging", cluster="c", scope="every namespace")
    due = decide(secret(5), CERT, now=NOW, renew_within=WITHIN, owner="o")
    fine = decide(secret(90, name="b-tls"), None, now=NOW, renew_within=WITHIN, owner="o")
    plan = plan_renewals(target, [due, fine], now=NOW)
    assert [(c.resource, c.field) for c in plan.changes] == [("certificate shop/a", "status.conditions[Issuing]")]
    assert "serial 0A" in plan.changes[0].before and plan.evidence == [f"RENEW shop/a: {due.reason}"]
    assert plan_renewals(target, [fine], now=NOW).is_noop


def test_renewed_needs_a_new_serial_beyond_the_threshold():
    old, new = details(5, serial="0A"), details(90, serial="0B")
    assert renewed(old, new, None, now=NOW, renew_within=WITHIN, name="a").passed
    assert not renewed(old, old, None, now=NOW, renew_within=WITHIN, name="a").passed
    assert "inside the 30-day threshold" in renewed(old, details(20, serial="0C"), None, now=NOW,
                                                     renew_within=WITHIN, name="a").detail
    assert not renewed(old, None, "tls.key does not match", now=NOW, renew_within=WITHIN, name="a").passed


def test_a_clusters_own_certificate_says_how_that_kind_of_cluster_renews_it():
    from plans.certificates import cluster_remedy
    aks = decide(secret(10), None, now=NOW, renew_within=WITHIN, owner="team-aks", remedy=cluster_remedy(True))
    assert aks.decision == "manual" and "team-aks must rotate" in aks.reason and "30 minutes" in aks.reason
    assert "kubeadm" in decide(secret(-1), None, now=NOW, renew_within=WITHIN, owner="o",
                               remedy=cluster_remedy(False)).reason


def test_any_bytes_at_all_give_a_problem_or_a_certificate_never_an_exception():
    leaf = pki.issue(CA, common_name="a")
    pem = st.sampled_from([leaf.cert_pem, BROKEN_PEM, b"-----BEGIN CERTIFICATE-----\n", b""])
    mangled = st.tuples(pem, st.binary(max_size=64), st.integers(0, 600)).map(
        lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:])

    @settings(max_examples=40, deadline=None, database=None)
    @given(crt=mangled | st.binary(max_size=200), key=st.sampled_from([leaf.key_pem, b"", b"junk"]) | st.binary(max_size=64))
    def check(crt, key):
        found, problem = read_tls_pair(crt, key)
        assert (found is not None) or (problem is not None)

    check()
