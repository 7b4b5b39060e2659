"""``verify`` (the wheels against their provenance) and ``sbom`` (the collection's SBOM)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.layout import OutputLayout

from .build_context import hold_output_folder
from .options import (
    NETWORK_ISOLATION,
    VARIANT,
    OverrideOptions,
    resolve_cli_sandbox,
    settings_options,
)

F = TypeVar("F", bound=Callable[..., Any])

SIGNING_KEY_ENV = "FROMAGER_DAGSTER_SIGNING_KEY"  # core.signing's; not imported at start-up


def apply_settings_options(func: F) -> F:
    """The settings options and --sandbox/--network-isolation, for verify --rebuild."""
    return settings_options(NETWORK_ISOLATION(func))


@click.command("verify")
@click.argument(
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    required=False,
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 key (PEM, public or private) the provenance must be signed with "
    f"(default: ${SIGNING_KEY_ENV}, if set).",
)
@click.option(
    "--rebuild",
    "rebuild",
    multiple=True,
    metavar="PACKAGE",
    help="Also rebuild PACKAGE's wheel (from work-dir/graph.json, in the sandbox, in a scratch "
    "folder) and compare its bytes; `all` rebuilds every built wheel. Repeatable. Give the "
    "settings options the build used.",
)
@apply_settings_options
@click.pass_context
def verify_command(
    ctx: click.Context,
    /,
    output_dir: Path,
    public_key: Path | None,
    rebuild: tuple[str, ...],
    network_isolation: bool | None,
    overrides: OverrideOptions,
) -> None:
    """Check every wheel of OUTPUT_DIR against its provenance.

    The wheel's sha256, the source archive in sdists-repo/downloads, each patch, each
    build-environment wheel (and that it has provenance itself), and the signature when a key
    is given. With --rebuild, the wheels named are rebuilt elsewhere and must be the same
    bytes; a difference is a problem naming the differing files, also recorded in
    wheels-repo/provenance/<wheel>.reproducibility.json. One line per problem, then a
    summary; exit status 1 on any problem.
    """
    import os

    from fromager_dagster.core.provenance import load_public_key, verify_output

    layout = OutputLayout(output_dir)
    if not layout.wheels_downloads.is_dir():
        raise ConfigError(
            f"{layout.wheels_downloads} does not exist; pass the output folder of a "
            "bootstrap (-O) as OUTPUT_DIR"
        )
    key_path = public_key or (Path(k) if (k := os.environ.get(SIGNING_KEY_ENV)) else None)
    key = load_public_key(key_path) if key_path is not None else None
    report = verify_output(layout, public_key=key)
    lines = [problem.line() for problem in report.problems]
    if rebuild:  # it writes: scratch folders in work-dir, the comparison records
        hold_output_folder(ctx, layout.root.resolve())
        lines += _rebuild(layout, rebuild, overrides, network_isolation)
    for line in lines:
        click.echo(line)
    click.echo(report.summary(), err=True)
    if differ := len(lines) - len(report.problems):
        click.echo(
            f"{differ} wheel(s) not reproducible: the differing files are named above and "
            "recorded in wheels-repo/provenance/<wheel>.reproducibility.json",
            err=True,
        )
    sys.exit(0 if not lines else 1)


def _rebuild(
    layout: OutputLayout,
    wanted: tuple[str, ...],
    overrides: OverrideOptions,
    network_isolation: bool | None,
) -> list[str]:
    """Rebuild the wheels ``wanted`` names and compare: one line per wheel that differs."""
    from packaging.utils import canonicalize_name

    from fromager_dagster.core.plugins import Plugins
    from fromager_dagster.core.provenance import rebuild_and_compare

    graph_file = layout.work_dir / "graph.json"
    if not graph_file.is_file():
        raise ConfigError(f"{graph_file} does not exist; --rebuild needs the graph of the build")
    graph = DependencyGraph.load(graph_file)
    settings = overrides.load()
    isolate = resolve_cli_sandbox(network_isolation)
    names = {canonicalize_name(n) for n in wanted if n != "all"}
    keys = [
        key
        for key in graph.build_order_keys()
        if not graph.nodes[key].pre_built
        and ("all" in wanted or graph.nodes[key].canonicalized_name in names)
    ]
    unknown = names - {graph.nodes[k].canonicalized_name for k in keys}
    if unknown:
        raise ConfigError(
            f"--rebuild {', '.join(sorted(unknown))}: not a package built from source in "
            f"{graph_file}"
        )
    lines = []
    for key in keys:
        result = rebuild_and_compare(
            graph, key, layout, isolate=isolate, settings=settings, plugins=Plugins.load()
        )
        status = "reproducible" if result.reproducible else "NOT reproducible"
        click.echo(f"rebuilt {key}: {status}", err=True)
        if not result.reproducible:
            lines.append(f"{result.wheel}: not reproducible: {result.reason()}")
    return lines


@click.command("sbom")
@click.argument(
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    required=False,
)
@click.option("--collection", default=None, help="Its name (default: the output folder's).")
@VARIANT
def sbom_command(output_dir: Path, collection: str | None, variant: str) -> None:
    """Write the CycloneDX 1.6 SBOM of OUTPUT_DIR's collection (work-dir/graph.json) to
    wheels-repo/sboms/<collection>.cdx.json and print its path."""
    from fromager_dagster.core.provenance import write_collection_sbom

    layout = OutputLayout(output_dir)
    graph_file = layout.work_dir / "graph.json"
    if not graph_file.is_file():
        raise ConfigError(f"{graph_file} does not exist; run bootstrap -O {output_dir} first")
    graph = DependencyGraph.load(graph_file)
    name = collection or output_dir.resolve().name
    path = write_collection_sbom(layout, graph, collection=name, variant=variant)
    click.echo(str(path))
