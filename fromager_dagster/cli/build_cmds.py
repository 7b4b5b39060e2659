"""The build commands, registered on the ``fromager-dagster`` group.

build and build-sequence live in :mod:`.sequence_cmds`, build-parallel and bootstrap-parallel
in :mod:`.parallel_cmds`, step in :mod:`.step_cmd`; what they share in :mod:`.build_context`.
"""

from __future__ import annotations

import click

from .options import settings_options
from .parallel_cmds import bootstrap_parallel_command, build_parallel_command
from .sequence_cmds import build_command, build_sequence_command
from .step_cmd import step_group

__all__ = ["register", "settings_options"]


def register(group: click.Group) -> None:
    """Add the build commands to ``group``."""
    for command in (
        build_command,
        build_sequence_command,
        build_parallel_command,
        bootstrap_parallel_command,
        step_group,
    ):
        group.add_command(command)
