"""The Dagster code location: ``dagster dev -m fromager_dagster.definitions``."""

from __future__ import annotations

import dagster as dg

from fromager_dagster.defs.location import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded inside Dagster's load context so that graph state versions are tracked."""
    return build_definitions()
