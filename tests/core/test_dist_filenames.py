"""parse_dist_filename reads a wheel's name and version as packaging does, without its tags."""

from __future__ import annotations

import pytest
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from fromager_dagster.core.index.distributions import parse_dist_filename, wheel_tag_rank

NAMES = [
    "foo-1.0-py3-none-any.whl",
    "Foo_Bar-2.0.1-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "foo-1.0-1abc-py3-none-any.whl",
    "foo.bar-1.0rc1-py2.py3-none-any.whl",
    "foo-1.0.dev3+local.1-py3-none-any.whl",
    # invalid, each for its own reason
    "foo-1.0-py3-none.whl",  # too few parts
    "foo-1.0-1-2-py3-none-any.whl",  # too many parts
    "foo__bar-1.0-py3-none-any.whl",  # "__" in the escaped name
    "-1.0-py3-none-any.whl",  # empty name
    "foo!-1.0-py3-none-any.whl",  # not an escaped name
    "foo-notaversion!-py3-none-any.whl",  # bad version
    "foo-1.0-x1-py3-none-any.whl",  # build tag not starting with a digit
    "foo-1.0--none-any.whl",  # empty interpreter tag
]


@pytest.mark.parametrize("filename", NAMES)
def test_name_and_version_agree_with_packaging(filename: str) -> None:
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        expected = None
    else:
        expected = (name, version, "wheel")
    assert parse_dist_filename(filename) == expected


@pytest.mark.parametrize("filename", ["foo-1.0-3py-none-any.whl", "foo-1.0-py3.-none-any.whl"])
def test_a_wheel_whose_tags_do_not_parse_is_never_preferred(filename: str) -> None:
    """Its name and version are read (its version is listed); where wheels are ranked, its
    tags are read and it is turned down, even with any platform allowed."""
    with pytest.raises(InvalidWheelFilename):
        parse_wheel_filename(filename)
    assert parse_dist_filename(filename) is not None
    assert wheel_tag_rank(filename, ignore_platform=True) is None
