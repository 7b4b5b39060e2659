"""PackageId: the name==version of graph keys, parsed, ordered and printed."""

from __future__ import annotations

import pytest
from packaging.version import Version

from fromager_dagster.core.package_id import PackageId, package_key


def test_key_is_canonical_name_and_version() -> None:
    pid = PackageId.of("Setuptools_SCM", "8.0")
    assert (pid.name, pid.version) == ("setuptools-scm", Version("8.0"))
    assert pid.key == str(pid) == "setuptools-scm==8.0"
    assert PackageId.of("x", Version("1.0.post1")).key == "x==1.0.post1"


def test_parse_round_trips_and_rejects_what_is_no_key() -> None:
    pid = PackageId.parse("pbr==7.1.3")
    assert pid == PackageId.of("pbr", "7.1.3")
    assert PackageId.parse(pid.key) == pid
    for bad in ("pbr", "pbr==", "==1.0", "pbr==not a version", "Not Canonical!==1"):
        with pytest.raises(ValueError, match="is not a name==version key"):
            PackageId.parse(bad)
    with pytest.raises(ValueError, match="x: 'nope' is not a valid version"):
        PackageId.of("x", "nope")


def test_ordered_by_name_then_version() -> None:
    ids = [PackageId.parse(k) for k in ("b==1.0", "a==10.0", "a==2.0", "a==2.0rc1")]
    assert [str(p) for p in sorted(ids)] == ["a==2.0rc1", "a==2.0", "a==10.0", "b==1.0"]


def test_package_key_keeps_what_it_is_given() -> None:
    assert package_key("Foo", "01.0") == "Foo==01.0"
    assert package_key("foo", Version("1.0")) == PackageId.of("foo", "1.0").key
