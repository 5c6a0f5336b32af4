"""Alert payload parsing: three senders, malformed input, a fuzz (the rules: tests/test_alert_rules.py)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployments.alerts import (SOURCES, Alert, PayloadError, detect_and_parse, normalise_severity,
                                stable_fingerprint)

DATA = Path(__file__).parent / "data" / "alerts"
SAMPLES = {path.stem: json.loads(path.read_text()) for path in sorted(DATA.glob("*.json"))}
JSON = "application/json"


def parse_sample(name: str, **kwargs) -> list[Alert]:
    return detect_and_parse((DATA / f"{name}.json").read_bytes(), JSON, **kwargs)


def dumps(document) -> bytes:
    return json.dumps(document).encode()


# -- the three senders ---------------------------------------------------------------------------------

def test_alertmanager_payload_gives_one_alert_per_entry_with_its_own_fingerprint():
    crash, stuck, mismatch = parse_sample("alertmanager-firing", source="alertmanager")
    assert crash.source == "alertmanager" and crash.name == "KubePodCrashLooping" and crash.status == "firing"
    assert crash.fingerprint == "5f2a9c1e7b3d4a60"
    assert (crash.labels["namespace"], crash.labels["pod"], crash.labels["container"]) == (
        "payments", "payments-api-5d9c8f7b64-x2k4q", "api")
    assert "deployment" not in crash.labels and crash.labels["cluster"] == "aks-platform-prod"
    assert crash.severity == "warning" and crash.summary == "Pod is crash looping."
    assert crash.starts_at is not None and crash.starts_at.isoformat().startswith("2024-05-14T09:52:26.739266")
    assert (stuck.name, stuck.labels["deployment"], stuck.fingerprint) == (
        "KubeDeploymentRolloutStuck", "checkout-web", "a81b0c3d44e5f607")
    assert (mismatch.name, mismatch.labels["deployment"]) == ("KubeDeploymentReplicasMismatch", "cart")


def test_alertmanager_resolved_payload_is_resolved():
    [alert] = parse_sample("alertmanager-resolved")
    assert alert.status == "resolved" and alert.fingerprint == "5f2a9c1e7b3d4a60"


def test_azure_prometheus_alert_takes_name_fingerprint_and_labels_from_the_common_schema():
    [alert] = parse_sample("azure-monitor-prometheus", source="azure-monitor")
    assert alert.source == "azure-monitor" and alert.status == "firing"
    assert alert.name == "KubeDeploymentReplicasMismatch"
    assert alert.fingerprint.endswith("/alerts/3b1d2f4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
    assert alert.severity == "warning" and alert.labels["severity"] == "Sev2"      # Sev2 -> warning
    assert alert.labels["namespace"] == "checkout" and alert.labels["deployment"] == "checkout-web"
    assert alert.labels["alertname"] == "KubeDeploymentReplicasMismatch"
    assert alert.labels["monitoring_service"] == "Prometheus"
    assert alert.labels["configuration_items"] == "aks-platform-prod"
    assert alert.labels["team"] == "platform"                                       # customProperties
    assert alert.summary.startswith("Deployment checkout/checkout-web")


def test_azure_metric_alert_dimensions_become_snake_case_labels():
    [alert] = parse_sample("azure-monitor-metric")
    assert alert.status == "resolved" and alert.severity == "error"                # Sev1
    assert alert.labels["controller_name"] == "payments-api"
    assert alert.labels["kubernetes_namespace"] == "payments" and alert.labels["namespace"] == "payments"


def test_grafana_payload_is_read_like_alertmanager_with_grafana_as_source():
    [alert] = parse_sample("grafana-firing", source="grafana")
    assert (alert.source, alert.name, alert.fingerprint) == ("grafana", "Deployment unavailable", "c6eadffa33fcdf37")
    assert alert.severity == "critical" and alert.labels["deployment"] == "cart"
    assert alert.starts_at.utcoffset().total_seconds() == 7200


@pytest.mark.parametrize("name, source", [("alertmanager-firing", "alertmanager"), ("grafana-firing", "grafana"),
                                          ("azure-monitor-prometheus", "azure-monitor")])
def test_the_source_is_detected_from_the_payload_when_the_url_does_not_say(name, source):
    assert {alert.source for alert in parse_sample(name)} == {source}


def test_missing_fingerprint_falls_back_to_a_stable_hash_of_source_name_and_labels():
    document = copy.deepcopy(SAMPLES["alertmanager-firing"])
    entry = document["alerts"][0]
    del entry["fingerprint"]
    [first, *_] = detect_and_parse(dumps(document), JSON)
    entry["labels"] = dict(reversed(list(entry["labels"].items())))          # same labels, other order
    [again, *_] = detect_and_parse(dumps(document), JSON)
    entry["labels"]["pod"] = "payments-api-5d9c8f7b64-other"
    [other, *_] = detect_and_parse(dumps(document), JSON)
    assert first.fingerprint == again.fingerprint == stable_fingerprint("alertmanager", first.name, first.labels)
    assert other.fingerprint != first.fingerprint


@pytest.mark.parametrize("raw, expected", [("critical", "critical"), ("Sev0", "critical"), ("sev1", "error"),
                                           ("High", "error"), ("warning", "warning"), ("Sev3", "info"),
                                           ("Sev4", "info"), ("", "none"), ("whatever", "none")])
def test_severities_map_onto_one_scale(raw, expected):
    assert normalise_severity(raw) == expected


# -- malformed input -----------------------------------------------------------------------------------

def _am(**alert_overrides) -> bytes:
    alert = {"status": "firing", "labels": {"alertname": "A", "severity": "critical"}, "fingerprint": "f1",
             "startsAt": "2024-05-14T09:52:26Z", **alert_overrides}
    return dumps({"version": "4", "status": "firing", "alerts": [alert]})


def _azure(**essential_overrides) -> bytes:
    essentials = {"alertId": "/x/alerts/1", "alertRule": "R", "severity": "Sev1", "monitorCondition": "Fired",
                  **essential_overrides}
    return dumps({"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": essentials}})


MALFORMED = [
    ("not UTF-8", b'{"alerts": ["\xff"]}', JSON, None, "not UTF-8"),
    ("not JSON", b'{"alerts": [', JSON, None, "not JSON"),
    ("empty body", b"", JSON, None, "not JSON"),
    ("a list", b"[]", JSON, "alertmanager", "body: expected an object"),
    ("unknown shape", b'{"hello": 1}', JSON, None, "cannot tell the alert source"),
    ("alerts not a list", b'{"alerts": {}}', JSON, "alertmanager", "alerts: expected a list"),
    ("alert not an object", b'{"alerts": [1]}', JSON, "alertmanager", "alerts[0]: expected an object"),
    ("pending status", _am(status="pending"), JSON, None, "alerts[0].status"),
    ("labels missing", _am(labels=None), JSON, None, "alerts[0].labels: expected an object"),
    ("label not a string", _am(labels={"alertname": "A", "replicas": 3}), JSON, None, "alerts[0].labels.replicas"),
    ("no alertname", _am(labels={"severity": "critical"}), JSON, None, "alerts[0].labels.alertname"),
    ("bad startsAt", _am(startsAt="yesterday"), JSON, None, "alerts[0].startsAt"),
    ("fingerprint a number", _am(fingerprint=12), JSON, None, "alerts[0].fingerprint"),
    ("lone surrogate", b'{"alerts": [{"status": "firing", "labels": {"alertname": "\\ud800"}}]}', JSON, None,
     "not valid Unicode"),
    ("old webhook version", dumps({"version": "3", "alerts": []}), JSON, "alertmanager", "version 4"),
    ("huge number", b'{"alerts": [], "x": ' + b"9" * 5000 + b"}", JSON, None, "not JSON"),
    ("nested too deep", b"[" * 100_000 + b"]" * 100_000, JSON, None, "nested too deeply"),
    ("text/plain", _am(), "text/plain", None, "Content-Type"),
    ("latin-1 charset", _am(), "application/json; charset=latin-1", None, "charset"),
    ("azure sent to alertmanager", _azure(), JSON, "alertmanager", "alerts: expected a list"),
    ("azure wrong schema", dumps({"schemaId": "Microsoft.Insights/activityLogs", "data": {}}), JSON, None, "schemaId"),
    ("azure no essentials", dumps({"schemaId": "azureMonitorCommonAlertSchema", "data": {}}), JSON, None,
     "data.essentials: expected an object"),
    ("azure bad condition", _azure(monitorCondition="Active"), JSON, None, "monitorCondition"),
    ("azure no rule name", _azure(alertRule=""), JSON, None, "alertRule: must not be empty"),
    ("azure items not a list", _azure(configurationItems="aks"), JSON, None, "configurationItems"),
    ("unknown source", _am(), JSON, "pagerduty", "unknown alert source"),
]


@pytest.mark.parametrize("body, content_type, source, message", [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_payloads_raise_payload_error_naming_the_problem(body, content_type, source, message):
    with pytest.raises(PayloadError) as caught:
        detect_and_parse(body, content_type, source=source)
    assert message in str(caught.value)


def test_json_content_types_with_utf8_charset_or_none_are_accepted():
    for content_type in ("application/json", "application/json; charset=utf-8", "application/vnd.x+json", ""):
        assert detect_and_parse(_am(), content_type)[0].name == "A"


# -- fuzz: anything in, alerts or PayloadError out -----------------------------------------------------

# Text includes a lone surrogate: JSON can carry one ("\ud800") though no UTF-8 sink can store it.
# (st.text() drops surrogates whatever its alphabet, hence lists of characters joined.)
texts = st.lists(st.characters() | st.just("\ud800"), max_size=20).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=25)
sources = st.sampled_from([None, *SOURCES])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _holds_the_contract(body: bytes, content_type: str = JSON, source: str | None = None) -> None:
    try:
        alerts = detect_and_parse(body, content_type, source=source)
    except PayloadError as exc:
        assert str(exc)
        return
    for alert in alerts:
        assert isinstance(alert, Alert) and alert.name.strip() and alert.fingerprint
        assert alert.status in ("firing", "resolved")
        json.dumps(alert.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")   # storable downstream


@FUZZ
@given(value=json_values, source=sources)
def test_fuzz_arbitrary_json_values(value, source):
    _holds_the_contract(json.dumps(value).encode(), source=source)


@FUZZ
@given(body=st.binary(max_size=512), content_type=st.sampled_from([JSON, "", "text/plain", "application/json; charset"]),
       source=sources)
def test_fuzz_arbitrary_bytes(body, content_type, source):
    _holds_the_contract(body, content_type, source)


def _locations(node, path=()):
    """Every (container path, key) in a JSON document, so a mutation can hit any field at any depth."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield path, key
            yield from _locations(child, path + (key,))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield path, index
            yield from _locations(child, path + (index,))


@st.composite
def mutated_samples(draw):
    document = copy.deepcopy(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))])
    for _ in range(draw(st.integers(1, 3))):
        locations = list(_locations(document))
        if not locations:
            break
        path, key = draw(st.sampled_from(locations))
        container = document
        for step in path:
            container = container[step]
        action = draw(st.sampled_from(["delete", "text", "value"]))
        if action == "delete":
            del container[key]
        else:       # a string where a string belongs is the subtle case; any JSON value, the blunt one
            container[key] = draw(texts if action == "text" else json_values)
    return document


@FUZZ
@given(document=mutated_samples(), source=sources)
def test_fuzz_mutated_samples(document, source):
    _holds_the_contract(json.dumps(document).encode(), source=source)
