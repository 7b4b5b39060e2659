"""The ``fromager-dagster`` command: fromager-compatible commands over the engine."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import bootstrap_cmd, graph_cmd, overrides_cmd, provenance_cmds
from .errors import CommandGroup
from .options import output_dir_option
from .parallel_cmds import bootstrap_parallel_command, build_parallel_command
from .sequence_cmds import build_command, build_sequence_command
from .step_cmd import step_group


@click.group(
    cls=CommandGroup,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "auto_envvar_prefix": "FROMAGER_DAGSTER",
    },
)
@click.option("-v", "--verbose", is_flag=True, help="Show every step and tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Rebuild whole Python dependency trees from source, with fromager-compatible outputs."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


@cli.command("ui")
@output_dir_option(
    "The output folder of `bootstrap`: its dagster-home/ and collections.yaml are used."
)
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def ui_command(output_dir: Path, port: int, host: str) -> None:
    """Serve the Dagster UI (and daemon) on the instance bootstrap's runs use.

    Runs `dagster dev -m fromager_dagster.definitions` with DAGSTER_HOME set to $DAGSTER_HOME,
    else OUTPUT_DIR/dagster-home, and FROMAGER_DAGSTER_COLLECTIONS to OUTPUT_DIR/collections.yaml
    when bootstrap wrote one (unless already set). Stop it with Ctrl-C.
    """
    from . import ui

    sys.exit(ui.serve(output_dir, host, port))


for _module in (bootstrap_cmd, overrides_cmd, graph_cmd):
    _module.register(cli)
# the build commands: build and build-sequence, build-parallel and bootstrap-parallel, step
# (what they share is in .build_context)
for _command in (
    build_command,
    build_sequence_command,
    build_parallel_command,
    bootstrap_parallel_command,
    step_group,
):
    cli.add_command(_command)
provenance_cmds.register(cli)


def main() -> None:
    """Run the command (its errors end it through :class:`.errors.CommandGroup`)."""
    cli(obj={}, auto_envvar_prefix="FROMAGER_DAGSTER")


if __name__ == "__main__":
    main()
