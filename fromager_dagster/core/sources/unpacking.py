"""Unpacking an sdist safely: every member checked (paths, links, special files, size and count
limits) before anything is written, and the tree renamed into place whole."""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PureWindowsPath

from fromager_dagster.core.errors import SourceError, UnsafeArchiveError

_CHUNK = 1024 * 1024
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
_ZIP_SUFFIXES = (".zip",)
_Limits = tuple[int, int]  # (max_bytes, max_members)


def _archive_stem(archive: Path) -> str | None:
    lower = archive.name.lower()
    for suffix in _TAR_SUFFIXES + _ZIP_SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return archive.name[: -len(suffix)]
    return None


def _check_name(archive: Path, member: str) -> None:
    if not member or member.startswith(("/", "\\")) or PureWindowsPath(member).drive:
        raise UnsafeArchiveError(f"{archive.name}: member {member!r} has an absolute path")
    if ".." in member.replace("\\", "/").split("/"):
        raise UnsafeArchiveError(f"{archive.name}: member {member!r} has a '..' component")


def _inside(relative: str) -> bool:
    """Whether a lexically normalised, root-relative path stays inside the root."""
    if relative.startswith(("/", "\\")) or PureWindowsPath(relative).drive:
        return False
    normal = os.path.normpath(relative)
    return normal != ".." and not normal.startswith(".." + os.sep)


def _check_link(archive: Path, member: str, target: str, *, hard: bool) -> None:
    # Symlink targets are relative to the link's directory, hardlink targets to the root.
    base = "" if hard else os.path.dirname(member)
    if not target or not _inside(os.path.join(base, target)):
        raise UnsafeArchiveError(
            f"{archive.name}: member {member!r} links to {target!r}, "
            "which escapes the unpack directory"
        )


def _check_limits(archive: Path, member: str, count: int, total: int, limits: _Limits) -> None:
    max_bytes, max_members = limits
    if count > max_members:
        raise UnsafeArchiveError(
            f"{archive.name}: more than {max_members} members (at {member!r}); refusing it"
        )
    if total > max_bytes:
        raise UnsafeArchiveError(
            f"{archive.name}: uncompressed size exceeds {max_bytes} bytes (at {member!r}); "
            "refusing it"
        )


def _check_member(
    archive: Path, info: tarfile.TarInfo, count: int, total: int, limits: _Limits
) -> None:
    _check_limits(archive, info.name, count, total, limits)
    _check_name(archive, info.name)
    if info.issym() or info.islnk():
        _check_link(archive, info.name, info.linkname, hard=info.islnk())
    elif not (info.isreg() or info.isdir()):
        raise UnsafeArchiveError(
            f"{archive.name}: member {info.name!r} is not a regular file, directory or link"
        )


def _extract_tar(archive: Path, root: Path, limits: _Limits) -> None:
    """One pass over the (possibly compressed) stream: each member is checked, then written
    into ``root``, a fresh temporary directory that is removed on any error. A compressed
    tar read twice (check, then extract) decompresses it twice, and seeking back restarts
    the decompression. Directories get no attributes (a read-only directory in the archive
    would refuse the files that follow it)."""
    total = 0
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for count, info in enumerate(tar, start=1):
                total += info.size if info.isreg() else 0
                _check_member(archive, info, count, total, limits)
                tar.extract(info, root, set_attrs=not info.isdir(), filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"{archive.name}: {exc}") from exc
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise SourceError(f"could not unpack {archive.name}: {exc}") from exc


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF


def _extract_zip(archive: Path, root: Path, limits: _Limits) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            links: list[tuple[str, str]] = []
            total = 0
            for count, info in enumerate(infos, start=1):
                total += info.file_size
                _check_limits(archive, info.filename, count, total, limits)
                _check_name(archive, info.filename)
                kind = stat.S_IFMT(_zip_mode(info))
                if kind == stat.S_IFLNK:
                    target = zf.read(info).decode("utf-8")
                    _check_link(archive, info.filename, target, hard=False)
                    links.append((info.filename, target))
                elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise UnsafeArchiveError(
                        f"{archive.name}: member {info.filename!r} is not a regular file, "
                        "directory or link"
                    )
            written = 0
            for info in infos:
                if stat.S_IFMT(_zip_mode(info)) == stat.S_IFLNK:
                    continue
                path = root / info.filename
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, path.open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)  # the declared sizes may lie
                        _check_limits(archive, info.filename, 0, written, limits)
                        out.write(chunk)
                path.chmod(0o755 if _zip_mode(info) & 0o111 else 0o644)
            # Links last, so no file is ever written through one; a link's own directory
            # must still resolve inside the tree (an earlier link may have redirected it).
            real_root = root.resolve()
            for member, target in links:
                link = root / member
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.parent.resolve().is_relative_to(real_root):
                    raise UnsafeArchiveError(
                        f"{archive.name}: member {member!r} would be written outside the "
                        "unpack directory through a link"
                    )
                os.symlink(target, link)
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError, RuntimeError) as exc:
        raise SourceError(f"could not unpack {archive.name}: {exc}") from exc


def _check_resolved_links(archive: Path, root: Path) -> None:
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(dirpath, entry)
            if not path.is_symlink():
                continue
            try:
                inside = path.resolve().is_relative_to(real_root)
            except (RuntimeError, OSError):  # a symlink loop
                inside = False
            if not inside:
                raise UnsafeArchiveError(
                    f"{archive.name}: member {str(path.relative_to(root))!r} resolves "
                    "outside the unpack directory"
                )


def unpack(
    archive: Path, dest_dir: Path, *, max_bytes: int = 2 * 1024**3, max_members: int = 100_000
) -> Path:
    """Safely unpack an sdist into ``dest_dir/<archive stem>/`` and return its source directory.

    The source directory is the archive's single top-level folder, or the unpacked directory
    itself when there are several top-level entries. Every member is checked before anything
    is written (absolute paths, ``..``, links leaving the tree, special files, size and count
    limits; UnsafeArchiveError), the tree is unpacked into a temporary directory and renamed
    into place, replacing a previous unpack. On any error nothing is left in ``dest_dir``.
    """
    stem = _archive_stem(archive)
    if stem is None:
        raise SourceError(
            f"cannot unpack {archive.name}: expected .tar.gz, .tgz, .tar.bz2, .tar.xz, .tar or .zip"
        )
    limits = (max_bytes, max_members)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / stem
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{stem}.", suffix=".unpack"))
    try:
        if archive.name.lower().endswith(_ZIP_SUFFIXES):
            _extract_zip(archive, tmp, limits)
        else:
            _extract_tar(archive, tmp, limits)
        _check_resolved_links(archive, tmp)
        tmp.chmod(0o755)
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{stem}.", suffix=".old"))
            os.replace(final, old / stem)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    entries = list(final.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return final
