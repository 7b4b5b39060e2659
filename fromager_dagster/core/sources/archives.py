"""Source archives fetched and hashed: download with hash verification, and file hashes."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import requests

from fromager_dagster.core.errors import HashMismatchError, SourceError
from fromager_dagster.core.http import HttpStatusError, download_to

if TYPE_CHECKING:
    from fromager_dagster.core.index.distributions import DistFile

_CHUNK = 1024 * 1024


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
