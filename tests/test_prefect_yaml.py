"""prefect.yaml: the real `prefect deploy --all` registers every runbook with a typed, described form."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")     # `prefect deploy --all` once per module: the tests only read what it registered
def deployed(prefect_harness):
    with get_client(sync_client=True) as prefect:
        try:
            prefect.create_work_pool(WorkPoolCreate(name="runbooks", type="process"))
        except ObjectAlreadyExists:
            pass
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "RUNBOOKS_HOME": str(ROOT)}
    prefect_cli = Path(sys.executable).parent / "prefect"
    result = subprocess.run([str(prefect_cli), "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_emergency_rollback_deployment_has_a_described_form(deployed):
    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name("emergency-rollback/emergency-rollback")
    schema = deployment.parameter_openapi_schema
    assert schema["required"] == ["environment", "service", "requested_by"]    # no default target, no anonymous run
    expected = {"service", "environment", "reason", "requested_by", "target_revision", "dry_run",
                "emergency_override", "pod", "alert"}
    assert set(schema["properties"]) == expected
    assert all(schema["properties"][name].get("description") for name in expected)
    assert schema["properties"]["dry_run"]["type"] == "boolean"
    assert deployment.parameters == {}
    assert deployment.enforce_parameter_schema is True
    assert deployment.work_pool_name == "runbooks"


def test_every_production_service_has_a_monthly_dry_run_as_declared(deployed):
    from deployments.serve import declared_deployments
    from tasks.catalog import EXAMPLE_CATALOG, load_catalog

    production = {name for env in load_catalog(EXAMPLE_CATALOG).environments.values() if env.production
                  for name in env.services}
    declared = next(d for d in declared_deployments() if d["name"] == "emergency-rollback")["schedules"]
    assert {s["parameters"]["service"] for s in declared} == production
    assert all(s["parameters"]["dry_run"] is True for s in declared)
    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name("emergency-rollback/emergency-rollback")
        held = prefect.read_deployment_schedules(deployment.id)
    by_slug = {s.slug: s for s in held}
    assert set(by_slug) == {s["slug"] for s in declared}
    for spec in declared:
        schedule = by_slug[spec["slug"]]
        assert schedule.schedule.cron == spec["cron"] and schedule.active
        assert schedule.parameters == spec["parameters"]


def test_alert_trigger_is_registered_as_an_automation(deployed):
    with get_client(sync_client=True) as prefect:
        automations = prefect.read_automations_by_name("alert-starts-emergency-rollback")
    assert automations, "the deployment trigger did not create an automation"
    trigger = automations[0].trigger
    assert trigger.expect == {"runbooks.alert.emergency-rollback"}
    action = automations[0].actions[0]
    assert action.parameters["service"] == "{{ event.payload.parameters.service }}"   # rendered per event
    assert set(action.parameters) == {"service", "environment", "reason", "requested_by", "pod", "alert"}
    assert action.parameters["alert"]["__prefect_kind"] == "json"                     # a typed AlertContext


def test_certificate_renewal_has_a_form_and_a_daily_run_per_environment(deployed):
    from deployments.serve import declared_deployments
    from tasks.catalog import EXAMPLE_CATALOG, load_catalog

    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name("certificate-renewal/certificate-renewal")
        held = {s.slug: s for s in prefect.read_deployment_schedules(deployment.id)}
    schema = deployment.parameter_openapi_schema
    assert schema["required"] == ["environment", "requested_by"] and deployment.parameters == {}
    assert all(spec.get("description") for spec in schema["properties"].values())
    declared = next(d for d in declared_deployments() if d["name"] == "certificate-renewal")["schedules"]
    assert {s["parameters"]["environment"] for s in declared} == set(load_catalog(EXAMPLE_CATALOG).environments)
    assert {slug: (s.schedule.cron, s.parameters["environment"]) for slug, s in held.items()} == {
        s["slug"]: (s["cron"], s["parameters"]["environment"]) for s in declared}
    assert all(s.parameters.get("dry_run") is None for s in held.values())      # daily runs renew


def test_scale_service_has_a_typed_target_form_and_an_alert_trigger(deployed):
    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name("scale-service/scale-service")
        [automation] = prefect.read_automations_by_name("alert-starts-scale-service")
    schema = deployment.parameter_openapi_schema
    assert schema["required"] == ["environment", "requested_by", "target"]
    kinds = {schema["definitions"][ref["$ref"].rsplit("/", 1)[-1]]["properties"]["kind"]["const"]
             for ref in schema["properties"]["target"]["anyOf"]}
    assert kinds == {"replicas", "hpa", "node-pool", "node-pool-autoscaler", "scale-up"}
    assert all(schema["properties"][name].get("description") for name in schema["properties"])
    assert deployment.enforce_parameter_schema is True and deployment.parameters == {}
    assert automation.trigger.expect == {"runbooks.alert.scale-service"}
    assert automation.actions[0].parameters["target"]["__prefect_kind"] == "json"
