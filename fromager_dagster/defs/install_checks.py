"""The collection's install check: one step, after the run's wheels, checks them all together.

Each wheel asset has a check ``installs_and_imports``; all of a collection's checks are one
multi-asset check (one op), so they run once every wheel of the run is in the repository
(a wheel's install dependencies are not prerequisites of its build, so its own step is too
early) and share one environment. The engine does the work
(:func:`fromager_dagster.core.repository.install_check.check_installs`).
"""

import re
from collections.abc import Iterator
from typing import Any

import dagster as dg

from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.repository import check_installs

from .build_log import log_tail_markdown
from .collections import Collection
from .resources import FromagerResource
from .wheels import built_nodes, node_asset_key

CHECK_NAME = "installs_and_imports"
CHECK_DESCRIPTION = (
    "The wheel installs from the local repository alone (--only-binary :all:, with the "
    "collection's constraints.txt), together with the collection's other wheels, and every "
    "top-level module it ships imports. Runs once per run, after all the run's wheels."
)


def install_check_op_name(collection: Collection) -> str:
    return "check_" + re.sub(r"[^A-Za-z0-9_]", "_", collection.ident) + "_installs_and_imports"


def install_checks(
    graph: DependencyGraph, collection: Collection
) -> dg.AssetChecksDefinition | None:
    """The collection's install checks (None when it has no wheel assets)."""
    layout = OutputLayout(collection.output_dir)
    pins: dict[dg.AssetKey, tuple[str, str]] = {}
    for key in built_nodes(graph):
        node = graph.nodes[key]
        pins[node_asset_key(graph, collection.variant, key)] = (
            node.canonicalized_name,
            node.version,
        )
    if not pins:
        return None
    specs = [
        dg.AssetCheckSpec(CHECK_NAME, asset=key, description=CHECK_DESCRIPTION) for key in pins
    ]

    @dg.multi_asset_check(
        name=install_check_op_name(collection),
        specs=specs,
        can_subset=True,
        required_resource_keys={"fromager"},
        description=f"Installs the wheels of collection {collection.name} together from the "
        "local repository alone and imports every top-level module they ship; runs once per "
        "run, after the run's wheels. A failure blocks nothing already built: read its "
        "detail and the log's tail, fix the package (settings, patches), rebuild it.",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        fromager: FromagerResource = context.resources.fromager
        selected = [k.asset_key for k in context.selected_asset_check_keys]
        log = layout.logs_dir / f"install-check-{collection.ident}.log"
        results = check_installs(
            layout,
            [pins[k] for k in selected],
            isolate=fromager.isolation(),
            log=log,
            constraints=layout.work_dir / "constraints.txt",
        )
        by_pin = {(r.name, r.version): r for r in results}
        failed = not all(r.passed for r in results)
        tail = log_tail_markdown(log) if failed else None  # read once, for every failure
        for asset_key in selected:
            result = by_pin[pins[asset_key]]
            metadata: dict[str, Any] = {
                "requirement": result.key,
                "detail": result.detail
                or ("installed and imported" if result.passed else "failed"),
                "modules": ", ".join(result.modules) or "none: the wheel ships no module",
                "log_path": dg.MetadataValue.path(str(log)),
            }
            if result.wheel:
                metadata["wheel"] = dg.MetadataValue.path(str(result.wheel))
            if not result.passed and tail is not None:
                metadata["log_tail"] = tail
            yield dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=CHECK_NAME,
                passed=result.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=None if result.passed else result.detail,
                metadata=metadata,
            )

    return _check
