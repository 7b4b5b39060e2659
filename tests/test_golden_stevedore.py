"""Against the real index (pinned): stevedore's tree matches fromager's golden outputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fromager_dagster.core.build.environment import uv_binary

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "stevedore"


def _without_hosts_and_constraints(text: str) -> object:
    data = json.loads(re.sub(r"https?://[^/\"]+/", "HOST/", text))
    items = data.values() if isinstance(data, dict) else data
    for item in items:
        item.pop("constraint", None)
    return data


@pytest.mark.network
def test_stevedore_matches_golden_and_wheels_install(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fromager_dagster",
            "bootstrap",
            "-r",
            str(GOLDEN / "requirements.txt"),
            "-c",
            str(GOLDEN / "constraints-input.txt"),
            "-O",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 built" in proc.stderr
    work = out / "work-dir"
    for name in ("graph.json", "build-order.json"):
        assert _without_hosts_and_constraints((work / name).read_text()) == (
            _without_hosts_and_constraints((GOLDEN / name).read_text())
        ), name
    graph = json.loads((work / "graph.json").read_text())
    assert graph["stevedore==5.10.0"]["constraint"] == "stevedore==5.10.0"
    assert (work / "constraints.txt").read_text() == (GOLDEN / "constraints.txt").read_text()
    wheels = sorted(p.name for p in (out / "wheels-repo" / "downloads").glob("*.whl"))
    assert wheels == [
        "pbr-7.1.3-0-py2.py3-none-any.whl",
        "setuptools-84.2.1-0-py3-none-any.whl",
        "stevedore-5.10.0-0-py3-none-any.whl",
    ]
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    uv = uv_binary()
    subprocess.run(
        [uv, "venv", "--no-config", "--python", sys.executable, str(venv)], check=True, env=env
    )
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--no-config",
            "--python",
            str(venv / "bin" / "python"),
            "--no-index",
            "--find-links",
            str(out / "wheels-repo" / "downloads"),
            "stevedore",
            "pbr",
            "setuptools",
        ],
        check=True,
        env=env,
    )
    check = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import stevedore, pbr.version, setuptools; print('ok')",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.stdout.strip() == "ok", check.stderr

    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "fromager_dagster",
            "bootstrap",
            "stevedore",
            "-c",
            str(GOLDEN / "constraints-input.txt"),
            "-O",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rerun.returncode == 0 and "0 built, 3 reused" in rerun.stderr, rerun.stderr
