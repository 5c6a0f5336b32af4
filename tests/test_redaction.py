"""Secrets never reach logs (console or the Prefect API) or published artifacts."""
from __future__ import annotations

import io
import logging
import secrets
from typing import Iterator

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, LogFilter,
                                            LogFilterFlowRunId)
from prefect.logging import get_run_logger
from prefect.logging.handlers import APILogHandler

from plans.record import RunRecord
from tasks.redaction import (RedactingFilter, _clear_secrets, install_redaction, redact,
                             register_secret)
from tasks.report import publish_report


@pytest.fixture
def token() -> Iterator[str]:
    value = "tok-" + secrets.token_hex(8)
    yield value
    _clear_secrets()


def test_redact_masks_registered_values_and_ignores_short_ones(token):
    register_secret(token)
    register_secret("abc12")   # too short to be worth masking
    assert redact(f"Bearer {token}; id abc12") == "Bearer ***; id abc12"


def test_a_secret_containing_another_is_masked_whole(token):
    register_secret(token[:10])
    register_secret(token)
    assert redact(f"x{token}x") == "x***x"


def test_install_redaction_is_idempotent():
    install_redaction()
    install_redaction()
    for name in ("", "prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            assert sum(isinstance(f, RedactingFilter) for f in target.filters) == 1


def test_records_propagated_from_child_loggers_are_redacted_by_handler_filters(token):
    """A logger's own filters skip records from its children; handler filters do not."""
    parent, child = logging.getLogger("redaction-test"), logging.getLogger("redaction-test.child")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    parent.addHandler(handler)
    try:
        register_secret(token)
        child.warning("token is %s", token)
        try:
            raise RuntimeError(f"bad token {token}")
        except RuntimeError:
            child.exception("call failed")
    finally:
        parent.removeHandler(handler)
    output = stream.getvalue()
    assert token not in output
    assert "token is ***" in output and "RuntimeError: bad token ***" in output


def test_planted_token_reaches_neither_run_logs_nor_artifacts(prefect_harness, token):
    @task
    def rotate(value: str) -> None:
        logger = get_run_logger()
        logger.info(f"task: rotated to {value}")
        logger.info("task: rotated to %s", value)

    @flow
    def secrets_rotation() -> None:
        register_secret(token)
        logger = get_run_logger()
        logger.info(f"flow: new token {token}")
        logger.warning("flow: new token %s", token)
        rotate(token)
        publish_report(RunRecord(runbook="secrets-rotation", requested_by="alice",
                                 evidence=[f"new token {token} accepted"]))

    state = secrets_rotation(return_state=True)
    assert state.is_completed()
    APILogHandler().flush()   # run logs are shipped in the background; wait for them
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))

    messages = [log.message for log in logs]
    ours = [m for m in messages if "new token" in m or "rotated to" in m]
    assert len(ours) == 4, messages
    assert sum(log.task_run_id is not None for log in logs if "rotated to" in log.message) == 2
    assert all("***" in m for m in ours)
    assert not any(token in m for m in messages)
    [artifact] = artifacts
    assert "new token *** accepted" in artifact.data and token not in artifact.data
