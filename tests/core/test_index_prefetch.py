"""Index pages read ahead by a helper process: taken once, only while it is registered, the
same files a request gives; everything else is requested as before."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fromager_dagster.core.index import prefetch as prefetch_module
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.prefetch import PagePrefetch, reading_ahead

JSON = "application/vnd.pypi.simple.v1+json"


def _page(name: str, *versions: str) -> bytes:
    files = [
        {"filename": f"{name}-{v}.tar.gz", "url": f"{name}-{v}.tar.gz", "hashes": {}}
        for v in versions
    ]
    return json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": files}).encode()


class Index:
    """An index on 127.0.0.1 that records each request: its path and Authorization header."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {
            "pkg": (JSON, _page("pkg", "1.0", "1.1")),
            "html": ("text/html", b'<a href="html-2.0.tar.gz">html-2.0.tar.gz</a>'),
        }
        self.requests: list[tuple[str, str]] = []
        self.delay = 0.0
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                index.requests.append((self.path, self.headers.get("Authorization", "")))
                time.sleep(index.delay)
                found = index.pages.get(self.path.strip("/").split("/")[-1])
                if found is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", found[0])
                self.send_header("Content-Length", str(len(found[1])))
                self.end_headers()
                self.wfile.write(found[1])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/simple/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def _read(prefetch: PagePrefetch | None, *names: str) -> PagePrefetch:
    """Wait until the helper has written the pages of ``names``."""
    assert prefetch is not None
    deadline = time.monotonic() + 60
    while not all((prefetch.folder / f"{n}.page").is_file() for n in names):
        assert prefetch.process.poll() is None, "the helper stopped"
        assert time.monotonic() < deadline, "the helper did not read the pages"
        time.sleep(0.02)
    return prefetch


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in state  # exited, waiting to be reaped by whoever adopted it


@pytest.fixture
def index() -> Iterator[Index]:
    served = Index()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def test_a_page_read_ahead_is_taken_instead_of_requested(index: Index) -> None:
    expected = IndexClient(index.url).files("pkg")
    index.requests.clear()
    with reading_ahead(index.url, ["pkg"]) as ahead:
        prefetch = _read(ahead, "pkg")
        assert index.paths() == ["/simple/pkg/"]  # the helper's request
        assert IndexClient(index.url).files("pkg") == expected
        assert prefetch.taken == 1
        assert index.paths() == ["/simple/pkg/"]  # none from the client
        # taken once: another client of the same index requests the page itself
        assert IndexClient(index.url).files("pkg") == expected
        assert index.paths() == ["/simple/pkg/", "/simple/pkg/"]


def test_what_the_helper_did_not_keep_is_requested_as_before(index: Index) -> None:
    with reading_ahead(index.url, ["missing", "html", "pkg"]) as ahead:
        prefetch = _read(ahead, "pkg")
        while len(index.requests) < 3:
            time.sleep(0.02)
        client = IndexClient(index.url)
        # an HTML page is left to the client, which reads it with its response's charset
        assert [f.filename for f in client.files("html")] == ["html-2.0.tar.gz"]
        with pytest.raises(Exception, match="package missing not found on index"):
            client.files("missing")  # a 404 is the client's to report
        client.files("pkg")
        assert prefetch.taken == 1
    assert index.paths().count("/simple/pkg/") == 1
    assert index.paths().count("/simple/html/") == 2
    assert index.paths().count("/simple/missing/") == 2


def test_pages_are_taken_only_while_the_helper_is_registered(index: Index) -> None:
    with reading_ahead(index.url, ["pkg"]) as ahead:
        prefetch = _read(ahead, "pkg")
        folder = prefetch.folder
    assert not folder.exists()  # deleted on the way out, with the page nobody took
    assert prefetch.process.returncode == 0
    IndexClient(index.url).files("pkg")
    assert index.paths() == ["/simple/pkg/", "/simple/pkg/"]


