"""The engine never imports dagster, click or the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "fromager_dagster" / "core"
FORBIDDEN = ("dagster", "click", "fromager_dagster.cli", "fromager_dagster.defs")


def test_core_imports_nothing_from_upper_layers() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level >= 2:
                names = [f"fromager_dagster.{node.module or ''}"]
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] in FORBIDDEN or n.startswith(FORBIDDEN)
            ]
    assert offenders == []
    assert len(list(CORE.rglob("*.py"))) > 40
