"""Commands: build, build-sequence, build-parallel, bootstrap-parallel, step."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
