"""What a command's process does before its work: the collector off while it imports, and
Dagster's schema scripts read once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
from alembic.script import ScriptDirectory
from dagster._core.storage.sql import get_alembic_config

from fromager_dagster.cli.instance import open_instance

# Run in a process of its own: the collector's state belongs to the whole process.
_COLLECTOR = """
import gc, sys
import click
from fromager_dagster import runtime
runtime.starting()
assert not gc.isenabled(), "collecting during start-up"
from fromager_dagster.cli.main import cli
command = cli.get_command(click.Context(cli), sys.argv[1])
assert command is not None
assert gc.isenabled(), "the collector stayed off after start-up"
assert gc.get_freeze_count() > 0, "start-up's objects were not frozen"
print("ok")
"""


def test_the_collector_is_off_until_the_command_is_imported() -> None:
    # a command imported on demand, and one the group defines itself
    for command in ("lint", "ui"):
        done = subprocess.run(
            [sys.executable, "-c", _COLLECTOR, command],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0 and done.stdout == "ok\n", (command, done.stderr)


def _revision(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_schema_scripts_are_read_once_and_every_store_is_stamped_at_their_head(
    tmp_path: Path,
) -> None:
    instance = open_instance(tmp_path / "home")
    import dagster._core.storage.event_log.sqlite.sqlite_event_log as event_log
    import dagster._core.storage.runs.sqlite.sqlite_run_storage as run_storage

    runs, events = get_alembic_config(run_storage.__file__), get_alembic_config(event_log.__file__)
    assert runs is not events
    scripts = ScriptDirectory.from_config(runs)
    assert ScriptDirectory.from_config(events) is scripts  # one folder of scripts, read once
    head = scripts.get_current_head()
    assert head

    @dg.asset
    def trivial() -> int:
        return 1

    with instance:
        result = dg.materialize([trivial], instance=instance)
        assert result.success
        history = tmp_path / "home" / "history"
        assert _revision(history / "runs.db") == head
        assert _revision(history / "runs" / "index.db") == head
        assert _revision(history / "runs" / f"{result.run_id}.db") == head  # the run's shard
