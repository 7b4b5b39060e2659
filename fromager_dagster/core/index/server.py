"""A simple index (PEP 503 HTML, PEP 691 JSON) over local folders of wheels and sdists."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from fromager_dagster.core.index.distributions import parse_dist_filename
from fromager_dagster.core.sources.archives import file_sha256

__all__ = ["LocalIndexServer", "write_simple_tree"]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "text/html; charset=utf-8"
_JSON_ACCEPTS = frozenset({JSON_TYPE, "application/vnd.pypi.simple.latest+json"})
_HTML_ACCEPTS = frozenset(
    {
        "application/vnd.pypi.simple.v1+html",
        "application/vnd.pypi.simple.latest+html",
        "text/html",
        "*/*",
        "text/*",
    }
)
_METADATA_MAX = 1 << 20  # a METADATA / PKG-INFO bigger than this is not "cheap"


@dataclass(frozen=True)
class _Dist:
    project: NormalizedName
    filename: str
    path: Path
    sha256: str
    requires_python: str | None


class _FileInfoCache:
    """sha256 and Requires-Python per file, recomputed only when (path, size, mtime) change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._info: dict[tuple[str, int, int], tuple[str, str | None]] = {}

    def scan(self, roots: Sequence[Path]) -> dict[NormalizedName, dict[str, _Dist]]:
        """Distributions in ``roots`` grouped by project; the first root wins a filename."""
        projects: dict[NormalizedName, dict[str, _Dist]] = {}
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
                projects.setdefault(parsed[0], {})[entry.name] = _Dist(
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


# One memo for every server of the process: each build step starts a server over the same
# repository, and hashing every wheel again for each would cost O(steps x wheels).
_SHARED_INFO = _FileInfoCache()


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


def _wants_json(accept: str | None) -> bool:
    """Content negotiation per PEP 691: JSON only if asked for at least as strongly as HTML."""
    if not accept:
        return False
    best_json = best_html = -1.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in _JSON_ACCEPTS:
            best_json = max(best_json, q)
        elif media in _HTML_ACCEPTS:
            best_html = max(best_html, q)
    return best_json > 0 and best_json >= best_html


def _html_page(title: str, anchors: Iterable[str]) -> bytes:
    body = "\n".join(f"    {a}<br/>" for a in anchors)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"{body}\n  </body>\n</html>\n"
    ).encode()


def _file_anchor(dist: _Dist, href: str, yanked: str | None) -> str:
    attrs = f' href="{html.escape(f"{href}#sha256={dist.sha256}")}"'
    if dist.requires_python:
        attrs += f' data-requires-python="{html.escape(dist.requires_python)}"'
    if yanked is not None:
        attrs += f' data-yanked="{html.escape(yanked)}"'
    return f"<a{attrs}>{html.escape(dist.filename)}</a>"


