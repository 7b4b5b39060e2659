"""Dagster's own cost on synthetic graphs: definition load time and orchestration per package.

    .venv/bin/python benchmarks/synthetic_bench.py [--sizes 20,200,1000] [--repeat 3]
        [--run-sizes default=20,200,1000 multiprocess=20] [--run-repeat 1] [--out DIR]

A synthetic fromager graph.json of N trivial packages (a few build tools every package
build-depends on, layered build-backend requirements, sparse install edges) is written into a
temporary collection (collections.yaml + output folder), exactly where the definitions read graphs.

(a) Definitions: in a fresh process each time, ``build_definitions()`` +
    ``Definitions.validate_loadable`` (wall and CPU seconds); also the execution plan, which a
    step process of the multiprocess executor pays again. Median of ``--repeat``.
(b) Orchestration: one run materialising every wheel asset of the collection through the real
    executor (``default``: what the definitions default to, threads; ``threads`` or
    ``multiprocess``: set through ``FROMAGER_DAGSTER_EXECUTOR``), with the build replaced by a
    trivial body: the benchmark's job target monkeypatches the build and the install check in every
    process that loads it (switch ``FROMAGER_DAGSTER_BENCH_TRIVIAL_BUILD=1``, set only here;
    production code paths are unchanged). The cost is the CPU time (user + sys) of the run
    process and every process under it, measured by this process with
    ``getrusage(RUSAGE_CHILDREN)`` as a child subreaper (so forkserver step processes are
    counted too), divided by N; plus the wall time.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_TRIVIAL = "FROMAGER_DAGSTER_BENCH_TRIVIAL_BUILD"
ENV_DUMMY = "FROMAGER_DAGSTER_BENCH_DUMMY_FILE"
ENV_EXECUTOR = "FROMAGER_DAGSTER_EXECUTOR"
COLLECTION = "syn"
TOOLS = ["syn-setuptools", "syn-wheel", "syn-hatchling", "syn-pathspec", "syn-cython"]


# --------------------------------------------------------------------------- graph generation
def make_graph(n: int, seed: int = 1) -> dict[str, dict[str, object]]:
    """A fromager graph.json of ``n`` packages (``n`` >= 5); deterministic for a seed.

    syn-setuptools builds with nothing; the other tools build with it; syn-hatchling installs
    syn-pathspec. Every other package build-depends on one or two tools (build-system), one in
    ten also on an earlier package (build-backend, the "Cython" layer), and installs up to
    three earlier packages. The root requires every package nothing else installs.
    """
    rng = random.Random(seed)
    names = TOOLS + [f"syn-pkg-{i:04d}" for i in range(n - len(TOOLS))]
    names = names[:n]
    edges: dict[str, list[dict[str, str]]] = {name: [] for name in names}

    def key(name: str) -> str:
        return f"{name}==1.0"

    def edge(parent: str, child: str, req_type: str) -> None:
        edges[parent].append({"key": key(child), "req_type": req_type, "req": child})

    tools = names[: len(TOOLS)]
    for tool in tools[1:]:
        edge(tool, tools[0], "build-system")
    if len(tools) > 3:
        edge(tools[2], tools[3], "install")
    packages = names[len(tools) :]
    installed: set[str] = set()
    for i, name in enumerate(packages):
        edge(name, tools[0], "build-system")
        edge(name, rng.choice(tools[1:3]), "build-system")
        if i >= 10 and i % 10 == 0:
            edge(name, rng.choice(packages[: i // 2]), "build-backend")
            edge(name, tools[-1], "build-backend")
        for child in sorted(set(rng.sample(packages[:i], min(i, rng.randint(0, 3))))):
            edge(name, child, "install")
            installed.add(child)
    top = [p for p in packages if p not in installed] or packages[-1:]
    graph: dict[str, dict[str, object]] = {
        "": {
            "download_url": "",
            "pre_built": False,
            "version": "0",
            "canonicalized_name": "",
            "constraint": None,
            "edges": [{"key": key(p), "req_type": "toplevel", "req": p} for p in top],
        }
    }
    for name in names:
        graph[key(name)] = {
            "download_url": f"file:///nonexistent/sources/{name.replace('-', '_')}-1.0.tar.gz",
            "pre_built": False,
            "version": "1.0",
            "canonicalized_name": name,
            "constraint": None,
            "edges": edges[name],
        }
    return graph


def prepare(n: int, root: Path) -> Path:
    """Write the collection of ``n`` synthetic packages under ``root``; its collections.yaml."""
    out = root / f"n{n}" / "out"
    work = out / "work-dir"
    work.mkdir(parents=True, exist_ok=True)
    (work / "graph.json").write_text(json.dumps(make_graph(n), indent=1), encoding="utf-8")
    dummy = root / f"n{n}" / "dummy-1.0-0-py3-none-any.whl"
    dummy.write_bytes(b"synthetic\n")
    config = root / f"n{n}" / "collections.yaml"
    config.write_text(
        f"collections:\n  {COLLECTION}:\n"
        f"    requirements: [syn-pkg-0000]\n"
        f"    output_dir: {json.dumps(str(out))}\n",
        encoding="utf-8",
    )
    return config


# --------------------------------------------------------------------------- the job target
def _trivial_build() -> None:
    """Replace the build and the install check with instant bodies (benchmark only)."""

    from fromager_dagster.core.build import builder
    from fromager_dagster.core.repository import BuiltWheel
    from fromager_dagster.defs import wheels

    dummy = Path(os.environ[ENV_DUMMY])

    def build_node(graph, key, **_kw):  # type: ignore[no-untyped-def]
        return BuiltWheel(
            key=key,
            path=dummy,
            sha256="0" * 64,
            size=dummy.stat().st_size,
            seconds=0.0,
            log_path=dummy,
            source_path=dummy,
        )

    builder.build_node = build_node
    wheels.build_in_workers = lambda context, graph, key, *a, **k: build_node(graph, key)  # type: ignore[assignment]
    if hasattr(wheels, "build_or_reuse"):  # no reuse, no build record: the build alone
        wheels.build_or_reuse = lambda *a, build, **k: build()  # type: ignore[attr-defined]
    if hasattr(wheels, "reusable_wheel"):
        wheels.reusable_wheel = lambda *a, **k: None  # type: ignore[attr-defined]
    if hasattr(wheels, "write_build_record"):
        wheels.write_build_record = lambda *a, **k: None  # type: ignore[attr-defined]


def bench_defs():  # type: ignore[no-untyped-def]
    """The definitions of the synthetic collection (step processes load them by code pointer)."""
    from fromager_dagster.defs.location import build_definitions
    from fromager_dagster.defs.resources import FromagerResource

    if os.environ.get(ENV_TRIVIAL) == "1":
        _trivial_build()
    return build_definitions(fromager=FromagerResource(network_isolation=False))


def bench_job():  # type: ignore[no-untyped-def]
    """Their implicit asset job, reconstructable: what a build run of the collection runs."""
    from fromager_dagster.defs.executor import assets_job

    return assets_job(python_file=str(Path(__file__).resolve()), attribute=bench_defs.__name__)


def wheel_keys_of(config: Path) -> list[object]:
    """The synthetic collection's wheel asset keys, from its graph (what a build run selects)."""
    from fromager_dagster.core.graph import DependencyGraph
    from fromager_dagster.defs.collections import load_collections
    from fromager_dagster.defs.wheels import node_asset_key

    collection = load_collections(config)[COLLECTION]
    graph = DependencyGraph.load(collection.graph_path)
    return [node_asset_key(graph, collection.variant, key) for key in graph.nodes if key]


