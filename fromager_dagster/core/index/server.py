"""A simple index (PEP 503 HTML, PEP 691 JSON) served over local folders of wheels and sdists."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from fromager_dagster.core.index.distributions import parse_dist_filename
from fromager_dagster.core.index.local_files import SHARED_INFO, LocalDist
from fromager_dagster.core.index.simple_pages import (
    HTML_TYPE,
    JSON_TYPE,
    file_anchor,
    html_page,
    project_list_html,
    wants_json,
)


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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  the base class's name
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
            self._send(HTTPStatus.OK, HTML_TYPE, project_list_html(names), send_body)

    def _json(self, index: LocalIndexServer) -> bool:
        return not index.html_only and wants_json(self.headers.get("Accept"))

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
                file_anchor(d, f"../../files/{quote(d.filename)}", index.yanked.get(d.filename))
                for d in ordered
            )
            self._send(HTTPStatus.OK, HTML_TYPE, html_page(f"Links for {name}", anchors), send_body)

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
        self._cache = SHARED_INFO
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

    def _scan(self) -> dict[NormalizedName, dict[str, LocalDist]]:
        return self._cache.scan(self.roots)
