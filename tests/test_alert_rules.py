"""The alert rules: the shipped file against kube-prometheus-shaped alerts, the environment map, pods."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from deployments.alerts import Alert, detect_and_parse
from deployments.rules import (Ignored, RulesError, Start, deployment_of_pod, load_rules, parse_template, render,
                               resolve)
from tasks.catalog import Catalog

DATA = Path(__file__).parent / "data" / "alerts"
ENV = {"label": "cluster", "values": {"aks-platform-prod": "production"}}
RULE = {"name": "r", "match": {"alertname": "A"}, "runbook": "emergency-rollback", "environment": ENV,
        "service": "payments-api"}
SERVICES = {"payments-api": {"namespace": "payments", "deployment": "payments-api"},
            "checkout-web": {"namespace": "checkout", "deployment": "checkout-web"},
            "cart": {"namespace": "checkout", "deployment": "cart"}}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Catalog:
    """Production only (the demo catalog's staging is being reworked): the samples' three services."""
    cluster = {"kind": "kubeconfig", "kubeconfig": str(tmp_path_factory.mktemp("c") / "kubeconfig"), "context": "t"}
    return Catalog.model_validate({"environments": {"production": {"cluster": cluster, "services": SERVICES}}})


def parse_sample(name: str) -> list[Alert]:
    return detect_and_parse((DATA / f"{name}.json").read_bytes(), "application/json")


def relabel(alert: Alert, **labels: str | None) -> Alert:
    merged = {**alert.labels, **labels}
    return alert.model_copy(update={"labels": {k: v for k, v in merged.items() if v is not None}})


def _write_rules(tmp_path: Path, rules: list[dict]) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": rules}))
    return path


# -- the shipped rules -------------------------------------------------------------------------------------

def test_shipped_rules_map_each_mixin_sample_to_its_catalog_service(catalog):
    rules = load_rules(catalog=catalog)
    cases = [("alertmanager-firing", 0, "production/payments-api", "payments-api-5d9c8f7b64-x2k4q"),
             ("alertmanager-firing", 1, "production/checkout-web", ""),
             ("alertmanager-firing", 2, "production/cart", ""),
             ("azure-monitor-prometheus", 0, "production/checkout-web", ""),
             ("grafana-firing", 0, "production/cart", "")]
    for sample, index, target, pod in cases:
        alert = parse_sample(sample)[index]
        start = resolve(rules.first_match(alert), alert, catalog)
        assert isinstance(start, Start), (sample, index, start)
        assert (start.target, start.pod, start.rule.runbook) == (target, pod, "emergency-rollback")
        assert start.key == catalog.deployment_target("production", target.split("/")[1]).key
        assert alert.labels["namespace"] in start.parameters["reason"]


def test_shipped_rules_cover_the_mixin_alerts_a_rollback_answers_for_every_source():
    rules = load_rules().rules
    names = {(rule.match.source, rule.match.alertname) for rule in rules}
    assert {("alertmanager", "KubePodCrashLooping"), ("alertmanager", "KubeDeploymentRolloutStuck"),
            ("alertmanager", "KubeDeploymentReplicasMismatch"), ("azure-monitor", "KubeDeploymentReplicasMismatch"),
            ("grafana", "Deployment unavailable")} <= names
    assert all(rule.environment.values for rule in rules)         # every rule maps labels, none has a default


def test_the_sandbox_mapping_is_a_marked_demo_entry_only():
    shipped = (Path(__file__).parent.parent / "deployments" / "alert-rules.yaml").read_text()
    assert "runbooks-sandbox: production" in shipped and "DEMO ONLY" in shipped
    assert "sandbox" not in {value for rule in load_rules().rules for value in rule.environment.values} - {
        "runbooks-sandbox"}


@pytest.mark.parametrize("labels, reason", [
    ({"cluster": None}, "has no 'cluster' label, which chooses the environment (mapped: aks-platform-prod -> "),
    ({"cluster": "aks-platform-dev"}, "cluster='aks-platform-dev' maps to no environment"),
    ({"cluster": "  "}, "has no 'cluster' label"),
])
def test_an_alert_whose_environment_label_is_missing_or_unmapped_is_ignored(catalog, labels, reason):
    crash = parse_sample("alertmanager-firing")[0]
    rule = load_rules().first_match(crash)
    assert isinstance(resolve(rule, crash, catalog), Start)              # the same alert, labelled fully, starts
    outcome = resolve(rule, relabel(crash, **labels), catalog)
    assert isinstance(outcome, Ignored) and reason in outcome.reason


def test_pod_alerts_name_the_service_through_the_pods_deployment(catalog):
    crash = parse_sample("alertmanager-firing")[0]
    rule = load_rules().first_match(crash)
    cart_pod = relabel(crash, namespace="checkout", pod="cart-7b4f9d6c58-q2w9z")
    assert resolve(rule, cart_pod, catalog).target == "production/cart"
    unknown = resolve(rule, relabel(crash, pod="fraud-api-7b4f9d6c58-q2w9z"), catalog)
    assert isinstance(unknown, Ignored) and "payments/fraud-api (derived from pod fraud-api-7b4f9d6c58-q2w9z)" in \
        unknown.reason
    statefulset = resolve(rule, relabel(crash, pod="payments-db-0"), catalog)
    assert isinstance(statefulset, Ignored) and "not named like a Deployment's pod" in statefulset.reason
    other_namespace = resolve(rule, relabel(crash, namespace="checkout"), catalog)   # payments-api is in payments
    assert isinstance(other_namespace, Ignored) and "checkout/payments-api" in other_namespace.reason


@pytest.mark.parametrize("pod, deployment", [
    ("payments-api-5d9c8f7b64-x2k4q", "payments-api"),
    ("web-6b7c5-z9x8w", "web"),                                   # short hash
    ("a-b-c-5d9c8f7b64-x2k4q", "a-b-c"),
    ("api.v2-5d9c8f7b64-x2k4q", "api.v2"),                        # Deployment names are DNS subdomains
    ("payments-db-0", None),                                      # StatefulSet
    ("node-exporter-x2k4q", None),                                # DaemonSet: one generated segment
    ("payments-api-5d9c8f7b64-x2k4a", None),                      # a vowel: not a generated suffix
    ("payments-api-5d9c8f7b64-x2k4", None),                       # suffix of 4
    ("payments-api-0123456789-x2k4q", None),                      # 0, 1, 3 are never in a hash
    ("Payments-5d9c8f7b64-x2k4q", None),                          # not a DNS-1123 name
])
def test_a_pods_deployment_is_derived_from_how_deployment_pods_are_named(pod, deployment):
    assert deployment_of_pod(pod) == deployment


def test_the_sandbox_names_pods_the_way_the_derivation_reads_them(demo_sandbox):
    """The sandbox's ReplicaSet controller names pods like the real one; the derivation reads them back."""
    from kubernetes import client, config
    api = config.new_client_from_config_dict(demo_sandbox.kubeconfig())
    deadline = time.monotonic() + 30
    pods = []
    while not pods and time.monotonic() < deadline:
        pods = client.CoreV1Api(api).list_namespaced_pod("payments").items
        time.sleep(0.1)
    api.close()
    assert pods and {deployment_of_pod(p.metadata.name) for p in pods} == {"payments-api"}


# -- matching and templates ----------------------------------------------------------------------------

def test_match_needs_name_source_labels_and_minimum_severity(tmp_path):
    rules = load_rules(_write_rules(tmp_path, [{**RULE, "match": {
        "alertname": "KubePodCrashLooping", "source": "alertmanager", "labels": {"cluster": "aks-platform-prod"},
        "severity": "error"}}]))
    alert = parse_sample("alertmanager-firing")[0]                          # severity warning
    assert rules.first_match(alert) is None
    assert rules.first_match(alert.model_copy(update={"severity": "critical"})) is not None
    assert rules.first_match(alert.model_copy(update={"severity": "critical", "source": "grafana"})) is None
    assert rules.first_match(alert.model_copy(update={"severity": "critical", "labels": {}})) is None


def test_templates_render_labels_alert_fields_and_escaped_braces():
    alert = parse_sample("grafana-firing")[0]
    assert render("{{x}} {labels.deployment} is {alert.severity}", alert) == "{x} cart is critical"
    assert parse_template("plain") == ["plain"]


def test_a_template_naming_an_absent_label_ignores_the_alert(catalog, tmp_path):
    stuck = parse_sample("alertmanager-firing")[1]
    rule = load_rules().first_match(stuck)
    outcome = resolve(rule, relabel(stuck, deployment=None), catalog)
    assert isinstance(outcome, Ignored) and "'deployment'" in outcome.reason


# -- validation at load --------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, message", [
    ({**RULE, "environment": "production"}, "environment"),                   # no literal (no default) environment
    ({**RULE, "environment": {"label": "cluster", "values": {}}}, "at least 1"),
    ({**RULE, "environment": {"label": "cluster"}}, "values"),
    ({**RULE, "environment": {"label": "a.b", "values": {"x": "production"}}}, "not a label name"),
    ({**RULE, "service": "{labels.a.b}"}, "unknown reference"),
    ({**RULE, "parameters": {"reason": "{__import__}"}}, "unknown reference"),
    ({**RULE, "parameters": {"service": "cart"}}, "set by the receiver"),
    ({**RULE, "parameters": {"pod": "x"}}, "set by the receiver"),
    ({**RULE, "runbook": "reboot-everything"}, "unknown runbook"),
    ({**RULE, "surprise": 1}, "Extra inputs"),
    ({**RULE, "match": {"alertname": "A", "severity": "loud"}}, "severity"),
    ({**RULE, "service": {"from_catalog": {"namespace": "{labels.namespace}", "deployment": "{oops}"}}},
     "unknown reference"),
    ({**RULE, "service": {"from_catalog": {"namespace": "n", "deployment": "d", "pod": "p"}}}, "exactly one"),
    ({**RULE, "service": {"from_catalog": {"namespace": "n"}}}, "exactly one"),
])
def test_bad_rules_fail_at_load_with_a_clear_error(tmp_path, rule, message):
    with pytest.raises(RulesError, match="invalid") as caught:
        load_rules(_write_rules(tmp_path, [rule]))
    assert message in str(caught.value)


