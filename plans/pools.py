"""AKS agent pools as the runbooks read them, typed from ARM's JSON (the SDK model's `as_dict()`), and the
pure rules about them: which settings a write changes and restores, and which nodes a scale-in removes."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

POOL_LABEL = "kubernetes.azure.com/agentpool"
# provisioningState is a free string: anything but these is an operation still in progress.
SETTLED = frozenset({"Succeeded", "Failed", "Canceled"})


class PoolSettings(BaseModel):
    """The part of a pool a scaling run changes, and its undo puts back exactly."""
    model_config = ConfigDict(frozen=True)
    count: int
    enable_auto_scaling: bool = False
    min_count: int | None = None
    max_count: int | None = None

    def describe(self) -> str:
        if self.enable_auto_scaling:
            return f"autoscaler {self.min_count}-{self.max_count} (count {self.count})"
        return f"count {self.count} (autoscaler off)"

    def properties(self) -> dict[str, Any]:
        """ARM's property names, as a PUT carries them (bounds are null with the autoscaler off)."""
        on = self.enable_auto_scaling
        return {"count": self.count, "enableAutoScaling": on, "minCount": self.min_count if on else None,
                "maxCount": self.max_count if on else None}


class PoolState(BaseModel):
    """An agent pool as ARM describes it."""
    name: str
    mode: str                          # System or User
    count: int
    vm_size: str
    enable_auto_scaling: bool
    min_count: int | None = None
    max_count: int | None = None
    provisioning_state: str
    power_state: str = "Running"
    e_tag: str | None = None
    node_image_version: str | None = None

    @property
    def settings(self) -> PoolSettings:
        return PoolSettings(count=self.count, enable_auto_scaling=self.enable_auto_scaling,
                            min_count=self.min_count, max_count=self.max_count)

    @property
    def busy(self) -> bool:
        """An operation runs on it (Updating, Creating, UpgradingNodeImageVersion, ...): AKS refuses writes."""
        return self.provisioning_state not in SETTLED


def pool_state(raw: dict) -> PoolState:
    """A pool from ARM's JSON (`{"name", "properties": {...}}`)."""
    props = raw.get("properties") or {}
    return PoolState(name=raw["name"], mode=props.get("mode", "User"), count=int(props.get("count") or 0),
                     vm_size=props.get("vmSize", ""), enable_auto_scaling=bool(props.get("enableAutoScaling")),
                     min_count=props.get("minCount"), max_count=props.get("maxCount"),
                     provisioning_state=props.get("provisioningState", ""),
                     power_state=(props.get("powerState") or {}).get("code", "Running"),
                     e_tag=props.get("eTag") or raw.get("etag"), node_image_version=props.get("nodeImageVersion"))


def scale_in_victims(node_names: list[str], count: int) -> list[str]:
    """The nodes a scale-in to `count` removes: the newest scale set instances (AKS names them
    `aks-<pool>-<digits>-vmss<6 base-36 digits>`, so the highest names are the newest)."""
    return sorted(node_names)[count:]
