"""Alert webhook payloads (Alertmanager v4, Azure Monitor common alert schema, Grafana) as typed `Alert`s.

Why a hand-written parser instead of a pydantic model per payload: the receiver must answer a precise
400 for anything malformed and never crash on hostile input, and the three payloads disagree about
where a name, a status or a fingerprint lives. Each reader below walks the JSON with small checked
accessors that raise `PayloadError` naming the field (`alerts[0].labels.alertname`); nothing else may
escape `detect_and_parse` (a hypothesis fuzz in tests/test_alerts.py holds us to that).

Strict where it matters (what a rule matches and what starts a run: name, status, labels, fingerprint),
tolerant where the senders vary (Azure's alertContext differs per signal type, so shapes we do not know
there are skipped, not refused).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from tasks.errors import PermanentError

Source = Literal["alertmanager", "azure-monitor", "grafana"]
SOURCES: tuple[str, ...] = ("alertmanager", "azure-monitor", "grafana")
Severity = Literal["none", "info", "warning", "error", "critical"]
SEVERITIES: tuple[str, ...] = ("none", "info", "warning", "error", "critical")   # lowest first
AZURE_SCHEMA_ID = "azureMonitorCommonAlertSchema"

# What senders write in `severity`, mapped to one scale so a rule can say "warning or worse".
_SEVERITY_ALIASES = {
    "critical": "critical", "crit": "critical", "page": "critical", "fatal": "critical",
    "emergency": "critical", "disaster": "critical", "sev0": "critical",
    "error": "error", "err": "error", "high": "error", "major": "error", "sev1": "error",
    "warning": "warning", "warn": "warning", "medium": "warning", "minor": "warning", "sev2": "warning",
    "info": "info", "informational": "info", "information": "info", "low": "info", "notice": "info",
    "verbose": "info", "sev3": "info", "sev4": "info",
    "none": "none", "": "none",
}
_DATETIME = TypeAdapter(dt.datetime)
_MEDIA_TYPE = re.compile(r"^\s*([^;\s]+)\s*(?:;(.*))?$")


class PayloadError(PermanentError):
    """The webhook body is not a payload we can read; the message names the field and is safe to return."""


class Alert(BaseModel):
    """One alert, the same shape whatever sent it."""
    model_config = ConfigDict(frozen=True)

    source: Source
    name: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    severity: Severity
    fingerprint: str
    starts_at: dt.datetime | None = None
    summary: str = ""


def detect_and_parse(body: bytes, content_type: str, *, source: str | None = None) -> list[Alert]:
    """Parse a webhook body into alerts, or raise `PayloadError` (and nothing else).

    Args:
        body: The raw request body.
        content_type: The request's Content-Type; JSON or empty, charset UTF-8 if given.
        source: The sender, when the URL says so (`/alerts/{source}`); otherwise read from the payload.
    """
    _check_content_type(content_type)
    document = _decode(body)
    kind = source if source is not None else detect_source(document)
    if kind == "alertmanager":
        return _parse_prometheus_style(document, "alertmanager")
    if kind == "grafana":
        return _parse_prometheus_style(document, "grafana")
    if kind == "azure-monitor":
        return _parse_azure(document)
    raise PayloadError(f"unknown alert source {kind!r}; allowed: {', '.join(SOURCES)}")


def detect_source(document: Any) -> str:
    """Tell the sender from the payload's shape (Grafana's payload is Alertmanager's plus `orgId`)."""
    if isinstance(document, dict):
        if "schemaId" in document:
            return "azure-monitor"
        if "orgId" in document:
            return "grafana"
        if "alerts" in document:
            return "alertmanager"
    raise PayloadError("cannot tell the alert source: expected an Alertmanager, Grafana or Azure Monitor payload")