def test_rules_mapping_to_an_environment_missing_from_the_catalog_fail_at_load(tmp_path, catalog):
    assert load_rules(_write_rules(tmp_path, [RULE]), catalog=catalog).rules[0].name == "r"
    qa = {**RULE, "environment": {"label": "env", "values": {"qa": "qa", "prod": "production"}}}
    with pytest.raises(RulesError, match="maps env values to 'qa', not in the catalog"):
        load_rules(_write_rules(tmp_path, [qa]), catalog=catalog)
    with pytest.raises(RulesError, match="unique"):
        load_rules(_write_rules(tmp_path, [RULE, RULE]))


def test_shipped_rules_load_against_the_example_catalog():
    """catalog.yaml (a real estate's shape) has every environment the shipped rules map to."""
    from tasks.catalog import load_catalog
    assert load_rules(catalog=load_catalog(Path(__file__).parent.parent / "catalog.yaml")).rules


def test_sustained_cpu_saturation_starts_a_scale_up_of_the_service_within_its_bounds(catalog):
    """The shipped CPU saturation rule finds the service; the deployment trigger in prefect.yaml renders the
    event into a typed scale-up request, as Prefect's automation hydrates it."""
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    from deployments.dispatch import alert_event
    from deployments.serve import declared_deployments
    from plans.scaling import ScaleUp

    alert = Alert(source="alertmanager", name="DeploymentCPUSaturated", status="firing", severity="warning",
                  fingerprint="cpu1", labels={"cluster": "aks-platform-prod", "namespace": "checkout",
                                              "deployment": "checkout-web"})
    start = resolve(load_rules(catalog=catalog).first_match(alert), alert, catalog)
    assert isinstance(start, Start) and start.rule.runbook == "scale-service"
    assert (start.target, start.parameters["percent"]) == ("production/checkout-web", "50")
    assert start.key == catalog.deployment_target("production", "checkout-web").key
    trigger = next(d for d in declared_deployments() if d["name"] == "scale-service")["triggers"][0]
    assert trigger["expect"] == ["runbooks.alert.scale-service"]
    event = alert_event(alert, start)
    params = hydrate(trigger["parameters"], HydrationContext(render_jinja=True, jinja_context={"event": event}))
    assert ScaleUp.model_validate(params["target"]) == ScaleUp(service="checkout-web", percent=50)
    assert params["alert"]["fingerprint"] == "cpu1"
