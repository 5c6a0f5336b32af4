"""Post-incident on GitHub, for every runbook: the incident issue on the service's repository, and a deployment
status for a change that deploys. Called once, by the kernel's report step (flows/kernel/outcome.py).

One issue per incident: an alert's runs share its fingerprint, a run started by hand is its own incident. The
issue carries the incident's marker and each run's report is a comment carrying the run's marker, so neither
is duplicated when a request is retried (PyGithub's default retry re-sends a POST after a 5xx; ours looks
first). Dry runs and no-ops record nothing: a monthly rehearsal is not an incident.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from plans.record import RunRecord
from plans.targets import DeploymentTarget

from ..redaction import redact
from .deployments import default_branch, record_deployment_status
from .issues import comment_issue, find_issue, marker, open_issue

if TYPE_CHECKING:
    from flows.kernel.run import Runbook

LABEL = "incident"
SKIPPED = ("dry-run", "no-op")


def incident_key(record: RunRecord) -> str:
    alert = record.trigger.alert
    return f"alert-{alert.source}-{alert.fingerprint}" if alert and alert.fingerprint else f"run-{record.run_id}"


def _service(run: "Runbook"):
    """The catalog service the run acted on, when it has a repository and the environment reaches GitHub."""
    record = run.record
    if (run.catalog is None or run.environment is None or run.environment.github is None
            or not isinstance(record.target, DeploymentTarget)):
        return None
    service = run.environment.services.get(record.target.service)
    return service if service is not None and service.github_repo else None


def record_incident(run: "Runbook") -> None:
    """Open or update the incident issue with the run report; record a deployment status for a deploy."""
    from ..report import render_report
    record = run.record
    service = _service(run)
    if service is None or record.dry_run or record.outcome in SKIPPED:
        return
    gh, repository = run.github, service.github_repo
    key, report = incident_key(record), redact(render_report(record))
    mark, run_mark = marker("incident", key), marker("incident-run", record.run_id or "-")
    found = find_issue(gh, repository=repository, label=LABEL, mark=mark, state="all")
    if found is None:
        title = f"Incident: {record.runbook} on {record.target.label}"
        if record.trigger.alert:
            title += f" ({record.trigger.alert.name})"
        issue = open_issue(gh, repository=repository, title=title, label=LABEL, mark=mark,
                           body=f"{mark}\n{run_mark}\n{report}")
    else:
        issue = comment_issue(gh, repository=repository, number=found.number, mark=run_mark,
                              body=f"{run_mark}\n{report}")
    record.note("post-incident", f"incident issue #{issue.number} on {repository}: {issue.action} ({issue.url})")
    if any(step.status in ("made", "undone", "undo-failed") for step in record.steps):
        workflow = service.github.rollback_workflow if service.github else None
        state = "success" if record.outcome == "succeeded" else "failure"
        status = record_deployment_status(gh, repository=repository, environment=record.environment,
                                          ref=workflow.ref if workflow else default_branch(gh, repository), state=state,
                                          description=f"{record.runbook}: {record.outcome}",
                                          marker=f"runbooks-run:{record.run_id}", log_url=issue.url)
        record.note("post-incident", f"deployment {status.deployment_id} on {repository}: {state}")
