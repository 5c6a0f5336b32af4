"""Verifying a service in the cluster after a rollback, however it was made (a kubectl-style patch, or the
service's release workflow): the rollout completes, every pod is Ready (running `images` when known), and
the health URL answers."""
from __future__ import annotations

from kubernetes.client import AppsV1Api, CoreV1Api

from plans.record import Check
from plans.targets import DeploymentTarget
from tasks.verification import count_ready_pods, deployment_rollout_complete, health_url_answers


def service_checks(apps: AppsV1Api, core: CoreV1Api, target: DeploymentTarget, *, selector: dict, replicas: int,
                   timeout_seconds: float, images: dict[str, str] | None = None,
                   health_url: str | None = None) -> list[Check]:
    checks = [deployment_rollout_complete(apps, namespace=target.namespace, name=target.deployment,
                                          timeout_seconds=timeout_seconds)]
    if checks[0].passed:
        checks.append(count_ready_pods(core, namespace=target.namespace, selector=selector, expected=replicas,
                                       images=images))
        if health_url:
            checks.append(health_url_answers(health_url, timeout_seconds=60))
    return checks
