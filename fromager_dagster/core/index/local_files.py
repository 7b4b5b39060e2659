"""Distributions in local folders, each with its sha256 and Requires-Python (read again only
when the file changes)."""

from __future__ import annotations

import os
import re
import tarfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import NormalizedName

from fromager_dagster.core.index.distributions import parse_dist_filename
from fromager_dagster.core.sources.archives import file_sha256

_METADATA_MAX = 1 << 20  # a METADATA / PKG-INFO bigger than this is not "cheap"


@dataclass(frozen=True)
class LocalDist:
    """One wheel or sdist file in a local folder."""

    project: NormalizedName
    filename: str
    path: Path
    sha256: str
    requires_python: str | None


class FileInfoCache:
    """sha256 and Requires-Python per file, recomputed only when (path, size, mtime) change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._info: dict[tuple[str, int, int], tuple[str, str | None]] = {}

    def scan(self, roots: Sequence[Path]) -> dict[NormalizedName, dict[str, LocalDist]]:
        """Distributions in ``roots`` grouped by project; the first root wins a filename."""
        projects: dict[NormalizedName, dict[str, LocalDist]] = {}
        seen: set[str] = set()
        for root in roots:
            try:
                with os.scandir(root) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.name in seen or not entry.is_file():
                    continue
                parsed = parse_dist_filename(entry.name)
                if parsed is None:
                    continue
                try:
                    sha256, requires_python = self._lookup(Path(entry.path), entry.stat())
                except OSError:
                    continue  # vanished or unreadable while we looked
                seen.add(entry.name)
                projects.setdefault(parsed[0], {})[entry.name] = LocalDist(
                    parsed[0], entry.name, Path(entry.path), sha256, requires_python
                )
        return projects

    def _lookup(self, path: Path, st: os.stat_result) -> tuple[str, str | None]:
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            found = self._info.get(key)
        if found is None:
            found = (file_sha256(path), _requires_python(path))
            with self._lock:
                self._info[key] = found
        return found


#: One memo for every server of the process: each build step starts a server over the same
#: repository, and hashing every wheel again for each would cost O(steps x wheels).
SHARED_INFO = FileInfoCache()


def _requires_python(path: Path) -> str | None:
    """Requires-Python from a wheel's METADATA or an sdist's PKG-INFO; None if not found."""
    name = path.name
    try:
        if name.endswith((".whl", ".zip")):
            pattern = r"[^/]+\.dist-info/METADATA" if name.endswith(".whl") else r"[^/]+/PKG-INFO"
            suffix = "/METADATA" if name.endswith(".whl") else "/PKG-INFO"
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if (
                        info.filename.endswith(suffix)  # a cheap test before the pattern
                        and re.fullmatch(pattern, info.filename)
                        and info.file_size <= _METADATA_MAX
                    ):
                        return _header(zf.read(info))
            return None
        with tarfile.open(path) as tf:
            for member in tf:
                if re.fullmatch(r"(\./)?[^/]+/PKG-INFO", member.name) and member.isfile():
                    if member.size > _METADATA_MAX:
                        return None
                    data = tf.extractfile(member)
                    return _header(data.read()) if data is not None else None
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError):
        return None
    return None


def _header(raw: bytes) -> str | None:
    value = HeaderParser().parsestr(raw.decode("utf-8", "replace")).get("Requires-Python")
    if value is None:
        return None
    return str(value).strip() or None