def normalise_severity(raw: str) -> str:
    """Map a sender's severity word (critical, Sev1, high, warn...) onto SEVERITIES; unknown -> none."""
    return _SEVERITY_ALIASES.get(raw.strip().lower(), "none")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def stable_fingerprint(source: str, name: str, labels: dict[str, str]) -> str:
    """A fingerprint for payloads without one: the same alert (source, name, labels) always hashes alike."""
    canonical = json.dumps([source, name, sorted(labels.items())], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]


# -- decoding ----------------------------------------------------------------------------------------

def _check_content_type(content_type: str) -> None:
    if not isinstance(content_type, str):
        raise PayloadError("Content-Type must be a string")
    if not content_type.strip():
        return      # curl and some proxies send none; the body still has to be JSON
    match = _MEDIA_TYPE.match(content_type)
    media = match.group(1).lower() if match else ""
    if media != "application/json" and not media.endswith("+json"):
        raise PayloadError(f"Content-Type must be application/json, got {content_type[:100]!r}")
    for param in (match.group(2) or "").split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise PayloadError(f"charset must be utf-8, got {value.strip()[:40]!r}")


def _decode(body: bytes) -> Any:
    if not isinstance(body, (bytes, bytearray)):
        raise PayloadError("body must be bytes")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8: byte {exc.start}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise PayloadError("body is not JSON we accept: nested too deeply") from None
    except ValueError as exc:      # JSONDecodeError, and int() refusing a 5000-digit number
        raise PayloadError(f"body is not JSON: {str(exc)[:200]}") from None


# -- checked accessors: every one raises PayloadError naming the field --------------------------------

def _obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object, got {_kind(value)}")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise PayloadError(f"{where}: expected a list, got {_kind(value)}")
    return value


