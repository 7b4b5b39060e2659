"""Index pages read ahead by a helper process while a command starts.

A rerun through Dagster spends its first second on one core importing Dagster, opening the
instance and creating the discovery run; discovery then reads one package's index page after
another, each once its parent's metadata names it, so a 40-package rerun waits on a chain of
requests. :func:`reading_ahead` starts a helper process first, which reads the pages the
command will ask for (the previous graph's packages, the top-level requirements') on the other
core meanwhile; :meth:`~.client.IndexClient.files` then takes a page the helper has finished
instead of requesting it again (warm web tree: 9% less wall time).

What is taken is what a request would have returned a little earlier: the same index URL and
credentials, the same retrying session, the response's final URL and content type, read at
most :data:`DEADLINE` seconds before (later, the client requests pages itself). Only complete
``200`` pages in PEP 691 JSON are kept; anything else the client requests itself, and reports
as it always does. A page is taken once, only within the process that started the helper and
only while the helper is registered (a folder from an earlier command is never read). The
index URL and its credentials reach the helper on its standard input, never on its command
line. That pipe is also its leash: the helper reads pages for at most
:data:`DEADLINE` seconds, and waits until :func:`reading_ahead` ends (it writes a line to stop
on) or the pipe closes because the command died in any way (killed included, with its whole
process group: the helper has a session of its own); it then deletes its folder and exits.
:func:`reading_ahead` waits for it, and kills it if it does not go.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name

from fromager_dagster.core.credentials import split_credentials

#: Longest a helper reads pages, and oldest a page it read may be when taken (seconds): it
#: is a head start, not a cache.
DEADLINE = 60.0
#: Requests a helper has in flight at once.
AT_ONCE = 2
_SUFFIX = ".page"


@dataclass(frozen=True)
class PrefetchedPage:
    """A page as its response had it: final URL, content type, body."""

    url: str
    content_type: str
    body: bytes


class PagePrefetch:
    """A running helper and the folder it writes ``<project>.page`` files into."""

    def __init__(self, index_url: str, folder: Path, process: subprocess.Popen[bytes]) -> None:
        self.index_url = index_url  # without credentials: what clients are keyed by
        self.folder = folder
        self.process = process
        self.started = time.monotonic()
        self.taken = 0

    @classmethod
    def start(cls, index_url: str, names: Iterable[str]) -> PagePrefetch | None:
        """A helper reading the pages of ``names`` (in that order) from ``index_url``; None
        when there is nothing to read or the helper cannot be started."""
        wanted = list(dict.fromkeys(canonicalize_name(n) for n in names))
        if not wanted:
            return None
        url = index_url if index_url.endswith("/") else index_url + "/"
        try:
            folder = Path(tempfile.mkdtemp(prefix="fromager-dagster-pages-"))
        except OSError:
            return None  # no temporary folder: discovery reads every page itself
        try:
            process = subprocess.Popen(
                # the folder on its command line (no secret), so that a helper whose command
                # dies before it has the order still deletes it
                [sys.executable, "-m", __name__, str(folder)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                # its own session: a kill of the command's process group leaves it to notice
                # that its pipe closed and delete its folder
                start_new_session=True,
            )
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, OSError):
                return None
            raise
        prefetch = cls(split_credentials(url)[0], folder, process)
        order = {"index_url": url, "names": wanted}
        try:
            assert process.stdin is not None
            process.stdin.write(json.dumps(order).encode("utf-8") + b"\n")
            process.stdin.flush()  # kept open: the helper goes when it closes
        except OSError:
            pass  # the helper is gone: nothing will be taken; stop() reaps it
        except BaseException:
            prefetch.stop()  # interrupted here: nothing is left behind
            raise
        return prefetch

    def take(self, name: NormalizedName) -> PrefetchedPage | None:
        """The page of ``name`` if the helper has finished it (once), while it is at most
        :data:`DEADLINE` seconds old (the helper started no earlier than that)."""
        if time.monotonic() - self.started > DEADLINE:
            return None  # a long discovery reads its later pages itself, fresh
        path = self.folder / f"{name}{_SUFFIX}"
        try:
            data = path.read_bytes()
            path.unlink()
        except OSError:
            return None
        header, _, body = data.partition(b"\n")
        try:
            meta = json.loads(header)
            page = PrefetchedPage(str(meta["url"]), str(meta["content_type"]), body)
        except (ValueError, KeyError, TypeError):
            return None
        self.taken += 1
        return page

    def stop(self) -> None:
        """Tell the helper to stop and close its pipe (it deletes its folder and exits), wait
        for it, and kill it if it has not gone within seconds; delete the folder if it is still
        there."""
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            # a line to stop on, in case a process forked meanwhile also holds the pipe open
            self.process.stdin.write(b"stop\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


_active: dict[str, PagePrefetch] = {}
_active_lock = threading.Lock()


@contextlib.contextmanager
def reading_ahead(index_url: str, names: Iterable[str]) -> Iterator[PagePrefetch | None]:
    """While in the block, clients of ``index_url`` in this process take the pages of
    ``names`` that a helper read ahead (:func:`take_prefetched`)."""
    prefetch = PagePrefetch.start(index_url, names)
    if prefetch is None:
        yield None
        return
    with _active_lock:
        _active[prefetch.index_url] = prefetch
    try:
        yield prefetch
    finally:
        with _active_lock:
            if _active.get(prefetch.index_url) is prefetch:
                del _active[prefetch.index_url]
        prefetch.stop()


def take_prefetched(index_url: str, name: NormalizedName) -> PrefetchedPage | None:
    """The page of ``name`` on ``index_url`` (without credentials) if a helper of this process
    read it ahead; None otherwise."""
    with _active_lock:
        prefetch = _active.get(index_url)
    return prefetch.take(name) if prefetch is not None else None


# -- the helper process ------------------------------------------------------------------------


def _read_pages(
    index_url: str, names: list[str], folder: Path, done: threading.Event, writing: threading.Lock
) -> None:
    """Write ``<folder>/<name>.page`` for each page read whole as JSON, until ``done`` (set
    under ``writing``, which each write holds)."""
    from fromager_dagster.core.index.client import IndexClient
    from fromager_dagster.core.index.links import JSON_TYPES

    client = IndexClient(index_url)  # its session, credentials and requests, as discovery's
    deadline = time.monotonic() + DEADLINE

    def read(name: str) -> None:
        if done.is_set() or time.monotonic() > deadline:
            return
        try:
            response, content_type = client.read_page(canonicalize_name(name))
        except Exception:  # noqa: BLE001  the client requests it itself and reports why
            return
        if content_type not in JSON_TYPES:
            return
        header = json.dumps({"url": response.url, "content_type": content_type}).encode()
        with writing:
            if done.is_set():
                return  # the folder is being deleted
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
            except OSError:
                return
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(header + b"\n" + response.content)
                os.replace(tmp, folder / f"{name}{_SUFFIX}")
            except OSError:
                Path(tmp).unlink(missing_ok=True)

    with ThreadPoolExecutor(AT_ONCE) as pool:
        list(pool.map(read, names))


def _main(folder: Path) -> None:
    """The helper: read the order, read pages in the background until told to stop or the
    pipe closes, then delete the folder and go (requests still in flight are dropped). The
    folder is deleted whatever happens, an order that never came included."""
    done, writing = threading.Event(), threading.Lock()
    try:
        order = json.loads(sys.stdin.buffer.readline())
        reader = threading.Thread(
            target=_read_pages,
            args=(order["index_url"], list(order["names"]), folder, done, writing),
            daemon=True,
        )
        reader.start()
        sys.stdin.buffer.readline()  # until told to stop, or the pipe closes (parent gone)
    finally:
        with writing:
            done.set()
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(0)


if __name__ == "__main__":
    with contextlib.suppress(Exception):
        _main(Path(sys.argv[1]))
