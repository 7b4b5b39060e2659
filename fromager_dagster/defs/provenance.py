"""Provenance in the Dagster layer: each built wheel's statement, the collection's SBOM asset
and its ``provenance_verified`` check. The engine does the work
(:mod:`fromager_dagster.core.provenance`: its statement, collection SBOM and verify modules)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.provenance import (
    SIGNING_KEY_ENV,
    RunInfo,
    load_public_key,
    provenance_of,
    read_record,
    verify_output,
    write_collection_sbom,
)
from fromager_dagster.core.repository import BuiltWheel

from .collections import Collection
from .keys import wheels_group

CHECK_NAME = "provenance_verified"


def wheel_run_info(context: dg.AssetExecutionContext, collection: Collection) -> RunInfo:
    """What a wheel's provenance says of this run: the collection, the run id and the signing
    key of this process's environment (the engine writes the provenance with the wheel)."""
    return RunInfo.from_environ(os.environ, collection=collection.name, run_id=context.run.run_id)


def provenance_metadata(layout: OutputLayout, built: BuiltWheel) -> dict[str, Any]:
    """What a wheel's asset shows of its provenance (nothing when it has none)."""
    found = provenance_of(layout, built.path)
    if found is None:
        return {}
    summary = found.summary()
    metadata: dict[str, Any] = {
        "provenance_path": dg.MetadataValue.path(summary["path"]),
        "provenance_signed": dg.MetadataValue.bool(summary["signed"]),
        "provenance": dg.MetadataValue.json(summary),
    }
    compared = read_record(layout, built.path)  # from verify --rebuild: docs/provenance.md
    if compared is not None:
        metadata["reproducible"] = dg.MetadataValue.bool(bool(compared.get("reproducible")))
        if compared.get("reason"):
            metadata["not_reproducible_reason"] = dg.MetadataValue.text(str(compared["reason"]))
    return metadata


def sbom_key(collection: Collection) -> dg.AssetKey:
    return dg.AssetKey(["sbom", collection.ident, f"{collection.ident}-sbom"])


def collection_sbom_defs(
    graph: DependencyGraph, collection: Collection, wheel_keys: list[dg.AssetKey]
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """The collection's SBOM asset (after its wheels) and its ``provenance_verified`` check."""
    key = sbom_key(collection)
    layout = OutputLayout(collection.output_dir)

    @dg.asset(
        key=key,
        deps=wheel_keys,
        group_name=f"{wheels_group(collection)}_sbom",
        kinds={"cyclonedx"},
        automation_condition=dg.AutomationCondition.eager(),
        description=f"The CycloneDX 1.6 SBOM of collection {collection.name}: every wheel with "
        "its sha256, purl and source, run-time dependencies as CycloneDX dependencies, "
        "build-time ones as fromager-dagster:build-* properties (docs/provenance.md).",
    )
    def _sbom() -> dg.MaterializeResult[None]:
        path = write_collection_sbom(
            layout, graph, collection=collection.name, variant=collection.variant
        )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "components": dg.MetadataValue.int(len(graph.nodes) - 1),
            }
        )

    @dg.asset_check(
        asset=key,
        name=CHECK_NAME,
        description="Every wheel of the collection matches its provenance: its sha256, the "
        "source archive, the patches, the build environment's wheels (which have provenance "
        "too), and the signature when a key is configured (`fromager-dagster verify`).",
    )
    def _verified() -> dg.AssetCheckResult:
        path = os.environ.get(SIGNING_KEY_ENV)
        report = verify_output(layout, public_key=load_public_key(Path(path)) if path else None)
        lines = [p.line() for p in report.problems]
        return dg.AssetCheckResult(
            passed=report.ok,
            description=report.summary(),
            metadata={
                "wheels": dg.MetadataValue.int(report.wheels),
                "problems": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines) or "none"),
            },
        )

    return _sbom, _verified
