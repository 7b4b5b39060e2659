"""Where the CLI's Dagster runs live, for modules that import them from here (``cli/ui.py``).

The code was split by what it owns: :mod:`.instance` (the local instance),
:mod:`.collection_file` (the command's collections.yaml), :mod:`.run_events` (following a run),
:mod:`.location_run` (the code location's jobs), :mod:`.bootstrap_run` (bootstrap),
:mod:`.graph_build` (build-parallel), :mod:`.sequence_run` (build and build-sequence) and
:mod:`.build_summary` (what a build command did).
"""

from __future__ import annotations

from .collection_file import COLLECTIONS_FILE
from .instance import ENV_DAGSTER_HOME, dagster_home, open_instance

__all__ = ["COLLECTIONS_FILE", "ENV_DAGSTER_HOME", "dagster_home", "open_instance"]
