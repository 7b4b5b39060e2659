"""Discovery: resolve and download a collection's tree, write graph.json, publish it as state."""

import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeAlias

import dagster as dg
from pydantic import Field

from fromager_dagster.core.bootstrap import (
    BootstrapFailed,
    BootstrapOptions,
    BootstrapResult,
    FailureRecord,
    bootstrap,
)
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.index import IndexClient, resolve_index_url
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.output_lock import hold_output_for_run
from fromager_dagster.core.provenance import RunInfo
from fromager_dagster.core.resolve import Constraints, toplevel_requirements

from .collections import Collection
from .executor import max_concurrent
from .graph_state import ENV_WEBSERVER, publish_graph, reload_location, state_key
from .graph_tables import changes_metadata, nodes_table
from .keys import discovery_group
from .keys import discovery_key as discovery_key  # re-exported
from .progress_log import GatheredLog
from .resources import FromagerResource
from .run_tags import COLLECTION_TAG, ensure_collection_tag

#: What :func:`dagster.define_asset_job` returns (a job over assets, resolved with the
#: definitions). Its class is not in Dagster's public API, so it is not named here.
AssetJob: TypeAlias = Any

#: The run modes of fromager's bootstrap, as launchpad settings of a discovery run.
MODES = ("test_mode", "multiple_versions", "skip_constraints", "min_release_age")


class DiscoveryConfig(dg.Config):
    """Launchpad settings of a discovery run; they default to the collection's values."""

    requirements: list[str] = Field(
        description="Top-level requirements, as in a requirements file (`pbr`, "
        "`stevedore==5.4.0`, markers and extras allowed)."
    )
    requirement_files: list[str] = Field(
        description="Paths of requirements files whose lines are added to `requirements`."
    )
    constraints: list[str] = Field(
        description="Constraints files (paths or http(s) URLs), intersected per package; "
        "`pkg<0` keeps a package out."
    )
    variant: str = Field(
        description="Build variant (settings per variant in the overrides); the wheel assets "
        "of a variant other than `cpu` carry it in their keys."
    )
    index_url: str | None = Field(
        default=None,
        description="Package index to resolve and download from; empty: the collection's, "
        "else $FROMAGER_DAGSTER_INDEX_URL, $PIP_INDEX_URL or pip's configuration.",
    )
    sdist_only: bool = Field(
        default=True,
        description="Build during discovery only the wheels other builds need (the rest are "
        "the wheel assets' job); false builds every wheel during discovery.",
    )
    min_release_age: float | None = Field(
        default=None,
        description="Only use releases uploaded at least this many days ago (a package's "
        "resolver_dist.min_release_age setting wins).",
    )
    test_mode: bool = Field(
        default=False,
        description="Keep going after a failure (a pre-built wheel of the index stands in where "
        "there is one) and write work-dir/test-mode-failures-<timestamp>.json. The graph is "
        "still written and materialized; the run then fails, naming the failed packages.",
    )
    multiple_versions: bool = Field(
        default=False,
        description="Discover every version the requirements and constraints admit, not only "
        "the newest; no constraints.txt is written.",
    )
    skip_constraints: bool = Field(
        default=False, description="Do not write constraints.txt (for conflicting versions)."
    )


def discover_job_name(collection: Collection) -> str:
    return f"discover_{collection.ident}_job"


def discovery_op_name(collection: Collection) -> str:
    return f"discover_{collection.ident}"


def default_config(collection: Collection) -> dict[str, object]:
    """The launchpad's defaults: the collection's values, its run modes included (so the
    nightly schedule and the new-release sensor run with them too)."""
    modes = {key: getattr(collection, key) for key in MODES}
    return {
        "requirements": list(collection.requirements),
        "requirement_files": [str(p) for p in collection.requirement_files],
        "constraints": [str(p) for p in collection.constraints],
        "variant": collection.variant,
        "index_url": collection.index_url,
        "sdist_only": collection.sdist_only,
        **modes,
    }


def discovery_run_config(collection: Collection, **config: object) -> dict[str, Any]:
    """Run config of the discovery job: the collection's defaults, then ``config``'s values."""
    body = {**default_config(collection), **config}
    return {"ops": {discovery_op_name(collection): {"config": body}}}


