"""Post-incident: the run report (a Prefect markdown artifact) and best-effort notifications.

The report follows the runbook template (`# Runbook: ...` with bold header fields, then sections), so
the evidence of a run reads like the runbook it replaces. Secrets are redacted before publishing.

Notification blocks, and why custom webhooks are the fallback: Prefect's `SlackWebhook` and
`MicrosoftTeamsWebhook` blocks hand their URL to apprise, and apprise cannot deliver either one to a
loopback HTTP endpoint (checked against apprise 1.13 / Prefect 3.8):

- `SlackWebhook`: apprise only recognises `https://hooks.slack.com/services/A/B/C`, and its Slack
  plugin always posts to the fixed `https://hooks.slack.com/services` (the host is rewritten). Any
  other URL is "Unparseable", the block has no service to notify, and `notify` silently does nothing.
- `MicrosoftTeamsWebhook`: apprise's Workflows plugin keeps the host and port but always posts with
  `https://`, so a plain-HTTP endpoint (a sandbox, a capture server, an internal relay) fails.

So `notify` loads, for a notification named `block`, the native block type first (what production
uses against the real services) and otherwise a `CustomWebhookNotificationBlock` of the same name,
which posts with httpx to any URL. `slack_webhook_block` / `teams_webhook_block` build such blocks
with Slack-shaped (`{"text": ...}`) and Teams-shaped (Workflows adaptive card) JSON bodies; the same
blocks also work against the real Slack and Teams Workflows endpoints.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any, get_args

from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.notifications import (CustomWebhookNotificationBlock, MicrosoftTeamsWebhook,
                                          SlackWebhook)

from plans.record import NotificationResult, RunRecord

from .catalog import Environment, Notification
from .redaction import redact, register_secret

NATIVE_BLOCKS: dict[str, type[NotificationBlock]] = {"slack": SlackWebhook, "teams": MicrosoftTeamsWebhook}
EVENTS: tuple[str, ...] = get_args(get_args(Notification.model_fields["events"].annotation)[0])


# --- rendering -------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    """One markdown table cell: JSON for structured values; pipes and newlines escaped."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _utc(moment: dt.datetime) -> str:
    """ISO-like UTC timestamp; naive datetimes are taken to be UTC already."""
    moment = moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _header(record: RunRecord) -> list[str]:
    target = record.target.label if record.target else (record.environment or "(no target)")
    trigger = record.trigger.kind + (f": {record.trigger.detail}" if record.trigger.detail else "")
    obj = f"{record.target.resource} on {record.target.cluster}" if record.target else "(not resolved)"
    return [f"# Runbook: {record.runbook} on {target}: {record.outcome}", "",
            f"**Outcome**: {record.outcome}  ",
            f"**Run**: {record.run_id or '(none)'}  ",
            f"**Target**: {obj}  ",
            f"**Catalog**: {record.catalog or '(not loaded)'}  ",
            f"**Trigger**: {trigger}  ",
            f"**Requested by**: {record.requested_by}  ",
            f"**Reason**: {record.reason or '(none given)'}  ",
            f"**Dry run**: {'yes' if record.dry_run else 'no'}  ",
            f"**Emergency override**: {record.emergency_override or 'none'}"]


def _approvals(record: RunRecord) -> list[str]:
    if not record.approvals:
        return ["No approvals recorded."]
    rows = [f"| {a.decision} | {_cell(a.approver)} | {_cell(a.reason)} | `{a.plan_digest}` | {_utc(a.at)} |"
            for a in record.approvals]
    return ["| decision | approver | reason | plan digest | time (UTC) |", "|---|---|---|---|---|", *rows]


def _before_after(record: RunRecord) -> list[str]:
    keys = list(dict.fromkeys([*record.before, *record.after]))
    if not keys:
        return ["Nothing recorded."]
    missing = "—"
    rows = [f"| {_cell(k)} | {_cell(record.before.get(k, missing))} | {_cell(record.after.get(k, missing))} |"
            for k in keys]
    return ["| key | before | after |", "|---|---|---|", *rows]


def _steps(record: RunRecord) -> list[str]:
    if not record.steps:
        return ["No change was attempted."]
    rows = [f"| {i} | {_cell(s.change.describe())} | {s.status} | "
            f"{_cell(s.undo or ('none: ' + s.no_undo if s.no_undo else ''))} | {_cell(s.detail)} |"
            for i, s in enumerate(record.steps, 1)]
    return ["| step | change | status | undo | detail |", "|---|---|---|---|---|", *rows]


def _notifications(record: RunRecord) -> list[str]:
    if not record.notifications:
        return ["None sent (no channel is subscribed to these events)."]
    return [f"- {n.event} to {n.block}: {'delivered' if n.delivered else 'FAILED: ' + n.error}"
            for n in record.notifications]


def _timeline(record: RunRecord) -> list[str]:
    if not record.timeline:
        return ["No steps recorded."]
    rows = [f"| {_utc(e.at)} | {_cell(e.step)} | {_cell(e.message)} |" for e in record.timeline]
    return ["| time (UTC) | step | message |", "|---|---|---|", *rows]


