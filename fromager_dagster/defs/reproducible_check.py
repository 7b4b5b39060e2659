"""The wheels' optional ``reproducible`` check: rebuild each wheel and compare the bytes.

Off by default. On for a collection with ``reproducible_check: true`` in its entry of
collections.yaml, or for one run from the launchpad (the ``fromager`` resource's
``reproducible_check``: true or false wins over the collection's key). When on, each
selected wheel is rebuilt in a scratch folder under ``work-dir``, in the run's sandbox, and
its sha256 compared with the built wheel's; a difference fails the check, naming the wheel's
members that differ. When off, the check yields no result: Dagster shows it skipped.

All of a collection's checks are one multi-asset check (one op, after the run's wheels), as
the install check is; the rebuilds run one after another in it. The engine does the work
(:func:`~fromager_dagster.core.provenance.rebuild_and_compare`), and records each result
beside the wheel's provenance, where the wheel's asset and ``verify --rebuild`` find it.
"""

import re
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.provenance import rebuild_and_compare, record_path, recorded

from .collections import Collection
from .resources import FromagerResource
from .wheels import built_nodes, node_asset_key

CHECK_NAME = "reproducible"
CHECK_DESCRIPTION = (
    "Off unless turned on (collections.yaml `reproducible_check: true`, or the launchpad's "
    "`resources.fromager.config.reproducible_check: true`). Rebuilds the wheel in a scratch "
    "folder, in the sandbox, from the same source archive and build-environment wheels, and "
    "compares the sha256; a difference fails the check and names the wheel's members that "
    "differ. Skipped when off."
)


def reproducible_check_op_name(collection: Collection) -> str:
    return "check_" + re.sub(r"[^A-Za-z0-9_]", "_", collection.ident) + "_reproducible"


def check_is_on(fromager: FromagerResource, collection: Collection) -> bool:
    """The launchpad's choice when it made one, else the collection's key."""
    if fromager.reproducible_check is not None:
        return fromager.reproducible_check
    return collection.reproducible_check


def reproducible_checks(
    graph: DependencyGraph, collection: Collection
) -> dg.AssetChecksDefinition | None:
    """The collection's ``reproducible`` checks, one per wheel asset, in one op (None when it
    has no wheel assets)."""
    layout = OutputLayout(collection.output_dir)
    nodes = {node_asset_key(graph, collection.variant, key): key for key in built_nodes(graph)}
    if not nodes:
        return None
    specs = [
        dg.AssetCheckSpec(CHECK_NAME, asset=asset_key, description=CHECK_DESCRIPTION)
        for asset_key in nodes
    ]

    @dg.multi_asset_check(
        name=reproducible_check_op_name(collection),
        specs=specs,
        can_subset=True,
        required_resource_keys={"fromager"},
        description=f"Rebuilds the run's wheels of collection {collection.name} in a scratch "
        "folder and compares their sha256, when turned on (collections.yaml "
        "`reproducible_check`, or the launchpad's fromager resource); skipped otherwise.",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        fromager: FromagerResource = context.resources.fromager
        selected = [k.asset_key for k in context.selected_asset_check_keys]
        settings = collection.settings()
        if not check_is_on(fromager, collection):
            context.log.info(
                "reproducible check off for collection %s: skipped "
                "%d check(s); turn it on with `reproducible_check: true` in its "
                "collections.yaml entry or the launchpad's "
                "resources.fromager.config.reproducible_check",
                collection.name,
                len(selected),
            )
            for asset_key in selected:  # what an earlier rebuild recorded, said, not checked
                record = recorded(graph, nodes[asset_key], layout, settings)
                if record is not None and not record.get("reproducible"):
                    context.log.warning(
                        "%s: recorded as not reproducible on %s: %s",
                        nodes[asset_key],
                        record.get("checked"),
                        record.get("reason"),
                    )
            return
        sandbox = fromager.isolation()
        for asset_key in selected:
            key = nodes[asset_key]
            started = time.monotonic()
            try:
                result = rebuild_and_compare(
                    graph, key, layout, isolate=sandbox, settings=settings, plugins=Plugins.load()
                )
            except FromagerDagsterError as exc:
                yield dg.AssetCheckResult(
                    asset_key=asset_key,
                    check_name=CHECK_NAME,
                    passed=False,
                    description=f"the rebuild failed: {exc.one_line()}",
                    metadata={"requirement": key, "error": exc.one_line()},
                )
                continue
            metadata: dict[str, Any] = {
                "requirement": key,
                "compared": result.compared(sandbox.kind),
                "wheel": result.wheel,
                "wheel_sha256": result.sha256,
                "rebuilt_sha256": result.rebuilt_sha256,
                "differing_files": dg.MetadataValue.md(
                    "\n".join(f"- `{m}`" for m in result.differing) or "none"
                ),
                "sandbox": sandbox.kind,
                "record_path": dg.MetadataValue.path(str(record_path(layout, result.wheel))),
                "rebuild_seconds": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            }
            if not result.reproducible:
                metadata["not_reproducible_reason"] = dg.MetadataValue.text(result.reason())
            yield dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=CHECK_NAME,
                passed=result.reproducible,
                description=(
                    f"{result.wheel}: rebuilt with the same sha256"
                    if result.reproducible
                    else f"{result.wheel} is not reproducible: {result.reason()}"
                ),
                metadata=metadata,
            )

    return _check
