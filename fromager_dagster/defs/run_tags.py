"""Run tags every run of a collection carries, however it was launched (CLI, UI, automation)."""

from __future__ import annotations

import threading
from typing import Any

COLLECTION_TAG = "fromager/collection"
#: The command that launched a run, on runs the command line launches.
CLI_TAG = "fromager/cli"

_tagged: set[str] = set()
_lock = threading.Lock()


def ensure_collection_tag(context: Any, ident: str) -> None:
    """Give the context's run the collection tag if it was launched without it (the UI's
    "Materialize", a launchpad run): one instance call per run and process, none for runs
    that have it (the CLI's, the schedule's and the sensors')."""
    run = context.run
    if COLLECTION_TAG in run.tags:
        return
    with _lock:
        if run.run_id in _tagged:
            return
        _tagged.add(run.run_id)
    context.instance.add_run_tags(run.run_id, {COLLECTION_TAG: ident})
