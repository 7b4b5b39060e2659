"""The Dagster code location: ``dagster dev -m fromager_dagster.definitions``.

``defs`` reads its collections and concurrency from ``collections.yaml`` /
``$FROMAGER_DAGSTER_COLLECTIONS`` and ``$FROMAGER_DAGSTER_MAX_CONCURRENT`` (what a user sets
for ``dagster dev``); :func:`configured_defs` is the same location given them as arguments, the
way the CLI's runs (and their step processes) rebuild it.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from fromager_dagster import runtime
from fromager_dagster.defs.collections import load_collections
from fromager_dagster.defs.location import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded inside Dagster's load context so that graph state versions are tracked."""
    definitions = build_definitions()
    runtime.started()  # a large graph's definitions: see fromager_dagster.runtime
    return definitions


def configured_defs(collections_file: str, concurrency: int) -> dg.Definitions:
    """The location over the collections of ``collections_file`` with ``concurrency`` lanes."""
    definitions = build_definitions(
        load_collections(Path(collections_file)), concurrency=concurrency
    )
    runtime.started()
    return definitions
