"""Graph-backed wheel assets: one asset per package-version-variant."""

import functools
import hashlib
import inspect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion

from fromager_dagster.core.build import BuildWorkers, session_cache
from fromager_dagster.core.errors import FromagerDagsterError, is_transient
from fromager_dagster.core.graph import (
    ROOT,
    DependencyGraph,
    build_lanes,
    build_priorities,
)
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.output_lock import hold_output_for_run
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.provenance import RunInfo
from fromager_dagster.core.repository import BuiltWheel, build_or_reuse
from fromager_dagster.core.settings import Settings
from fromager_dagster.core.sources import build_fingerprint, file_sha256

from .build_log import log_tail_markdown, show_build_log
from .collections import Collection
from .keys import discovery_key, wheels_group
from .keys import key_part as key_part  # re-exported
from .keys import wheel_key as wheel_key  # re-exported
from .provenance import provenance_metadata, wheel_run_info
from .resources import FromagerResource
from .run_tags import ensure_collection_tag

RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=1, backoff=dg.Backoff.EXPONENTIAL)


def tag_value(text: str) -> str:
    """``text`` made safe as an asset tag value: ``[A-Za-z0-9_.-]{0,63}``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63]


def node_asset_key(graph: DependencyGraph, variant: str, key: str) -> dg.AssetKey:
    node = graph.nodes[key]
    return wheel_key(variant, node.canonicalized_name, node.version)


def code_version(graph: DependencyGraph, key: str, settings: Settings) -> str:
    """sha256 over the source identity, the sorted build-requirement keys, the variant and
    the package's build fingerprint (settings, patch contents, overriding plugin)."""
    node = graph.nodes[key]
    parts = {
        "source": node.download_url,
        "build_requirements": sorted(graph.build_requirements(key)),
        "variant": settings.variant,
        "settings": _fingerprint(settings, node.canonicalized_name, node.version),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def wheel_op_name(collection: Collection, name: str, version: str) -> str:
    """The op (and step key) that builds ``name==version`` in ``collection``."""
    return "build_" + re.sub(r"[^A-Za-z0-9_]", "_", f"{collection.ident}_{name}_{version}")


def _fingerprint(settings: Settings, name: str, version: str) -> str:
    return build_fingerprint(settings, Plugins.load(), name, version)


def wheel_asset(
    graph: DependencyGraph,
    key: str,
    *,
    collection: Collection,
    op_tags: dict[str, str] | None = None,
    settings: Settings,
) -> dg.AssetsDefinition:
    """The asset that builds node ``key`` of ``graph`` (and its blocking install check).

    Built from Dagster's public constructors (``AssetSpec``, ``OpDefinition``,
    ``AssetsDefinition``) with the names ``@multi_asset`` would give (op, inputs, outputs), not
    through the decorator: the decorator inspects the body's signature and resolves a Dagster
    type for every dependency input, about 1 ms per asset, which a code location of 1,000
    packages (some 3,600 dependency inputs) pays on every load.
    """
    node = graph.nodes[key]
    name, version, variant = node.canonicalized_name, node.version, collection.variant
    asset_key = node_asset_key(graph, variant, key)
    build_reqs = graph.build_requirements(key)
    deps = [node_asset_key(graph, variant, dep) for dep in build_reqs]
    requirement = f"{name}=={version}"
    layout = OutputLayout(collection.output_dir)
    flaky = name in _canonical_set(collection.flaky_build)
    spec = dg.AssetSpec(
        asset_key,
        deps=[_asset_dep(discovery_key(collection)), *(_asset_dep(dep) for dep in deps)],
        group_name=wheels_group(collection),
        kinds={"python", "wheel"},
        description=_description(requirement, variant, build_reqs),
        tags={
            "package": tag_value(name),
            "version": tag_value(version),
            "variant": tag_value(variant),
            "collection": tag_value(collection.name),
        },
        code_version=code_version(graph, key, settings),
        metadata=_spec_metadata(requirement, node.download_url, build_reqs),
        skippable=False,
    )
    return _assets_definition(
        spec,
        op_name=wheel_op_name(collection, name, version),
        compute_fn=WheelBuild(
            graph, key, layout, asset_key, flaky=flaky, settings=settings, collection=collection
        ),
        op_tags=op_tags or {},
    )


def _description(requirement: str, variant: str, build_reqs: list[str]) -> str:
    if build_reqs:
        env = (
            f"Its build environment holds only its build requirements, {', '.join(build_reqs)}, "
            "installed from wheels this collection built (the local repository)."
        )
    else:
        env = "It has no build requirements: its build environment holds no other package."
    return (
        f"Wheel of {requirement} (variant {variant}), built from its sdist without network "
        f"access. {env} Upstream: the discovery that found it and those build requirements. "
        "The build log is shown in the step's stdout and, last lines, in the materialization."
    )


def _spec_metadata(requirement: str, download_url: str, build_reqs: list[str]) -> dict[str, Any]:
    metadata: dict[str, dg.RawMetadataValue] = {
        "requirement": requirement,
        "build_requirements": ", ".join(build_reqs) or "none",
    }
    if download_url:
        metadata["source_url"] = dg.MetadataValue.url(download_url)
    return metadata


def _call_signature(cls: type) -> inspect.Signature:
    """``cls.__call__``'s signature without ``self``: what ``inspect.signature(instance)``
    would compute on every call."""
    signature = inspect.signature(cls.__call__)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


class WheelBuild:
    """The body of a wheel asset's op: build node ``key``, or reuse the wheel an earlier build
    made from the same inputs. Whether it installs and imports is the collection's check
    (:mod:`.install_checks`), once the whole install closure is there.

    Dagster calls it as ``compute_fn(context, inputs)`` and reads its signature to choose the
    context type; the signature is the class's, computed once rather than once per op.
    """

    def __init__(
        self,
        graph: DependencyGraph,
        key: str,
        layout: OutputLayout,
        asset_key: dg.AssetKey,
        *,
        flaky: bool,
        settings: Settings,
        collection: Collection,
    ) -> None:
        self.graph, self.key, self.layout, self.asset_key = graph, key, layout, asset_key
        self.flaky, self.settings, self.collection = flaky, settings, collection
        node = graph.nodes[key]
        self.requirement = f"{node.canonicalized_name}=={node.version}"
        self.source_url = node.download_url

    def __call__(
        self,
        context: dg.AssetExecutionContext,
        inputs: Mapping[str, Any],  # noqa: ARG002  Dagster's compute signature
    ) -> Iterator[dg.MaterializeResult[Any]]:
        graph, key, layout = self.graph, self.key, self.layout
        fromager: FromagerResource = context.resources.fromager
        ensure_collection_tag(context, self.collection.ident)
        try:
            with hold_output_for_run(layout.root, context.run.run_id):  # docs/faults.md
                built = build_or_reuse(
                    graph,
                    key,
                    layout,
                    settings=self.settings,
                    plugins=Plugins.load(),
                    reuse=fromager.reuse_wheels,
                    build=lambda: build_in_workers(
                        context, graph, key, layout, self.settings,
                        run=wheel_run_info(context, self.collection),  # for its provenance
                    ),
                )  # fmt: skip
        except Exception as exc:
            failed_log = getattr(exc, "log_path", None)
            if failed_log:  # the failed build's output, in the step's captured stdout
                show_build_log(self.requirement, Path(failed_log))
            raise _translate(exc, context, flaky=self.flaky) from exc
        show_build_log(self.requirement, built.log_path, reused=built.reused)
        yield dg.MaterializeResult(
            asset_key=self.asset_key,
            metadata=_wheel_metadata(self.requirement, self.source_url, layout, built),
            data_version=dg.DataVersion(built.sha256),
        )


def _wheel_metadata(
    requirement: str, source_url: str, layout: OutputLayout, built: BuiltWheel
) -> dict[str, Any]:
    """What the UI shows of a wheel: its requirement, hashes, sizes, log and provenance."""
    metadata: dict[str, dg.RawMetadataValue] = {
        "requirement": requirement,
        "source_sha256": file_sha256(built.source_path),
        "wheel_path": dg.MetadataValue.path(str(built.path)),
        "wheel_size": dg.MetadataValue.int(built.size),
        "wheel_sha256": built.sha256,
        "build_seconds": dg.MetadataValue.float(round(built.seconds, 3)),
        "log_path": dg.MetadataValue.path(str(built.log_path)),
        "reused": dg.MetadataValue.bool(built.reused),
    }
    if source_url:
        metadata["source_url"] = dg.MetadataValue.url(source_url)
    metadata.update(provenance_metadata(layout, built))
    tail = log_tail_markdown(built.log_path)
    if tail is not None:
        metadata["build_log_tail"] = tail
    return metadata


WheelBuild.__signature__ = _call_signature(WheelBuild)  # type: ignore[attr-defined]


def build_in_workers(
    context: dg.AssetExecutionContext,
    graph: DependencyGraph,
    key: str,
    layout: OutputLayout,
    settings: Settings,
    run: RunInfo | None = None,
) -> BuiltWheel:
    """Build node ``key`` hermetically in one of the run's build worker processes (``run``:
    what the wheel's provenance, written by the engine, says of the run)."""
    fromager: FromagerResource = context.resources.fromager
    workers: BuildWorkers = context.resources.build_workers
    return workers.build(
        graph,
        key,
        layout=layout,
        isolate=fromager.isolation(),
        settings=settings,
        uv_cache=session_cache(layout.work_dir / "uv-cache", context.run.run_id),
        run=run,
    )


@functools.cache
def _asset_dep(key: dg.AssetKey) -> dg.AssetDep:
    """One ``AssetDep`` per upstream key, shared by every asset that needs it."""
    return dg.AssetDep(key)


_ASSET_OUT = dg.Out(dg.Nothing)  # an asset spec without an I/O manager: no value, order only


@functools.cache
def _canonical_set(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(canonicalize_name(n) for n in names)


@functools.cache
def _nothing_input(input_name: str) -> Any:
    """One ordering-only (``Nothing``) input definition per name, shared by every op (an
    ``InputDefinition``, a class Dagster does not export)."""
    return dg.In(dg.Nothing).to_definition(input_name)


def _input_name(key: dg.AssetKey) -> str:
    """The input name ``@multi_asset`` gives a dependency on ``key`` (Dagster's rule)."""
    return "_".join(key.path).replace("-", "_").replace(".", "_")


def _assets_definition(
    spec: dg.AssetSpec,
    *,
    op_name: str,
    compute_fn: Callable[..., Iterator[Any]],
    op_tags: Mapping[str, str],
) -> dg.AssetsDefinition:
    """What ``@multi_asset(name=op_name, specs=[spec], ...)`` builds: one op whose inputs are
    the spec's deps (type ``Nothing``) and whose output is the asset, with the same names and
    attributes."""
    keys_by_input_name = {_input_name(d.asset_key): d.asset_key for d in spec.deps}
    output_name = spec.key.to_python_identifier()
    op = dg.OpDefinition(
        compute_fn=compute_fn,
        name=op_name,
        ins={name: _nothing_input(name) for name in keys_by_input_name},
        outs={
            # Out() resolves its Dagster type on every call; _replace copies the resolved one
            output_name: _ASSET_OUT._replace(
                description=spec.description,
                is_required=not spec.skippable,
                code_version=spec.code_version,
                metadata=spec.metadata,
            ),
        },
        required_resource_keys={"fromager", "build_workers"},
        tags=op_tags,
        retry_policy=RETRY_POLICY,
    )
    return dg.AssetsDefinition(
        keys_by_input_name=keys_by_input_name,
        keys_by_output_name={output_name: spec.key},
        node_def=op,
        specs=[spec],
    )


def _translate(exc: Exception, context: dg.AssetExecutionContext, *, flaky: bool) -> Exception:
    """Transient -> RetryRequested (per the retry policy); anything else -> final Failure."""
    if isinstance(exc, FromagerDagsterError):
        text = exc.one_line()
    elif isinstance(exc, InvalidVersion):  # a version string in the package's files
        text = f"invalid version: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    if is_transient(exc, flaky=flaky) and context.retry_number < RETRY_POLICY.max_retries:
        attempt = context.retry_number + 1
        context.log.warning("transient failure (attempt %s), will retry: %s", attempt, text)
        return dg.RetryRequested(
            max_retries=RETRY_POLICY.max_retries,
            seconds_to_wait=RETRY_POLICY.calculate_delay(attempt),
        )
    metadata: dict[str, dg.RawMetadataValue] = {"error": text}
    log_path = getattr(exc, "log_path", None)
    if log_path:
        metadata["log_path"] = dg.MetadataValue.path(str(log_path))
        tail = log_tail_markdown(Path(log_path))
        if tail is not None:
            metadata["log_tail"] = tail
    # the run page shows the failure's metadata; the asset page, its events: this observation
    context.log_event(dg.AssetObservation(context.asset_key, description=text, metadata=metadata))
    return dg.Failure(description=text, metadata=metadata, allow_retries=False)


def wheel_assets(
    graph: DependencyGraph, collection: Collection, *, lanes: int
) -> list[dg.AssetsDefinition]:
    """One wheel asset per non-root node of ``graph``, under the collection's settings."""
    settings = collection.settings()
    tags = build_lanes(graph, lanes, settings, exclusive=collection.exclusive_build)
    priority = build_priorities(graph, OutputLayout(collection.output_dir))
    return [
        wheel_asset(
            graph,
            key,
            collection=collection,
            op_tags={**tags.get(key, {}), PRIORITY_TAG: str(priority.get(key, 0))},
            settings=settings,
        )
        for key in built_nodes(graph)
    ]


PRIORITY_TAG = "dagster/priority"


def built_nodes(graph: DependencyGraph) -> list[str]:
    """The nodes built from source, one wheel asset each: all but the root and pre-built ones."""
    return [key for key, node in graph.nodes.items() if key != ROOT and not node.pre_built]


def graph_wheel_keys(graph: DependencyGraph, variant: str) -> list[dg.AssetKey]:
    """The wheel asset keys of ``graph``, without building the definitions."""
    return [node_asset_key(graph, variant, key) for key in built_nodes(graph)]
