"""Source archives: download with hash verification, safe unpacking, reproducible repacking."""

from __future__ import annotations

import contextlib
import errno
import glob
import gzip
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

import requests
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import HashMismatchError, SourceError, UnsafeArchiveError
from fromager_dagster.core.http import HttpStatusError, download_to

if TYPE_CHECKING:
    from fromager_dagster.core.index.distributions import DistFile

_CHUNK = 1024 * 1024
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
_ZIP_SUFFIXES = (".zip",)
_Limits = tuple[int, int]  # (max_bytes, max_members)


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


_HASHES: dict[tuple[str, int, int], str] = {}
_HASHES_LOCK = threading.Lock()


def file_sha256(path: Path) -> str:
    """:func:`sha256_file`, computed again only when the file's size or modification time
    changed: a rerun checks every build record against the same wheels and sources."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _HASHES_LOCK:
        found = _HASHES.get(key)
    if found is None:
        found = sha256_file(path)
        with _HASHES_LOCK:
            _HASHES[key] = found
    return found


def download(
    session: requests.Session, file: DistFile, dest_dir: Path, *, timeout: float = 60.0
) -> Path:
    """Download ``file`` into ``dest_dir`` and verify its sha256; return the final path.

    An existing ``dest_dir/file.filename`` whose sha256 matches is reused without a request.
    The body is streamed to a temporary name and renamed only once verified, so a partial or
    mismatching file is never left behind. When the index published no hash
    (``file.sha256 is None``) the download is accepted unverified, and an existing file is
    not trusted: it is downloaded again.
    """
    package, version = str(file.name), str(file.version)
    name = file.filename
    if not name or name != PurePosixPath(name).name or name in {".", ".."} or "\\" in name:
        raise SourceError(
            f"refusing to download {file.url}: {name!r} is not a plain file name",
            package=package,
            version=version,
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / name
    expected = file.sha256.lower() if file.sha256 is not None else None
    if expected is not None and final.is_file() and sha256_file(final) == expected:
        return final

    remove_stale_parts(dest_dir, name)
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".part")
    tmp = Path(tmp_name)
    where = f"{name} for {package} from {file.url}"
    try:
        with os.fdopen(fd, "w+b") as out:
            try:
                download_to(session, file.url, out, timeout=timeout)
            except HttpStatusError as exc:
                cause = "the file is not there" if exc.missing else "the server refused it"
                raise SourceError(
                    f"could not download {where}: HTTP status {exc.status} ({cause})",
                    package=package,
                    version=version,
                    transient=not exc.missing and (exc.status >= 500 or exc.status == 429),
                ) from exc
            except requests.RequestException as exc:
                raise SourceError(
                    f"could not download {where}: {exc}", package=package, version=version
                ) from exc
        actual = sha256_file(tmp)
        if expected is not None and actual != expected:
            raise HashMismatchError(
                f"{name} for {package} has sha256 {actual} but the index promised "
                f"{expected}; refusing it",
                package=package,
                version=version,
            )
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def remove_stale_parts(dest_dir: Path, name: str, *, older_than: float = 3600.0) -> None:
    """Remove ``.<name>.*.part`` files a killed download left in ``dest_dir`` (those older
    than ``older_than`` seconds: a concurrent download of the same file keeps its own)."""
    now = time.time()
    for part in dest_dir.glob(f".{glob.escape(name)}.*.part"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > older_than:
                part.unlink()


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
