"""How a fromager-dagster process runs Python's cyclic garbage collector.

Importing dagster, SQLAlchemy and pydantic allocates about 120,000 long-lived objects, and
building the definitions of a large graph hundreds of thousands more. With Python's default
thresholds (a young collection every 700 allocations) that costs hundreds of young
collections and full collections that walk every tracked object again: a third of the CPU
time a rerun of a 40-package tree spends starting up. So a process of ours collects young
objects every 20,000 allocations, and once its start-up is done moves what is alive to the
permanent generation (:func:`gc.freeze`), which full collections skip. Reference counting
still frees everything that is not in a cycle at once.

Only entry points call these (the command, the code location's definitions): importing a
module of this package never changes the collector.
"""

from __future__ import annotations

import gc

#: Allocations between young collections (Python's default is 700).
GC_YOUNG_THRESHOLD = 20_000

_frozen = False


def collect_less() -> None:
    """Young collections every :data:`GC_YOUNG_THRESHOLD` allocations (idempotent)."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


def started() -> None:
    """Start-up is over: what is alive now lives as long as the process (once per process)."""
    global _frozen  # noqa: PLW0603  once per process
    collect_less()
    if not _frozen:
        _frozen = True
        gc.freeze()
