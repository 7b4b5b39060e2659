"""Definitions that executors can reconstruct in other processes (collections from the env)."""

import dagster as dg

from fromager_dagster.defs.executor import ReconstructableJob, assets_job
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource


def fixture_defs() -> dg.Definitions:
    """The collections of ``$FROMAGER_DAGSTER_COLLECTIONS``, two lanes, no network isolation."""
    return build_definitions(concurrency=2, fromager=FromagerResource(network_isolation=False))


def build_fixture_job() -> ReconstructableJob:
    """Their implicit asset job, reconstructable; runs select a collection's wheel assets."""
    return assets_job(module=__name__, attribute=fixture_defs.__name__)
