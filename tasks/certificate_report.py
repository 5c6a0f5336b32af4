"""The certificate table: one row per certificate, published beside the run report as a table artifact."""
from __future__ import annotations

import re

from prefect.artifacts import create_table_artifact

from .redaction import redact


def publish_certificate_table(rows: list[dict], *, environment: str, summary: str) -> None:
    """Publish (a new version of) `certificate-inventory-<environment>`, linked to the current run."""
    key = re.sub(r"[^a-z0-9-]+", "-", f"certificate-inventory-{environment}".lower()).strip("-")
    create_table_artifact([{k: redact(str(v)) for k, v in row.items()} for row in rows], key=key,
                          description=redact(summary))
