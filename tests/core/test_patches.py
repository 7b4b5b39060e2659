"""Patches: GNU patch applied in order, failures named by file, hunk and package; the
shipped pytest-asyncio example against the real index."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from fromager_dagster.core.errors import PatchError
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.url import resolve_index_url
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.sources.archives import download
from fromager_dagster.core.sources.patches import apply_patches, failure_reasons
from fromager_dagster.core.sources.unpacking import unpack

REPO = Path(__file__).resolve().parents[2]
ORIGINAL = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "pkg-1.0"
    root.mkdir(parents=True)
    (root / "numbers.txt").write_text(ORIGINAL)
    (root / "setup.cfg").write_text("[metadata]\nname = pkg\n")
    return root


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "patches" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CHANGE_TWO = """\
Free text before the diff is ignored by patch.

--- a/numbers.txt
+++ b/numbers.txt
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
"""

CHANGE_NINE = """\
--- a/numbers.txt
+++ b/numbers.txt
@@ -8,3 +8,3 @@
 eight
-nine
+NINE
 ten
"""

DELETE_SETUP_CFG = """\
--- a/setup.cfg
+++ /dev/null
@@ -1,2 +0,0 @@
-[metadata]
-name = pkg
"""

# first hunk applies, second does not: the dry run must keep the tree untouched
HALF_BAD = """\
--- a/numbers.txt
+++ b/numbers.txt
@@ -4,3 +4,3 @@
 four
-five
+FIVE
 six
@@ -8,3 +8,3 @@
 eight
-not-nine
+NINE
 ten