# --------------------------------------------------------------------------- child commands
def child_defs() -> None:
    """Time the definitions of $FROMAGER_DAGSTER_COLLECTIONS in this fresh process."""
    t0 = time.perf_counter()
    import dagster as dg
    from dagster._core.execution.api import create_execution_plan

    from fromager_dagster.defs.location import build_definitions
    from fromager_dagster.defs.resources import FromagerResource

    t1, c1 = time.perf_counter(), time.process_time()
    defs = build_definitions(fromager=FromagerResource(network_isolation=False))
    dg.Definitions.validate_loadable(defs)
    t2, c2 = time.perf_counter(), time.process_time()
    keys = wheel_keys_of(Path(os.environ["FROMAGER_DAGSTER_COLLECTIONS"]))
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(keys))
    t3 = time.perf_counter()
    plan = create_execution_plan(job)
    t4 = time.perf_counter()
    print(
        json.dumps(
            {
                "import": t1 - t0,
                "defs": t2 - t1,
                "defs_cpu": c2 - c1,
                "job": t3 - t2,
                "plan": t4 - t3,
                "steps": len(plan.step_keys_to_execute),
            }
        )
    )


def child_run() -> None:
    """Materialise every wheel asset of the synthetic collection; print a JSON summary."""
    import dagster as dg

    t0 = time.perf_counter()
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(
            bench_job(),
            instance,
            raise_on_error=False,
            asset_selection=wheel_keys_of(Path(os.environ["FROMAGER_DAGSTER_COLLECTIONS"])),
        ) as result,
    ):
        wall = time.perf_counter() - t0
        events = result.all_events
        starts = [e.step_key for e in events if e.event_type_value == "STEP_START"]
        successes = [e.step_key for e in events if e.event_type_value == "STEP_SUCCESS"]
        materialized = [e for e in events if e.event_type_value == "ASSET_MATERIALIZATION"]
        ok = result.success
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "success": ok,
                "wall": wall,
                "starts": len(starts),
                "successes": len(successes),
                "materializations": len(materialized),
                "run_process_cpu": own.ru_utime + own.ru_stime,
            }
        )
    )