def discovery_asset(collection: Collection, *, jobs: int | None = None) -> dg.AssetsDefinition:
    """The ``discovery/<collection>/graph`` asset: graph.json, build-order.json, constraints.txt;
    ``jobs`` downloads, environments, hooks and builds at once (default:
    :func:`.executor.max_concurrent`)."""
    workers = jobs or max_concurrent()

    @dg.multi_asset(
        name=discovery_op_name(collection),
        specs=[
            dg.AssetSpec(
                discovery_key(collection),
                group_name=discovery_group(collection),
                kinds={"python", "json"},
                description=(
                    f"Dependency graph of collection {collection.name}: resolves the requirements "
                    "under the constraints, downloads every sdist, builds only the wheels other "
                    "builds need, and writes graph.json, build-order.json and constraints.txt. "
                    "Publishes the graph as a new state version so the wheel assets follow it. "
                    "Its metadata: a table of the graph's nodes and of what changed since the "
                    "previous graph, including the wheel assets it no longer defines."
                ),
            )
        ],
    )
    def _discover(
        context: dg.AssetExecutionContext, config: DiscoveryConfig, fromager: FromagerResource
    ) -> dg.MaterializeResult[None]:
        ensure_collection_tag(context, collection.ident)
        layout = OutputLayout(collection.output_dir)
        previous = _previous_graph(collection)
        reqs = toplevel_requirements(config.requirements, config.requirement_files)
        constraints = Constraints.from_files(config.constraints)
        index = IndexClient(resolve_index_url(config.index_url))

        gathered = GatheredLog(context.log.info)

        def progress(event: str, key: str, detail: str = "") -> None:
            text = f"{event} {key} {detail}".rstrip()
            if event == "resolve":
                context.log.debug(text)
            else:
                gathered.line(text)

        try:
            with hold_output_for_run(layout.root, context.run.run_id), gathered:
                result = bootstrap(
                    reqs,
                    index=index,
                    constraints=constraints,
                    layout=layout,
                    options=BootstrapOptions(
                        jobs=workers,
                        sdist_only=config.sdist_only,
                        isolate=fromager.isolation(),
                        min_release_age=config.min_release_age,
                        test_mode=config.test_mode,
                        multiple_versions=config.multiple_versions,
                        skip_constraints=config.skip_constraints,
                        run=RunInfo.from_environ(
                            os.environ, collection=collection.name, run_id=context.run.run_id
                        ),
                    ),
                    progress=progress,
                    settings=collection.settings(config.variant),
                )
        except FromagerDagsterError as exc:
            failures = exc.failures if isinstance(exc, BootstrapFailed) else [exc]
            lines = [f.one_line() for f in failures]
            raise dg.Failure(
                description=f"discovery failed: {lines[0]}"
                + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""),
                metadata={"failures": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines))},
                allow_retries=False,
            ) from exc
        version = publish_graph(context.instance, collection, result.outputs["graph"])
        metadata = _metadata(result, config, version, _reload(context, version))
        metadata.update(
            graph_nodes=nodes_table(result.graph, config.variant),
            **changes_metadata(previous, result.graph, config.variant),
        )
        if version:
            metadata["state_version"] = dg.MetadataValue.md(
                f"`{version}` of the code-location state `{state_key(collection)}`: the "
                "wheel assets are grown from it"
            )
        if not result.failures:
            return dg.MaterializeResult(
                metadata=metadata, data_version=_data_version(result.outputs["graph"])
            )
        # test mode: the graph is written and materialized, then the run fails to say that
        # something did not build (the failures are in both the materialization and the error)
        context.log_event(dg.AssetMaterialization(discovery_key(collection), metadata=metadata))
        raise dg.Failure(
            description=f"test mode: {len(result.failures)} package(s) failed; graph.json "
            f"was written; failure report: {result.failure_report}",
            metadata=_failure_metadata(result),
            allow_retries=False,
        )

    return _discover


def _previous_graph(collection: Collection) -> DependencyGraph | None:
    """The graph the last discovery wrote (None before the first, or if unreadable)."""
    try:
        return DependencyGraph.load(collection.graph_path)
    except (OSError, ValueError, FromagerDagsterError):
        return None


