"""The code location: every collection's discovery, wheel assets, jobs and automation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from .automation import all_automation
from .collections import Collection, load_collections
from .discovery import discover_job, discovery_asset
from .executor import build_executor, max_concurrent
from .graph_state import collection_defs
from .resources import FromagerResource, build_workers_resource
from .second_pass import second_pass_sensor


def build_definitions(
    collections: Mapping[str, Collection] | None = None,
    *,
    concurrency: int | None = None,
    fromager: FromagerResource | None = None,
) -> dg.Definitions:
    """Definitions for ``collections`` (default: from collections.yaml) with ``concurrency``
    lanes (default: :func:`.executor.max_concurrent`); local files only.

    Jobs: one discovery job per collection. The wheel assets are built by runs of Dagster's
    implicit asset job selecting a collection's group (:func:`.graph_state.wheels_selection`).
    """
    collections = load_collections() if collections is None else collections
    lanes = concurrency or max_concurrent()
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    discover_jobs = []
    for collection in collections.values():
        assets.append(discovery_asset(collection, jobs=lanes))
        discover_jobs.append(discover_job(collection))
        # the project root would hold LOCAL_FILESYSTEM state; the graph state is in the
        # instance's storage, so the current folder (the project dagster dev serves) will do
        grown = collection_defs(collection, lanes=lanes, project_root=Path.cwd())
        assets.extend(a for a in (grown.assets or []) if isinstance(a, dg.AssetsDefinition))
        checks.extend(grown.asset_checks or [])  # type: ignore[arg-type]
    schedules, sensors = all_automation(collections, discover_jobs)
    if collections:  # test mode's second pass after a failed wheel run (the CLI's own too)
        sensors.append(second_pass_sensor(list(collections.values())))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=discover_jobs,
        schedules=schedules,
        sensors=sensors,
        resources={
            "fromager": fromager or FromagerResource(),
            "build_workers": build_workers_resource(lanes),
        },
        executor=build_executor(lanes),
    )
