"""Will it fit? Pure capacity arithmetic from node allocatable and pod requests, as the scheduler's
resource-fit filter sees them: room for new replicas (or how many nodes a pool must grow by first), and
whether the pods on nodes a scale-in removes can move to the nodes that stay, without blocking on a PDB."""
from __future__ import annotations

import math

from pydantic import BaseModel

from .cluster import NodeState, PdbState, PodLoad, Resources, can_run_on


def free_room(nodes: list[NodeState], pods: list[PodLoad]) -> dict[str, Resources]:
    """Each node's allocatable minus what the pods bound to it reserve."""
    room = {n.name: n.allocatable for n in nodes}
    for pod in pods:
        if pod.node in room:
            room[pod.node] = room[pod.node] - pod.requests
    return room


def place(pods: list[PodLoad], nodes: list[NodeState], room: dict[str, Resources]) -> list[PodLoad]:
    """Place pods (largest first) on the node with the most free CPU that takes them; `room` is updated.
    Returns the pods that fit nowhere."""
    unplaced = []
    for pod in sorted(pods, key=lambda p: (p.requests.cpu, p.requests.memory), reverse=True):
        fits = [n for n in nodes if can_run_on(pod, n) and pod.requests.fits_in(room[n.name])]
        if not fits:
            unplaced.append(pod)
            continue
        best = max(fits, key=lambda n: (room[n.name].cpu, room[n.name].memory, n.name))
        room[best.name] = room[best.name] - pod.requests
    return unplaced


class Room(BaseModel):
    """Whether `wanted` more pods like one template fit; if not, which pool must grow, by how many nodes."""
    wanted: int
    fit: int
    pool: str | None = None
    grow_by: int = 0
    detail: str = ""

    @property
    def enough(self) -> bool:
        return self.fit >= self.wanted


def room_for(template: PodLoad, wanted: int, nodes: list[NodeState], pods: list[PodLoad]) -> Room:
    """How many of `wanted` new pods like `template` the schedulable nodes take."""
    eligible = [n for n in nodes if can_run_on(template, n)]
    room = free_room(eligible, pods)
    clones = [template.model_copy(update={"name": f"{template.name}-new-{i}"}) for i in range(wanted)]
    left = len(place(clones, eligible, room))
    fit = wanted - left
    free = sum((r for r in room.values()), Resources())
    detail = (f"{fit} of {wanted} new pods ({template.requests.describe()} each) fit on {len(eligible)} schedulable "
              f"node(s); free after: {free.describe()}")
    if left == 0:
        return Room(wanted=wanted, fit=fit, detail=detail)
    pool, per_node = _growth_pool(template, eligible or nodes, pods)
    grow_by = math.ceil(left / per_node) if per_node else 0
    return Room(wanted=wanted, fit=fit, pool=pool, grow_by=grow_by, detail=detail)


def _growth_pool(template: PodLoad, nodes: list[NodeState], pods: list[PodLoad]) -> tuple[str | None, int]:
    """The pool whose nodes take the template (the one with most such nodes), and how many pods a fresh node
    of it holds (its allocatable less what its DaemonSet pods reserve)."""
    pools = [n for n in nodes if n.pool and can_run_on(template, n.model_copy(update={"unschedulable": False}))]
    if not pools:
        return None, 0
    by_pool: dict[str, list[NodeState]] = {}
    for node in pools:
        by_pool.setdefault(node.pool or "", []).append(node)
    name, members = max(by_pool.items(), key=lambda item: (len(item[1]), item[0]))
    sample = members[0]
    daemons = sum((p.requests for p in pods if p.daemon and p.node == sample.name), Resources())
    fresh = sample.allocatable - daemons
    need = template.requests
    per_node = min(fresh.cpu // need.cpu if need.cpu else fresh.pods, fresh.memory // need.memory if need.memory
                   else fresh.pods, fresh.pods // max(need.pods, 1))
    return name, max(per_node, 0)


def drain_problems(victims: list[str], nodes: list[NodeState], pods: list[PodLoad], pdbs: list[PdbState]) -> list[str]:
    """Why removing `victims` would strand pods or block on a PodDisruptionBudget (empty: it is safe).

    Pods that must move (not DaemonSet pods) need room on the nodes that stay; a PDB that allows no
    disruption now blocks the drain (AKS retries evictions until its drain timeout, then fails the scale)."""
    moving = [p for p in pods if p.node in victims and not p.daemon]
    staying = [n for n in nodes if n.name not in victims]
    room = free_room(staying, [p for p in pods if p not in moving])
    stranded = place(moving, staying, room)
    problems = []
    if stranded:
        need = sum((p.requests for p in stranded), Resources())
        problems.append(f"{len(stranded)} pod(s) on {', '.join(victims)} would have nowhere to run "
                        f"({', '.join(p.key for p in sorted(stranded, key=lambda p: p.key)[:5])}; they need "
                        f"{need.describe()} more than the remaining nodes have free)")
    for pdb in pdbs:
        covered = [p for p in moving if pdb.covers(p)]
        if covered and pdb.disruptions_allowed == 0:
            problems.append(f"PodDisruptionBudget {pdb.namespace}/{pdb.name} allows no disruption now "
                            f"({pdb.current_healthy} healthy, {pdb.desired_healthy} required) and covers "
                            f"{len(covered)} pod(s) on the nodes to remove: the drain would block")
        elif covered and any(p in stranded for p in covered):
            problems.append(f"PodDisruptionBudget {pdb.namespace}/{pdb.name} would be broken: its pods cannot be "
                            "rescheduled")
    return problems
