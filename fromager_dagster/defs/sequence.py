"""build and build-sequence as a Dagster job: one op per package, in order.

The command line (``cli/sequence_run.py``) checks the arguments into a :class:`SequenceBuild`
and launches :func:`sequence_job` on the local instance; this module defines the job.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from fromager_dagster.core.bootstrap import FailureRecord
from fromager_dagster.core.build import Sandbox, build_package
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.index import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.provenance import RunInfo
from fromager_dagster.core.repository import (
    prebuilt_fallback,
    record_built_wheel,
    take_prebuilt,
    trusted_wheel,
)
from fromager_dagster.core.resolve import Constraints
from fromager_dagster.core.settings import Settings

from .keys import wheel_key
from .wheels import PRIORITY_TAG


@dataclass(frozen=True)
class SequenceEntry:
    name: str
    version: str
    prebuilt: bool = False

    @property
    def key(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class SequenceBuild:
    """A ``build`` or ``build-sequence`` command once its arguments are checked."""

    output_dir: Path
    job_name: str
    entries: tuple[SequenceEntry, ...]
    index: IndexClient  # sdists, pre-built wheels and test-mode fallbacks
    wheel_server_url: str | None  # build requirements; None: the local repository
    constraints: Constraints
    settings: Settings
    isolate: bool | Sandbox
    force: bool = False
    test_mode: bool = False


def sequence_op_name(position: int, entry: SequenceEntry) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"build_{position:04d}_{entry.name}_{entry.version}")


def sequence_job(plan: SequenceBuild) -> dg.JobDefinition:
    """One op per entry, run in order. Without test mode each op waits on the previous one
    (a failure stops the sequence); in test mode they are independent, ordered by priority."""
    nodes = [
        _sequence_op(plan, position, entry, chained=position > 0 and not plan.test_mode)
        for position, entry in enumerate(plan.entries)
    ]
    dependencies: dict[str, dict[str, dg.DependencyDefinition]] = {}
    if not plan.test_mode:
        for before, after in itertools.pairwise(nodes):
            dependencies[after.name] = {"after": dg.DependencyDefinition(before.name)}
    graph = dg.GraphDefinition(
        name=plan.job_name,
        node_defs=nodes,
        dependencies=dependencies,
        description="Build wheels one at a time, in order (fromager's build-sequence).",
    )
    return graph.to_job(executor_def=dg.in_process_executor)


def _sequence_op(
    plan: SequenceBuild, position: int, entry: SequenceEntry, *, chained: bool
) -> dg.OpDefinition:
    layout = OutputLayout(plan.output_dir)
    asset_key = wheel_key(plan.settings.variant, entry.name, entry.version)

    def materialize(wheel: Path, seconds: float, **flags: bool) -> dg.AssetMaterialization:
        return dg.AssetMaterialization(
            asset_key=asset_key,
            description=f"Wheel of {entry.key} ({plan.job_name})",
            metadata={
                "requirement": entry.key,
                "wheel_path": dg.MetadataValue.path(str(wheel)),
                "wheel_size": dg.MetadataValue.int(wheel.stat().st_size),
                "build_seconds": dg.MetadataValue.float(round(seconds, 3)),
                **{k: dg.MetadataValue.bool(v) for k, v in flags.items()},
            },
        )

    # untyped: Dagster reads annotations; inputs: Dagster passes them, the step needs none
    def compute(context, inputs):  # type: ignore[no-untyped-def]  # noqa: ARG001
        tag = plan.settings.build_tag(entry.name, entry.version)
        existing = (
            None if plan.force else trusted_wheel(layout, entry.name, entry.version, build_tag=tag)
        )
        if existing is not None:
            context.log.info("reused %s %s", entry.key, existing.name)
            yield materialize(
                existing, 0.0, reused=True, prebuilt=existing.parent == layout.wheels_prebuilt
            )
            yield dg.Output(None)
            return
        context.log.info("build %s", entry.key)
        try:
            if entry.prebuilt:
                built = take_prebuilt(
                    layout,
                    entry.name,
                    entry.version,
                    index=plan.index,
                    settings=plan.settings,
                    plugins=Plugins.load(),
                )
            else:
                built = build_package(
                    entry.name,
                    entry.version,
                    index=plan.index,
                    layout=layout,
                    isolate=plan.isolate,
                    wheel_server_url=plan.wheel_server_url,
                    constraints=plan.constraints,
                    settings=plan.settings,
                    plugins=Plugins.load(),
                    run=RunInfo.from_environ(os.environ, run_id=context.run.run_id),
                )
        except FromagerDagsterError as exc:
            yield from _sequence_failure(context, plan, layout, entry, exc, materialize)
            return
        if built.prebuilt:
            context.log.info("prebuilt %s %s", entry.key, built.path.name)
        else:
            record_built_wheel(layout, entry.name, entry.version, built)
            context.log.info("built %s %.1fs", entry.key, built.seconds)
        yield materialize(built.path, built.seconds, prebuilt=built.prebuilt)
        yield dg.Output(None)

    return dg.OpDefinition(
        compute_fn=compute,
        name=sequence_op_name(position, entry),
        ins={"after": dg.In(dg.Nothing)} if chained else {},
        outs={"result": dg.Out(dg.Nothing)},
        tags={PRIORITY_TAG: str(-position)},
        description=f"Build {entry.key}.",
    )


def _sequence_failure(
    context: dg.OpExecutionContext,
    plan: SequenceBuild,
    layout: OutputLayout,
    entry: SequenceEntry,
    exc: FromagerDagsterError,
    materialize: Callable[..., dg.AssetMaterialization],
) -> Iterator[Any]:
    """Fail the step; in test mode first take the index's wheel, so later builds can use it."""
    context.log.info("failed %s %s", entry.key, exc.one_line())
    record = FailureRecord.from_exception(exc, package=entry.name, version=entry.version)
    metadata: dict[str, Any] = {
        "error": exc.one_line(),
        "failure_record": json.dumps(asdict(record)),
    }
    if exc.log_path:
        metadata["log_path"] = dg.MetadataValue.path(str(exc.log_path))
    if plan.test_mode and not entry.prebuilt:
        try:
            wheel = prebuilt_fallback(
                plan.index,
                entry.name,
                entry.version,
                layout,
                settings=plan.settings,
                plugins=Plugins.load(),
            ).path
        except FromagerDagsterError as missing:
            context.log.info("no pre-built fallback for %s: %s", entry.key, missing)
        else:
            context.log.info("prebuilt %s %s", entry.key, wheel.name)
            metadata["prebuilt_fallback"] = dg.MetadataValue.path(str(wheel))
            yield materialize(wheel, 0.0, prebuilt=True, prebuilt_fallback=True)
    raise dg.Failure(description=exc.one_line(), metadata=metadata, allow_retries=False) from exc
