"""Runbooks as Prefect flows: one module per runbook."""
