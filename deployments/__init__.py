"""How runs start: the alert receiver, trigger rules, schedules, and serving every runbook."""
