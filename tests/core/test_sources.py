"""Tests for fromager_dagster.core.sources.archives: download, unpack, repack."""

from __future__ import annotations

import hashlib
import io
import re
import stat
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.errors import HashMismatchError, SourceError, UnsafeArchiveError
from fromager_dagster.core.index.distributions import DistFile
from fromager_dagster.core.sources.archives import download, sha256_file
from fromager_dagster.core.sources.repack import repack_sdist
from fromager_dagster.core.sources.unpacking import unpack

# --- archive builders -----------------------------------------------------------------------


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    mode = "w:gz" if path.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def make_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


NORMAL_SDIST = [
    _special("pkg-1.0", tarfile.DIRTYPE),
    _file("pkg-1.0/pyproject.toml", b"[project]\nname = 'pkg'\n"),
    _file("pkg-1.0/pkg/__init__.py", b"VALUE = 1\n"),
    _file("pkg-1.0/bin/run", b"#!/bin/sh\n", mode=0o755),
    _special("pkg-1.0/link-to-init", tarfile.SYMTYPE, "pkg/__init__.py"),
]


def test_unpack_normal_sdist_returns_top_level_dir(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "pkg-1.0.tar.gz", NORMAL_SDIST)
    dest = tmp_path / "work"

    src = unpack(archive, dest)

    assert src == dest / "pkg-1.0" / "pkg-1.0"
    assert (src / "pkg" / "__init__.py").read_text() == "VALUE = 1\n"
    assert (src / "bin" / "run").stat().st_mode & 0o111
    assert not (src / "pkg" / "__init__.py").stat().st_mode & 0o111
    assert (src / "link-to-init").read_text() == "VALUE = 1\n"
    assert [p.name for p in dest.iterdir()] == ["pkg-1.0"]  # no temp directory left


def test_unpack_several_top_level_entries_returns_the_directory(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "flat-2.0.tar", [_file("setup.py"), _file("README")])

    src = unpack(archive, tmp_path / "work")

    assert src == tmp_path / "work" / "flat-2.0"
    assert sorted(p.name for p in src.iterdir()) == ["README", "setup.py"]


def test_unpack_replaces_a_previous_unpack(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "pkg-1.0.tgz", NORMAL_SDIST)
    dest = tmp_path / "work"
    stale = dest / "pkg-1.0" / "pkg-1.0" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")

    src = unpack(archive, dest)

    assert not stale.exists()
    assert (src / "pyproject.toml").is_file()
    assert [p.name for p in dest.iterdir()] == ["pkg-1.0"]


# case -> (members, what the error must say: our own checks, not only tarfile's data filter)
UNSAFE_TARS: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]] = {
    "dotdot": ([_file("pkg-1.0/ok.txt"), _file("pkg-1.0/../../evil")], "'..' component"),
    "absolute": ([_file("/etc/x")], "absolute path"),
    "symlink-outside": (
        [_special("pkg-1.0/link", tarfile.SYMTYPE, "../../outside")],
        "escapes the unpack directory",
    ),
    "symlink-absolute": (
        [_special("pkg-1.0/link", tarfile.SYMTYPE, "/etc/passwd")],
        "escapes the unpack directory",
    ),
    "hardlink-outside": (
        [_special("pkg-1.0/hard", tarfile.LNKTYPE, "../outside")],
        "escapes the unpack directory",
    ),
    "char-device": (
        [_special("pkg-1.0/dev", tarfile.CHRTYPE)],
        "not a regular file, directory or link",
    ),
    "block-device": (
        [_special("pkg-1.0/blk", tarfile.BLKTYPE)],
        "not a regular file, directory or link",
    ),
    "fifo": ([_special("pkg-1.0/fifo", tarfile.FIFOTYPE)], "not a regular file, directory or link"),
    # Every link is lexically inside, but p/q/s -> p makes p/q/a resolve above the root.
    "chained-symlinks": (
        [_special("p/q/s", tarfile.SYMTYPE, ".."), _special("p/q/a", tarfile.SYMTYPE, "s/../..")],
        "p/q/a",
    ),
    "size-bomb": ([_file("pkg-1.0/big", b"\0" * 5000)], "exceeds 4096 bytes"),
    "too-many-members": ([_file(f"pkg-1.0/f{i}") for i in range(11)], "more than 10 members"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_TARS))
def test_unpack_refuses_unsafe_tar_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    members, says = UNSAFE_TARS[case]
    archive = make_tar(tmp_path / "bad-1.0.tar.gz", members)
    dest = tmp_path / "work"
    dest.mkdir()

    with pytest.raises(UnsafeArchiveError) as excinfo:
        unpack(archive, dest, max_bytes=4096, max_members=10)

    assert "bad-1.0.tar.gz" in str(excinfo.value)
    assert says in str(excinfo.value)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "outside").exists()


def test_unpack_error_names_the_member(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "bad-1.0.tar", UNSAFE_TARS["dotdot"][0])

    with pytest.raises(UnsafeArchiveError, match=r"pkg-1\.0/\.\./\.\./evil"):
        unpack(archive, tmp_path / "work")


