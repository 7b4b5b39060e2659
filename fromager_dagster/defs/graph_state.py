"""The collection's graph as versioned code-location state, and the wheel assets grown from it.

Discovery uploads each new graph.json as a state version of the key
``fromager_dagster.<collection>.graph`` and asks the webserver to reload the code location;
runs stay pinned to the state version they were planned with. Without a state version (a
fresh instance, or no state storage in context) the latest graph.json in the collection's
output folder is used, so the definitions always load offline from local files.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import requests
from dagster.components import DefsStateConfig, DefsStateConfigArgs

from fromager_dagster.core.graph import DependencyGraph

from .collections import Collection
from .executor import loading_with_state_storage
from .install_checks import install_checks
from .keys import wheels_group
from .provenance import collection_sbom_defs
from .reproducible_check import reproducible_checks
from .wheels import wheel_assets

ENV_WEBSERVER = "FROMAGER_DAGSTER_WEBSERVER_URL"


def state_key(collection: Collection) -> str:
    return f"fromager_dagster.{collection.ident}.graph"


def wheels_selection(collection: Collection) -> dg.AssetSelection:
    """The collection's wheel assets (its asset group): what a build run materializes.

    There is no job per collection for them: Dagster builds the implicit asset job over every
    asset anyway, and a second job over the same 1,000 assets doubled the cost of loading the
    code location. A build is a run of the implicit job with this selection, which is what
    the UI's "Materialize all" on the group launches.
    """
    return dg.AssetSelection.groups(wheels_group(collection))


def wheel_keys(defs: dg.Definitions, collection: Collection) -> list[dg.AssetKey]:
    """The keys of ``collection``'s wheel assets in ``defs``, sorted (empty before discovery)."""
    return sorted(wheels_selection(collection).resolve(defs.resolve_asset_graph()))


class CollectionGraphComponent(dg.StateBackedComponent):
    """Wheel assets of one collection, grown from its latest discovered graph."""

    def __init__(self, collection: Collection, *, lanes: int) -> None:
        self.collection = collection
        self.lanes = lanes

    @property
    def defs_state_config(self) -> DefsStateConfig:
        versioned = DefsStateConfigArgs.versioned_state_storage()  # in the instance's storage
        return DefsStateConfig(
            key=state_key(self.collection),
            management_type=versioned.management_type,
            refresh_if_dev=False,
        )

    def write_state_to_path(self, state_path: Path) -> None:
        """The state is the graph.json that discovery last wrote."""
        shutil.copyfile(self.collection.graph_path, state_path)

    def build_defs(self, context: Any) -> dg.Definitions:
        if not loading_with_state_storage():
            return self.build_defs_from_state(context, state_path=None)
        return super().build_defs(context)

    def build_defs_from_state(
        self,
        context: Any,  # noqa: ARG002  the base class's signature
        state_path: Path | None,
    ) -> dg.Definitions:
        path = state_path
        if path is None and self.collection.graph_path.is_file():
            path = self.collection.graph_path
        if path is None:
            return dg.Definitions()
        graph = DependencyGraph.load(path)
        checks = install_checks(graph, self.collection)
        assets = wheel_assets(graph, self.collection, lanes=self.lanes)
        sbom, verified = collection_sbom_defs(
            graph, self.collection, [k for a in assets for k in a.keys]
        )
        reproducible = reproducible_checks(graph, self.collection)  # off unless turned on
        return dg.Definitions(
            assets=[*assets, sbom],
            asset_checks=[c for c in (checks, verified, reproducible) if c is not None],
        )


def collection_defs(collection: Collection, *, lanes: int, project_root: Path) -> dg.Definitions:
    """Build the component's definitions outside a component tree (only project_root is read)."""
    component = CollectionGraphComponent(collection, lanes=lanes)
    return component.build_defs(SimpleNamespace(project_root=project_root))


def publish_graph(
    instance: dg.DagsterInstance, collection: Collection, graph_path: Path
) -> str | None:
    """Upload ``graph_path`` as a new state version; None when the instance has no storage."""
    storage = instance.defs_state_storage
    if storage is None:
        return None
    version = str(uuid.uuid4())
    storage.upload_state_from_path(state_key(collection), version=version, path=graph_path)
    return version


RELOAD_MUTATION = """
mutation Reload($location: String!) {
  reloadRepositoryLocation(repositoryLocationName: $location) {
    __typename
    ... on WorkspaceLocationEntry { name }
    ... on PythonError { message }
  }
}
"""


def reload_location(webserver_url: str, location: str, *, timeout: float = 60) -> str:
    """Ask the webserver to reload ``location``; returns one sentence saying what it did."""
    response = requests.post(
        webserver_url.rstrip("/") + "/graphql",
        json={"query": RELOAD_MUTATION, "variables": {"location": location}},
        timeout=timeout,
    )
    response.raise_for_status()
    data = response.json()
    answer = (data.get("data") or {}).get("reloadRepositoryLocation") or {}
    kind = answer.get("__typename")
    if kind == "WorkspaceLocationEntry":
        return f"code location {answer.get('name') or location} reloaded onto the new graph"
    message = answer.get("message") or "; ".join(
        str(e.get("message", e)) for e in data.get("errors") or []
    )
    return f"reload of code location {location} failed: {kind or 'error'}: {message}".rstrip(": ")
