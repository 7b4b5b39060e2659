"""Commands build and build-sequence: wheels one at a time, from an index or a build order."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.credentials import redact_url
from ..core.errors import ConfigError
from ..core.index import IndexClient, resolve_index_url
from ..defs.sequence import SequenceBuild, SequenceEntry
from .build_context import BuildContext, finish, pin
from .options import INDEX_URL, TEST_MODE, OutputOptions, output_options
from .sequence_run import run_sequence


@click.command("build")
@click.argument("dist_name")
@click.argument("dist_version")
@click.argument("index_url")
@output_options
@TEST_MODE
@click.pass_context
def build_command(
    ctx: click.Context,
    /,
    dist_name: str,
    dist_version: str,
    index_url: str,
    output: OutputOptions,
    test_mode: bool,
) -> None:
    """Build DIST_NAME==DIST_VERSION's wheel from its sdist on INDEX_URL.

    The sdist comes from INDEX_URL; the build requirements, discovered by the package's PEP 517
    hooks, are installed only from INDEX_URL too (fromager's wheel server of already built
    wheels). The wheel goes to OUTPUT_DIR/wheels-repo/downloads and its path is printed. Runs
    as a Dagster run (build_wheel_job) on the local instance.
    """
    context = BuildContext(ctx, output)
    name, version = pin(dist_name, dist_version)
    url = resolve_index_url(index_url)
    entry = SequenceEntry(name, version, context.settings.pre_built(name))
    plan = SequenceBuild(
        output_dir=context.layout.root,
        job_name="build_wheel_job",
        entries=(entry,),
        index=IndexClient(url),
        wheel_server_url=url,
        constraints=context.constraints,
        settings=context.settings,
        isolate=context.isolate,
        force=True,
        test_mode=test_mode,
    )
    click.echo(f"building {name}=={version} from {redact_url(url)}, through Dagster", err=True)
    summary = run_sequence(plan, context.printer())
    finish(summary, context, test_mode=test_mode, packages=1)


def read_build_order(path: Path) -> list[tuple[str, str, bool]]:
    """``(name, version, prebuilt)`` of every entry of a build-order.json; ConfigError lists
    every bad entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read build order {path}: {exc}") from exc
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of build-order entries")
    entries: list[tuple[str, str, bool]] = []
    problems: list[str] = []
    for position, raw in enumerate(data):
        where = f"entry {position}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected an object")
            continue
        dist, version = raw.get("dist"), raw.get("version")
        if not isinstance(dist, str) or not isinstance(version, str):
            problems.append(f"{where}: needs string fields 'dist' and 'version'")
            continue
        try:
            name, version = pin(dist, version)
        except ConfigError as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        prebuilt = raw.get("prebuilt") is True or raw.get("source_url_type") == "prebuilt"
        entries.append((name, version, prebuilt))
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return entries


@click.command("build-sequence")
@click.argument("build_order_file", type=click.Path(path_type=Path))
@output_options
@INDEX_URL
@click.option("--force", is_flag=True, help="Rebuild wheels already in the repository.")
@TEST_MODE
@click.pass_context
def build_sequence_command(
    ctx: click.Context,
    /,
    build_order_file: Path,
    output: OutputOptions,
    index_url: str | None,
    force: bool,
    test_mode: bool,
) -> None:
    """Build every entry of BUILD_ORDER_FILE (build-order.json) in order, one at a time.

    Each sdist comes from the index; its build requirements are installed only from the local
    repository of the wheels built so far (OUTPUT_DIR/wheels-repo). A wheel already in the
    repository with the expected build tag is reused unless --force. Pre-built entries take
    the index's wheel. Runs as a Dagster run (build_sequence_job) on the local instance.
    """
    context = BuildContext(ctx, output)
    entries = tuple(
        SequenceEntry(n, v, p or context.settings.pre_built(n))
        for n, v, p in read_build_order(build_order_file)
    )
    if not entries:
        raise ConfigError(f"{build_order_file}: the build order is empty")
    index = IndexClient(resolve_index_url(index_url))
    plan = SequenceBuild(
        output_dir=context.layout.root,
        job_name="build_sequence_job",
        entries=entries,
        index=index,
        wheel_server_url=None,
        constraints=context.constraints,
        settings=context.settings,
        isolate=context.isolate,
        force=force,
        test_mode=test_mode,
    )
    click.echo(
        f"building {len(entries)} package(s) in order from {index.display_url}, through Dagster",
        err=True,
    )
    summary = run_sequence(plan, context.printer())
    finish(summary, context, test_mode=test_mode, packages=len(entries))
