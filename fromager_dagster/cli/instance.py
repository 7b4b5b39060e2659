"""The local Dagster instance the CLI's runs use: its folder and its dagster.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
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


def open_instance(home: Path) -> dg.DagsterInstance:
    """The instance in ``home``; a fresh folder gets a dagster.yaml (SQLite, no telemetry).

    Created under a lock file in ``home``, so two processes opening a fresh instance at the
    same moment do not both create its databases; a folder that cannot be written is one
    ConfigError."""
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
