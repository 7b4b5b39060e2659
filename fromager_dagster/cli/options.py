"""Command-line options shared by the commands: each declared once, here.

Groups of options reach a command as one typed value (:class:`OverrideOptions`,
:class:`OutputOptions`), not as loose keyword arguments read by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from ..core.build import SANDBOX_KINDS, Sandbox, resolve_sandbox
from ..core.settings import DEFAULT_VARIANT, Settings, default_paths, load_settings

F = TypeVar("F", bound=Callable[..., Any])

_PATH = click.Path(path_type=Path)


def output_dir_option(
    help: str = "Where sdists-repo/, wheels-repo/ and work-dir/ are.",  # noqa: A002  click's name
) -> Callable[[F], F]:
    """``-O/--output-dir`` (default: the current folder), with the command's own help."""
    return click.option(
        "-O",
        "--output-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help=help,
    )


OUTPUT_DIR = output_dir_option()
VARIANT = click.option(
    "--variant",
    default=DEFAULT_VARIANT,
    show_default=True,
    help="Build variant: selects each package's variant env, pre_built, patches and changelog.",
)
CONSTRAINTS = click.option(
    "-c",
    "--constraints-file",
    "constraints",
    multiple=True,
    help="Constraints file (path or URL); repeatable, intersected per package.",
)
INDEX_URL = click.option(
    "--index-url",
    default=None,
    help="Package index (PEP 503/691). Default: $FROMAGER_DAGSTER_INDEX_URL, "
    "$PIP_INDEX_URL, pip's configuration, then pip's default.",
)
REQUIREMENT_FILES = click.option(
    "-r",
    "--requirements-file",
    "requirement_files",
    multiple=True,
    help="Requirements file; repeatable.",
)
TEST_MODE = click.option(
    "--test-mode",
    is_flag=True,
    help="Keep going after a failure, fall back to a pre-built wheel where the index has one, "
    "write work-dir/test-mode-failures-*.json; exit 1 if anything failed.",
)
_NETWORK_ISOLATION = click.option(
    "--network-isolation/--no-network-isolation",
    default=None,
    help="Same as --sandbox with the best sandbox that works (an error if none does) / "
    "--sandbox none.",
)
_SANDBOX = click.option(
    "--sandbox",
    type=click.Choice(SANDBOX_KINDS),
    default=None,
    envvar="FROMAGER_DAGSTER_SANDBOX",
    expose_value=False,
    callback=lambda ctx, _param, value: ctx.meta.__setitem__("sandbox", value),
    help="How build hooks are confined (docs/security.md): bwrap (bubblewrap: read-only "
    "host, no network, no secrets), unshare (no network only) or none. Default: bwrap where "
    "it works, else unshare with a warning. $FROMAGER_DAGSTER_SANDBOX.",
)


def NETWORK_ISOLATION(func: F) -> F:  # noqa: N802 (an option decorator, like the others)
    """--sandbox and --network-isolation/--no-network-isolation (its older spelling)."""
    return _SANDBOX(_NETWORK_ISOLATION(func))


def resolve_cli_sandbox(network_isolation: bool | None) -> Sandbox:
    """The sandbox the options ask for (``--sandbox`` wins over --network-isolation); a
    fallback's note is printed as one warning line."""
    ctx = click.get_current_context(silent=True)
    kind = ctx.meta.get("sandbox") if ctx is not None else None
    sandbox = resolve_sandbox(kind, network_isolation=network_isolation)
    if sandbox.note:
        click.echo(f"warning: {sandbox.note}", err=True)
    return sandbox


def apply_options(func: F, options: list[Callable[[F], F]]) -> F:
    """``func`` decorated by ``options``, listed in the order they show in --help."""
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(frozen=True)
class OverrideOptions:
    """--variant, --settings-file, --settings-dir and -p/--patches-dir as given."""

    variant: str
    settings_file: Path | None
    settings_dir: Path | None
    patches_dir: Path | None

    def found(self) -> tuple[Path | None, Path | None, Path | None]:
        """The three settings paths as given; unnamed ones default to ``overrides/`` in the
        current folder where it holds them."""
        return default_paths(self.settings_file, self.settings_dir, self.patches_dir)

    def paths(self) -> tuple[Path | None, Path | None, Path | None]:
        """:meth:`found`, absolute."""
        found = self.found()
        return (
            found[0].resolve() if found[0] is not None else None,
            found[1].resolve() if found[1] is not None else None,
            found[2].resolve() if found[2] is not None else None,
        )

    def load(self) -> Settings:
        """The settings the options name (an explicit path that is missing is an error)."""
        found = self.found()
        return load_settings(
            settings_file=found[0], settings_dir=found[1], patches_dir=found[2],
            variant=self.variant,
        )  # fmt: skip


def settings_options(func: F) -> F:
    """--variant, --settings-file, --settings-dir and -p/--patches-dir (fromager's names),
    passed to the command as ``overrides`` (:class:`OverrideOptions`)."""

    @functools.wraps(func)
    def command(
        *args: Any,
        variant: str,
        settings_file: Path | None,
        settings_dir: Path | None,
        patches_dir: Path | None,
        **kwargs: Any,
    ) -> Any:
        overrides = OverrideOptions(variant, settings_file, settings_dir, patches_dir)
        return func(*args, overrides=overrides, **kwargs)

    return apply_options(
        cast(F, command),
        [
            VARIANT,
            click.option(
                "--settings-file",
                type=_PATH,
                default=None,
                help="Global settings file. Default: overrides/settings.yaml if it exists.",
            ),
            click.option(
                "--settings-dir",
                type=_PATH,
                default=None,
                help="Folder of per-package settings files. Default: overrides/settings.",
            ),
            click.option(
                "-p",
                "--patches-dir",
                type=_PATH,
                default=None,
                help="Folder of per-package patches. Default: overrides/patches.",
            ),
        ],
    )


@dataclass(frozen=True)
class OutputOptions:
    """What every build command is given: -O, -c, the sandbox and the settings options."""

    output_dir: Path
    constraints: tuple[str, ...]
    network_isolation: bool | None
    overrides: OverrideOptions


def output_options(func: F) -> F:
    """-O, -c, --sandbox/--network-isolation and the settings options, passed to the command
    as ``output`` (:class:`OutputOptions`)."""

    @functools.wraps(func)
    def command(
        *args: Any,
        output_dir: Path,
        constraints: tuple[str, ...],
        network_isolation: bool | None,
        overrides: OverrideOptions,
        **kwargs: Any,
    ) -> Any:
        output = OutputOptions(output_dir, tuple(constraints), network_isolation, overrides)
        return func(*args, output=output, **kwargs)

    return apply_options(
        cast(F, command), [OUTPUT_DIR, CONSTRAINTS, NETWORK_ISOLATION, settings_options]
    )


def mode_options(func: F) -> F:
    """Bootstrap's run modes: --test-mode, --skip-constraints, --multiple-versions,
    --min-release-age."""
    return apply_options(
        func,
        [
            TEST_MODE,
            click.option(
                "--skip-constraints",
                is_flag=True,
                help="Do not write constraints.txt (for collections with conflicting versions).",
            ),
            click.option(
                "--multiple-versions",
                is_flag=True,
                help="Bootstrap every version each requirement and the constraints admit, not "
                "only the newest (implies --skip-constraints).",
            ),
            click.option(
                "--min-release-age",
                type=click.FloatRange(min=0),
                default=None,
                metavar="DAYS",
                help="Only use releases uploaded at least DAYS days ago (a package's "
                "resolver_dist.min_release_age setting wins).",
            ),
        ],
    )
