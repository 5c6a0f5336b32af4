"""Kubernetes tasks: one module per resource kind."""
