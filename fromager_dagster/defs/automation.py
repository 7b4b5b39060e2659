"""Automation: nightly rediscovery + rebuild, a rebuild after each discovery, new releases."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import dagster as dg
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.index import IndexClient, resolve_index_url
from fromager_dagster.core.plugins import Plugins, settings_resolver
from fromager_dagster.core.resolve import Constraints

from .collections import Collection
from .discovery import AssetJob, discover_job_name, discovery_run_config
from .graph_state import wheels_selection
from .run_tags import COLLECTION_TAG
from .up_to_date import wheels_needing_steps

ENV_SENSOR_INTERVAL = "FROMAGER_DAGSTER_RELEASE_SENSOR_INTERVAL"
REBUILD_TAG = "fromager/rebuild"


def nightly_schedule(collection: Collection) -> dg.ScheduleDefinition:
    """Rediscover the collection on its cron; the rebuild follows the discovery's success."""

    @dg.schedule(
        name=f"nightly_{collection.ident}_schedule",
        cron_schedule=collection.schedule,
        job_name=discover_job_name(collection),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Nightly rediscovery and rebuild of collection {collection.name}.",
    )
    def _nightly(
        context: dg.ScheduleEvaluationContext,  # noqa: ARG001  Dagster's signature
    ) -> dg.RunRequest:
        return dg.RunRequest(
            run_config=discovery_run_config(collection),
            tags={REBUILD_TAG: "true", COLLECTION_TAG: collection.ident},
        )

    return _nightly


def rebuild_after_discovery_sensor(
    collections: Sequence[Collection], *, minimum_interval_seconds: int = 30
) -> dg.SensorDefinition:
    """After a rebuild-tagged discovery run succeeds, materialize the collection's wheels.

    The request selects the collection's wheel group in the code location as it is at the
    tick, so the wheels of the graph that discovery just published are the ones built. The
    cursor is the update time of the last discovery run seen (the first tick only records
    the current time); the run key is the discovery run's id, so each discovery triggers one
    build at most.
    """
    by_ident = {c.ident: c for c in collections}

    @dg.sensor(
        name="rebuild_after_discovery_sensor",
        asset_selection=dg.AssetSelection.groups(*by_ident),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Materializes a collection's wheel assets when a rebuild-tagged discovery "
        "run (nightly schedule, new-release sensor) succeeds.",
    )
    def _rebuild(context: dg.SensorEvaluationContext):  # type: ignore[no-untyped-def]
        cursor = cursor_timestamp(context.cursor)
        if cursor is None:  # first tick, or a cursor cleared or edited by hand
            context.update_cursor(str(time.time()))
            return dg.SkipReason(
                "no usable cursor (first tick, or cleared): rebuilds follow discoveries "
                "that succeed from now on"
            )
        repository = context.repository_def
        if repository is None:
            return dg.SkipReason("no repository in the sensor's context")
        since = datetime.fromtimestamp(cursor, tz=UTC)
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.SUCCESS],
                tags={REBUILD_TAG: "true"},
                updated_after=since,
            ),
            order_by="update_timestamp",
            ascending=True,
        )
        requests: list[dg.RunRequest] = []
        for record in records:
            context.update_cursor(str(record.update_timestamp.timestamp()))
            ident = record.dagster_run.tags.get(COLLECTION_TAG, "")
            if ident not in by_ident:
                continue
            collection = by_ident[ident]
            keys = wheels_selection(collection).resolve(repository.asset_graph)
            if not keys:
                context.log.info("collection %s has no wheel assets yet", ident)
                continue
            if collection.graph_path.is_file():  # only the missing and changed wheels
                graph = DependencyGraph.load(collection.graph_path)
                keys = keys & set(wheels_needing_steps(context.instance, collection, graph))
            if not keys:
                context.log.info("collection %s: every wheel is up to date", ident)
                continue
            requests.append(
                dg.RunRequest(
                    run_key=record.dagster_run.run_id,
                    asset_selection=sorted(keys),
                    tags={
                        COLLECTION_TAG: ident,
                        "fromager/discovery-run": record.dagster_run.run_id,
                    },
                )
            )
        return requests or dg.SkipReason("no rebuild-tagged discovery succeeded since last tick")

    return _rebuild


