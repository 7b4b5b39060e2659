"""Commands: graph, stats, canonicalize, wheel-server."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import cast

import click
from packaging.utils import InvalidName, canonicalize_name

from ..core.errors import ConfigError
from ..core.graph import (
    REQ_TYPES,
    ROOT,
    DependencyGraph,
    Duplicate,
    GraphStats,
    ReqType,
    WhyLink,
    WhyReport,
    duplicates,
    find_graph_file,
    graph_stats,
    load_build_order,
    load_graph,
    select_nodes,
    subset,
    to_dot,
    why,
    write_atomic,
)
from ..core.index import LocalIndexServer
from ..core.layout import OutputLayout
from .options import output_dir_option


def _emit(text: str, output: Path | None) -> None:
    """Print ``text``, or write it to ``output`` (temporary name, then rename)."""
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomic(output, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {output}", err=True)


def _load(path: Path) -> DependencyGraph:
    return load_graph(find_graph_file(path))


_graph_file = click.argument("graph_file", metavar="GRAPH.json", type=click.Path(path_type=Path))
_output = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
_versions = click.option(
    "--version", "versions", multiple=True, help="Only this version; repeatable."
)


@click.group("graph")
def graph_group() -> None:
    """Look into a graph.json written by bootstrap (fromager's format).

    GRAPH.json may also be an output folder or its work-dir/ holding one.
    """


@graph_group.command("to-dot")
@_graph_file
@_output
@click.option(
    "--install-only",
    is_flag=True,
    help="Only what gets installed: toplevel and install edges and the nodes they reach.",
)
def to_dot_command(graph_file: Path, output: Path | None, install_only: bool) -> None:
    """Write the graph as Graphviz DOT (render it with `dot -Tsvg`).

    Nodes are labelled name==version; the root is `*`; pre-built nodes are grey
    parallelograms. Edges: toplevel bold, install solid, build-system dashed blue,
    build-backend dashed green, build-sdist dotted grey; the tooltip gives the requirement.
    """
    _emit(to_dot(_load(graph_file), install_only=install_only), output)


@graph_group.command("why")
@_graph_file
@click.argument("package")
@_versions
@click.option(
    "--depth",
    type=click.IntRange(min=-1),
    default=-1,
    show_default="up to the root",
    help="Levels of parents to follow; 1 shows only direct parents, 0 or -1 all of them.",
)
@click.option(
    "--req-type",
    "--requirement-type",
    "req_types",
    type=click.Choice(REQ_TYPES),
    multiple=True,
    help="Only edges of this type into PACKAGE (toplevel edges always show); repeatable.",
)
def why_command(
    graph_file: Path,
    package: str,
    versions: tuple[str, ...],
    depth: int,
    req_types: tuple[str, ...],
) -> None:
    """Explain why PACKAGE is in the graph: every chain of parents back to the root.

    Each step names the requirement type and the requirement string as written by the parent.
    A parent whose chains were shown earlier is not repeated.
    """
    graph = _load(graph_file)
    nodes = select_nodes(graph, package, versions, source=str(graph_file))
    types = cast(tuple[ReqType, ...], req_types)
    blocks = []
    for node in nodes:
        report = why(graph, node.key, depth=depth if depth > 0 else None, req_types=types)
        blocks.append("\n".join(render_why(report)))
    click.echo("\n\n".join(blocks))


def _with_constraint(key: str, constraint: str | None) -> str:
    return f"{key} (constraint: {constraint})" if constraint else key


def render_why(report: WhyReport) -> list[str]:
    """fromager's wording: `* CHILD is a TYPE dependency of PARENT with req REQ`, indented."""
    lines = [_with_constraint(report.key, report.constraint)]

    def walk(child: str, links: tuple[WhyLink, ...], indent: int) -> None:
        pad = "  " * indent
        for link in links:
            for req_type, req in link.edges:
                if link.parent == ROOT:
                    lines.append(f"{pad} * {child} is a toplevel dependency with req {req}")
                else:
                    parent = _with_constraint(link.parent, link.parent_constraint)
                    article = "an" if req_type == "install" else "a"
                    lines.append(
                        f"{pad} * {child} is {article} {req_type} dependency of {parent} "
                        f"with req {req}"
                    )
            if link.note == "cycle":
                lines.append(f"{pad}   * {link.parent} is already on this chain (a cycle)")
            elif link.note == "shown":
                lines.append(f"{pad}   * {link.parent}: its chains are shown above")
            walk(link.parent, link.above, indent + 1)

    walk(report.key, report.links, 0)
    if not report.links:
        wanted = ", ".join(report.req_types) or "any"
        lines.append(f" * no {wanted} edge leads to {report.key}")
    return lines


@graph_group.command("to-constraints")
@_graph_file
@_output
def to_constraints_command(graph_file: Path, output: Path | None) -> None:
    """Write the constraints.txt the graph implies (what bootstrap writes to work-dir/).

    Packages reached through toplevel and install edges, one `name==version` line each; where
    a package has several versions, the newest every install requirement admits. When none
    does, nothing is written and the conflict is reported.
    """
    lines = _load(graph_file).constraints()
    _emit("".join(f"{line}\n" for line in lines), output)


@graph_group.command("explain-duplicates")
@_graph_file
def explain_duplicates_command(graph_file: Path) -> None:
    """For each package present in several versions: who requires each version, with which
    specifier, and which version (if any) satisfies every requirement."""
    found = duplicates(_load(graph_file))
    if not found:
        click.echo(f"no package has more than one version in {graph_file}")
        return
    click.echo("\n\n".join("\n".join(render_duplicate(d)) for d in found))


def render_duplicate(dup: Duplicate) -> list[str]:
    lines = [dup.name]
    for entry in dup.versions:
        lines.append(f"  {_with_constraint(entry.version, entry.constraint)}")
        for r in entry.requirers:
            who = "the root" if r.parent == ROOT else r.parent
            matches = ", ".join(r.matches) or "none of them"
            lines.append(f"    {r.req_type} requirement {r.req} of {who} (matches {matches})")
    if dup.usable:
        lines.append(f"  * {dup.name}=={dup.usable} satisfies every requirement")
    else:
        lines.append(f"  * no single version of {dup.name} satisfies every requirement")
    return lines


@graph_group.command("subset")
@_graph_file
@click.argument("package")
@_versions
@click.option(
    "--with-dependents",
    is_flag=True,
    help="Also keep every package that leads to PACKAGE (fromager's subset), not only what "
    "PACKAGE needs.",
)
@_output
def subset_command(
    graph_file: Path,
    package: str,
    versions: tuple[str, ...],
    with_dependents: bool,
    output: Path | None,
) -> None:
    """Write the part of the graph PACKAGE needs, as a graph.json of its own.

    Keeps PACKAGE and everything reachable from it (install and build edges), with a root
    whose toplevel edge points at PACKAGE, so the result can be built or queried on its own.
    """
    graph = _load(graph_file)
    nodes = select_nodes(graph, package, versions, source=str(graph_file))
    sub = subset(graph, [n.key for n in nodes], with_dependents=with_dependents)
    _emit(json.dumps(sub.to_json(), indent=2) + "\n", output)


@click.command("stats")
@_graph_file
@click.option(
    "--build-order",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also check this build-order.json against the graph. Default for a folder: its own.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats_command(graph_file: Path, build_order: Path | None, as_json: bool) -> None:
    """Counts over a graph.json: nodes, packages, edges per type, pre-built packages,
    packages with several versions and the longest chain of builds.

    GRAPH.json may be an output folder or its work-dir/; then build-order.json beside the graph
    is read too.
    """
    path = find_graph_file(graph_file)
    graph = load_graph(path)
    if build_order is None and graph_file.is_dir():
        beside = path.with_name("build-order.json")
        build_order = beside if beside.is_file() else None
    order = load_build_order(build_order) if build_order else None
    stats = graph_stats(graph, build_order=order, build_order_path=str(build_order))
    if as_json:
        click.echo(json.dumps({"graph": str(path), **stats.to_json()}, indent=2))
        return
    for label, value in render_stats(stats, path):
        click.echo(f"{label + ':':<21}{value}")


def render_stats(stats: GraphStats, path: Path) -> list[tuple[str, str]]:
    chain = stats.longest_build_chain
    rows = [
        ("graph", str(path)),
        ("nodes", f"{stats.nodes} package versions"),
        ("packages", str(stats.packages)),
        ("edges", ", ".join(f"{t} {n}" for t, n in stats.edges.items())),
        ("prebuilt", str(stats.prebuilt)),
        (
            "several versions",
            "; ".join(f"{n} ({', '.join(v)})" for n, v in stats.multiple_versions.items())
            or "none",
        ),
        ("longest build chain", f"{len(chain)}" + (f": {' -> '.join(chain)}" if chain else "")),
    ]
    bo = stats.build_order
    if bo is not None:
        verdict = "matches the graph"
        if bo.missing or bo.extra:
            verdict = (
                f"missing {', '.join(bo.missing) or 'nothing'}; "
                f"not in the graph {', '.join(bo.extra) or 'nothing'}"
            )
        rows.append(("build order", f"{bo.entries} entries, {bo.prebuilt} prebuilt, {verdict}"))
    return rows


@click.command("canonicalize")
@click.argument("names", nargs=-1, required=True)
def canonicalize_command(names: tuple[str, ...]) -> None:
    """Print the canonical form (PEP 503) of each NAME, one per line."""
    canonical = []
    for name in names:
        try:
            canonical.append(canonicalize_name(name, validate=True))
        except InvalidName:
            click.echo(f"error: {name!r} is not a valid package name", err=True)
            sys.exit(1)
    click.echo("\n".join(canonical))


@click.command("wheel-server")
@output_dir_option("The output folder whose wheels-repo/ is served.")
@click.option(
    "-i",
    "--ip",
    "--address",
    "address",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on.",
)
@click.option(
    "-p",
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default="a free port",
    help="Port to listen on.",
)
def wheel_server_command(output_dir: Path, address: str, port: int) -> None:
    """Serve wheels-repo/downloads and wheels-repo/prebuilt as a package index.

    Speaks PEP 503 (HTML) and PEP 691 (JSON) with sha256 hashes; prints the index URL on
    standard output and runs until Ctrl-C or SIGTERM.
    """
    layout = OutputLayout(output_dir.resolve())
    if not any(root.is_dir() for root in layout.wheel_roots):
        raise ConfigError(
            f"{layout.root / 'wheels-repo'}: no wheels-repo/downloads or wheels-repo/prebuilt "
            "here; run bootstrap first or pass -O OUTPUT_DIR"
        )
    server = LocalIndexServer(layout.wheel_roots, host=address, port=port)
    try:
        server.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from exc
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"serving {layout.root / 'wheels-repo'} (Ctrl-C stops)", err=True)
        click.echo(server.url)
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("wheel server stopped", err=True)
