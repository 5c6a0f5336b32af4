"""Alert rules (deployments/alert-rules.yaml): which alert starts which runbook, with which parameters.

Why declared rules: what an alert may start is a production change policy, so it lives in one reviewed
file, is validated at load (a typo in a template or an environment fails the receiver's start, not the
3 a.m. alert) and is matched the same way for every source.

Templates are deliberately tiny: `{labels.NAME}` and `{alert.FIELD}` (name, source, severity, status,
summary, fingerprint), `{{`/`}}` for literal braces. No expressions, no attribute walking: a label value
is data, never code. A rule may name its service with a template, or map the alert's namespace and
deployment to a catalog service (`service: {from_catalog: {namespace: ..., deployment: ...}}`).

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
RESERVED_PARAMETERS = frozenset({"service", "environment", "requested_by", "alert"})
MAX_VALUE_CHARS = 1000
ALERT_FIELDS = ("name", "source", "severity", "status", "summary", "fingerprint")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_LABEL_REF = re.compile(r"labels\.([A-Za-z_][A-Za-z0-9_]*)")
_ALERT_REF = re.compile(r"alert\.(" + "|".join(ALERT_FIELDS) + r")")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    namespace: str
    deployment: str

    @field_validator("namespace", "deployment")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _template(value)


class FromCatalog(_Strict):
    """The catalog service running this Kubernetes Deployment, in the rule's environment."""
    from_catalog: CatalogLookup


class Rule(_Strict):
    name: str = Field(min_length=1)
    match: Match
    runbook: str
    environment: str = Field(description="catalog environment; a template, e.g. production or {labels.env}")
    service: str | FromCatalog = Field(description="catalog service name (a template) or a from_catalog lookup")
    parameters: dict[str, str] = Field({}, description="more runbook parameters, templated; `reason` has a default")
    dedupe_seconds: int = Field(600, ge=0, description="the same alert (fingerprint) within this starts one run")
    cooldown_seconds: int = Field(900, ge=0, description="after a start on a target, later alerts wait this long")

    @field_validator("environment", "service")
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
    """Load and validate the rules file (and, given the catalog, the environments rules name literally)."""
    source = rules_path(path)
    ruleset = load_yaml_model(source, RuleSet, RulesError, "alert rules", "set RUNBOOKS_ALERT_RULES or --rules")
    if catalog is not None:
        for rule in ruleset.rules:
            literal = all(isinstance(p, str) for p in parse_template(rule.environment))
            if literal and rule.environment not in catalog.environments:
                raise RulesError(f"alert rules {source}: rule {rule.name!r} names environment "
                                 f"{rule.environment!r}, not in the catalog; allowed: "
                                 f"{', '.join(sorted(catalog.environments))}")
    return ruleset


# -- resolving an alert to a runbook start -------------------------------------------------------------

class Start(_Strict):
    """What a rule makes of a firing alert: the runbook, its target and its templated parameters."""
    rule: Rule
    environment: str
    service: str
    parameters: dict[str, str]

    @property
    def target(self) -> str:
        return f"{self.environment}/{self.service}"


class Ignored(_Strict):
    reason: str
    rule: str | None = None


def resolve(rule: Rule, alert: Alert, catalog: Catalog) -> Start | Ignored:
    """Turn a matched alert into a Start against the catalog, or say why it starts nothing."""
    try:
        environment = render(rule.environment, alert)
        if environment not in catalog.environments:
            return Ignored(rule=rule.name, reason=f"rule {rule.name}: environment {environment!r} is not in the catalog")
        services = catalog.environments[environment].services
        if isinstance(rule.service, FromCatalog):
            namespace = render(rule.service.from_catalog.namespace, alert)
            deployment = render(rule.service.from_catalog.deployment, alert)
            service = next((name for name, svc in sorted(services.items())
                            if svc.namespace == namespace and svc.deployment == deployment), None)
            if service is None:
                return Ignored(rule=rule.name, reason=f"rule {rule.name}: no catalog service in {environment} "
                                                      f"runs deployment {namespace}/{deployment}")
        else:
            service = render(rule.service, alert)
            if service not in services:
                return Ignored(rule=rule.name, reason=f"rule {rule.name}: service {service!r} is not in "
                                                      f"catalog environment {environment}")
        parameters = {key: render(text, alert) for key, text in rule.parameters.items()}
    except MissingLabel as exc:
        return Ignored(rule=rule.name, reason=f"rule {rule.name}: {exc}")
    parameters.setdefault("reason", render("{alert.source} alert {alert.name}: {alert.summary}", alert))
    return Start(rule=rule, environment=environment, service=service, parameters=parameters)


__all__ = ["Ignored", "Match", "Rule", "RuleSet", "RulesError", "Start", "load_rules",
           "parse_template", "render", "resolve", "rules_path"]
