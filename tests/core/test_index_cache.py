"""Parsed index pages kept on disk: used only while the page's bytes are the same."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.page_cache import PageCache

JSON = "application/vnd.pypi.simple.v1+json"


def page(*versions: str, upload: str = "2024-05-01T10:00:00Z") -> bytes:
    files = [
        {
            "filename": f"pkg-{v}.tar.gz",
            "url": f"pkg-{v}.tar.gz",
            "hashes": {"sha256": f"{i:064x}"},
            "upload-time": upload,
            "requires-python": ">=3.8",
        }
        for i, v in enumerate(versions)
    ]
    files.append({"filename": "pkg-0.1.tar.gz", "url": "x", "hashes": {}, "yanked": True})
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "pkg", "files": files}).encode()


class Index:
    """A one-project index on 127.0.0.1 whose page can be changed between requests."""

    def __init__(self) -> None:
        self.body = page("1.0", "1.1")
        self.hits = 0
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                index.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", JSON)
                self.send_header("Content-Length", str(len(index.body)))
                self.end_headers()
                self.wfile.write(index.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def index() -> Iterator[Index]:
    served = Index()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def _read(index: Index, folder: Path, python: str | None = None) -> list[Any]:
    client = IndexClient(index.url, python_version=python).with_page_cache(PageCache(folder))
    return client.files("pkg")


def test_a_rerun_reads_the_same_files_from_the_cache(index: Index, tmp_path: Path) -> None:
    fresh = IndexClient(index.url).files("pkg")
    first = _read(index, tmp_path)
    assert first == fresh and [str(f.version) for f in first] == ["1.0", "1.1"]
    assert (tmp_path / "pkg.json").is_file()
    second = _read(index, tmp_path)
    assert second == fresh  # every field, upload times and hashes included
    assert index.hits == 3  # the page is still fetched every time


def test_the_cache_is_what_is_read_while_the_page_is_unchanged(
    index: Index, tmp_path: Path
) -> None:
    _read(index, tmp_path)
    kept = json.loads((tmp_path / "pkg.json").read_text())
    kept["files"][0][3] = "http://127.0.0.1:9/from-the-cache.tar.gz"
    (tmp_path / "pkg.json").write_text(json.dumps(kept))
    assert _read(index, tmp_path)[0].url == "http://127.0.0.1:9/from-the-cache.tar.gz"


def test_a_changed_page_is_parsed_again(index: Index, tmp_path: Path) -> None:
    _read(index, tmp_path)
    index.body = page("1.0", "1.1", "1.2")
    assert [str(f.version) for f in _read(index, tmp_path)] == ["1.0", "1.1", "1.2"]
    assert [str(f.version) for f in _read(index, tmp_path)] == ["1.0", "1.1", "1.2"]


def test_another_python_does_not_take_the_cached_files(index: Index, tmp_path: Path) -> None:
    _read(index, tmp_path)
    assert _read(index, tmp_path, python="3.7.0") == []  # Requires-Python >=3.8 excludes all


@pytest.mark.parametrize(
    "damage",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"digest": "?", "files": []}),
        "SAME-DIGEST:" + json.dumps([["pkg-1.0.tar.gz", "not a version!", "sdist", "u", None]]),
        "SAME-DIGEST:" + json.dumps([["pkg-1.0.tar.gz", "1.0", "egg", "u", None, None, None]]),
        "SAME-DIGEST:" + json.dumps([["pkg-1.0.tar.gz", "1.0", "sdist", "u", 7, None, None]]),
    ],
)
def test_a_damaged_cache_is_ignored(index: Index, tmp_path: Path, damage: str) -> None:
    expected = _read(index, tmp_path)
    digest = json.loads((tmp_path / "pkg.json").read_text())["digest"]
    if damage.startswith("SAME-DIGEST:"):
        damage = json.dumps({"digest": digest, "files": json.loads(damage[12:])})
    (tmp_path / "pkg.json").write_text(damage)
    assert _read(index, tmp_path) == expected