def _text(value: Any, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected a string, got {_kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:      # a lone surrogate ("\ud800") decodes from JSON but breaks every sink
        raise PayloadError(f"{where}: not valid Unicode") from None
    if required and not value.strip():
        raise PayloadError(f"{where}: must not be empty")
    return value


def _str_map(value: Any, where: str, *, required: bool = True) -> dict[str, str]:
    if value is None and not required:
        return {}
    return {_text(k, f"{where} key", required=False): _text(v, f"{where}.{k[:60]}", required=False)
            for k, v in _obj(value, where).items()}


def _time(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    text = _text(value, where)
    try:
        moment = _DATETIME.validate_python(text)
    except ValidationError:
        raise PayloadError(f"{where}: not an RFC 3339 time: {text[:60]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


# -- Alertmanager webhook v4 and Grafana unified alerting (same alert shape) ---------------------------

def _parse_prometheus_style(document: Any, source: str) -> list[Alert]:
    root = _obj(document, "body")
    version = root.get("version")
    if source == "alertmanager" and version is not None and version != "4":
        raise PayloadError(f"version: only Alertmanager webhook version 4 is supported, got {version!r}")
    alerts = _list(root.get("alerts"), "alerts")
    return [_prometheus_alert(item, f"alerts[{i}]", source) for i, item in enumerate(alerts)]


def _prometheus_alert(item: Any, where: str, source: str) -> Alert:
    item = _obj(item, where)
    status = _text(item.get("status"), f"{where}.status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{where}.status: expected firing or resolved, got {status[:40]!r}")
    labels = _str_map(item.get("labels"), f"{where}.labels")
    name = _text(labels.get("alertname"), f"{where}.labels.alertname")
    annotations = _str_map(item.get("annotations"), f"{where}.annotations", required=False)
    fingerprint = _text(item.get("fingerprint"), f"{where}.fingerprint", required=False)
    return Alert(source=source, name=name, status=status, labels=labels,
                 severity=normalise_severity(labels.get("severity", "")),
                 fingerprint=fingerprint.strip() or stable_fingerprint(source, name, labels),
                 starts_at=_time(item.get("startsAt"), f"{where}.startsAt"),
                 summary=annotations.get("summary") or annotations.get("description")
                 or annotations.get("message") or "")


# -- Azure Monitor common alert schema ---------------------------------------------------------------

_AZURE_STATUS = {"Fired": "firing", "Resolved": "resolved"}


def _parse_azure(document: Any) -> list[Alert]:
    root = _obj(document, "body")
    schema = _text(root.get("schemaId"), "schemaId")
    if schema != AZURE_SCHEMA_ID:
        raise PayloadError(f"schemaId: expected {AZURE_SCHEMA_ID}, got {schema[:60]!r}")
    data = _obj(root.get("data"), "data")
    essentials = _obj(data.get("essentials"), "data.essentials")
    where = "data.essentials"
    alert_id = _text(essentials.get("alertId"), f"{where}.alertId")
    name = _text(essentials.get("alertRule"), f"{where}.alertRule")
    raw_severity = _text(essentials.get("severity"), f"{where}.severity")
    condition = _text(essentials.get("monitorCondition"), f"{where}.monitorCondition")
    if condition not in _AZURE_STATUS:
        raise PayloadError(f"{where}.monitorCondition: expected Fired or Resolved, got {condition[:40]!r}")
    labels = {**_str_map(data.get("customProperties"), "data.customProperties", required=False),
              **_context_labels(data.get("alertContext")),
              **_essential_labels(essentials, name, raw_severity)}
    return [Alert(source="azure-monitor", name=name, status=_AZURE_STATUS[condition], labels=labels,
                  severity=normalise_severity(raw_severity), fingerprint=alert_id,
                  starts_at=_time(essentials.get("firedDateTime"), f"{where}.firedDateTime"),
                  summary=_text(essentials.get("description"), f"{where}.description", required=False))]


def _essential_labels(essentials: dict, name: str, severity: str) -> dict[str, str]:
    """The routing fields every Azure alert type carries, named like Prometheus labels."""
    where = "data.essentials"
    labels = {"alertname": name, "severity": severity}
    for field, label in (("monitoringService", "monitoring_service"), ("signalType", "signal_type"),
                         ("targetResourceType", "target_resource_type"),
                         ("targetResourceGroup", "target_resource_group")):
        value = _text(essentials.get(field), f"{where}.{field}", required=False)
        if value:
            labels[label] = value
    items = essentials.get("configurationItems")
    if items is not None:
        labels["configuration_items"] = ",".join(
            _text(v, f"{where}.configurationItems[{i}]", required=False)
            for i, v in enumerate(_list(items, f"{where}.configurationItems")))
    return labels


def _context_labels(context: Any) -> dict[str, str]:
    """Labels from alertContext: metric and log alerts' dimensions, Prometheus alerts' labels.

    alertContext differs per signal type (activity log alerts have no dimensions at all), so shapes we
    do not recognise contribute nothing instead of failing the payload. Dimension names become
    snake_case labels (`controllerName` -> `controller_name`, `Kubernetes namespace` ->
    `kubernetes_namespace`, also offered as `namespace`) so that rules can template them.
    """
    if not isinstance(context, dict):
        return {}
    labels: dict[str, str] = {}
    condition = context.get("condition")
    criteria = condition.get("allOf") if isinstance(condition, dict) else None
    for j, criterion in enumerate(criteria if isinstance(criteria, list) else ()):
        dimensions = criterion.get("dimensions") if isinstance(criterion, dict) else None
        for i, dim in enumerate(dimensions if isinstance(dimensions, list) else ()):
            where = f"data.alertContext.condition.allOf[{j}].dimensions[{i}]"
            if isinstance(dim, dict) and isinstance(dim.get("name"), str):
                key = _snake(_text(dim["name"], f"{where}.name", required=False))
                labels[key] = _text(dim.get("value"), f"{where}.value", required=False)
    if isinstance(context.get("labels"), dict):
        labels.update(_str_map(context["labels"], "data.alertContext.labels"))
    if "kubernetes_namespace" in labels:
        labels.setdefault("namespace", labels["kubernetes_namespace"])
    return labels


def _snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).lower()
