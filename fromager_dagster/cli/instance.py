"""The local Dagster instance the CLI's runs use: its folder and its dagster.yaml."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import dagster as dg
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from ..core.errors import ConfigError
from ..core.output_lock import locked_file, unwritable

ENV_DAGSTER_HOME = "DAGSTER_HOME"
_DAGSTER_YAML = """\
# Local instance of fromager-dagster (SQLite under this folder), written by the CLI.
telemetry:
  enabled: false
# Step processes log a few events to the console before the run's loggers exist; the
# event log keeps every level regardless.
python_logs:
  python_log_level: INFO
"""


def dagster_home(output_dir: Path) -> Path:
    """``$DAGSTER_HOME`` if set, else ``<OUTPUT_DIR>/dagster-home``."""
    explicit = os.environ.get(ENV_DAGSTER_HOME, "").strip()
    return Path(explicit).resolve() if explicit else output_dir.resolve() / "dagster-home"


_read_scripts = ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]
_scripts: dict[tuple[Any, ...], ScriptDirectory] = {}
_scripts_lock = threading.Lock()


def _scripts_read_once(cls: type[ScriptDirectory], config: Config) -> ScriptDirectory:
    """``ScriptDirectory.from_config``, one object per folder of migration scripts and options.

    Dagster checks the schema revision of each SQLite store it opens (runs, event log index,
    schedules, and a new shard per run) through a fresh ScriptDirectory, which imports every
    one of its ~90 migration scripts to find the head revision: 60 ms each time, five times a
    rerun. The scripts are installed files that do not change while the process lives, so one
    ScriptDirectory per configuration is read once and shared (the revision map it holds is
    only read; Dagster stamps and checks under its own lock).
    """
    fresh: ScriptDirectory = _read_scripts(cls, config)
    key = (
        fresh.dir,
        tuple(fresh.version_locations or ()),
        fresh.file_template,
        fresh.truncate_slug_length,
        fresh.sourceless,
        fresh.output_encoding,
        fresh.timezone,
        fresh.recursive_version_locations,
        repr(fresh.hooks),
        repr(fresh.messaging_opts),
    )
    with _scripts_lock:
        return _scripts.setdefault(key, fresh)


def read_schema_scripts_once() -> None:
    """From now on this process reads each folder of Alembic migration scripts once
    (:func:`_scripts_read_once`); for the CLI's processes, which open an instance and start
    runs on it. Idempotent."""
    ScriptDirectory.from_config = classmethod(_scripts_read_once)  # type: ignore[method-assign,assignment]


def open_instance(home: Path) -> dg.DagsterInstance:
    """The instance in ``home``; a fresh folder gets a dagster.yaml (SQLite, no telemetry).

    Created under a lock file in ``home``, so two processes opening a fresh instance at the
    same moment do not both create its databases; a folder that cannot be written is one
    ConfigError."""
    read_schema_scripts_once()
    try:
        home.mkdir(parents=True, exist_ok=True)
        with locked_file(home / ".instance.lock"):
            config = home / "dagster.yaml"
            if not config.exists():
                tmp = config.with_name(f".dagster.yaml.{os.getpid()}.tmp")
                try:
                    tmp.write_text(_DAGSTER_YAML, encoding="utf-8")
                    tmp.replace(config)
                finally:
                    tmp.unlink(missing_ok=True)
            return dg.DagsterInstance.from_config(str(home))
    except OSError as exc:
        raise unwritable(home, exc, "the Dagster instance folder") from exc
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"cannot open the Dagster instance in {home}: {str(exc).splitlines()[0]}; check "
            "the disk has space, or remove the folder to start a fresh instance"
        ) from exc
