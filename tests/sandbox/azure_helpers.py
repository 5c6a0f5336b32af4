"""The real Azure SDK clients pointed at the Azure stand-in: TLS verified against its generated CA, the
credential's authority at the stand-in (instance discovery off: it would ask login.microsoftonline.com)."""
from __future__ import annotations

import base64
import json
import time
from typing import Callable

from azure.identity import ClientSecretCredential
from azure.mgmt.containerservice import ContainerServiceClient

from sandbox.azure.server import AzureConfig, AzureSandbox
from sandbox.server import Sandbox

# 1000x: a 90 s node boot takes 0.09 s, AKS's default 30 min drain timeout 1.8 s.
FAST = dict(speed=1000.0, rotation_seconds=60.0)
POLL = 0.02          # the SDK's LRO polling interval (it sleeps Retry-After, else this; the stand-in sends none)


def start_azure(kubernetes: Sandbox | None = None, **overrides) -> AzureSandbox:
    return AzureSandbox(AzureConfig(**{**FAST, **overrides}), kubernetes=kubernetes).start()


def credential(azure: AzureSandbox, **overrides) -> ClientSecretCredential:
    c = azure.credentials()
    fields = dict(tenant_id=c.tenant_id, client_id=c.client_id, client_secret=c.client_secret)
    fields.update(overrides)
    return ClientSecretCredential(fields.pop("tenant_id"), fields.pop("client_id"), fields.pop("client_secret"),
                                  authority=c.authority, disable_instance_discovery=True,
                                  connection_verify=str(c.ca_bundle), **fields)


def arm_client(azure: AzureSandbox, cred: ClientSecretCredential | None = None, **kwargs) -> ContainerServiceClient:
    c = azure.credentials()
    options = {"credential_scopes": [c.scope], "connection_verify": str(c.ca_bundle), "polling_interval": POLL,
               **kwargs}
    return ContainerServiceClient(credential=cred or credential(azure), subscription_id=c.subscription_id,
                                  base_url=c.arm_endpoint, **options)


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)
