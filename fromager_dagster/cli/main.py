"""The ``fromager-dagster`` command: fromager-compatible commands over the engine."""

from __future__ import annotations

import errno
import sys
import traceback
from pathlib import Path

import click

from . import bootstrap_cmd, build_cmds, graph_cmd, overrides_cmd, provenance_cmds


@click.group(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "auto_envvar_prefix": "FROMAGER_DAGSTER",
    }
)
@click.option("-v", "--verbose", is_flag=True, help="Show every step and tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Rebuild whole Python dependency trees from source, with fromager-compatible outputs."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


@cli.command("ui")
@click.option(
    "-O",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The output folder of `bootstrap`: its dagster-home/ and collections.yaml are used.",
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


for _module in (bootstrap_cmd, overrides_cmd, graph_cmd, build_cmds, provenance_cmds):
    _module.register(cli)


#: A disk that is full, read-only or refuses us: a fact about the machine, not a bug.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO})


def main() -> None:
    """Run the command; a disk error that escaped the engine is still one line (exit 1),
    with its traceback only under -v."""
    try:
        cli(obj={}, auto_envvar_prefix="FROMAGER_DAGSTER")
    except Exception as exc:
        line = _disk_error(exc)
        if line is None:
            raise
        if {"-v", "--verbose"} & set(sys.argv[1:2]):
            traceback.print_exception(exc)
        click.echo(f"error: {line}", err=True)
        sys.exit(1)


def _disk_error(exc: BaseException) -> str | None:
    """One line for an OSError of the disk (or SQLite's "disk is full" / "disk I/O error"
    from the Dagster instance) anywhere in ``exc``'s chain; ``None`` for anything else."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_ERRNOS:
            where = f" {seen.filename}" if seen.filename else ""
            return (
                f"cannot write{where}: {seen.strerror}; free some space (or pass -O a "
                "writable folder) and run the command again"
            )
        text = str(seen).lower()
        if type(seen).__name__ == "OperationalError" and ("disk" in text or "full" in text):
            return (
                f"the Dagster instance cannot write: {str(seen).splitlines()[0]}; free some "
                "space on its disk and run the command again"
            )
        seen = seen.__cause__ or seen.__context__
    return None


if __name__ == "__main__":
    main()
