"""docs/runbooks/*.md are generated from the flows and kept current."""
from __future__ import annotations

import subprocess
import sys

import pytest

from runbooks.docs import SECTIONS, render, sections


def test_committed_runbook_pages_are_current():
    result = subprocess.run([sys.executable, "-m", "runbooks.cli", "docs", "--check"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, f"run `runbooks docs` and commit: {result.stderr}"


def test_page_follows_the_runbook_template():
    page = render("emergency-rollback")
    for heading in ("## Purpose", "## Prerequisites", "## Parameters", "## Procedure", "## Verification",
                    "## Rollback", "## Post-Incident", "**Approval Required**", "**Estimated Time**"):
        assert heading in page
    assert "| `service` | string | required |" in page
    assert "monthly-dry-run-payments-api" in page


def test_a_docstring_missing_a_section_is_an_error():
    with pytest.raises(ValueError, match="lacks: Rollback$"):
        sections("\n".join(f"{s}: x" for s in SECTIONS if s != "Rollback"))


def test_ci_triage_page_says_how_github_starts_it():
    page = render("ci-failure-triage")
    assert "| `repository` | string | required |" in page and "**Approval Required**" in page
    assert "github-starts-ci-failure-triage" in page and "POST /webhooks/github" in page
