"""The ``fromager-dagster`` command: fromager-compatible commands over the engine."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from .. import runtime
from .errors import CommandGroup
from .options import output_dir_option

#: Each command and where it is defined (``module:attribute`` in this package): a command's
#: module, and through it the engine's and Dagster's, is imported only when that command runs
#: (or ``--help`` lists them all), so a command does not pay for the imports of the others.
COMMANDS = {
    "bootstrap": "bootstrap_cmd:bootstrap_command",
    "bootstrap-parallel": "parallel_cmds:bootstrap_parallel_command",
    "build": "sequence_cmds:build_command",
    "build-parallel": "parallel_cmds:build_parallel_command",
    "build-sequence": "sequence_cmds:build_sequence_command",
    "canonicalize": "graph_cmd:canonicalize_command",
    "graph": "graph_cmd:graph_group",
    "lint": "overrides_cmd:lint_command",
    "list-overrides": "overrides_cmd:list_overrides_command",
    "sbom": "provenance_cmds:sbom_command",
    "stats": "graph_cmd:stats_command",
    "step": "step_cmd:step_group",
    "verify": "provenance_cmds:verify_command",
    "wheel-server": "graph_cmd:wheel_server_command",
}


class LazyCommandGroup(CommandGroup):
    """The top-level group: the commands of :data:`COMMANDS`, each imported when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            command = super().get_command(ctx, cmd_name)
        else:
            module, _, attribute = where.partition(":")
            command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
            assert isinstance(command, click.Command) and command.name == cmd_name, where
        runtime.started()  # what the command imported lives as long as the process
        return command


@click.group(
    cls=LazyCommandGroup,
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


def main() -> None:
    """Run the command (its errors end it through :class:`.errors.CommandGroup`)."""
    cli(obj={}, auto_envvar_prefix="FROMAGER_DAGSTER")


if __name__ == "__main__":
    main()
