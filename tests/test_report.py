"""The run report (rendering, the published artifact) and best-effort notifications."""
from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import uuid
from typing import Iterator

import pytest
from prefect import flow
from prefect.blocks.notifications import SlackWebhook
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from tasks.catalog import Environment, KubeconfigCluster, Notification
from plans.plan import Change, Plan
from plans.record import Approval, RunRecord, Step, TimelineEntry
from plans.targets import DeploymentTarget
from plans.trigger import Trigger
from tasks.redaction import _clear_secrets
from tests.capture import CaptureServer
from tasks.report import (artifact_key, notify, publish_report, render_report, slack_webhook_block,
                          teams_webhook_block)

AT = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)


def make_record(runbook: str = "emergency-rollback", service: str = "payments") -> RunRecord:
    target = DeploymentTarget(environment="staging", cluster="https://k8s", service=service, namespace="pay",
                              deployment="payments-api")
    plan = Plan(runbook=runbook, target=target, summary="roll back to revision 4",
                changes=[Change(resource="deployment pay/payments-api", field="spec.template (image)",
                                before="api:v5", after="api:v4")])
    return RunRecord(
        runbook=runbook, target=target, requested_by="alice", reason="5xx spike after deploy",
        trigger=Trigger(kind="alert", detail="HighErrorRate fp=abc123"), emergency_override="INC-42",
        plan=plan, outcome="succeeded",
        approvals=[Approval(decision="approve", approver="bob", reason="looks right",
                            plan_digest=plan.digest, at=AT)],
        before={"image": "api:v5", "ready": 1}, after={"image": "api:v4", "ready": 3},
        steps=[Step(change=plan.changes[0], status="made", no_undo="a rollback is never undone")],
        catalog="/etc/runbooks/catalog.yaml", run_id="7f3a",
        evidence=["3/3 pods ready on revision 4", "error rate 0.1% < 1%"],
        timeline=[TimelineEntry(at=AT, step="preflight", message="target resolved"),
                  TimelineEntry(at=AT + dt.timedelta(minutes=2), step="verify", message="rollout complete")],
        next_steps=["open a post-mortem for INC-42"])


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    _clear_secrets()


# --- rendering -------------------------------------------------------------------------------

def test_render_has_every_section_with_its_values():
    record = make_record()
    md = render_report(record)
    assert md.startswith("# Runbook: emergency-rollback on staging/payments: succeeded")
    for text in ("**Trigger**: alert: HighErrorRate fp=abc123", "**Requested by**: alice", "**Run**: 7f3a",
                 "**Catalog**: /etc/runbooks/catalog.yaml", "**Target**: deployment pay/payments-api on https://k8s",
                 "**Reason**: 5xx spike after deploy", "**Dry run**: no", "**Emergency override**: INC-42"):
        assert text in md
    sections = ["## Plan", "## Approvals", "## Changes", "## Before / After", "## Verification evidence",
                "## Timeline", "## Notifications", "## Next steps"]
    positions = [md.index(s) for s in sections]
    assert positions == sorted(positions), "sections follow the runbook template's order"
    assert record.plan.markdown() in md
    assert f"| approve | bob | looks right | `{record.plan.digest}` | 2025-03-04 05:06:07Z |" in md
    assert "| image | api:v5 | api:v4 |" in md and "| ready | 1 | 3 |" in md
    assert "- 3/3 pods ready on revision 4" in md
    assert "| 2025-03-04 05:08:07Z | verify | rollout complete |" in md
    assert "- [ ] open a post-mortem for INC-42" in md
    assert "| 1 | deployment pay/payments-api spec.template (image): api:v5 -> api:v4 | made | none: a rollback is " \
           "never undone |" in md


def test_render_converts_timestamps_to_utc_and_escapes_table_cells():
    record = make_record()
    plus2 = dt.timezone(dt.timedelta(hours=2))
    record.timeline = [TimelineEntry(at=AT.astimezone(plus2), step="procedure", message="a | b\nc")]
    md = render_report(record)
    assert "| 2025-03-04 05:06:07Z | procedure | a \\| b<br>c |" in md


def test_render_of_an_empty_record_omits_next_steps_and_says_what_is_missing():
    md = render_report(RunRecord(runbook="chaos-drill", requested_by="schedule", dry_run=True))
    assert "## Next steps" not in md
    assert "No plan was made." in md and "No approvals recorded." in md and "**Dry run**: yes" in md


def test_artifact_key_keeps_only_lowercase_letters_digits_and_dashes():
    assert artifact_key(make_record(runbook="Emergency Rollback", service="Payments_API")) == \
        "runbook-report-emergency-rollback-staging-payments-api"


# --- publishing ------------------------------------------------------------------------------

