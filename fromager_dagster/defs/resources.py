"""Resources: the engine settings a run can change from the launchpad."""

from __future__ import annotations

import dagster as dg

from fromager_dagster.core.isolation import resolve_isolation


class FromagerResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Engine settings for builds: network isolation (None = wherever it works), and whether
    a wheel built earlier from the same recorded inputs (e.g. by discovery) is reused."""

    network_isolation: bool | None = None
    reuse_wheels: bool = True

    def isolation(self) -> bool:
        return resolve_isolation(self.network_isolation)
