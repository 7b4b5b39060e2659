"""Resources: the engine settings a run can change from the launchpad."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from fromager_dagster.core.build import BuildWorkers, Sandbox, resolve_sandbox


class FromagerResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Engine settings for builds: the sandbox of build hooks (``bwrap``, ``unshare`` or
    ``none``; None: bubblewrap where it works, else unshare; ``network_isolation`` False is
    ``none``), and whether a wheel built earlier from the same recorded inputs (e.g. by
    discovery) is reused."""

    network_isolation: bool | None = Field(
        default=None,
        description="Older switch for the sandbox: true asks for the best sandbox there is "
        "(an error if none can be made), false runs hooks without one; empty: see `sandbox`.",
    )
    sandbox: str | None = Field(
        default=None,
        description="Sandbox of every PEP 517 hook: `bwrap` (bubblewrap: read-only host, no "
        "network), `unshare` (network only) or `none`; empty: bwrap where it works, else "
        "unshare.",
    )
    reuse_wheels: bool = Field(
        default=True,
        description="Reuse a wheel built earlier from the same recorded inputs (source, "
        "settings, build environment); false rebuilds every selected wheel.",
    )
    reproducible_check: bool | None = Field(
        default=None,
        description="The wheels' `reproducible` check: true rebuilds each selected wheel in a "
        "scratch folder, in the sandbox, and fails the check when its sha256 differs (naming "
        "the differing files); false skips it; empty: the collection's `reproducible_check` "
        "key in collections.yaml (off unless set).",
    )

    def isolation(self) -> Sandbox:
        chosen = resolve_sandbox(self.sandbox, network_isolation=self.network_isolation)
        if chosen.note:
            dg.get_dagster_logger().warning(chosen.note)
        return chosen


def build_workers_resource(workers: int) -> dg.ResourceDefinition:
    """The run's build worker processes (:class:`BuildWorkers`), one per lane, started on
    the first build and stopped when the run (or, multiprocess, the step) ends."""

    @dg.resource(description="Worker processes that run the wheel builds of a run.")
    def build_workers(_: dg.InitResourceContext):  # type: ignore[no-untyped-def]
        with BuildWorkers(workers) as pool:
            yield pool

    return build_workers
