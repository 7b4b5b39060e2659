"""Discovery: resolve and download a collection's tree, write graph.json, publish it as state."""

import os

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from fromager_dagster.core.bootstrap import BootstrapFailed, BootstrapOptions, bootstrap
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.index import IndexClient
from fromager_dagster.core.index_url import resolve_index_url
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.requirements import Constraints, toplevel_requirements

from .collections import Collection
from .executor import max_concurrent
from .graph_state import ENV_WEBSERVER, publish_graph, reload_location
from .resources import FromagerResource


class DiscoveryConfig(dg.Config):
    """Launchpad settings of a discovery run; they default to the collection's values."""

    requirements: list[str]
    requirement_files: list[str]
    constraints: list[str]
    variant: str
    index_url: str | None = None
    sdist_only: bool = True
    min_release_age: float | None = None  # days; packages' resolver_dist settings win


def discovery_key(collection: Collection) -> dg.AssetKey:
    return dg.AssetKey(["discovery", collection.ident, "graph"])


def discover_job_name(collection: Collection) -> str:
    return f"discover_{collection.ident}_job"


def discovery_op_name(collection: Collection) -> str:
    return f"discover_{collection.ident}"


def default_config(collection: Collection) -> dict[str, object]:
    return {
        "requirements": list(collection.requirements),
        "requirement_files": [str(p) for p in collection.requirement_files],
        "constraints": [str(p) for p in collection.constraints],
        "variant": collection.variant,
        "index_url": collection.index_url,
        "sdist_only": collection.sdist_only,
    }


def _preview(result_graph, limit: int = 40) -> str:  # type: ignore[no-untyped-def]
    rows = ["| # | package | version | build requirements |", "|---|---|---|---|"]
    order = result_graph.build_order()
    for i, entry in enumerate(order[:limit], start=1):
        key = f"{entry['dist']}=={entry['version']}"
        reqs = ", ".join(result_graph.build_requirements(key)) or "-"
        rows.append(f"| {i} | {entry['dist']} | {entry['version']} | {reqs} |")
    if len(order) > limit:
        rows.append(f"| ... | {len(order) - limit} more | | |")
    return "\n".join(rows)


def discovery_asset(collection: Collection) -> dg.AssetsDefinition:
    """The ``discovery/<collection>/graph`` asset: graph.json, build-order.json, constraints.txt."""

    @dg.multi_asset(
        name=discovery_op_name(collection),
        specs=[
            dg.AssetSpec(
                discovery_key(collection),
                group_name=f"discovery_{collection.ident}",
                kinds={"python", "json"},
                description=(
                    f"Dependency graph of collection {collection.name}: resolves the requirements "
                    "under the constraints, downloads every sdist, builds only the wheels other "
                    "builds need, and writes graph.json, build-order.json and constraints.txt. "
                    "Publishes the graph as a new state version so the wheel assets follow it."
                ),
            )
        ],
    )
    def _discover(
        context: dg.AssetExecutionContext, config: DiscoveryConfig, fromager: FromagerResource
    ) -> dg.MaterializeResult:
        layout = OutputLayout(collection.output_dir)
        reqs = toplevel_requirements(config.requirements, config.requirement_files)
        constraints = Constraints.from_files(config.constraints)
        index = IndexClient(resolve_index_url(config.index_url))

        def progress(event: str, key: str, detail: str = "") -> None:
            log = context.log.debug if event == "resolve" else context.log.info
            log(f"{event} {key} {detail}".rstrip())

        try:
            result = bootstrap(
                reqs,
                index=index,
                constraints=constraints,
                layout=layout,
                options=BootstrapOptions(
                    jobs=max_concurrent(),
                    sdist_only=config.sdist_only,
                    isolate=fromager.isolation(),
                    min_release_age=config.min_release_age,
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
        graph = result.graph
        nodes = [k for k in graph.nodes if k]
        edges = sum(len(n.edges) for n in graph.nodes.values())
        version = publish_graph(context.instance, collection, result.outputs["graph"])
        reload = "not requested"
        url = os.environ.get(ENV_WEBSERVER)
        if version and url:
            location = _location_name(context)
            try:
                reload = reload_location(url, location)
            except Exception as exc:  # the run has succeeded; a failed reload is only reported
                reload = f"failed: {exc}"
                context.log.warning(f"could not reload code location {location}: {exc}")
        return dg.MaterializeResult(
            metadata={
                "nodes": dg.MetadataValue.int(len(nodes)),
                "edges": dg.MetadataValue.int(edges),
                "graph_path": dg.MetadataValue.path(str(result.outputs["graph"])),
                "build_order_path": dg.MetadataValue.path(str(result.outputs["build_order"])),
                "constraints_path": dg.MetadataValue.path(str(result.outputs.get("constraints"))),
                "built_for_discovery": ", ".join(result.built),
                "reused_for_discovery": ", ".join(result.reused),
                "seconds": dg.MetadataValue.float(round(result.seconds, 2)),
                "state_version": version or "none (instance has no state storage)",
                "reload": reload,
                "preview": dg.MetadataValue.md(_preview(graph)),
            }
        )

    return _discover


def _location_name(context: dg.AssetExecutionContext) -> str:
    origin = context.dagster_run.remote_job_origin
    if origin is not None:
        return origin.location_name
    return os.environ.get("FROMAGER_DAGSTER_LOCATION", "fromager_dagster.definitions")


def discover_job(collection: Collection) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        discover_job_name(collection),
        selection=dg.AssetSelection.assets(discovery_key(collection)),
        config={"ops": {discovery_op_name(collection): {"config": default_config(collection)}}},
        description=f"Discover the dependency graph of collection {collection.name}.",
    )
