"""The ingress stand-in: each Ingress's TLS Secret served with real TLS on a loopback port published in the
Ingress's status, reloaded when the Secret changes, ingress-nginx's fake certificate for a bad Secret."""
from __future__ import annotations

import ssl
import time

import pytest
from kubernetes import client, config

from sandbox.common import pki
from sandbox.kubernetes.ingress import FAKE_CN
from tasks.tls import presented_certificate
from tests.certificate_estate import BROKEN_PEM, b64, ingress, tls_secret

from .kubectl_helpers import Kubectl, kubectl_binary

CA = pki.generate_ca("ingress-test-ca")


@pytest.fixture
def served(sandbox):
    pair = pki.issue(CA, common_name="shop.example.com", dns_names=["shop.example.com"])
    tls_secret(sandbox, "shop-tls", pair, namespace="default")
    ingress(sandbox, "shop", "shop.example.com", "shop-tls", namespace="default")
    return pair


def endpoint(sandbox) -> tuple[str, int]:
    balancer = sandbox.wait_for(lambda: (sandbox.get("Ingress", "shop", "default").get("status") or {})
                                .get("loadBalancer", {}).get("ingress"))[0]
    return balancer["ip"], balancer["ports"][0]["port"]


def handshake(sandbox, host: str = "shop.example.com"):
    address, port = endpoint(sandbox)
    return presented_certificate(address, port, host)


def test_serves_the_secret_on_the_port_its_status_publishes(sandbox, served):
    address, port = endpoint(sandbox)
    assert address == "127.0.0.1"
    assert handshake(sandbox).serial == format(served.serial, "X")
    assert FAKE_CN in handshake(sandbox, "unknown.example.com").subject        # SNI that no tls entry names
    context = ssl.create_default_context(cadata=CA.cert_pem.decode())          # a verifying client accepts it
    with context.wrap_socket(__import__("socket").create_connection((address, port)),
                             server_hostname="shop.example.com") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
        assert tls.recv(4096).startswith(b"HTTP/1.1 200 OK")


def test_reloads_when_the_secret_changes_through_the_api(sandbox, served):
    renewed = pki.issue(CA, common_name="shop.example.com", dns_names=["shop.example.com"])
    with config.new_client_from_config_dict(sandbox.kubeconfig()) as api:
        client.CoreV1Api(api).patch_namespaced_secret("shop-tls", "default", {"data": {
            "tls.crt": b64(renewed.cert_pem), "tls.key": b64(renewed.key_pem)}})
    sandbox.wait_for(lambda: handshake(sandbox).serial == format(renewed.serial, "X"), timeout=5)


@pytest.mark.parametrize("data", [{"tls.crt": b64(BROKEN_PEM)}, {"tls.key": "other"}])
def test_a_malformed_or_mismatched_secret_is_served_as_the_fake_certificate(sandbox, served, data):
    other = pki.issue(CA, common_name="other")
    data = {k: (b64(other.key_pem) if v == "other" else v) for k, v in data.items()}
    secret = sandbox.get("Secret", "shop-tls", "default")
    secret["data"].update(data)
    sandbox.apply_object(secret)
    sandbox.wait_for(lambda: FAKE_CN in handshake(sandbox).subject, timeout=5)


def test_deleting_the_ingress_closes_its_listener(sandbox, served):
    address, port = endpoint(sandbox)
    with config.new_client_from_config_dict(sandbox.kubeconfig()) as api:
        client.NetworkingV1Api(api).delete_namespaced_ingress("shop", "default")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            presented_certificate(address, port, "shop.example.com")
        except OSError:
            return
        time.sleep(0.05)
    pytest.fail("the listener still answers after its Ingress was deleted")


@pytest.mark.skipif(not kubectl_binary("1.33"), reason="kubectl 1.33 not on this machine")
def test_kubectl_shows_the_ingress_address(sandbox, served, tmp_path):
    endpoint(sandbox)
    kubectl = Kubectl(kubectl_binary("1.33"), sandbox.write_kubeconfig(tmp_path / "kubeconfig"))
    lines = kubectl.run("get", "ingress", "shop", "-n", "default").stdout.splitlines()
    assert lines[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert lines[1].split()[:5] == ["shop", "<none>", "shop.example.com", "127.0.0.1", "80,"]
