"""deployments/kubernetes: what `kubectl apply -k` would create, checked offline.

Real programs: `kubectl kustomize` builds the manifests; `kubernetes-validate` checks each object against
the Kubernetes OpenAPI schemas (strict: an unknown field fails) of the oldest AKS version we support and
of the newest the validator knows; prefect-kubernetes's own worker code renders the work pool's base job
template into the Job it would create for a flow run; the Dockerfile is parsed (no Docker engine here)
and every file it copies must exist. The RBAC has no wildcards and no write to Secrets, and each runbook's
ClusterRole is aggregated into the one the runbooks' ServiceAccount is bound to.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deployments" / "kubernetes"
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())     # AKS's oldest supported minor, the newest
SECRET_KEYS = {"prefect-database-url", "prefect-auth-string", "receiver-token", "receiver-database-url"}
IMAGE = "ghcr.io/example/runbooks:0.1.0"


@pytest.fixture(scope="module")
def built() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH")
    done = subprocess.run([kubectl, "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by(built: list[dict], kind: str, name: str) -> dict:
    return next(d for d in built if d["kind"] == kind and d["metadata"]["name"] == name)


def pod_specs(built: list[dict]) -> list[tuple[str, dict]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in built if d["kind"] in ("Deployment", "Job")]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(built, version):
    kinds = sorted({d["kind"] for d in built})
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap",
            "Deployment", "Service", "PersistentVolumeClaim", "PodDisruptionBudget", "NetworkPolicy"} <= set(kinds)
    errors = {}
    for document in built:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors[f"{document['kind']}/{document['metadata']['name']}"] = exc.message
    assert errors == {}


def test_the_validator_refuses_a_broken_manifest(built):
    """The check above can fail: the same receiver Deployment with one misspelt field is refused."""
    broken = json.loads(json.dumps(by(built, "Deployment", "runbooks-receiver")))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_every_pod_runs_the_runbooks_image_restricted_with_secrets_only_by_reference(built):
    for name, spec in pod_specs(built):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["image"] == IMAGE, name
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}, name
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "runbooks-secrets" and ref["key"] in SECRET_KEYS, (name, env)
                else:
                    assert "password" not in env.get("value", "") and "@" not in env.get("value", ""), (name, env)
    worker = by(built, "Deployment", "prefect-worker")["spec"]["template"]["spec"]
    register_env = {e["name"]: e.get("value") for e in worker["initContainers"][0]["env"]}
    assert register_env["RUNBOOKS_IMAGE"] == IMAGE, "the flow-run Jobs get the worker's own image"


def test_the_receiver_is_two_replicas_behind_a_service_with_a_disruption_budget_and_a_network_policy(built):
    receiver = by(built, "Deployment", "runbooks-receiver")
    labels = receiver["spec"]["template"]["metadata"]["labels"]
    assert receiver["spec"]["replicas"] >= 2
    selects = lambda selector: all(labels.get(k) == v for k, v in selector.items())  # noqa: E731
    assert selects(by(built, "Service", "runbooks-receiver")["spec"]["selector"])
    budget = by(built, "PodDisruptionBudget", "runbooks-receiver")["spec"]
    assert selects(budget["selector"]["matchLabels"]) and budget["minAvailable"] == 1
    policy = by(built, "NetworkPolicy", "runbooks-receiver")["spec"]
    assert selects(policy["podSelector"]["matchLabels"]) and set(policy["policyTypes"]) == {"Ingress", "Egress"}
    env = {e["name"]: e for e in receiver["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RUNBOOKS_RECEIVER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "receiver-database-url"
    server = by(built, "Deployment", "prefect-server")["spec"]["template"]["spec"]["containers"][0]
    server_env = {e["name"] for e in server["env"]}
    assert {"PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_API_AUTH_STRING"} <= server_env
    assert by(built, "NetworkPolicy", "default-deny-ingress")["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_the_work_pool_renders_each_flow_run_as_a_valid_job_of_the_runbooks_image(built):
    """prefect-kubernetes's own code turns the pool's template into the Job for a flow run; the worker's
    auth string reaches the Job only as a reference to the Secret."""
    import asyncio
    import uuid

    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    from deployments.register import job_template

    config = json.loads(by(built, "ConfigMap", built_config_name(built))["data"]["base-job-template.json"])
    assert config == json.loads((KUBE / "base-job-template.json").read_text())
    template = job_template(KUBE / "base-job-template.json", IMAGE)
    values = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    with temporary_settings({PREFECT_API_URL: "http://prefect-server:4200/api",
                             PREFECT_API_AUTH_STRING: "admin:not-in-the-job"}):
        configuration = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(
            template, values))
        configuration.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), name="brave-otter", flow_id=uuid.uuid4()))
        asyncio.run(KubernetesWorker(work_pool_name="runbooks")._replace_env_variable_with_secret(
            "PREFECT_API_AUTH_STRING", configuration, "runbooks-secrets", "prefect-auth-string"))
    job = configuration.job_manifest
    pod = job["spec"]["template"]["spec"]
    # prefect-kubernetes's validator insists on these two under the pod spec, where the API server drops
    # them with a warning (they belong to the Job's spec, which sets neither): the only fields not in the schema.
    assert (pod.pop("completions"), pod.pop("parallelism")) == (1, 1)
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert (pod["serviceAccountName"], job["metadata"]["namespace"], pod["containers"][0]["image"]) == (
        "runbooks", "runbooks", IMAGE)
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["PREFECT_API_URL"]["value"] == "http://prefect-server:4200/api"
    assert env["PREFECT_API_AUTH_STRING"] == {"name": "PREFECT_API_AUTH_STRING", "valueFrom": {
        "secretKeyRef": {"name": "runbooks-secrets", "key": "prefect-auth-string"}}}
    assert "not-in-the-job" not in json.dumps(job)
    assert env["RUNBOOKS_CATALOG"]["value"] == "/etc/runbooks/catalog.yaml" and pod["containers"][0]["workingDir"] == "/app"
    assert pod["terminationGracePeriodSeconds"] >= 30 + 10, "cancellation: the kernel's 30 s to undo, and a margin"


def built_config_name(built: list[dict]) -> str:
    return next(d["metadata"]["name"] for d in built if d["kind"] == "ConfigMap"
                and d["metadata"]["name"].startswith("runbooks-config"))


def test_the_dockerfile_parses_copies_files_that_exist_and_runs_as_non_root():
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(KUBE / "Dockerfile"))
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    assert parser.baseimage.startswith("python:3.11")
    copies = [value.split() for instruction, value in instructions if instruction == "COPY"]
    assert copies, "the Dockerfile copies the project in"
    missing = [source for *sources, _ in copies for source in sources if not (ROOT / source.rstrip("/")).exists()]
    assert missing == []
    runs = " ".join(value for instruction, value in instructions if instruction == "RUN")
    assert 'pip install ".[kubernetes]"' in runs
    assert [value for instruction, value in instructions if instruction == "USER"] == ["10001"]
    ignored = (KUBE / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and ".run" in ignored


def test_register_creates_the_kubernetes_pool_and_its_deployments(prefect_harness):
    from prefect.client.orchestration import get_client

    from deployments.register import job_template, register
    [deployment_id] = register("runbooks-k8s-test", job_template(KUBE / "base-job-template.json", IMAGE), IMAGE)
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("runbooks-k8s-test")
        deployment = client.read_deployment(deployment_id)
        [zombies] = client.read_automations_by_name("runbooks-crash-flow-runs-without-heartbeat")
        client.delete_automation(zombies.id)        # the session's server is shared: leave it as found
    assert pool.type == "kubernetes"
    assert pool.base_job_template["variables"]["properties"]["image"]["default"] == IMAGE
    assert (deployment.work_pool_name, deployment.job_variables["image"]) == ("runbooks-k8s-test", IMAGE)
    # the flow is loaded from the Job's working directory, the image's /app (the template sets it)
    assert deployment.entrypoint == "flows/rollback.py:emergency_rollback" and deployment.path == "."


def test_rbac_has_no_wildcards_secrets_at_most_read_and_each_runbook_role_is_aggregated(built):
    """The rules a reviewer checks by eye, checked on what kustomize builds: no `*` anywhere, no write to
    Secrets, and every runbook's ClusterRole is one the `runbooks` ClusterRole aggregates (so it is granted)."""
    roles = [d for d in built if d["kind"] in ("Role", "ClusterRole")]
    for role in roles:
        for rule in role.get("rules") or []:
            for key in ("verbs", "apiGroups", "resources", "nonResourceURLs"):
                assert not any("*" in value for value in rule.get(key, [])), (role["metadata"]["name"], rule)
            if any(r == "secrets" or r.startswith("secrets/") for r in rule.get("resources", [])):
                assert set(rule["verbs"]) <= {"get", "list", "watch"}, (role["metadata"]["name"], rule)
    aggregated = by(built, "ClusterRole", "runbooks")
    assert aggregated.get("rules") in (None, []), "its rules are the aggregation's, never its own"
    [selector] = aggregated["aggregationRule"]["clusterRoleSelectors"]
    per_runbook = [r for r in roles if r["metadata"]["name"].startswith("runbooks-")]
    assert per_runbook, "one ClusterRole per runbook, in rbac/"
    for role in per_runbook:
        assert role["kind"] == "ClusterRole" and role["rules"], role["metadata"]["name"]
        labels = role["metadata"].get("labels") or {}
        assert all(labels.get(k) == v for k, v in selector["matchLabels"].items()), role["metadata"]["name"]
    binding = by(built, "ClusterRoleBinding", "runbooks")
    assert binding["roleRef"]["name"] == "runbooks"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "runbooks", "namespace": "runbooks"}]
