"""``fromager-dagster ui``: the Dagster UI and daemon on the instance the CLI's runs use."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from ..defs.collections import ENV_FILE
from ..defs.graph_state import ENV_WEBSERVER
from .collection_file import COLLECTIONS_FILE
from .instance import ENV_DAGSTER_HOME, dagster_home, open_instance

CODE_LOCATION = "fromager_dagster.definitions"


def dev_command(host: str, port: int) -> list[str]:
    """``dagster dev -m fromager_dagster.definitions -h HOST -p PORT`` from this environment."""
    script = Path(sys.executable).parent / "dagster"
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "dagster"]
    return [*launcher, "dev", "-m", CODE_LOCATION, "-h", host, "-p", str(port)]


def dev_environment(output_dir: Path, host: str, port: int) -> dict[str, str]:
    """The environment of ``dagster dev``: the instance, the collections, its own URL."""
    home = dagster_home(output_dir)
    open_instance(home).dispose()  # writes dagster.yaml into a fresh home
    env = dict(os.environ)
    env[ENV_DAGSTER_HOME] = str(home)
    written = output_dir.resolve() / COLLECTIONS_FILE
    if not env.get(ENV_FILE) and written.is_file():
        env[ENV_FILE] = str(written)
    env.setdefault(ENV_WEBSERVER, f"http://{host}:{port}")  # discovery asks it to reload
    return env


def serve(output_dir: Path, host: str, port: int) -> int:
    """Run ``dagster dev`` in its own process group until it exits or we are interrupted."""
    env = dev_environment(output_dir, host, port)
    command = dev_command(host, port)
    print(f"Dagster UI: http://{host}:{port}", file=sys.stderr, flush=True)  # noqa: T201
    print(  # noqa: T201
        f"instance: {env[ENV_DAGSTER_HOME]}; collections: "
        f"{env.get(ENV_FILE) or 'collections.yaml (default)'}",
        file=sys.stderr,
        flush=True,
    )
    print(f"running: {' '.join(command)}", file=sys.stderr, flush=True)  # noqa: T201
    proc = subprocess.Popen(command, env=env, start_new_session=True)

    def forward(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
