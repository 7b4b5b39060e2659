"""WheelRepository: a snapshot of the wheel folders that never misses a wheel added later."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.repository.records import WheelRepository


def _old(path: Path) -> None:
    past = time.time() - 60
    os.utime(path, (past, past))


def test_a_wheel_added_after_a_listing_is_seen(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path)
    layout.ensure()
    folder = layout.wheels_downloads
    (folder / "alpha-1.0-py3-none-any.whl").write_bytes(b"a")
    _old(folder)  # settled: its listing is kept
    first = WheelRepository(layout)
    assert first.path("alpha==1.0") == folder / "alpha-1.0-py3-none-any.whl"
    assert first.path("beta==2.0") is None

    (folder / "beta-2.0-py3-none-any.whl").write_bytes(b"b")
    second = WheelRepository(layout)
    assert second.path("beta==2.0") == folder / "beta-2.0-py3-none-any.whl"

    (folder / "alpha-1.0-py3-none-any.whl").unlink()
    assert WheelRepository(layout).path("alpha==1.0") is None


def test_a_change_in_the_same_clock_tick_as_the_listing_is_seen(tmp_path: Path) -> None:
    """A folder changed just now is read again every time: a second change within the same
    mtime tick would not move its mtime."""
    layout = OutputLayout(tmp_path)
    layout.ensure()
    folder = layout.wheels_downloads
    (folder / "alpha-1.0-py3-none-any.whl").write_bytes(b"a")
    stamp = folder.stat().st_mtime_ns
    assert WheelRepository(layout).path("beta==2.0") is None
    (folder / "beta-2.0-py3-none-any.whl").write_bytes(b"b")
    os.utime(folder, ns=(stamp, stamp))  # as if both changes fell in one tick
    assert WheelRepository(layout).path("beta==2.0") is not None


def test_the_highest_build_tag_wins_and_other_files_are_ignored(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path)
    layout.ensure()
    folder = layout.wheels_downloads
    for name in ("gamma-1.0-py3-none-any.whl", "gamma-1.0-2-py3-none-any.whl", "notes.txt"):
        (folder / name).write_bytes(b"x")
    assert WheelRepository(layout).path("gamma==1.0") == folder / "gamma-1.0-2-py3-none-any.whl"