def test_publish_creates_an_artifact_with_the_markdown(prefect_harness):
    record = make_record(service=f"svc-{uuid.uuid4().hex[:8]}")

    @flow
    def post_incident() -> str:
        return publish_report(record)

    state = post_incident(return_state=True)
    markdown = state.result()
    assert markdown == render_report(record)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(record)])))
    assert len(artifacts) == 1
    artifact = artifacts[0]
    assert artifact.type == "markdown" and artifact.description == "Run report"
    assert artifact.data == markdown
    assert artifact.flow_run_id == state.state_details.flow_run_id
    assert artifact.metadata_["outcome"] == "succeeded"


# --- notifications ---------------------------------------------------------------------------

@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer()
    yield server
    server.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(*notifications: Notification) -> Environment:
    return Environment(cluster=KubeconfigCluster(context="sandbox"), notifications=notifications)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_notify_delivers_slack_and_teams_shaped_messages(prefect_harness, capture):
    slack, teams, quiet = unique("slack"), unique("teams"), unique("quiet")
    slack_webhook_block(f"{capture.url}/slack", name=slack).save(slack)
    teams_webhook_block(f"{capture.url}/teams", name=teams).save(teams)
    slack_webhook_block(f"{capture.url}/quiet", name=quiet).save(quiet)
    env = environment(Notification(kind="slack", block=slack, events=("failure",)),
                      Notification(kind="teams", block=teams, events=("failure", "gate")),
                      Notification(kind="slack", block=quiet, events=("success",)))

    sent = notify(env, "failure", "rollback of payments failed verification", subject="Runbook failed")

    assert [(n.block, n.delivered) for n in sent] == [(slack, True), (teams, True)]
    [slack_body] = capture.bodies("/slack")
    assert json.loads(slack_body) == {"text": "*Runbook failed*\nrollback of payments failed verification"}
    [teams_body] = capture.bodies("/teams")
    card = json.loads(teams_body)["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert [b["text"] for b in card["content"]["body"]] == \
        ["Runbook failed", "rollback of payments failed verification"]
    assert capture.bodies("/quiet") == [], "a notification not subscribed to the event is not sent"


def test_notify_inside_a_flow_run(prefect_harness, capture):
    name = unique("teams")
    teams_webhook_block(f"{capture.url}/hook", name=name).save(name)
    env = environment(Notification(kind="teams", block=name, events=("gate",)))

    @flow
    def gate() -> list[str]:
        return [n.block for n in notify(env, "gate", "approval needed for plan 1a2b", subject="Approval gate")]

    assert gate() == [name]
    assert b"approval needed for plan 1a2b" in capture.bodies("/hook")[0]


def test_unreachable_or_missing_blocks_only_warn(prefect_harness, capture, caplog):
    down, missing, ok = unique("down"), unique("missing"), unique("ok")
    down_url = f"http://127.0.0.1:{closed_port()}/services/SECRETPATH"
    slack_webhook_block(down_url, name=down).save(down)
    slack_webhook_block(f"{capture.url}/ok", name=ok).save(ok)
    env = environment(Notification(kind="slack", block=down, events=("failure",)),
                      Notification(kind="teams", block=missing, events=("failure",)),
                      Notification(kind="slack", block=ok, events=("failure",)))

    with caplog.at_level(logging.WARNING, logger="tasks.report"):
        sent = notify(env, "failure", "disk full", subject="Runbook failed")

    assert [(n.block, n.delivered) for n in sent] == [(down, False), (missing, False), (ok, True)], \
        "a failing channel neither raises nor stops the others, and is recorded as failed"
    assert "ConnectError" in sent[0].error and "SECRETPATH" not in sent[0].error
    warnings = [r.getMessage() for r in caplog.records if r.name == "tasks.report"]
    assert any(down in w and "ConnectError" in w for w in warnings)
    assert any(missing in w and "no MicrosoftTeamsWebhook" in w for w in warnings)
    assert not any("SECRETPATH" in w for w in warnings), "the webhook URL is a credential"


def test_native_slack_block_cannot_reach_loopback_and_only_warns(prefect_harness, capture, caplog):
    """Guards the documented choice: apprise rewrites Slack webhooks to hooks.slack.com."""
    name = unique("native")
    SlackWebhook(url=f"{capture.url}/services/T000/B000/XXXX").save(name)
    env = environment(Notification(kind="slack", block=name, events=("failure",)))

    with caplog.at_level(logging.WARNING, logger="tasks.report"):
        assert [n.delivered for n in notify(env, "failure", "hello", subject="s")] == [False]

    assert capture.requests == []
    assert any(name in r.getMessage() and "NotificationError" in r.getMessage() for r in caplog.records)


def test_notify_rejects_an_unknown_event_before_sending():
    with pytest.raises(ValueError, match="allowed: gate, escalation, failure, success"):
        notify(environment(), "finished", "x", subject="y")