"""


def test_patches_apply_in_order_and_are_logged(tmp_path: Path, tree: Path) -> None:
    first = write(tmp_path, "0001-two.patch", CHANGE_TWO)
    second = write(tmp_path, "0002-nine.patch", CHANGE_NINE)
    log = tmp_path / "logs" / "pkg-1.0.log"
    log.parent.mkdir()
    log.write_text("earlier build output\n")
    applied = apply_patches(tree, [first, second], log=log, package="pkg", version="1.0")
    assert applied == [first, second]
    assert (tree / "numbers.txt").read_text() == ORIGINAL.replace("two", "TWO").replace(
        "nine", "NINE"
    )
    text = log.read_text()
    assert text.startswith("earlier build output\n")  # appended, not replaced
    assert f"applying patch {first}\npatching file numbers.txt\n" in text
    assert text.index(f"applying patch {first}") < text.index(f"applying patch {second}")
    assert sorted(p.name for p in tree.iterdir()) == ["numbers.txt", "setup.cfg"]


def test_no_patches_is_a_no_op(tmp_path: Path, tree: Path) -> None:
    log = tmp_path / "log"
    assert apply_patches(tree, [], log=log, package="pkg", version="1.0") == []
    assert not log.exists()


def test_patch_deleting_a_file(tmp_path: Path, tree: Path) -> None:
    patch = write(tmp_path, "0001-drop-setup-cfg.patch", DELETE_SETUP_CFG)
    apply_patches(tree, [patch], log=tmp_path / "log", package="pkg", version="1.0")
    assert not (tree / "setup.cfg").exists()
    assert (tree / "numbers.txt").read_text() == ORIGINAL
    with pytest.raises(PatchError, match=re.escape("deletes setup.cfg, which does not exist")):
        apply_patches(tree, [patch], log=tmp_path / "log", package="pkg", version="1.0")


def test_failed_hunk_names_patch_hunk_and_package(tmp_path: Path, tree: Path) -> None:
    good = write(tmp_path, "0001-two.patch", CHANGE_TWO)
    bad = write(tmp_path, "0002-half-bad.patch", HALF_BAD)
    never = write(tmp_path, "0003-nine.patch", CHANGE_NINE)
    log = tmp_path / "log"
    with pytest.raises(PatchError) as info:
        apply_patches(tree, [good, bad, never], log=log, package="pkg", version="1.0")
    err = info.value
    assert str(bad) in str(err)
    assert "hunk #2 FAILED at line 8 of numbers.txt" in str(err)
    assert "pkg==1.0" in str(err)
    assert (err.package, err.version, err.log_path, err.step) == ("pkg", "1.0", str(log), "patch")
    assert err.one_line().startswith("pkg==1.0: patch failed: patch ")
    # the first patch stays applied; the failing one left nothing behind (not even hunk #1)
    assert (tree / "numbers.txt").read_text() == ORIGINAL.replace("two", "TWO")
    assert sorted(p.name for p in tree.iterdir()) == ["numbers.txt", "setup.cfg"]
    text = log.read_text()
    assert f"applying patch {bad}\n" in text and "Hunk #2 FAILED at 8." in text
    assert f"applying patch {never}" not in text
    assert isinstance(pickle.loads(pickle.dumps(err)), PatchError)


def test_already_applied_patch_fails(tmp_path: Path, tree: Path) -> None:
    patch = write(tmp_path, "0001-two.patch", CHANGE_TWO)
    apply_patches(tree, [patch], log=tmp_path / "log", package="pkg", version="1.0")
    with pytest.raises(PatchError, match=re.escape("numbers.txt looks already patched")):
        apply_patches(tree, [patch], log=tmp_path / "log", package="pkg", version="1.0")
    assert (tree / "numbers.txt").read_text() == ORIGINAL.replace("two", "TWO")


def test_patch_for_a_missing_file(tmp_path: Path, tree: Path) -> None:
    patch = write(tmp_path, "0001.patch", CHANGE_TWO.replace("numbers.txt", "other.txt"))
    with pytest.raises(PatchError, match=r": other.txt does not exist \(wrong -p level"):
        apply_patches(tree, [patch], log=tmp_path / "log", package="pkg", version="1.0")


def test_garbage_patch_fails(tmp_path: Path, tree: Path) -> None:
    patch = write(tmp_path, "0001.patch", "this is not a diff\n")
    with pytest.raises(PatchError, match="Only garbage was found in the patch input"):
        apply_patches(tree, [patch], log=tmp_path / "log", package="pkg", version="1.0")


def test_offset_patch_leaves_no_backup_files(tmp_path: Path, tree: Path) -> None:
    (tree / "numbers.txt").write_text("zero\n" + ORIGINAL)  # hunks now apply with an offset
    patch = write(tmp_path, "0001-nine.patch", CHANGE_NINE)
    apply_patches(tree, [patch], log=tmp_path / "log", package="pkg", version="1.0")
    assert "NINE" in (tree / "numbers.txt").read_text()
    assert sorted(p.name for p in tree.iterdir()) == ["numbers.txt", "setup.cfg"]


def test_failure_reasons_fallback() -> None:
    assert failure_reasons("") == ["no output"]
    assert failure_reasons("checking file a\nHunk #3 FAILED at 10.\n") == [
        "hunk #3 FAILED at line 10 of a"
    ]


@pytest.mark.network
def test_shipped_pytest_asyncio_patch_applies_to_the_real_sdist(tmp_path: Path) -> None:
    overrides = REPO / "overrides"
    settings = load_settings(
        settings_file=None,
        settings_dir=overrides / "settings",
        patches_dir=overrides / "patches",
    )
    patches = settings.patches("pytest-asyncio", "1.1.0")
    assert [p.name for p in patches] == ["0001-remove-setup-cfg.patch"]
    index = IndexClient(resolve_index_url())
    [sdist] = [
        f for f in index.files("pytest-asyncio") if f.kind == "sdist" and str(f.version) == "1.1.0"
    ]
    archive = download(index.session, sdist, tmp_path / "downloads")
    source = unpack(archive, tmp_path / "work")
    assert source.name == "pytest_asyncio-1.1.0"
    assert (source / "setup.cfg").exists()
    assert "write_to" in (source / "pyproject.toml").read_text()
    log = tmp_path / "pytest-asyncio-1.1.0.log"
    applied = apply_patches(source, patches, log=log, package="pytest-asyncio", version="1.1.0")
    assert applied == patches
    assert not (source / "setup.cfg").exists()
    pyproject = (source / "pyproject.toml").read_text()
    assert "write_to" not in pyproject
    assert '[tool.setuptools_scm]\nlocal_scheme = "no-local-version"' in pyproject
    assert f"applying patch {patches[0]}" in log.read_text()