def render_report(record: RunRecord) -> str:
    """Render the run record as markdown in the runbook template's shape. Pure; does not redact."""
    sections = [
        _header(record),
        ["## Plan", "", record.plan.markdown() if record.plan else "No plan was made."],
        ["## Approvals", "", *_approvals(record)],
        ["## Changes", "", *_steps(record)],
        ["## Before / After", "", *_before_after(record)],
        ["## Verification evidence", "", *([f"- {e}" for e in record.evidence] or ["No evidence recorded."])],
        ["## Timeline", "", *_timeline(record)],
        ["## Notifications", "", *_notifications(record)],
    ]
    if record.next_steps:
        sections.append(["## Next steps", "", *[f"- [ ] {s}" for s in record.next_steps]])
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


# --- publishing ------------------------------------------------------------------------------

def artifact_key(record: RunRecord) -> str:
    """`runbook-report-<runbook>-<target>`: Prefect keys allow only lowercase letters, digits and dashes."""
    target = record.target.label if record.target else record.environment
    parts = ["runbook-report", record.runbook, target]
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())).strip("-")[:200]


def publish_report(record: RunRecord, *, flow_run_id=None) -> str:
    """Render, redact and publish the report as a markdown artifact; return the published markdown.

    The artifact is linked to the run (the current one, or `flow_run_id` from a hook outside it); the
    stable key groups every report of one runbook on one target in the UI's Artifacts page, and its
    metadata carries the outcome, so a hook can tell whether the run already reported.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.context import FlowRunContext, TaskRunContext

    markdown = redact(render_report(record))
    if flow_run_id is None:
        context = FlowRunContext.get()
        flow_run_id = context.flow_run.id if context and context.flow_run else None
    task_context = TaskRunContext.get()
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(
            key=artifact_key(record), type="markdown", data=markdown, description="Run report",
            flow_run_id=flow_run_id, task_run_id=task_context.task_run.id if task_context else None,
            metadata_={"outcome": record.outcome, "runbook": record.runbook, "run": record.run_id}))
    return markdown


# --- notifications ---------------------------------------------------------------------------

def slack_webhook_block(url: str, *, name: str) -> CustomWebhookNotificationBlock:
    """A webhook block posting Slack's incoming-webhook body (`{"text": ...}`) to `url`."""
    return CustomWebhookNotificationBlock(name=name, url=url,
                                          json_data={"text": "*{{subject}}*\n{{body}}"})


def teams_webhook_block(url: str, *, name: str) -> CustomWebhookNotificationBlock:
    """A webhook block posting a Teams Workflows message (an adaptive card) to `url`."""
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "TextBlock", "text": "{{subject}}", "weight": "bolder", "wrap": True},
                     {"type": "TextBlock", "text": "{{body}}", "wrap": True}]}
    return CustomWebhookNotificationBlock(name=name, url=url, json_data={
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]})


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The run logger inside a run (so warnings show in the UI), a module logger outside one."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _load_block(notification: Notification) -> NotificationBlock:
    """The native block named `notification.block`, else a custom webhook block of that name."""
    for block_type in (NATIVE_BLOCKS[notification.kind], CustomWebhookNotificationBlock):
        try:
            return block_type.load(notification.block, _sync=True)
        except ValueError:  # Prefect's "Unable to find block document named ..."
            continue
    raise LookupError(f"no {NATIVE_BLOCKS[notification.kind].__name__} or "
                      f"CustomWebhookNotificationBlock named {notification.block!r}")


def _register_block_secrets(block: NotificationBlock) -> None:
    """A webhook URL is a credential (Slack tokens, Teams signatures), as are a custom block's secrets."""
    url = getattr(block, "url", None)
    register_secret(url.get_secret_value() if hasattr(url, "get_secret_value") else str(url or ""))
    if isinstance(block, CustomWebhookNotificationBlock):
        for value in block.secrets.get_secret_value().values():
            register_secret(str(value))


def _send(notification: Notification, body: str, subject: str) -> None:
    block = _load_block(notification)
    _register_block_secrets(block)   # before sending: apprise logs the URL when it rejects it
    with block.raise_on_failure():   # apprise blocks otherwise fail silently
        block.notify(body, subject, _sync=True)


def _describe(exc: Exception) -> str:
    """Why a send failed, without its message: httpx and apprise messages quote the webhook URL."""
    if isinstance(exc, LookupError):   # ours: names only the block
        return str(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return type(exc).__name__ + (f" (HTTP {status})" if status else "")


def notify(environment: Environment, event: str, message: str, *, subject: str) -> list[NotificationResult]:
    """Send `message` to every notification of `environment` subscribed to `event`; best effort.

    A notification that cannot be loaded or delivered is logged as a warning and recorded as failed, and
    the others still go: a run that changed production must not fail because Slack is down. Message and
    subject are redacted first.

    Returns:
        One result per subscribed channel, delivered or not (the run report lists them).

    Raises:
        ValueError: `event` is not one of the catalog's notification events (a caller bug).
    """
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; allowed: {', '.join(EVENTS)}")
    body, title = redact(message), redact(subject)
    results: list[NotificationResult] = []
    for notification in environment.notifications:
        if event not in notification.events:
            continue
        try:
            _send(notification, body, title)
        except Exception as exc:  # best effort by design: one failed channel must not fail the run
            _logger().warning("notification %r (%s) for %s failed: %s",
                              notification.block, notification.kind, event, _describe(exc))
            results.append(NotificationResult(event=event, block=notification.block, delivered=False,
                                              error=_describe(exc)))
            continue
        results.append(NotificationResult(event=event, block=notification.block, delivered=True))
    return results
