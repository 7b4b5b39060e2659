"""Test mode's second pass for the runs the command line does not follow: a wheel run
launched from the UI, a schedule or a sensor that failed.

The command line does the second pass itself as soon as its run ends; this sensor does the
same for every other failed wheel run of a collection in test mode (the collection's
``test_mode`` key, or the run's tag ``fromager/test-mode: true``), with the same engine
function (:func:`~fromager_dagster.core.bootstrap.plan_second_pass`): the index's wheel of
each failed build, then one run of the builds that waited on a package now there. A second
pass is not followed by another one, as on the command line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg

from fromager_dagster.core.bootstrap import plan_second_pass
from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.index import IndexClient, resolve_index_url
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins

from .automation import cursor_timestamp
from .collections import Collection
from .keys import wheels_group
from .run_tags import CLI_TAG, COLLECTION_TAG
from .wheels import built_nodes, node_asset_key, wheel_op_name

SENSOR_NAME = "test_mode_second_pass_sensor"
TEST_MODE_TAG = "fromager/test-mode"
#: On a second pass's run: the run whose failures it follows.
SECOND_PASS_TAG = "fromager/second-pass-of"  # noqa: S105  a run tag, not a password


def second_pass_sensor(
    collections: Sequence[Collection], *, minimum_interval_seconds: int = 30
) -> dg.SensorDefinition:
    """After a wheel run of a collection in test mode fails, take the failed builds' pre-built
    wheels and request a run of the builds that waited on them (run key: the failed run's
    id, so each failure gets one second pass). The first tick only records the time."""
    by_ident = {c.ident: c for c in collections}

    @dg.sensor(
        name=SENSOR_NAME,
        asset_selection=dg.AssetSelection.groups(*(wheels_group(c) for c in collections)),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Test mode: when a wheel run of a collection in test mode fails (UI, "
        "schedule, sensor), takes each failed build's pre-built wheel from the index and "
        "builds, in a second run, what waited on it; as build-parallel --test-mode does.",
    )
    def _second_pass(context: dg.SensorEvaluationContext):  # type: ignore[no-untyped-def]
        cursor = cursor_timestamp(context.cursor)
        if cursor is None:  # first tick, or a cursor cleared or edited by hand
            context.update_cursor(str(time.time()))
            return dg.SkipReason("no usable cursor: failed wheel runs from now on are followed")
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE],
                updated_after=datetime.fromtimestamp(cursor, tz=UTC),
            ),
            order_by="update_timestamp",
            ascending=True,
        )
        requests: list[dg.RunRequest] = []
        for record in records:
            context.update_cursor(str(record.update_timestamp.timestamp()))
            run = record.dagster_run
            collection = by_ident.get(run.tags.get(COLLECTION_TAG, ""))
            if collection is None or not _followed(run, collection):
                continue
            request = second_pass_request(context.instance, run, collection, context.log)
            if request is not None:
                requests.append(request)
        return requests or dg.SkipReason("no failed wheel run in test mode since last tick")

    return _second_pass


def _followed(run: dg.DagsterRun, collection: Collection) -> bool:
    """A wheel run in test mode, not the command line's (it does its own second pass) and
    not a second pass itself."""
    test_mode = collection.test_mode or run.tags.get(TEST_MODE_TAG) == "true"
    own = CLI_TAG in run.tags or SECOND_PASS_TAG in run.tags
    return test_mode and not own and collection.graph_path.is_file()


def second_pass_request(
    instance: dg.DagsterInstance, run: dg.DagsterRun, collection: Collection, log: object
) -> dg.RunRequest | None:
    """The run request of the second pass after ``run`` failed (None: nothing can run)."""
    graph = DependencyGraph.load(collection.graph_path)
    variant = collection.variant
    by_step = {
        wheel_op_name(collection, graph.nodes[k].canonicalized_name, graph.nodes[k].version): k
        for k in built_nodes(graph)
    }
    by_asset = {node_asset_key(graph, variant, k): k for k in built_nodes(graph)}
    failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    failed = [by_step[e.step_key] for e in failures if e.step_key in by_step]
    if not failed:
        return None
    chosen = run.asset_selection
    selected = None if chosen is None else [by_asset[a] for a in chosen if a in by_asset]
    plan = plan_second_pass(
        graph,
        failed,
        layout=OutputLayout(collection.output_dir),
        index=IndexClient(resolve_index_url(collection.index_url)),
        settings=collection.settings(),
        plugins=Plugins.load(),
        selected=selected,
    )
    say = getattr(log, "info", print)
    for key, why in plan.no_fallback.items():
        say(f"no pre-built fallback for {key}: {why}")
    for key, wheel in plan.fallbacks.items():
        say(f"prebuilt {key} {wheel.name}")
    if not plan.rebuild:
        return None
    return dg.RunRequest(
        run_key=run.run_id,
        asset_selection=[node_asset_key(graph, variant, k) for k in plan.rebuild],
        tags={COLLECTION_TAG: collection.ident, SECOND_PASS_TAG: run.run_id},
    )
