"""The ``fromager-dagster`` command's process: the collector tuned for start-up, then the CLI.

The command's modules (and through them dagster's) are imported only once the collector is
tuned, and with it off until they are (:mod:`fromager_dagster.runtime`): 0.7 s less CPU time on
every invocation. The command group imports the module of the command that runs when it is
asked for it, and then ends start-up (:meth:`.main.LazyCommandGroup.get_command`).
"""

from __future__ import annotations

from .. import runtime


def main() -> None:
    runtime.starting()
    from .main import main as run_command

    run_command()


if __name__ == "__main__":
    main()
