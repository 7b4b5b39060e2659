"""Whether the definitions are loading with a defs-state storage (a code server, ``dagster
dev``) or without one (tests, ``Definitions.validate_loadable``, a step process)."""

from __future__ import annotations

from dagster._core.storage.defs_state.base import DefsStateStorage


def loading_with_state_storage() -> bool:
    """True when a defs-state storage is configured for the definitions being loaded: Dagster
    has no public call that says so, and without one a component's state cannot be read
    from storage (the collection's graph state then reads its graph.json)."""
    return DefsStateStorage.get() is not None
