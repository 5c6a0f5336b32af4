"""The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` gets, as its `rules`, the
rules of every other ClusterRole its `clusterRoleSelectors` select (the union, duplicates once, the roles
visited by name), as kube-controller-manager's clusterrole-aggregation controller writes them. Why: the
shipped `runbooks` ClusterRole is aggregated from one ClusterRole per runbook, so each runbook owns its rules.
"""
from __future__ import annotations

from ..selectors import label_selector_from_object
from . import Controller


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation-controller"

    def sync(self) -> None:
        roles = self.kind("ClusterRole")
        every = sorted(self.store.items(roles), key=lambda role: role["metadata"]["name"])
        for role in every:
            selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors")
            if selectors is None:
                continue
            rules = aggregated_rules(role["metadata"]["name"], selectors, every)
            if (role.get("rules") or []) != rules:
                self.store.mutate(roles, None, role["metadata"]["name"], lambda current: {**current, "rules": rules})


def aggregated_rules(name: str, selectors: list[dict], roles: list[dict]) -> list[dict]:
    """The union of the selected roles' rules, each once, in the order the roles and their rules come."""
    matchers = [label_selector_from_object(selector) for selector in selectors]
    rules: list[dict] = []
    for role in roles:
        labels = role["metadata"].get("labels") or {}
        if role["metadata"]["name"] == name or not any(m.matches(labels) for m in matchers):
            continue
        for rule in role.get("rules") or []:
            if rule not in rules:
                rules.append(rule)
    return rules