def test_a_helper_still_reading_goes_when_the_block_ends(index: Index) -> None:
    index.delay = 30.0
    started = time.monotonic()
    with reading_ahead(index.url, ["pkg"]) as prefetch:
        assert prefetch is not None
        while not index.requests and time.monotonic() - started < 30:
            time.sleep(0.05)
        assert prefetch.process.poll() is None  # waiting on the slow index
    assert prefetch.process.returncode == 0  # it went, its request dropped: not killed
    assert not prefetch.folder.exists()


def test_a_helper_whose_command_is_killed_deletes_its_folder_and_goes(
    index: Index, tmp_path: Path
) -> None:
    index.delay = 30.0
    script = (
        "import os, signal, sys\n"
        "from fromager_dagster.core.index.prefetch import reading_ahead\n"
        f"with reading_ahead({index.url!r}, ['pkg']) as p:\n"
        "    print(p.process.pid, p.folder, flush=True)\n"
        "    sys.stdin.readline()\n"
        "    os.killpg(os.getpgrp(), signal.SIGKILL)\n"  # as kill -9 of the whole command
    )
    command = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert command.stdout is not None and command.stdin is not None
    pid, folder = command.stdout.readline().split()
    while not index.requests:  # the helper is reading (slowly)
        time.sleep(0.02)
    command.stdin.write("\n")
    command.stdin.flush()
    assert command.wait(timeout=60) == -signal.SIGKILL  # no cleanup ran in the command
    deadline = time.monotonic() + 60
    while not _gone(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(int(pid))
    assert not Path(folder).exists()


def test_credentials_reach_the_helper_on_stdin_not_its_command_line(index: Index) -> None:
    url = index.url.replace("http://", "http://alice:s3cret@")
    with reading_ahead(url, ["pkg"]) as ahead:
        prefetch = _read(ahead, "pkg")
        assert "s3cret" not in " ".join(map(str, prefetch.process.args))
        assert IndexClient(url).files("pkg")
        assert prefetch.taken == 1
    assert index.requests == [
        ("/simple/pkg/", "Basic " + base64.b64encode(b"alice:s3cret").decode())
    ]


def test_nothing_to_read_starts_no_helper(index: Index) -> None:
    with reading_ahead(index.url, []) as prefetch:
        assert prefetch is None
    assert index.requests == []


def test_the_helper_stops_when_told_though_another_process_holds_its_pipe(
    index: Index,
) -> None:
    index.delay = 30.0
    with reading_ahead(index.url, ["pkg"]) as prefetch:
        assert prefetch is not None and prefetch.process.stdin is not None
        # as a process forked meanwhile would: the pipe stays open after the block closes it
        held = os.dup(prefetch.process.stdin.fileno())
    try:
        assert prefetch.process.returncode == 0  # it stopped on its line: not killed
        assert not prefetch.folder.exists()
    finally:
        os.close(held)


def test_without_a_temporary_folder_discovery_reads_every_page_itself(
    index: Index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))  # as $TMPDIR gone
    with reading_ahead(index.url, ["pkg"]) as prefetch:
        assert prefetch is None
        assert IndexClient(index.url).files("pkg")
    assert index.paths() == ["/simple/pkg/"]


def test_a_helper_whose_command_dies_before_the_order_deletes_its_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pages"
    folder.mkdir()
    helper = subprocess.Popen(
        [sys.executable, "-m", "fromager_dagster.core.index.prefetch", str(folder)],
        stdin=subprocess.PIPE,
    )
    assert helper.stdin is not None
    helper.stdin.close()  # as the command's death right after starting it closes the pipe
    assert helper.wait(timeout=60) == 0
    assert not folder.exists()


def test_a_page_read_long_ago_is_read_again(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    with reading_ahead(index.url, ["pkg"]) as ahead:
        prefetch = _read(ahead, "pkg")
        monkeypatch.setattr(prefetch_module, "DEADLINE", 0.0)  # every page is too old now
        assert IndexClient(index.url).files("pkg")
        assert prefetch.taken == 0
    assert index.paths() == ["/simple/pkg/", "/simple/pkg/"]  # the helper's, then the client's