def _project_list_html(names: Iterable[NormalizedName]) -> bytes:
    anchors = (f'<a href="{quote(n)}/">{html.escape(n)}</a>' for n in names)
    return _html_page("Simple index", anchors)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], index: LocalIndexServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.index = index
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and the CLI own stderr

    def do_GET(self) -> None:
        self._route(send_body=True)

    def do_HEAD(self) -> None:
        self._route(send_body=False)

    def _route(self, *, send_body: bool) -> None:
        raw_path = urlsplit(self.path).path
        parts = raw_path.split("/")
        if raw_path == "/simple/":
            self._project_list(send_body)
        elif raw_path == "/simple":
            self._redirect("/simple/")
        elif len(parts) in (3, 4) and parts[1] == "simple" and parts[2] and parts[3:] in ([], [""]):
            # /simple/<name>/ (or without the slash): canonical name, trailing slash, else redirect
            name = unquote(parts[2])
            canonical = canonicalize_name(name)
            if len(parts) == 3 or name != canonical:
                self._redirect(f"/simple/{quote(canonical)}/")
            else:
                self._project(canonical, send_body)
        elif len(parts) == 3 and parts[1] == "files":
            self._file(unquote(parts[2]), send_body)
        else:
            self._not_found(send_body)

    def _project_list(self, send_body: bool) -> None:
        index = self.server.index
        names = sorted(index._scan())
        if self._json(index):
            body = {"meta": {"api-version": "1.0"}, "projects": [{"name": n} for n in names]}
            self._send_json(body, send_body)
        else:
            self._send(HTTPStatus.OK, HTML_TYPE, _project_list_html(names), send_body)

    def _json(self, index: LocalIndexServer) -> bool:
        return not index.html_only and _wants_json(self.headers.get("Accept"))

    def _project(self, name: NormalizedName, send_body: bool) -> None:
        index = self.server.index
        dists = index._scan().get(name)
        if not dists:
            self._not_found(send_body)
            return
        ordered = [dists[f] for f in sorted(dists)]
        if self._json(index):
            files = []
            for d in ordered:
                item: dict[str, Any] = {
                    "filename": d.filename,
                    "url": f"../../files/{quote(d.filename)}",
                    "hashes": {"sha256": d.sha256},
                }
                if d.requires_python:
                    item["requires-python"] = d.requires_python
                reason = index.yanked.get(d.filename)
                item["yanked"] = (reason or True) if reason is not None else False
                files.append(item)
            self._send_json(
                {"meta": {"api-version": "1.0"}, "name": name, "files": files}, send_body
            )
        else:
            anchors = (
                _file_anchor(d, f"../../files/{quote(d.filename)}", index.yanked.get(d.filename))
                for d in ordered
            )
            self._send(
                HTTPStatus.OK, HTML_TYPE, _html_page(f"Links for {name}", anchors), send_body
            )

    def _file(self, filename: str, send_body: bool) -> None:
        if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
            self._not_found(send_body)
            return
        project = parse_dist_filename(filename)
        dist = self.server.index._scan().get(project[0], {}).get(filename) if project else None
        if dist is None:
            self._not_found(send_body)
            return
        try:
            f = dist.path.open("rb")
        except OSError:
            self._not_found(send_body)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if send_body:
                shutil.copyfileobj(f, self.wfile)

    def _send_json(self, body: Mapping[str, Any], send_body: bool) -> None:
        self._send(HTTPStatus.OK, JSON_TYPE, json.dumps(body).encode(), send_body)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_found(self, send_body: bool) -> None:
        self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n", send_body)

    def _send(self, status: HTTPStatus, content_type: str, body: bytes, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if content_type != "application/octet-stream":
            self.send_header("Vary", "Accept")
            # pages change as wheels are added: an installer must not answer from its cache
            self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class LocalIndexServer:
    """Serves ``roots`` as a simple index on ``host``; rescans the folders on every request."""

    def __init__(
        self,
        roots: Sequence[Path],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        yanked: Mapping[str, str] | None = None,
        html_only: bool = False,
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self.host = host
        self.port = port
        self.yanked: Mapping[str, str] = dict(yanked or {})
        self.html_only = html_only
        self._cache = _SHARED_INFO
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://<host>:<port>/simple/``; with ``port=0`` only known once started."""
        if self.port == 0:
            raise RuntimeError("LocalIndexServer.url is only known after start()")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/simple/"

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # how long stop() waits for the loop to notice: a warm rerun's whole run is ~1 s
            kwargs={"poll_interval": 0.02},
            name=f"local-index-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> LocalIndexServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _scan(self) -> dict[NormalizedName, dict[str, _Dist]]:
        return self._cache.scan(self.roots)


def write_simple_tree(roots: Sequence[Path], dest: Path) -> None:
    """Write a static PEP 503 tree for ``roots`` into ``dest`` (links relative to the files)."""
    dest = Path(dest)
    projects = _SHARED_INFO.scan([Path(r) for r in roots])
    for name in sorted(projects):
        page_dir = dest / name
        page_dir.mkdir(parents=True, exist_ok=True)
        dists = projects[name]
        anchors = [
            _file_anchor(
                dists[f], quote(Path(os.path.relpath(dists[f].path, page_dir)).as_posix()), None
            )
            for f in sorted(dists)
        ]
        _write_atomic(page_dir / "index.html", _html_page(f"Links for {name}", anchors))
    dest.mkdir(parents=True, exist_ok=True)
    _write_atomic(dest / "index.html", _project_list_html(sorted(projects)))


def _write_atomic(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return  # unchanged: a rerun rewrites nothing
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