# --------------------------------------------------------------------------- the parent
def _become_subreaper() -> None:
    """Orphaned descendants (the forkserver and its step processes) get reparented to us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap_all(deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _child(command: str, config: Path, extra_env: dict[str, str]) -> tuple[dict, float, float]:
    """Run this script's ``command`` in a fresh process; (its JSON, CPU s of the tree, wall s)."""
    env = {**os.environ, "FROMAGER_DAGSTER_COLLECTIONS": str(config), **extra_env}
    if ENV_EXECUTOR not in extra_env:
        env.pop(ENV_EXECUTOR, None)  # "default": what the definitions choose
    before = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, command], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    _reap_all()
    cpu = _children_cpu() - before
    if proc.returncode != 0:
        sys.exit(f"{command} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), cpu, wall


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,200,1000", help="sizes for the definitions timing")
    parser.add_argument("--repeat", type=int, default=3, help="definition loads per size")
    parser.add_argument(
        "--run-sizes",
        nargs="*",
        default=["default=20,200"],
        help="executor=sizes for orchestration runs (executor: default, threads, multiprocess),"
        " e.g. default=20,200,1000 multiprocess=20",
    )
    parser.add_argument("--run-repeat", type=int, default=1, help="runs per executor and size")
    parser.add_argument("--concurrency", type=int, default=2, help="max concurrent steps")
    parser.add_argument("--out", type=Path, default=None, help="keep the graphs here")
    ns = parser.parse_args()
    _become_subreaper()
    root = ns.out or Path(tempfile.mkdtemp(prefix="synthetic-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    base_env = {"FROMAGER_DAGSTER_MAX_CONCURRENT": str(ns.concurrency)}

    import dagster

    print(
        f"dagster {dagster.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"concurrency {ns.concurrency}, load average before: {_loadavg()}",
        flush=True,
    )
    sizes = [int(s) for s in ns.sizes.split(",") if s]
    print("\n(a) definitions, fresh process, median of", ns.repeat, flush=True)
    print(
        f"{'N':>6} {'import s':>9} {'defs+validate s':>16} {'CPU s':>6} {'plan s':>7} "
        f"{'target':>8}   runs (wall s / load average at start)"
    )
    for n in sizes:
        config = prepare(n, root)
        rows = []
        for _ in range(ns.repeat):
            load = _loadavg().split()[0]
            rows.append({**_child("_defs", config, base_env)[0], "load": load})
        keys = ("import", "defs", "defs_cpu", "plan")
        med = {k: statistics.median(r[k] for r in rows) for k in keys}
        verdict = "<1 s ok" if med["defs"] < 1 else "MISSED"
        print(
            f"{n:>6} {med['import']:>9.2f} {med['defs']:>16.2f} {med['defs_cpu']:>6.2f} "
            f"{med['plan']:>7.2f} {verdict:>8}   "
            + ", ".join(f"{r['defs']:.2f}/{r['load']}" for r in rows),
            flush=True,
        )

    print(f"\n(b) orchestration, trivial builds, median of {ns.run_repeat}", flush=True)
    print(
        f"{'executor':>13} {'N':>6} {'wall s':>8} {'CPU s':>8} {'CPU s/pkg':>10} "
        f"{'run proc CPU s':>15} {'steps ok':>9} {'load':>16}"
    )
    for spec in ns.run_sizes:
        executor, _, raw = spec.partition("=")
        for n in [int(s) for s in raw.split(",") if s]:
            config = prepare(n, root)
            env = {
                **base_env,
                ENV_TRIVIAL: "1",
                ENV_DUMMY: str(config.parent / "dummy-1.0-0-py3-none-any.whl"),
            }
            if executor != "default":
                env[ENV_EXECUTOR] = executor
            results = []
            for _ in range(ns.run_repeat):
                load = _loadavg()
                summary, cpu, wall = _child("_run", config, env)
                # n wheel steps and the collection's one install-check step
                if not summary["success"] or summary["materializations"] != n:
                    sys.exit(f"run failed or incomplete: {summary}")
                results.append((cpu, wall, summary, load))
            cpu = statistics.median(r[0] for r in results)
            wall = statistics.median(r[1] for r in results)
            run_cpu = statistics.median(r[2]["run_process_cpu"] for r in results)
            print(
                f"{executor:>13} {n:>6} {wall:>8.1f} {cpu:>8.1f} {cpu / n:>10.3f} "
                f"{run_cpu:>15.1f} {results[0][2]['successes']:>9} {results[0][3]:>16}"
                + (
                    ""
                    if len(results) == 1
                    else "   (CPU runs: " + ", ".join(f"{r[0]:.1f}" for r in results) + ")"
                ),
                flush=True,
            )
    print(f"\nload average after: {_loadavg()}; graphs in {root}")


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "_defs":
        child_defs()
    elif len(sys.argv) == 2 and sys.argv[1] == "_run":
        child_run()
    else:
        main()