def _data_version(graph_path: Path) -> dg.DataVersion:
    """The graph's content hash: an unchanged graph leaves the wheel assets in sync."""
    return dg.DataVersion(hashlib.sha256(graph_path.read_bytes()).hexdigest())


def _reload(context: dg.AssetExecutionContext, version: str | None) -> str:
    """Ask the webserver (when one is named) to reload the location onto the new state."""
    url = os.environ.get(ENV_WEBSERVER)
    if not version:
        return "not requested: the instance has no state storage"
    if not url:
        return (
            f"not requested: ${ENV_WEBSERVER} is not set; a running UI shows the new graph "
            "after its next code-location reload"
        )
    location = _location_name(context)
    try:
        return reload_location(url, location)
    except Exception as exc:  # noqa: BLE001  the run succeeded; a failed reload is reported
        context.log.warning("could not reload code location %s: %s", location, exc)
        return f"failed: {exc}"


def _metadata(
    result: BootstrapResult, config: DiscoveryConfig, version: str | None, reload: str
) -> dict[str, Any]:
    graph = result.graph
    metadata: dict[str, Any] = {
        "nodes": dg.MetadataValue.int(len(graph.nodes) - 1),
        "edges": dg.MetadataValue.int(sum(len(n.edges) for n in graph.nodes.values())),
        "graph_path": dg.MetadataValue.path(str(result.outputs["graph"])),
        "build_order_path": dg.MetadataValue.path(str(result.outputs["build_order"])),
        **_constraints_metadata(result.outputs, config),
        # name==version lists, each left out when empty (the CLI reads them)
        **{
            key: ", ".join(found)
            for key, found in (
                ("built_for_discovery", result.built),
                ("reused_for_discovery", result.reused),
                ("prebuilt_for_discovery", result.prebuilt),
            )
            if found
        },
        "seconds": dg.MetadataValue.float(round(result.seconds, 2)),
        "state_version": version or "none: the instance has no state storage",
        "reload": reload,
        # where discovery's time went, summed over its jobs (download, hooks, environments...)
        **{
            f"seconds_{phase}": dg.MetadataValue.float(round(spent, 2))
            for phase, spent in sorted(result.timings.items())
        },
    }
    if config.test_mode:
        metadata.update(_failure_metadata(result))
    return metadata


def _constraints_metadata(outputs: dict[str, Path], config: DiscoveryConfig) -> dict[str, Any]:
    if "constraints" in outputs:
        return {"constraints_path": dg.MetadataValue.path(str(outputs["constraints"]))}
    why = "multiple_versions" if config.multiple_versions else "skip_constraints"
    return {"constraints_path": f"none ({why})"}


def _failure_metadata(result: BootstrapResult) -> dict[str, Any]:
    """Test mode: the count, one line per failed package, the records and the report's path."""
    records = [FailureRecord.from_exception(f) for f in result.failures]
    report = result.failure_report
    lines = [
        f"- {r.package}{'==' + r.version if r.version else ''}: {r.failure_type} failure: "
        f"{r.exception_type}: {r.exception_message}"
        for r in records
    ]
    return {
        "failure_count": dg.MetadataValue.int(len(records)),
        "failures": dg.MetadataValue.md("\n".join(lines) or "none"),
        "failure_records": dg.MetadataValue.json({"failures": [asdict(r) for r in records]}),
        "failure_report": dg.MetadataValue.path(str(report)) if report else "none written",
    }


def _location_name(context: dg.AssetExecutionContext) -> str:
    origin = context.dagster_run.remote_job_origin
    if origin is not None:
        return str(origin.location_name)
    return os.environ.get("FROMAGER_DAGSTER_LOCATION", "fromager_dagster.definitions")


def discover_job(collection: Collection) -> AssetJob:
    return dg.define_asset_job(
        discover_job_name(collection),
        selection=dg.AssetSelection.assets(discovery_key(collection)),
        config=discovery_run_config(collection),
        tags={COLLECTION_TAG: collection.ident},
        description=f"Discover the dependency graph of collection {collection.name}; its "
        "success publishes the graph the collection's wheel assets are grown from.",
    )
