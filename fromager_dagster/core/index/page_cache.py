"""Parsed index pages kept on disk while their bytes stay the same.

A large project's page is megabytes and lists ten thousand files (a 40-package tree of test
tools reads 18 MB of pages); reading them again on every rerun costs more CPU time than the
rest of a rerun's discovery. The page is still fetched every time, so a new release is
seen at once, but when its bytes hash to what they were, the files read from it last time
are taken from ``<folder>/<project>.json`` instead of parsing the page again (the way uv
keeps parsed simple-API responses). The hash covers the page's URL, its content type, the
Python version that filtered its files and this file's format, so any change parses anew.
A cache file that cannot be read, or does not hold what it should, is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion

FORMAT = "fromager-dagster index page 1"


def page_digest(url: str, content_type: str, python_version: str, body: bytes) -> str:
    """What a page's parsed files depend on, hashed."""
    digest = hashlib.sha256()
    for part in (FORMAT, url, content_type, python_version):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(body)
    return digest.hexdigest()


class PageCache:
    """One file per project: the digest of its page and the files read from it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, name: NormalizedName, digest: str) -> list[Any] | None:
        """The files read from the page with this digest (as :meth:`store` was given them,
        in that order), or None."""
        try:
            data = json.loads((self.folder / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("digest") != digest:
            return None
        rows = data.get("files")
        return rows if isinstance(rows, list) else None

    def store(self, name: NormalizedName, digest: str, rows: list[Any]) -> None:
        """Keep ``rows`` (JSON values) for the page with this digest; a failure to write is
        not an error (the next run parses the page again)."""
        text = json.dumps({"digest": digest, "files": rows}, separators=(",", ":"))
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, self.folder / f"{name}.json")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


def upload_time_value(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def upload_time_of(value: Any) -> datetime | None:
    if not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


#: What makes a cached row unusable: the cache is then ignored and the page parsed.
ROW_ERRORS = (ValueError, TypeError, KeyError, IndexError, InvalidVersion)
