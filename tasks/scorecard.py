"""Publish a drill's scorecard: one Prefect artifact per service, a new version per drill."""
from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from plans.scorecard import Scorecard
from plans.targets import key_slug

from .calls import run_logger


def scorecard_key(target_key: str) -> str:
    """Stable per service (built from what is drilled, not the catalog name), so versions pile up in one place."""
    return f"chaos-scorecard-{key_slug(target_key)}"


def publish_scorecard(card: Scorecard, *, target_key: str) -> str:
    """Create the next version of the service's scorecard artifact; returns its key ("" if publishing failed).

    A failure is logged, never raised: the scorecard is also in the run report, and publishing it must not
    hide the drill's own outcome (an abort, a failed restore) that may be propagating."""
    key = scorecard_key(target_key)
    try:
        create_markdown_artifact(markdown=card.markdown(), key=key,
                                 description=f"chaos drill scorecard: {'PASS' if card.passed else 'FAIL'}")
    except Exception as error:                    # noqa: BLE001 - logged; the run's own error must propagate
        run_logger().error("publishing the scorecard %s failed: %s: %s", key, type(error).__name__, error)
        return ""
    return key