def test_unpack_zip_keeps_executable_bit_and_inside_symlinks(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "zpkg-1.0.zip",
        [
            ("zpkg-1.0/setup.py", b"print()\n", stat.S_IFREG | 0o644),
            ("zpkg-1.0/run.sh", b"#!/bin/sh\n", stat.S_IFREG | 0o755),
            ("zpkg-1.0/alias.py", b"setup.py", stat.S_IFLNK | 0o777),
        ],
    )

    src = unpack(archive, tmp_path / "work")

    assert src == tmp_path / "work" / "zpkg-1.0" / "zpkg-1.0"
    assert (src / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (src / "setup.py").stat().st_mode & 0o777 == 0o644
    assert (src / "alias.py").is_symlink()
    assert (src / "alias.py").read_text() == "print()\n"


UNSAFE_ZIPS: dict[str, tuple[list[tuple[str, bytes, int]], str]] = {
    "dotdot": ([("zpkg-1.0/../../evil", b"x", 0o644)], "'..' component"),
    "absolute": ([("/etc/x", b"x", 0o644)], "absolute path"),
    "symlink-outside": (
        [("zpkg-1.0/link", b"../../outside", stat.S_IFLNK | 0o777)],
        "escapes the unpack directory",
    ),
    "chained-symlinks": (
        [("p/q/s", b"..", stat.S_IFLNK | 0o777), ("p/q/a", b"s/../..", stat.S_IFLNK | 0o777)],
        "p/q/a",
    ),
    # p/s -> the root and p/s/t -> ".." look inside lexically; p/s/t/evil would be created
    # in the directory above the root.
    "link-through-link": (
        [
            ("p/s", b"..", stat.S_IFLNK | 0o777),
            ("p/s/t", b"..", stat.S_IFLNK | 0o777),
            ("p/s/t/evil", b".", stat.S_IFLNK | 0o777),
        ],
        "through a link",
    ),
    "char-device": (
        [("zpkg-1.0/dev", b"", stat.S_IFCHR | 0o644)],
        "not a regular file, directory or link",
    ),
    "size-bomb": ([("zpkg-1.0/big", b"\0" * 5000, 0o644)], "exceeds 4096 bytes"),
    "too-many-members": (
        [(f"zpkg-1.0/f{i}", b"x", 0o644) for i in range(11)],
        "more than 10 members",
    ),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_ZIPS))
def test_unpack_refuses_unsafe_zip_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    members, says = UNSAFE_ZIPS[case]
    archive = make_zip(tmp_path / "bad-1.0.zip", members)
    dest = tmp_path / "work"
    dest.mkdir()

    with pytest.raises(UnsafeArchiveError) as excinfo:
        unpack(archive, dest, max_bytes=4096, max_members=10)

    assert "bad-1.0.zip" in str(excinfo.value)
    assert says in str(excinfo.value)

    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_unpack_refuses_unknown_format(tmp_path: Path) -> None:
    archive = tmp_path / "pkg-1.0.rar"
    archive.write_bytes(b"Rar!")

    with pytest.raises(SourceError, match=re.escape("pkg-1.0.rar")):
        unpack(archive, tmp_path / "work")


# --- repack -----------------------------------------------------------------------------------


def _source_tree(root: Path) -> Path:
    (root / "my_pkg" / "__pycache__").mkdir(parents=True)
    (root / "my_pkg" / "__init__.py").write_text("X = 1\n")
    (root / "my_pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    (root / "my_pkg" / "stray.pyc").write_bytes(b"\0")
    (root / "pyproject.toml").write_text("[project]\nname = 'My.Pkg'\n")
    (root / "PKG-INFO").write_text("Name: My.Pkg\n")
    script = root / "scripts" / "run"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o775)
    (root / "pyproject.toml").chmod(0o600)
    return root


def test_repack_is_byte_identical_and_normalised(tmp_path: Path) -> None:
    src = _source_tree(tmp_path / "src")
    first = repack_sdist(src, tmp_path / "a" / "out.tar.gz", name="My.Pkg", version="1.0")
    (src / "PKG-INFO").touch()  # a newer mtime must not matter
    second = repack_sdist(src, tmp_path / "b" / "out.tar.gz", name="My.Pkg", version="1.0")

    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == [
        "my_pkg-1.0",
        "my_pkg-1.0/PKG-INFO",
        "my_pkg-1.0/my_pkg",
        "my_pkg-1.0/my_pkg/__init__.py",
        "my_pkg-1.0/pyproject.toml",
        "my_pkg-1.0/scripts",
        "my_pkg-1.0/scripts/run",
    ]
    by_name = {m.name: m for m in members}
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
    assert by_name["my_pkg-1.0/scripts/run"].mode == 0o755
    assert by_name["my_pkg-1.0/pyproject.toml"].mode == 0o644
    assert by_name["my_pkg-1.0/my_pkg"].mode == 0o755
    assert list(first.parent.iterdir()) == [first]  # no temp file left


