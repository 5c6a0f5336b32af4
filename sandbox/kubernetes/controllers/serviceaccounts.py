"""The service-account controller: every namespace that is not being deleted has a `default`
ServiceAccount, created soon after the namespace (and again if someone deletes it), as on a real cluster."""
from __future__ import annotations

from . import Controller


class ServiceAccountController(Controller):
    name = "service-account-controller"

    def sync(self) -> None:
        accounts = self.kind("ServiceAccount")
        for ns in self.store.items(self.kind("Namespace")):
            name = ns["metadata"]["name"]
            if ns["metadata"].get("deletionTimestamp") or self.store.find(accounts, name, "default") is not None:
                continue
            self.store.create(accounts, {"kind": "ServiceAccount", "apiVersion": "v1",
                                         "metadata": {"name": "default", "namespace": name}})
