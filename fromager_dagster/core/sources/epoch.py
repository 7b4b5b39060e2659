"""SOURCE_DATE_EPOCH of a build, taken from its source archive.

The newest modification time the sdist's author packed into the archive (its ``PKG-INFO`` is
written last by most tools), so the same source gives the same epoch wherever and whenever it
is built: a bootstrap, a hermetic rebuild and another machine agree without being told. Used
for the hooks' ``SOURCE_DATE_EPOCH``, the re-packed sdist's and the wheel's member dates and
the SBOM's creation time, and recorded in the provenance (``internalParameters``).

An archive that cannot be read, or whose members are all dated before 1980-01-01 (a zip
cannot hold earlier dates; a checkout packed with epoch 0), gives the fallback
(:data:`~fromager_dagster.core.sources.prepare.DEFAULT_SOURCE_DATE_EPOCH`).
"""

from __future__ import annotations

import calendar
import functools
import tarfile
import zipfile
from pathlib import Path

from fromager_dagster.core.sources.prepare import DEFAULT_SOURCE_DATE_EPOCH


def source_date_epoch(archive: Path | None, default: int = DEFAULT_SOURCE_DATE_EPOCH) -> int:
    """The epoch of ``archive`` (the source as downloaded), or ``default``."""
    if archive is None:
        return default
    try:
        stat = archive.stat()
    except OSError:
        return default
    newest = _newest_member(str(archive.resolve()), stat.st_size, stat.st_mtime_ns)
    return newest if newest is not None and newest >= DEFAULT_SOURCE_DATE_EPOCH else default


@functools.lru_cache(maxsize=512)
def _newest_member(path: str, size: int, mtime_ns: int) -> int | None:
    """The newest member time of the archive at ``path`` (keyed by its size and mtime too:
    a file replaced under the same name is read again); None when it is not an archive."""
    del size, mtime_ns  # cache key only
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                # zip dates are times without a zone: read as UTC, as wheels write them
                stamps = [float(calendar.timegm((*i.date_time, 0, 0, 0))) for i in zf.infolist()]
        else:
            with tarfile.open(path) as tf:
                stamps = [member.mtime for member in tf]
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError):
        return None
    return int(max(stamps)) if stamps else None


__all__ = ["source_date_epoch"]
