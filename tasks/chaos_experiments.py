"""Loading a drill's experiment: a file in the catalog's experiments folder (ours, or Chaos Toolkit's
mapped onto ours), or the experiment the form gave. Validated before any guard or write."""
from __future__ import annotations

from plans.chaos import Experiment, ExperimentError, experiment_path, read_experiment_file
from plans.chaostoolkit import ServiceRef, resolve_experiment

from .catalog import Catalog


def load_experiment(catalog: Catalog, environment: str, *, experiment_file: str, experiment: Experiment | None,
                    service: str) -> Experiment:
    """The drill's experiment; ExperimentError names the file and the field or action it refuses."""
    if bool(experiment_file) == (experiment is not None):
        raise ExperimentError("give exactly one of experiment_file (a file in the catalog's experiments folder) "
                              "or experiment (the form)")
    if experiment is not None:
        if service and service != experiment.service:
            raise ExperimentError(f"the experiment drills service {experiment.service!r}, but the run names "
                                  f"{service!r}")
        catalog.service(environment, experiment.service)
        return experiment
    path = experiment_path(catalog.experiments_folder(), experiment_file)

    def ref(name: str) -> ServiceRef:
        found = catalog.service(environment, name)
        return ServiceRef(name=name, namespace=found.namespace, deployment=found.deployment)
    drill = resolve_experiment(read_experiment_file(path), experiment_file, service=service, ref=ref)
    catalog.service(environment, drill.service)                 # an unknown service names the allowed ones
    return drill
