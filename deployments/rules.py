"""Alert rules (deployments/alert-rules.yaml): which alert starts which runbook, with which parameters.

Why declared rules: what an alert may start is a production change policy, so it lives in one reviewed
file, is validated at load (a typo in a template or an environment fails the receiver's start, not the
3 a.m. alert) and is matched the same way for every source.

Templates are deliberately tiny: `{labels.NAME}` and `{alert.FIELD}` (name, source, severity, status,
summary, fingerprint), `{{`/`}}` for literal braces. No expressions, no attribute walking: a label value
is data, never code. A rule may name its service with a template, or map the alert's namespace and
Deployment (or pod) to a catalog service (`service: {from_catalog: {namespace: ..., deployment: ...}}`).

Why the environment always comes from the alert, through a map: one rule serves every cluster that
fires the same alert, so a rule that named its environment literally would act on production for an
alert from any cluster. Each rule says which label (`cluster`, `env`) tells the environment and maps its
values to catalog environments; an alert without that label, or with a value the rule does not map,
starts nothing and the answer says why.

Why a pod name is enough: kube-prometheus's pod alerts (KubePodCrashLooping) carry `namespace`, `pod`
and `container`, no `deployment`. A Deployment's pods are named `<deployment>-<pod-template-hash>-<suffix>`,
so the receiver derives the candidate Deployment from the name to find the catalog service (and to key
in-flight runs and cooldowns); the runbook then checks the pod's ownerReferences, which are authoritative.

Rules are tried in order; the first whose `match` selects an alert decides what happens to it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runbooks.registry import RUNBOOKS
from tasks.catalog import Catalog, load_yaml_model
from tasks.errors import RunbookError

from .alerts import Alert, Severity, Source, severity_rank

DEFAULT_RULES = Path(__file__).resolve().parent / "alert-rules.yaml"
# The receiver fills these itself; a rule setting them would let a template forge who asked for the run.
RESERVED_PARAMETERS = frozenset({"service", "environment", "requested_by", "alert", "pod"})
MAX_VALUE_CHARS = 1000
ALERT_FIELDS = ("name", "source", "severity", "status", "summary", "fingerprint")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_LABEL_REF = re.compile(r"labels\.([A-Za-z_][A-Za-z0-9_]*)")
_ALERT_REF = re.compile(r"alert\.(" + "|".join(ALERT_FIELDS) + r")")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Kubernetes' rand.SafeEncodeString alphabet (no vowels, no 0/1/3): pod-template-hash and name suffixes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_DEPLOYMENT_POD = re.compile(rf"(?P<deployment>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)-[{_SAFE}]{{1,10}}-[{_SAFE}]{{5}}")


class RulesError(RunbookError):
    """The rules file is missing or invalid; the message names the file and the field."""


class MissingLabel(RunbookError):
    """A template names a label the alert does not carry."""


# -- templates -----------------------------------------------------------------------------------------

def parse_template(text: str) -> list[str | tuple[str, str]]:
    """Split a template into literal text and (root, key) references; ValueError says what is wrong."""
    parts: list[str | tuple[str, str]] = []
    position = 0
    for token in _TOKEN.finditer(text):
        parts.append(text[position:token.start()])
        position = token.end()
        raw = token.group(0)
        if raw in ("{{", "}}"):
            parts.append(raw[0])
        elif token.group(1) is None:
            raise ValueError(f"unbalanced {raw!r} at position {token.start()} in {text!r} (use {raw * 2} for a literal)")
        elif m := _LABEL_REF.fullmatch(token.group(1).strip()):
            parts.append(("labels", m.group(1)))
        elif m := _ALERT_REF.fullmatch(token.group(1).strip()):
            parts.append(("alert", m.group(1)))
        else:
            raise ValueError(f"unknown reference {raw!r} in {text!r}; allowed: {{labels.NAME}} or "
                             f"{{alert.FIELD}} with FIELD one of {', '.join(ALERT_FIELDS)}")
    parts.append(text[position:])
    return [p for p in parts if p != ""]


def render(text: str, alert: Alert) -> str:
    """Fill a (validated) template from an alert; raises MissingLabel for a label the alert lacks."""
    out = []
    for part in parse_template(text):
        if isinstance(part, str):
            out.append(part)
        elif part[0] == "labels":
            if part[1] not in alert.labels:
                raise MissingLabel(f"alert {alert.name} has no label {part[1]!r}")
            out.append(alert.labels[part[1]])
        else:
            out.append(str(getattr(alert, part[1])))
    value = "".join(out)
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS - 1] + "…"


def _template(text: str) -> str:
    parse_template(text)
    return text


# -- the rules file ------------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Which alerts a rule takes: exact name, exact label values, at least this severity."""
    alertname: str = Field(min_length=1)
    source: Source | None = None
    labels: dict[str, str] = {}
    severity: Severity = "none"

    def selects(self, alert: Alert) -> bool:
        return (alert.name == self.alertname
                and (self.source is None or alert.source == self.source)
                and all(alert.labels.get(k) == v for k, v in self.labels.items())
                and severity_rank(alert.severity) >= severity_rank(self.severity))


