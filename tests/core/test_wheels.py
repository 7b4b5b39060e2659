"""Tests for fromager_dagster.core.build.wheels: finalisation, metadata, requirements, modules."""

from __future__ import annotations

import base64
import csv
import email
import hashlib
import io
import re
import stat
import time
import zipfile
from pathlib import Path

import pytest
from packaging.metadata import Metadata

from fromager_dagster.core.build.wheel_extras import WheelExtras
from fromager_dagster.core.build.wheels import (
    finalize_wheel,
    install_requirements,
    read_metadata,
    wheel_top_level_modules,
)
from fromager_dagster.core.errors import BuildError

METADATA = """\
Metadata-Version: 2.1
Name: Demo.Pkg
Version: 1.0
Requires-Dist: requests>=2
Requires-Dist: six; python_version < "3"
Requires-Dist: extra-dep; extra == "x"
Requires-Dist: other; extra == "y"
Requires-Dist: requests>=2
Requires-Dist: both; python_version >= "3" and extra == "x"
Provides-Extra: x
Provides-Extra: y

A description body.
"""

WHEEL = """\
Wheel-Version: 1.0
Generator: test
Root-Is-Purelib: true
Tag: py3-none-any

"""

DIST_INFO = "demo_pkg-1.0.dist-info"


def make_wheel(
    path: Path,
    *,
    reverse: bool = False,
    date_time: tuple[int, int, int, int, int, int] = (2020, 5, 6, 7, 8, 10),
    wheel_text: str = WHEEL,
    extra: dict[str, bytes] | None = None,
    metadata: bool = True,
) -> Path:
    """A backend-like wheel: stale RECORD, a directory entry, arbitrary order and dates."""
    files: list[tuple[str, bytes, int]] = [
        ("demo_pkg/", b"", stat.S_IFDIR | 0o775),
        ("demo_pkg/__init__.py", b"VALUE = 1\n", 0o664),
        ("demo_pkg/cli.py", b"#!/usr/bin/env python\n", 0o775),
        ("demo_pkg-1.0.data/scripts/demo", b"#!python\n", 0o755),
        (f"{DIST_INFO}/WHEEL", wheel_text.encode(), 0o644),
        (f"{DIST_INFO}/RECORD", b"stale,,\n", 0o644),
        ("aaa_first.py", b"A = 1\n", 0o644),
    ]
    if metadata:
        files.append((f"{DIST_INFO}/METADATA", METADATA.encode(), 0o644))
    files += [(name, data, 0o644) for name, data in (extra or {}).items()]
    if reverse:
        files.reverse()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data, mode in files:
            info = zipfile.ZipInfo(name, date_time)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_finalize_is_byte_identical_regardless_of_input_order_and_dates(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = make_wheel(tmp_path / "a" / "demo_pkg-1.0-py3-none-any.whl")
    two = make_wheel(
        tmp_path / "b" / "demo_pkg-1.0-py3-none-any.whl",
        reverse=True,
        date_time=(2024, 1, 2, 3, 4, 6),
    )

    first = finalize_wheel(one, tmp_path / "out1")
    again = finalize_wheel(one, tmp_path / "out2")
    other = finalize_wheel(two, tmp_path / "out3")

    assert first.read_bytes() == again.read_bytes() == other.read_bytes()
    assert first.name == "demo_pkg-1.0-0-py3-none-any.whl"
    assert list(first.parent.iterdir()) == [first]  # no temp file left


def test_finalize_names_the_wheel_with_the_build_tag_and_original_spelling(
    tmp_path: Path,
) -> None:
    built = make_wheel(tmp_path / "Demo.Pkg-1.0-cp311-cp311-linux_x86_64.whl")

    out = finalize_wheel(built, tmp_path / "out", build_tag=12)

    assert out == tmp_path / "out" / "Demo.Pkg-1.0-12-cp311-cp311-linux_x86_64.whl"


def test_finalize_writes_a_single_build_line(tmp_path: Path) -> None:
    tagged = WHEEL.replace("Root-Is-Purelib: true\n", "Root-Is-Purelib: true\nBuild: 7\n")
    built = make_wheel(tmp_path / "demo_pkg-1.0-7-py3-none-any.whl", wheel_text=tagged)

    out = finalize_wheel(built, tmp_path / "out", build_tag=3)

    assert out.name == "demo_pkg-1.0-3-py3-none-any.whl"
    with zipfile.ZipFile(out) as zf:
        lines = zf.read(f"{DIST_INFO}/WHEEL").decode().splitlines()
    assert [line for line in lines if line.startswith("Build")] == ["Build: 3"]
    assert lines[:4] == [
        "Wheel-Version: 1.0",
        "Generator: test",
        "Root-Is-Purelib: true",
        "Build: 3",
    ]
    assert "Tag: py3-none-any" in lines


def test_finalize_adds_a_build_line_when_missing(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    out = finalize_wheel(built, tmp_path / "out")

    with zipfile.ZipFile(out) as zf:
        text = zf.read(f"{DIST_INFO}/WHEEL").decode()
    assert text.endswith("Tag: py3-none-any\nBuild: 0\n")


def test_finalize_regenerates_record_and_normalises_entries(tmp_path: Path) -> None:
    built = make_wheel(
        tmp_path / "demo_pkg-1.0-py3-none-any.whl",
        extra={f"{DIST_INFO}/RECORD.jws": b"{}", "odd,name.txt": b"comma"},
    )
    epoch = 1_700_000_000

    out = finalize_wheel(built, tmp_path / "out", source_date_epoch=epoch)

    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        rows = list(csv.reader(io.StringIO(zf.read(f"{DIST_INFO}/RECORD").decode())))
        contents = {n: zf.read(n) for n in names}
    assert names == [
        "aaa_first.py",
        "demo_pkg-1.0.data/scripts/demo",
        "demo_pkg/__init__.py",
        "demo_pkg/cli.py",
        "odd,name.txt",
        f"{DIST_INFO}/METADATA",
        f"{DIST_INFO}/WHEEL",
        f"{DIST_INFO}/RECORD",
    ]
    assert rows[-1] == [f"{DIST_INFO}/RECORD", "", ""]
    assert [r[0] for r in rows] == names
    for name, digest, size in rows[:-1]:
        data = contents[name]
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        assert digest == "sha256=" + expected.decode()
        assert int(size) == len(data)
    modes = {i.filename: i.external_attr >> 16 for i in infos}
    assert modes["demo_pkg/cli.py"] == 0o755
    assert modes["demo_pkg-1.0.data/scripts/demo"] == 0o755
    assert modes["demo_pkg/__init__.py"] == 0o644
    assert {i.date_time for i in infos} == {time.gmtime(epoch)[:6]}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}


def test_finalize_clamps_dates_to_1980(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    out = finalize_wheel(built, tmp_path / "out", source_date_epoch=0)

    with zipfile.ZipFile(out) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_finalize_refuses_a_wheel_without_dist_info(tmp_path: Path) -> None:
    built = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(built, "w") as zf:
        zf.writestr("demo_pkg/__init__.py", "")

    with pytest.raises(BuildError, match="dist-info"):
        finalize_wheel(built, tmp_path / "out")

    assert list((tmp_path / "out").iterdir()) == []


EXTRAS = WheelExtras(
    metadata_headers=(("Requires-External", "openssl-libs"), ("Requires-External", "libffi")),
    files={"sboms/tool.spdx.json": b'{"spdxVersion": "SPDX-2.3"}\n', "zz-notes.txt": b"x"},
)


def _record_rows(zf: zipfile.ZipFile) -> list[list[str]]:
    return list(csv.reader(io.StringIO(zf.read(f"{DIST_INFO}/RECORD").decode())))


def test_finalize_with_extras_adds_headers_before_the_body_and_files_in_record(
    tmp_path: Path,
) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    out = finalize_wheel(built, tmp_path / "out", extras=EXTRAS)

    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        text = zf.read(f"{DIST_INFO}/METADATA").decode()
        rows = _record_rows(zf)
        contents = {n: zf.read(n) for n in names}
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    head, body = text.split("\n\n", 1)
    assert head.splitlines()[-3:] == [
        "Provides-Extra: y",
        "Requires-External: openssl-libs",
        "Requires-External: libffi",
    ]
    assert body == "A description body.\n"
    assert names[-5:] == [
        f"{DIST_INFO}/METADATA",
        f"{DIST_INFO}/WHEEL",
        f"{DIST_INFO}/sboms/tool.spdx.json",
        f"{DIST_INFO}/zz-notes.txt",
        f"{DIST_INFO}/RECORD",
    ]
    assert contents[f"{DIST_INFO}/sboms/tool.spdx.json"] == EXTRAS.files["sboms/tool.spdx.json"]
    assert modes[f"{DIST_INFO}/sboms/tool.spdx.json"] == 0o644
    assert [r[0] for r in rows] == names
    for name, digest, size in rows[:-1]:
        expected = base64.urlsafe_b64encode(hashlib.sha256(contents[name]).digest()).rstrip(b"=")
        assert (digest, int(size)) == ("sha256=" + expected.decode(), len(contents[name]))
    metadata = Metadata.from_email(contents[f"{DIST_INFO}/METADATA"], validate=True)
    assert metadata.requires_external == ["openssl-libs", "libffi"]
    assert len(metadata.requires_dist or []) == 6


def test_finalize_with_extras_is_byte_identical_regardless_of_input(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = make_wheel(tmp_path / "a" / "demo_pkg-1.0-py3-none-any.whl")
    two = make_wheel(
        tmp_path / "b" / "demo_pkg-1.0-py3-none-any.whl",
        reverse=True,
        date_time=(2024, 1, 2, 3, 4, 6),
    )

    first = finalize_wheel(one, tmp_path / "out1", build_tag=1, extras=EXTRAS)
    again = finalize_wheel(one, tmp_path / "out2", build_tag=1, extras=EXTRAS)
    other = finalize_wheel(two, tmp_path / "out3", build_tag=1, extras=EXTRAS)
    plain = finalize_wheel(one, tmp_path / "out4", build_tag=1)

    assert first.read_bytes() == again.read_bytes() == other.read_bytes()
    assert first.read_bytes() != plain.read_bytes()


def test_finalize_with_empty_extras_is_finalize_without(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    empty = finalize_wheel(built, tmp_path / "out1", extras=WheelExtras())
    none = finalize_wheel(built, tmp_path / "out2")

    assert empty.read_bytes() == none.read_bytes()


def test_finalize_with_extras_keeps_one_of_each_header_and_replaces_a_file(
    tmp_path: Path,
) -> None:
    built = make_wheel(
        tmp_path / "demo_pkg-1.0-py3-none-any.whl",
        extra={f"{DIST_INFO}/sboms/tool.spdx.json": b"old"},
    )
    once = finalize_wheel(built, tmp_path / "once", extras=EXTRAS)

    twice = finalize_wheel(once, tmp_path / "twice", extras=EXTRAS)

    assert twice.read_bytes() == once.read_bytes()
    with zipfile.ZipFile(twice) as zf:
        text = zf.read(f"{DIST_INFO}/METADATA").decode()
        assert zf.read(f"{DIST_INFO}/sboms/tool.spdx.json") == EXTRAS.files["sboms/tool.spdx.json"]
        assert zf.namelist().count(f"{DIST_INFO}/sboms/tool.spdx.json") == 1
    assert text.count("Requires-External: openssl-libs") == 1


def test_finalize_appends_headers_to_metadata_without_a_body(tmp_path: Path) -> None:
    built = make_wheel(
        tmp_path / "demo_pkg-1.0-py3-none-any.whl",
        metadata=False,
        extra={f"{DIST_INFO}/METADATA": b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0"},
    )

    out = finalize_wheel(
        built, tmp_path / "out", extras=WheelExtras(metadata_headers=(("Requires-External", "C"),))
    )

    with zipfile.ZipFile(out) as zf:
        text = zf.read(f"{DIST_INFO}/METADATA").decode()
    assert text == "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nRequires-External: C\n"


@pytest.mark.parametrize(
    "path", ["../escape.txt", "/abs.txt", "RECORD", "METADATA", "WHEEL", "a//b", "a\\b", ""]
)
def test_finalize_refuses_an_extra_file_outside_or_over_its_own(tmp_path: Path, path: str) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    with pytest.raises(BuildError, match="cannot add"):
        finalize_wheel(built, tmp_path / "out", extras=WheelExtras(files={path: b"x"}))

    assert list((tmp_path / "out").iterdir()) == []


def test_finalize_refuses_headers_without_metadata(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl", metadata=False)
    extras = WheelExtras(metadata_headers=(("Requires-External", "C"),))

    with pytest.raises(BuildError, match=re.escape("no demo_pkg-1.0.dist-info/METADATA")):
        finalize_wheel(built, tmp_path / "out", extras=extras)


def test_finalize_refuses_a_header_value_on_two_lines(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")
    extras = WheelExtras(metadata_headers=(("Requires-External", "a\nName: evil"),))

    with pytest.raises(BuildError, match="cannot add the METADATA header"):
        finalize_wheel(built, tmp_path / "out", extras=extras)


def test_read_metadata(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    metadata = read_metadata(built)

    assert metadata["Name"] == "Demo.Pkg"
    assert metadata["Version"] == "1.0"
    assert len(metadata.get_all("Requires-Dist") or []) == 6


def test_read_metadata_missing_raises(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl", metadata=False)

    with pytest.raises(BuildError, match="METADATA"):
        read_metadata(built)


def _names(metadata_wheel: Path, extras: tuple[str, ...] = ()) -> list[str]:
    reqs = install_requirements(read_metadata(metadata_wheel), extras=extras)
    return [str(r) for r in reqs]


def test_install_requirements_without_extras(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    assert _names(built) == ["requests>=2"]


def test_install_requirements_with_one_extra(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    assert _names(built, ("x",)) == [
        "requests>=2",
        'extra-dep; extra == "x"',
        'both; python_version >= "3" and extra == "x"',
    ]


def test_install_requirements_with_several_extras_keeps_file_order(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    names = _names(built, ("Y", "x"))

    assert [n.split(";")[0] for n in names] == ["requests>=2", "extra-dep", "other", "both"]


def test_install_requirements_invalid_entry_raises() -> None:
    metadata = email.message_from_string("Name: broken\nRequires-Dist: not a requirement!!\n\n")

    with pytest.raises(BuildError, match="not a requirement"):
        install_requirements(metadata)


def test_top_level_modules_from_listing(tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "demo_pkg-1.0-py3-none-any.whl")

    assert wheel_top_level_modules(built) == ["aaa_first", "demo_pkg"]


def test_top_level_modules_from_top_level_txt(tmp_path: Path) -> None:
    built = make_wheel(
        tmp_path / "demo_pkg-1.0-py3-none-any.whl",
        extra={f"{DIST_INFO}/top_level.txt": b"demo_pkg\n_demo_ext\n\n"},
    )

    assert wheel_top_level_modules(built) == ["_demo_ext", "demo_pkg"]


def test_an_unreadable_wheel_names_its_package(tmp_path: Path) -> None:
    from fromager_dagster.core.build.wheels import read_metadata
    from fromager_dagster.core.errors import BuildError

    wheel = tmp_path / "fx_pre-2.0-py3-none-any.whl"
    wheel.write_bytes(b"not a zip")
    with pytest.raises(BuildError) as caught:
        read_metadata(wheel)
    assert caught.value.one_line().startswith("fx-pre==2.0: build failed: cannot read the wheel ")
    assert str(wheel) in caught.value.one_line() and "delete it" in caught.value.one_line()
