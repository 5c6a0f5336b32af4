"""Operational runbooks as code."""