class CatalogLookup(_Strict):
    """Find the service by namespace and either its Deployment or one of its pods (all templates)."""
    namespace: str
    deployment: str | None = None
    pod: str | None = Field(None, description="a pod name; its Deployment is derived from it")

    @field_validator("namespace", "deployment", "pod")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        return None if value is None else _template(value)

    @model_validator(mode="after")
    def _one_of(self) -> "CatalogLookup":
        if (self.deployment is None) == (self.pod is None):
            raise ValueError("from_catalog needs exactly one of deployment or pod (besides namespace)")
        return self


class FromCatalog(_Strict):
    """The catalog service running this Kubernetes Deployment, in the alert's environment."""
    from_catalog: CatalogLookup


class EnvironmentFrom(_Strict):
    """Which catalog environment an alert is about: the value of one of its labels, mapped explicitly."""
    label: str = Field(description="the alert label naming the cluster or environment, e.g. cluster or env")
    values: dict[str, str] = Field(min_length=1, description="label value -> catalog environment")

    @field_validator("label")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError(f"label {value!r} is not a label name")
        return value

    def describe(self) -> str:
        return ", ".join(f"{value} -> {env}" for value, env in sorted(self.values.items()))


class Rule(_Strict):
    name: str = Field(min_length=1)
    match: Match
    runbook: str
    environment: EnvironmentFrom = Field(description="from the alert: {label: cluster, values: {NAME: ENV}}")
    service: str | FromCatalog = Field(description="catalog service name (a template) or a from_catalog lookup")
    parameters: dict[str, str] = Field({}, description="more runbook parameters, templated; `reason` has a default")
    dedupe_seconds: int = Field(600, ge=0, description="the same alert (fingerprint) within this starts one run")
    cooldown_seconds: int = Field(900, ge=0, description="after a change to the object, later alerts wait this long")

    @field_validator("service")
    @classmethod
    def _templates(cls, value: str | FromCatalog) -> str | FromCatalog:
        return _template(value) if isinstance(value, str) else value

    @field_validator("runbook")
    @classmethod
    def _known_runbook(cls, value: str) -> str:
        if value not in RUNBOOKS:
            raise ValueError(f"unknown runbook {value!r}; allowed: {', '.join(sorted(RUNBOOKS))}")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if key in RESERVED_PARAMETERS:
                raise ValueError(f"parameter {key!r} is set by the receiver; use the rule's own field instead")
            if not _IDENTIFIER.fullmatch(key):
                raise ValueError(f"parameter name {key!r} is not an identifier")
            parse_template(text)
        return value


