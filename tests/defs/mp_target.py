"""A job the multiprocess executor can reconstruct in its step processes (collections from env)."""

import dagster as dg

from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource


def build_mp_job() -> dg.JobDefinition:
    defs = build_definitions(concurrency=2, fromager=FromagerResource(network_isolation=False))
    return defs.resolve_job_def("build_mp_job")
