"""The demo cluster: the agent pools that the Kubernetes sandbox's Nodes already form (grouped by AKS's
`kubernetes.azure.com/agentpool` label, the demo estate's `system` and `user`), so that ARM's counts, VM
sizes, modes, zones and taints agree with the Nodes kubectl shows."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

from .nodes import POOL_LABEL
from .resources import KUBERNETES_VERSION, NODE_NAME, AgentPool, instance_of, pool_digits
from .validation import DEFAULTS

MANIFESTS = Path(__file__).resolve().parents[1] / "kubernetes" / "manifests"


def manifest_nodes(directory: Path = MANIFESTS) -> list[dict]:
    """The Node documents of the demo estate's manifests (when no Kubernetes sandbox is attached)."""
    docs: list[dict] = []
    for file in sorted(directory.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(file.read_text()) if d and d.get("kind") == "Node"]
    return docs


def describe(nodes: list[dict], cluster_id: str) -> list[AgentPool]:
    """One agent pool per value of the pool label, described from its Nodes."""
    members: dict[str, list[dict]] = defaultdict(list)
    for node in nodes:
        pool = (node["metadata"].get("labels") or {}).get(POOL_LABEL)
        if pool:
            members[pool].append(node)
    return [_pool(name, group, cluster_id) for name, group in sorted(members.items())]


def _pool(name: str, nodes: list[dict], cluster_id: str) -> AgentPool:
    labels = nodes[0]["metadata"].get("labels") or {}
    zones = sorted({(n["metadata"].get("labels") or {}).get("topology.kubernetes.io/zone", "0").rsplit("-", 1)[-1]
                    for n in nodes} - {"0"})
    taints = sorted({f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in
                     (nodes[0].get("spec") or {}).get("taints") or []})
    properties = {**{k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()},
                  "count": len(nodes), "vmSize": labels.get("node.kubernetes.io/instance-type", DEFAULTS["vmSize"]),
                  "mode": "System" if labels.get("kubernetes.azure.com/mode") == "system" else "User",
                  "orchestratorVersion": KUBERNETES_VERSION}
    if zones:
        properties["availabilityZones"] = zones
    if taints:
        properties["nodeTaints"] = taints
    named = [m for m in (NODE_NAME.match(n["metadata"]["name"]) for n in nodes) if m]
    digits = named[0].group("digits") if named else pool_digits(cluster_id, name)
    instances = [i for i in (instance_of(n["metadata"]["name"]) for n in nodes) if i is not None]
    return AgentPool(name, properties, digits, next_instance=max(instances, default=-1) + 1)
