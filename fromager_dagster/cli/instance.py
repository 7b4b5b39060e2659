"""The local Dagster instance the CLI's runs use: its folder and its dagster.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

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
    """The instance in ``home``; a fresh folder gets a dagster.yaml (SQLite, no telemetry)."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(_DAGSTER_YAML, encoding="utf-8")
    return dg.DagsterInstance.from_config(str(home))
