"""Reading an overrides folder (fromager's settings format) into :class:`.overrides.Settings`,
and listing and checking the folder.

``load_settings`` reads ``settings.yaml`` and ``settings/<override_name>.yaml`` and validates
them strictly: every problem of every file is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.settings.layout import (
    check_exists,
    has_patches,
    patch_folder_package,
    patch_folder_problem,
    settings_file_name_problem,
    settings_files,
)
from fromager_dagster.core.settings.overrides import DEFAULT_VARIANT, PackageSettings, Settings
from fromager_dagster.core.settings.schema import Reader, SettingsError, read_yaml
from fromager_dagster.core.settings.sections import (
    SandboxSettings,
    read_build_dir,
    read_build_options,
    read_changelog,
    read_config_settings,
    read_download_source,
    read_env,
    read_git_options,
    read_global_settings,
    read_project_override,
    read_purl,
    read_resolver_dist,
    read_sandbox,
    read_variants,
)

_PACKAGE_KEYS = frozenset(
    {
        "env",
        "variants",
        "download_source",
        "resolver_dist",
        "build_dir",
        "changelog",
        "config_settings",
        "build_options",
        "git_options",
        "project_override",
        "sandbox",
        "annotations",
        "purl",
    }
)


def _package_settings(name: NormalizedName, raw: Any, r: Reader) -> PackageSettings:
    data = r.table(raw, "", _PACKAGE_KEYS)
    purl, purl_config = read_purl(r, data)
    env = read_env(r, data, "")
    variants = read_variants(r, data)
    return PackageSettings(
        name=name,
        env=env,
        variants=variants,
        download_source=read_download_source(r, data),
        resolver_dist=read_resolver_dist(r, data, variants),
        build_dir=read_build_dir(r, data),
        changelog=read_changelog(r, data),
        config_settings=read_config_settings(r, data),
        build_options=read_build_options(r, data),
        git_options=read_git_options(r, data),
        project_override=read_project_override(r, data),
        sandbox=read_sandbox(r, data, package=True),
        annotations=r.string_map(data, "annotations", ""),
        purl=purl,
        purl_config=purl_config,
        source_file=r.source,
    )


def load_settings(
    *,
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
    variant: str = DEFAULT_VARIANT,
) -> Settings:
    """Read and strictly validate the settings; ConfigError lists every problem of a file.

    A path left out (``None``) means no such input; a path given must exist. Problems of all
    files are raised together as one SettingsError (``problems``: one entry per problem,
    ``<file>: <key path>: <what>``; the message joins them with ``'; '``).
    """
    if not variant or "/" in variant or variant in {".", ".."}:
        raise ConfigError(f"variant {variant!r} is not a valid variant name")
    check_exists(settings_file, "settings file", is_dir=False)
    check_exists(settings_dir, "settings folder", is_dir=True)
    check_exists(patches_dir, "patches folder", is_dir=True)
    problems: list[str] = []
    files: list[Path] = []
    global_changelog: dict[str, tuple[str, ...]] = {}
    sbom: dict[str, Any] | None = None
    sandbox = SandboxSettings()
    if settings_file is not None:
        files.append(settings_file)
        reader = Reader(settings_file)
        raw = read_yaml(settings_file, reader)
        global_changelog, sbom, sandbox = read_global_settings(raw, reader)
        problems.extend(reader.problems)
    packages: dict[NormalizedName, PackageSettings] = {}
    for path in settings_files(settings_dir) if settings_dir is not None else []:
        files.append(path)
        name, problem = settings_file_name_problem(path)
        if problem is not None or name is None:
            problems.append(problem or f"{path}: bad file name")
            continue
        reader = Reader(path)
        packages[name] = _package_settings(name, read_yaml(path, reader), reader)
        problems.extend(reader.problems)
    if problems:
        raise SettingsError("; ".join(problems), problems=tuple(problems))
    return Settings(
        variant=variant,
        packages=packages,
        global_changelog=global_changelog,
        patches_dir=patches_dir,
        files=tuple(files),
        sbom=sbom,
        sandbox=sandbox,
    )


def list_overrides(settings: Settings) -> list[NormalizedName]:
    """Packages with a settings file or a patch folder holding patches, sorted."""
    names: set[NormalizedName] = set(settings.packages)
    if settings.patches_dir is not None:
        for folder in settings.patches_dir.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and has_patches(folder):
                names.add(patch_folder_package(folder))
    return sorted(names)


@dataclass(frozen=True)
class LintReport:
    """What ``lint_overrides`` found: one line per problem, and what it checked."""

    problems: tuple[str, ...]
    settings_files: int
    patch_folders: int


def lint_overrides(
    *,
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
    variant: str = DEFAULT_VARIANT,
) -> LintReport:
    """Check an overrides folder without building: settings files validate, settings and patch
    folders are named for packages. A path given that does not exist raises ConfigError."""
    problems: list[str] = []
    try:
        load_settings(
            settings_file=settings_file,
            settings_dir=settings_dir,
            patches_dir=patches_dir,
            variant=variant,
        )
    except SettingsError as exc:
        problems.extend(exc.problems)
    count = 1 if settings_file is not None else 0
    if settings_dir is not None:
        count += len(settings_files(settings_dir))
        problems.extend(
            f"{entry}: not a .yaml file; fromager reads only *.yaml here"
            for entry in sorted(settings_dir.iterdir())
            if entry.suffix != ".yaml" and not entry.name.startswith(".")
        )
    folders = 0
    if patches_dir is not None:
        for entry in sorted(patches_dir.iterdir()):
            if entry.name.startswith("."):
                continue
            folders += entry.is_dir()
            problem = patch_folder_problem(entry)
            if problem:
                problems.append(problem)
    return LintReport(tuple(problems), count, folders)