class RuleSet(_Strict):
    rules: tuple[Rule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> "RuleSet":
        names = [rule.name for rule in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return self

    def first_match(self, alert: Alert) -> Rule | None:
        return next((rule for rule in self.rules if rule.match.selects(alert)), None)


def rules_path(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("RUNBOOKS_ALERT_RULES") or DEFAULT_RULES)


def load_rules(path: str | Path | None = None, *, catalog: Catalog | None = None) -> RuleSet:
    """Load and validate the rules file (and, given the catalog, every environment the rules map to)."""
    source = rules_path(path)
    ruleset = load_yaml_model(source, RuleSet, RulesError, "alert rules", "set RUNBOOKS_ALERT_RULES or --rules")
    if catalog is not None:
        for rule in ruleset.rules:
            unknown = sorted({env for env in rule.environment.values.values() if env not in catalog.environments})
            if unknown:
                raise RulesError(f"alert rules {source}: rule {rule.name!r} maps {rule.environment.label} values to "
                                 f"{', '.join(map(repr, unknown))}, not in the catalog {catalog.source or ''}; "
                                 f"allowed: {', '.join(sorted(catalog.environments))}")
    return ruleset


# -- resolving an alert to a runbook start -------------------------------------------------------------

class Start(_Strict):
    """What a rule makes of a firing alert: the runbook, its target and its templated parameters."""
    rule: Rule
    environment: str
    service: str
    key: str = Field(description="the object's key (cluster/namespace/kind/name): in-flight runs and cooldowns")
    pod: str = ""
    parameters: dict[str, str]

    @property
    def target(self) -> str:
        return f"{self.environment}/{self.service}"


class Ignored(_Strict):
    reason: str
    rule: str | None = None


def deployment_of_pod(pod: str) -> str | None:
    """The Deployment a pod's name says it belongs to (`<deployment>-<pod-template-hash>-<suffix>`), or None.

    Only a candidate: names can lie and long names are truncated, so the runbook checks ownerReferences.
    """
    match = _DEPLOYMENT_POD.fullmatch(pod)
    return match.group("deployment") if match else None


def resolve_environment(rule: Rule, alert: Alert) -> str | Ignored:
    """The catalog environment the alert's label maps to, or why there is none."""
    label = rule.environment.label
    value = alert.labels.get(label, "").strip()
    if not value:
        return Ignored(rule=rule.name, reason=f"rule {rule.name}: alert {alert.name} has no {label!r} label, which "
                                              f"chooses the environment (mapped: {rule.environment.describe()})")
    if value not in rule.environment.values:
        return Ignored(rule=rule.name, reason=f"rule {rule.name}: {label}={value!r} maps to no environment "
                                              f"(mapped: {rule.environment.describe()})")
    return rule.environment.values[value]


def _service(rule: Rule, alert: Alert, catalog: Catalog, environment: str) -> tuple[str, str] | Ignored:
    """(service, pod) for the alert in the environment, or why there is none."""
    services = catalog.environments[environment].services
    if not isinstance(rule.service, FromCatalog):
        service = render(rule.service, alert)
        if service not in services:
            return Ignored(rule=rule.name, reason=f"rule {rule.name}: service {service!r} is not in "
                                                  f"catalog environment {environment}")
        return service, ""
    lookup = rule.service.from_catalog
    namespace, pod = render(lookup.namespace, alert), ""
    if lookup.pod is not None:
        pod = render(lookup.pod, alert)
        deployment = deployment_of_pod(pod)
        if deployment is None:
            return Ignored(rule=rule.name, reason=f"rule {rule.name}: pod {namespace}/{pod} is not named like a "
                                                  "Deployment's pod (<deployment>-<pod-template-hash>-<suffix>)")
    else:
        deployment = render(lookup.deployment, alert)
    service = next((name for name, svc in sorted(services.items())
                    if svc.namespace == namespace and svc.deployment == deployment), None)
    if service is None:
        of_pod = f" (derived from pod {pod})" if pod else ""
        return Ignored(rule=rule.name, reason=f"rule {rule.name}: no catalog service in {environment} runs "
                                              f"deployment {namespace}/{deployment}{of_pod}")
    return service, pod


def resolve(rule: Rule, alert: Alert, catalog: Catalog) -> Start | Ignored:
    """Turn a matched alert into a Start against the catalog, or say why it starts nothing."""
    environment = resolve_environment(rule, alert)
    if isinstance(environment, Ignored):
        return environment
    if environment not in catalog.environments:       # load_rules checks this; a catalog may be swapped
        return Ignored(rule=rule.name, reason=f"rule {rule.name}: environment {environment!r} is not in the catalog")
    try:
        found = _service(rule, alert, catalog, environment)
        if isinstance(found, Ignored):
            return found
        parameters = {key: render(text, alert) for key, text in rule.parameters.items()}
    except MissingLabel as exc:
        return Ignored(rule=rule.name, reason=f"rule {rule.name}: {exc}")
    service, pod = found
    parameters.setdefault("reason", render("{alert.source} alert {alert.name}: {alert.summary}", alert))
    key = catalog.deployment_target(environment, service).key
    return Start(rule=rule, environment=environment, service=service, key=key, pod=pod, parameters=parameters)


__all__ = ["EnvironmentFrom", "Ignored", "Match", "Rule", "RuleSet", "RulesError", "Start", "deployment_of_pod",
           "load_rules", "parse_template", "render", "resolve", "resolve_environment", "rules_path"]
