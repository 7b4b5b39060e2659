"""Plugins: per-package step overrides and global hooks found through entry points.

Two entry-point groups:

``fromager_dagster.project_overrides``
    The entry point's name is a package's override name (canonical, ``-`` written ``_``); its
    value is a module or object whose attributes named after a step in :data:`STEPS` replace
    that step for that package.
``fromager_dagster.hooks``
    The entry point's name is a hook in :data:`HOOKS`; its value is a callable. Every hook
    registered under a name runs, in entry-point (name, value) order.

Every step and hook is called with keyword arguments only, described by the ``typing.Protocol``
below of the same name; a plugin function may declare just the parameters it uses (the others
are not passed), or ``**kwargs``. A plugin that cannot be imported, names an unknown step or
hook, or asks for a parameter that is never passed is a ConfigError; a plugin that raises is
reported as the step's own error class naming the entry point.
"""

from fromager_dagster.core.plugins.finder import PluginFinder, settings_resolver
from fromager_dagster.core.plugins.protocols import (
    HOOKS,
    STEPS,
    AddExtraMetadataToWheels,
    BuildSdist,
    BuildWheel,
    DownloadSource,
    FindCandidates,
    GetBuildBackendDependencies,
    GetBuildSdistDependencies,
    GetBuildSystemDependencies,
    Hook,
    PostBootstrap,
    PostBuild,
    PrebuiltWheel,
    PrepareSource,
    Step,
    UpdateExtraEnviron,
)
from fromager_dagster.core.plugins.registry import HOOKS_GROUP, OVERRIDES_GROUP, Plugins
from fromager_dagster.core.plugins.wheel_metadata import PLUGIN_METADATA_FILE, add_extra_metadata

__all__ = [
    "HOOKS",
    "HOOKS_GROUP",
    "OVERRIDES_GROUP",
    "PLUGIN_METADATA_FILE",
    "STEPS",
    "AddExtraMetadataToWheels",
    "BuildSdist",
    "BuildWheel",
    "DownloadSource",
    "FindCandidates",
    "GetBuildBackendDependencies",
    "GetBuildSdistDependencies",
    "GetBuildSystemDependencies",
    "Hook",
    "PluginFinder",
    "Plugins",
    "PostBootstrap",
    "PostBuild",
    "PrebuiltWheel",
    "PrepareSource",
    "Step",
    "UpdateExtraEnviron",
    "add_extra_metadata",
    "settings_resolver",
]
