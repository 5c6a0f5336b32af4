"""Publish a drill's scorecard: one Prefect artifact per service, a new version per drill."""
from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from plans.scorecard import Scorecard
from plans.targets import key_slug


def scorecard_key(target_key: str) -> str:
    """Stable per service (built from what is drilled, not the catalog name), so versions pile up in one place."""
    return f"chaos-scorecard-{key_slug(target_key)}"


def publish_scorecard(card: Scorecard, *, target_key: str) -> str:
    """Create the next version of the service's scorecard artifact; returns its key."""
    key = scorecard_key(target_key)
    create_markdown_artifact(markdown=card.markdown(), key=key,
                             description=f"chaos drill scorecard: {'PASS' if card.passed else 'FAIL'}")
    return key
