"""A runbook module that cannot be imported: `runbooks serve` must stop at start-up and say why."""
import no_such_module_for_the_test  # noqa: F401
