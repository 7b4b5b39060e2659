"""What one package-version's build is configured with: its settings, plugins and environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.plugins import steps as plugin_steps
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.prepare import (
    DEFAULT_SOURCE_DATE_EPOCH as DEFAULT_SOURCE_DATE_EPOCH,
)
from fromager_dagster.core.sources.prepare import hook_environ


@dataclass(frozen=True)
class BuildSettings:
    """What the settings say about one package-version's build."""

    settings: Settings
    build_tag: int
    environ: dict[str, str]
    config_settings: dict[str, str | list[str]]
    pre_built: bool

    @classmethod
    def of(
        cls,
        settings: Settings,
        name: str,
        version: str,
        *,
        source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    ) -> BuildSettings:
        package = settings.package(name)
        return cls(
            settings=settings,
            build_tag=settings.build_tag(name, version),
            environ=hook_environ(settings, name, version, source_date_epoch=source_date_epoch),
            config_settings={
                k: v if isinstance(v, str) else list(v) for k, v in package.config_settings.items()
            },
            pre_built=settings.pre_built(name),
        )


def extra_environ(
    source_dir: Path,
    settings: BuildSettings,
    plugins: Plugins,
    name: str,
    version: str,
    log: Path,
) -> dict[str, str]:
    """The hooks' extra environment of the tree in ``source_dir``: the settings', then an
    update_extra_environ plugin's. A bootstrap and the builder both take it from here."""
    return plugin_steps.extra_environ(
        plugins,
        name=name,
        version=version,
        source_dir=source_dir,
        settings=settings.settings,
        base=settings.environ,
        log=log,
    )
