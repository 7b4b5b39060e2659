"""``verify`` (the wheels against their provenance) and ``sbom`` (the collection's SBOM)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fromager_dagster.core.errors import ConfigError, FromagerDagsterError
from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.layout import OutputLayout

from .build_context import fail

SIGNING_KEY_ENV = "FROMAGER_DAGSTER_SIGNING_KEY"  # core.signing's; not imported at start-up


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(verify_command)
    group.add_command(sbom_command)


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
@click.pass_context
def verify_command(ctx: click.Context, output_dir: Path, public_key: Path | None) -> None:
    """Check every wheel of OUTPUT_DIR against its provenance.

    The wheel's sha256, the source archive in sdists-repo/downloads, each patch, each
    build-environment wheel (and that it has provenance itself), and the signature when a key
    is given. One line per problem, then a summary; exit status 1 on any problem.
    """
    import os

    from fromager_dagster.core.signing import load_public_key
    from fromager_dagster.core.verify import verify_output

    try:
        layout = OutputLayout(output_dir)
        if not layout.wheels_downloads.is_dir():
            raise ConfigError(
                f"{layout.wheels_downloads} does not exist; pass the output folder of a "
                "bootstrap (-O) as OUTPUT_DIR"
            )
        key_path = public_key or (Path(k) if (k := os.environ.get(SIGNING_KEY_ENV)) else None)
        key = load_public_key(key_path) if key_path is not None else None
        report = verify_output(layout, public_key=key)
    except FromagerDagsterError as exc:
        fail(exc, ctx.obj["verbose"])
    for problem in report.problems:
        click.echo(problem.line())
    click.echo(report.summary(), err=True)
    sys.exit(0 if report.ok else 1)


@click.command("sbom")
@click.argument(
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    required=False,
)
@click.option("--collection", default=None, help="Its name (default: the output folder's).")
@click.option("--variant", default="cpu", show_default=True)
@click.pass_context
def sbom_command(
    ctx: click.Context, output_dir: Path, collection: str | None, variant: str
) -> None:
    """Write the CycloneDX 1.6 SBOM of OUTPUT_DIR's collection (work-dir/graph.json) to
    wheels-repo/sboms/<collection>.cdx.json and print its path."""
    from fromager_dagster.core.collection_sbom import write_collection_sbom

    try:
        layout = OutputLayout(output_dir)
        graph_file = layout.work_dir / "graph.json"
        if not graph_file.is_file():
            raise ConfigError(f"{graph_file} does not exist; run bootstrap -O {output_dir} first")
        graph = DependencyGraph.load(graph_file)
        name = collection or output_dir.resolve().name
        path = write_collection_sbom(layout, graph, collection=name, variant=variant)
    except FromagerDagsterError as exc:
        fail(exc, ctx.obj["verbose"])
    click.echo(str(path))
