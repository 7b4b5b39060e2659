"""graph.json, build-order.json and constraints.txt are written as one set: all or none."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from fromager_dagster.core.graph.model import DependencyGraph

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "golden"


def test_a_failure_while_writing_leaves_the_earlier_set_whole(tmp_path: Path) -> None:
    """build-order.json cannot be written (its temporary name is taken by a folder, as a full
    disk would fail it): graph.json must not be replaced either, and no temporary is left."""
    old = DependencyGraph.load(GOLDEN / "stevedore" / "graph.json")
    new = DependencyGraph.load(GOLDEN / "click-constrained" / "graph.json")
    old.write(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    blocker = tmp_path / f".build-order.json.{os.getpid()}.{threading.get_ident()}.tmp"
    blocker.mkdir()
    with pytest.raises(OSError):  # noqa: PT011  any OS error: the point is what is left behind
        new.write(tmp_path)
    blocker.rmdir()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    new.write(tmp_path)
    assert (tmp_path / "graph.json").read_bytes() != before["graph.json"]