def cursor_timestamp(cursor: str | None) -> float | None:
    """The rebuild sensor's cursor as a POSIX time; None when it is missing, empty (the UI's
    "Preview tick result", a cleared cursor) or not a finite time."""
    try:
        value = float((cursor or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def sensor_interval() -> int:
    try:
        return max(30, int(os.environ.get(ENV_SENSOR_INTERVAL, "3600")))
    except ValueError:
        return 3600


def new_release_sensor(
    collections: Sequence[Collection],
    discover_jobs: Sequence[AssetJob],
    *,
    minimum_interval_seconds: int | None = None,
) -> dg.SensorDefinition:
    """Poll the index for every package of the current graphs; a new admissible release
    triggers the collection's discovery once (run key ``<collection>:<name>==<version>``)."""

    @dg.sensor(
        name="new_release_sensor",
        jobs=list(discover_jobs),
        minimum_interval_seconds=minimum_interval_seconds or sensor_interval(),
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Triggers rediscovery and rebuild when the index has a new release that the "
        "collection's constraints admit. The first tick records what exists.",
    )
    def _releases(context: dg.SensorEvaluationContext):  # type: ignore[no-untyped-def]
        known = release_cursor(context.cursor)
        requests: list[dg.RunRequest] = []
        for collection in collections:
            if not collection.graph_path.is_file():
                continue
            seen = known.setdefault(collection.ident, {})
            found = _release_requests(collection, seen, context.log)
            requests.extend(found)
        context.update_cursor(json.dumps(known, sort_keys=True))
        if not requests:
            return dg.SkipReason("no new admissible release")
        return requests

    return _releases


def release_cursor(cursor: str | None) -> dict[str, dict[str, str]]:
    """The new-release sensor's cursor: collection -> package -> the newest admissible version
    seen. Anything unusable (empty, not JSON, a hand-edited value) is left out, and the
    packages it named take a new baseline; an older cursor's lists of every version seen
    keep their newest entry."""
    try:
        data = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    known: dict[str, dict[str, str]] = {}
    for ident, packages in data.items():
        if not isinstance(packages, dict):
            continue
        kept: dict[str, str] = {}
        for name, value in packages.items():
            versions = value if isinstance(value, list) else [value]
            valid = [v for v in versions if isinstance(v, str) and _valid_version(v)]
            if valid:
                kept[str(name)] = max(valid, key=Version)
        known[str(ident)] = kept
    return known


def _release_requests(
    collection: Collection, seen: dict[str, str], log: object
) -> list[dg.RunRequest]:
    """Run requests for the packages of the collection's graph whose newest admissible
    release is newer than ``seen``'s (updated in place); a package seen for the first time
    only sets its baseline."""
    graph = DependencyGraph.load(collection.graph_path)
    names = sorted({n.canonicalized_name for k, n in graph.nodes.items() if k})
    resolver = settings_resolver(  # as the collection's discovery resolves
        IndexClient(resolve_index_url(collection.index_url)),
        Constraints.from_files(collection.constraints),
        collection.settings(),
        plugins=Plugins.load(),
        min_release_age=collection.min_release_age,
    )
    requests = []
    for name in names:
        try:
            found = resolver.newest(name)
        except FromagerDagsterError as exc:
            getattr(log, "warning", print)(f"cannot read {name} from the index: {exc}")
            continue
        if found is None:
            continue
        newest = str(found.version)
        previous = seen.get(name)
        seen[name] = newest if previous is None else max(previous, newest, key=Version)
        if previous is None or Version(newest) <= Version(previous):
            continue  # a baseline, or nothing newer than what was seen
        requests.append(
            dg.RunRequest(
                run_key=f"{collection.name}:{name}=={newest}",
                job_name=discover_job_name(collection),
                run_config=discovery_run_config(collection),
                tags={
                    REBUILD_TAG: "true",
                    COLLECTION_TAG: collection.ident,
                    "fromager/release": f"{name}-{newest}"[:63],
                },
            )
        )
    return requests


def _valid_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def all_automation(
    collections: Mapping[str, Collection],
    discover_jobs: Sequence[AssetJob],
) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    cols = list(collections.values())
    schedules = [nightly_schedule(c) for c in cols]
    sensors: list[dg.SensorDefinition] = []
    if cols:
        sensors.append(new_release_sensor(cols, discover_jobs))
        sensors.append(rebuild_after_discovery_sensor(cols))
    return schedules, sensors
