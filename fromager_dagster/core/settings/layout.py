"""The overrides folder layout: override names, default paths, settings files, patch folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from packaging.utils import InvalidName, NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import ConfigError

DEFAULT_OVERRIDES_DIR = Path("overrides")
DEFAULT_SETTINGS_FILE = DEFAULT_OVERRIDES_DIR / "settings.yaml"
DEFAULT_SETTINGS_DIR = DEFAULT_OVERRIDES_DIR / "settings"
DEFAULT_PATCHES_DIR = DEFAULT_OVERRIDES_DIR / "patches"


def override_name(name: str) -> str:
    """fromager's file-name form of a package name: canonical, with ``-`` written ``_``."""
    return canonicalize_name(name).replace("-", "_")


def public_version(version: str) -> Version | None:
    try:
        return Version(Version(version).public)
    except InvalidVersion:
        return None


def check_exists(path: Path | None, what: str, *, is_dir: bool) -> None:
    if path is None:
        return
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist; give an existing path or leave it out")
    if path.is_dir() != is_dir:
        kind = "folder" if is_dir else "file"
        raise ConfigError(f"{what} {path} is not a {kind}")


def settings_files(settings_dir: Path) -> list[Path]:
    """The per-package settings files of ``settings_dir`` (``*.yaml``, as fromager reads)."""
    return sorted(p for p in settings_dir.glob("*.yaml") if p.is_file())


def settings_file_name_problem(path: Path) -> tuple[NormalizedName | None, str | None]:
    stem = path.stem
    try:
        name = canonicalize_name(stem, validate=True)
    except InvalidName:
        return None, f"{path}: {stem!r} is not a package name"
    expected = override_name(name)
    if stem != expected:
        return None, f"{path}: file name is not an override name; rename it to {expected}.yaml"
    return name, None


def default_paths(
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
    *,
    root: Path = Path("."),
    overrides: Path | None = None,
) -> tuple[Path | None, Path | None, Path | None]:
    """Fill the paths not given with ``settings.yaml``, ``settings/`` and ``patches/`` of the
    ``overrides`` folder (default: ``overrides/`` under ``root``), where those exist.

    For options whose default is fromager's ``overrides/`` layout: an explicit path is kept
    (and must exist), a missing default simply means no settings.
    """
    folder = overrides if overrides is not None else root / DEFAULT_OVERRIDES_DIR

    def pick(given: Path | None, default: Path) -> Path | None:
        if given is not None:
            return given
        candidate = folder / default.name
        return candidate if candidate.exists() else None

    return (
        pick(settings_file, DEFAULT_SETTINGS_FILE),
        pick(settings_dir, DEFAULT_SETTINGS_DIR),
        pick(patches_dir, DEFAULT_PATCHES_DIR),
    )


def patch_folders(patches_dir: Path, oname: str) -> Iterator[tuple[Path, Version | None]]:
    """The unversioned folder of ``oname`` first, then its ``<oname>-<version>`` folders."""
    plain = patches_dir / oname
    if plain.is_dir():
        yield plain, None
    for folder in sorted(patches_dir.glob(f"{oname}-*")):
        if not folder.is_dir():
            continue
        suffix = folder.name[len(oname) + 1 :]
        try:
            yield folder, Version(Version(suffix).public)
        except InvalidVersion as exc:
            raise ConfigError(
                f"patch folder {folder}: {suffix!r} is not a version; name it "
                f"{oname}-<version>, or {override_name(folder.name)} for every version"
            ) from exc


def patch_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` (an entry of the patches folder) is not a valid patch folder name."""
    name = folder.name
    if not folder.is_dir():
        return f"{folder}: not a folder; patches go in <override_name>[-<version>]/"
    base, _, suffix = name.rpartition("-") if "-" in name else (name, "", "")
    if suffix:
        try:
            Version(suffix)
        except InvalidVersion:
            base = ""
    try:
        canonical = canonicalize_name(base, validate=True)
    except InvalidName:
        return (
            f"{folder}: not <override_name> or <override_name>-<version>; "
            f"did you mean {override_name(name)}?"
        )
    expected = override_name(canonical)
    if base != expected:
        want = f"{expected}-{suffix}" if suffix else expected
        return f"{folder}: folder name is not an override name; rename it to {want}"
    return None


def patch_folder_package(folder: Path) -> NormalizedName:
    """The package a patch folder (``<override_name>`` or ``<override_name>-<version>``) is for."""
    name = folder.name
    base, _, suffix = name.rpartition("-")
    if base:
        try:
            Version(suffix)
            name = base
        except InvalidVersion:
            pass
    return canonicalize_name(name)


def has_patches(folder: Path) -> bool:
    return any(folder.glob("*.patch")) or any(folder.glob("*/*.patch"))
