"""Helpers for the sandbox's client-level tests: manifests, and reading what the server answered."""
from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from tests.conftest import deployment_manifest

CERT_GROUP, CERT_VERSION, CERT_PLURAL = "cert-manager.io", "v1", "certificates"


def status_of(exc: ApiException) -> dict:
    """The Status object the server answered with."""
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == exc.status
    return body


def rv(obj) -> int:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    value = meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
    return int(value)


def configmap(name: str, labels: dict | None = None, data: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, **({"labels": labels} if labels else {})}, "data": data or {"k": "v"}}


def certificate(name: str = "web-tls") -> dict:
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": name},
            "spec": {"secretName": f"{name}-secret", "dnsNames": ["web.example.com"],
                     "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}}}


def two_container_deployment(name: str = "web") -> dict:
    d = deployment_manifest(name, replicas=2)
    d["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "proxy:1.0"})
    return d
