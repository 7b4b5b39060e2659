"""``python -m fromager_dagster``: the ``fromager-dagster`` command."""

from fromager_dagster.cli.entry import main

main()
