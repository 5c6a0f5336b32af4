"""Reusable Prefect tasks: one module per system or concern (see DESIGN.md)."""
