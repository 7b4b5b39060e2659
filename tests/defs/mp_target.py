"""Build jobs that executors can reconstruct in other processes (collections from the env)."""

import dagster as dg

from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource


def build_fixture_job() -> dg.JobDefinition:
    """The build job of the one collection in ``$FROMAGER_DAGSTER_COLLECTIONS`` (two lanes)."""
    defs = build_definitions(concurrency=2, fromager=FromagerResource(network_isolation=False))
    [name] = [job.name for job in defs.jobs or [] if job.name.startswith("build_")]
    return defs.resolve_job_def(name)