def test_repack_gzip_header_has_epoch_and_no_filename(tmp_path: Path) -> None:
    src = _source_tree(tmp_path / "src")
    out = repack_sdist(src, tmp_path / "out.tar.gz", name="x", version="2", source_date_epoch=1234)

    header = out.read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b"
    assert int.from_bytes(header[4:8], "little") == 1234
    assert not header[3] & 0x08  # FNAME flag
    with tarfile.open(out) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1234}
        assert tar.getnames()[0] == "x-2"


def test_repack_round_trips_through_unpack(tmp_path: Path) -> None:
    src = _source_tree(tmp_path / "src")
    out = repack_sdist(src, tmp_path / "my_pkg-1.0.tar.gz", name="my-pkg", version="1.0")

    unpacked = unpack(out, tmp_path / "work")

    assert unpacked.name == "my_pkg-1.0"
    assert (unpacked / "my_pkg" / "__init__.py").read_text() == "X = 1\n"
    assert not (unpacked / "my_pkg" / "__pycache__").exists()
    assert (unpacked / "scripts" / "run").stat().st_mode & 0o111


# --- download ---------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    root: Path
    paths: list[str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    paths: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", root, paths)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _dist(server: Server, filename: str, sha256: str | None) -> DistFile:
    return DistFile(
        name=canonicalize_name("pkg"),
        version=Version("1.0"),
        filename=filename,
        url=f"{server.url}/{filename}",
        kind="sdist",
        sha256=sha256,
        requires_python=None,
    )


PAYLOAD = b"sdist bytes " * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_with_right_hash(server: Server, tmp_path: Path) -> None:
    (server.root / "pkg-1.0.tar.gz").write_bytes(PAYLOAD)
    dest = tmp_path / "downloads"

    with requests.Session() as session:
        path = download(session, _dist(server, "pkg-1.0.tar.gz", PAYLOAD_SHA), dest)

    assert path == dest / "pkg-1.0.tar.gz"
    assert path.read_bytes() == PAYLOAD
    assert sha256_file(path) == PAYLOAD_SHA
    assert server.paths == ["/pkg-1.0.tar.gz"]
    assert list(dest.iterdir()) == [path]


def test_download_with_wrong_hash_refuses_and_leaves_nothing(
    server: Server, tmp_path: Path
) -> None:
    (server.root / "pkg-1.0.tar.gz").write_bytes(PAYLOAD)
    dest = tmp_path / "downloads"
    wrong = "0" * 64

    with requests.Session() as session, pytest.raises(HashMismatchError) as excinfo:
        download(session, _dist(server, "pkg-1.0.tar.gz", wrong), dest)

    message = str(excinfo.value)
    for part in ("pkg-1.0.tar.gz", wrong, PAYLOAD_SHA, "refusing it"):
        assert part in message
    assert (excinfo.value.package, excinfo.value.version) == ("pkg", "1.0")
    assert list(dest.iterdir()) == []


def test_download_reuses_a_verified_file_without_a_request(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "downloads"
    dest.mkdir()
    (dest / "pkg-1.0.tar.gz").write_bytes(PAYLOAD)

    with requests.Session() as session:
        path = download(session, _dist(server, "pkg-1.0.tar.gz", PAYLOAD_SHA), dest)

    assert path.read_bytes() == PAYLOAD
    assert server.paths == []


def test_download_replaces_a_corrupt_existing_file(server: Server, tmp_path: Path) -> None:
    (server.root / "pkg-1.0.tar.gz").write_bytes(PAYLOAD)
    dest = tmp_path / "downloads"
    dest.mkdir()
    (dest / "pkg-1.0.tar.gz").write_bytes(b"truncated")

    with requests.Session() as session:
        path = download(session, _dist(server, "pkg-1.0.tar.gz", PAYLOAD_SHA.upper()), dest)

    assert path.read_bytes() == PAYLOAD
    assert server.paths == ["/pkg-1.0.tar.gz"]


def test_download_without_published_hash_is_accepted(server: Server, tmp_path: Path) -> None:
    (server.root / "pkg-1.0.tar.gz").write_bytes(PAYLOAD)

    with requests.Session() as session:
        path = download(session, _dist(server, "pkg-1.0.tar.gz", None), tmp_path / "d")

    assert path.read_bytes() == PAYLOAD


def test_download_http_error_names_package_url_and_status(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "downloads"
    dist = _dist(server, "missing-1.0.tar.gz", PAYLOAD_SHA)

    with requests.Session() as session, pytest.raises(SourceError) as excinfo:
        download(session, dist, dest)

    message = str(excinfo.value)
    assert "pkg" in message and dist.url in message and "404" in message
    assert not isinstance(excinfo.value, HashMismatchError)
    assert list(dest.iterdir()) == []


def test_download_refuses_a_filename_with_a_path(server: Server, tmp_path: Path) -> None:
    with requests.Session() as session, pytest.raises(SourceError, match="plain file name"):
        download(session, _dist(server, "../pkg-1.0.tar.gz", None), tmp_path / "d")

    assert server.paths == []
