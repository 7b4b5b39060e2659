"""How a fromager-dagster process runs Python's cyclic garbage collector.

Importing dagster, SQLAlchemy and pydantic allocates about 120,000 long-lived objects, and
building the definitions of a large graph hundreds of thousands more. With Python's default
thresholds (a young collection every 700 allocations) that costs hundreds of young
collections and full collections that walk every tracked object again: a third of the CPU
time a rerun of a 40-package tree spends starting up. So a process of ours collects young
objects every 20,000 allocations, and once its start-up is done moves what is alive to the
permanent generation (:func:`gc.freeze`), which full collections skip. Reference counting
still frees everything that is not in a cycle at once.

The command goes further: from its first line until its command's module is imported
(:func:`starting` to :func:`started`) the collector does not run at all. What imports allocate
stays alive (modules, classes, functions), so the dozen young collections and the middle-aged
one they cost (80 ms of a 1.8 s rerun) found nothing to free.

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


def starting() -> None:
    """Start-up begins (the command's first line): no collection until :func:`started`."""
    collect_less()
    gc.disable()


def started() -> None:
    """Start-up is over: what is alive now lives as long as the process (once per process);
    the collector runs again (young objects every :data:`GC_YOUNG_THRESHOLD` allocations)."""
    global _frozen  # noqa: PLW0603  once per process
    collect_less()
    if not _frozen:
        _frozen = True
        gc.freeze()
    gc.enable()
