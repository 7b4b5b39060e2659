"""Repacking a source tree as a reproducible sdist: the same tree gives the same bytes."""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import SourceError


def _sdist_files(source_dir: Path) -> Iterator[Path]:
    """Every path under ``source_dir`` except ``__pycache__`` and ``.pyc``, unordered."""
    for dirpath, dirnames, filenames in os.walk(source_dir):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for entry in dirnames + filenames:
            if not entry.endswith(".pyc"):
                yield Path(dirpath, entry)


def _sdist_prefix(name: str, version: str) -> str:
    with contextlib.suppress(InvalidVersion):
        version = str(Version(version))
    return f"{canonicalize_name(name).replace('-', '_')}-{version}"


def repack_sdist(
    source_dir: Path, dest: Path, *, name: str, version: str, source_date_epoch: int = 0
) -> Path:
    """Write ``source_dir`` as a reproducible sdist tar.gz at ``dest`` and return ``dest``.

    Members live under ``<name>-<version>/`` (canonical name, ``-`` -> ``_``), sorted by path,
    with mtime ``source_date_epoch``, uid/gid 0, empty owner names and modes 0o644, or 0o755
    for directories and executables (symlinks are kept as symlinks). The gzip header carries
    the same mtime and no file name. Only ``__pycache__`` and ``.pyc`` are left out.
    """
    prefix = _sdist_prefix(name, version)
    members = sorted(
        ((f"{prefix}/{p.relative_to(source_dir).as_posix()}", p) for p in _sdist_files(source_dir)),
        key=lambda item: item[0],
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)

    def tarinfo(arcname: str, path: Path) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.mtime = source_date_epoch
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            info.mode = 0o755 if st.st_mode & 0o111 else 0o644
            info.size = st.st_size
        else:
            raise SourceError(f"cannot put {path} in an sdist: not a file, directory or link")
        return info

    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, mtime=source_date_epoch, compresslevel=3
            ) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(tarinfo(prefix, source_dir))
            for arcname, path in members:
                info = tarinfo(arcname, path)
                if info.isreg():
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise SourceError(
                f"cannot write the re-packed sdist {dest}: {exc.strerror}; free some space "
                "and run the command again",
                package=str(canonicalize_name(name)),
                version=version,
                transient=False,
            ) from exc
        raise
    return dest
