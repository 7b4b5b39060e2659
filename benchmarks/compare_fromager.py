"""Time fromager 0.101.0 and fromager-dagster on one real tree; compare their graph.json files.

    .venv/bin/python benchmarks/compare_fromager.py --tree tests/trees/web [--out DIR]
    .venv/bin/python benchmarks/compare_fromager.py -r reqs.txt -c constraints.txt [--skip-fromager]

Runs, each a separate process as a user would start it, each with a timeout:

1. fromager ``bootstrap``, cold (fresh output directory);
2. fromager ``bootstrap-parallel -m 2``, cold (its own fresh output directory);
3. fromager ``bootstrap`` again on run 1's directory (warm);
4. ``fromager-dagster bootstrap`` through Dagster, cold (fresh output directory, fresh
   ``DAGSTER_HOME``);
5. the same command again on the same directory and instance (warm);
6. ``fromager-dagster bootstrap --no-dagster``, cold.

Then it prints every wall time, ours/fromager-best for cold and warm, our per-phase profile (the
engine's "time spent" line for ``--no-dagster``; for Dagster, the discovery and build runs read
back from the instance: run and step durations, build seconds per wheel), and whether our
graph.json files and fromager's have the same nodes and the same typed edges
(parent, child, req_type), with a summary of the differences when they do not.

The index URL comes from configuration (``--index-url``, ``$FROMAGER_DAGSTER_INDEX_URL``,
``$PIP_INDEX_URL``, pip's configuration, pip's default: the order our CLI uses). Our runs get it
as ``--index-url``; fromager 0.101 has no such option, so it gets it as
``resolver_dist.sdist_server_url`` in a per-package settings file for every package the
requirements and constraints name (the trees pin every package). The URL is never printed.

fromager runs from a Python 3.12 virtual environment outside this repository
(``--fromager-venv``; created with ``pip install fromager==0.101.0`` if missing, with Python 3.12
from pyenv). Outputs, logs and ``summary.json`` go to ``--out`` (default: a folder under the
system's temporary directory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fromager_dagster.core.index import resolve_index_url  # noqa: E402

FROMAGER_VERSION = "0.101.0"
DEFAULT_VENV = REPO.parent / "bench-venvs" / "fromager-0.101"
RUN_KEYS = (
    "fromager_bootstrap",
    "fromager_parallel",
    "fromager_warm",
    "ours_dagster_cold",
    "ours_dagster_warm",
    "ours_nodagster_cold",
)


@dataclass
class Run:
    """One timed command."""

    key: str
    label: str
    wall: float | None = None
    returncode: int | None = None
    timed_out: bool = False
    errors: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def status(self) -> str:
        if self.wall is None:
            return "not run"
        if self.timed_out:
            return f"timed out after {self.wall:.0f} s"
        if self.returncode:
            return f"{self.wall:.1f} s, FAILED (exit {self.returncode})"
        return f"{self.wall:.1f} s"


# --------------------------------------------------------------------------------------------
# processes


def run_timed(
    run: Run, cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float, logs: Path
) -> Run:
    """Run ``cmd`` in its own process group, with a timeout; keep its output in ``logs``."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{run.key}.stdout", logs / f"{run.key}.stderr"
    print(f"--- {run.label}: {' '.join(_shown(cmd))}", flush=True)
    start = time.perf_counter()
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            run.timed_out = True
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)
            raise
    run.wall = time.perf_counter() - start
    run.returncode = proc.returncode
    run.stdout = out_path.read_text(errors="replace")
    run.stderr = err_path.read_text(errors="replace")
    run.errors = _error_lines(run.stdout + "\n" + run.stderr)
    print(f"    {run.status()}", flush=True)
    for line in run.errors[:10]:
        print(f"    {line}", flush=True)
    return run


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        return


def _shown(cmd: list[str]) -> list[str]:
    """The command with the index URL hidden."""
    shown, hide = [], False
    for part in cmd:
        shown.append("<index-url>" if hide else part)
        hide = part == "--index-url"
    return shown


def _error_lines(text: str) -> list[str]:
    """Our ``error:`` lines and fromager's ``ERROR`` log lines, deduplicated, in order."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("error:") or " ERROR " in stripped:
            seen.setdefault(stripped[:400], None)
    return list(seen)


# --------------------------------------------------------------------------------------------
# fromager's environment


def find_python312() -> str:
    """A Python 3.12 interpreter: pyenv's newest 3.12, else python3.12 on PATH."""
    roots = []
    with contextlib.suppress(OSError):
        pyenv_root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=False
        ).stdout
        roots.append(Path(pyenv_root.strip()))
    roots.append(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")))
    for root in roots:
        versions = sorted(
            (root / "versions").glob("3.12.*"),
            key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split(".")],
        )
        for version in reversed(versions):
            exe = version / "bin" / "python3.12"
            if exe.exists():
                return str(exe)
    found = shutil.which("python3.12")
    if found:
        return found
    sys.exit("no Python 3.12 found (pyenv or python3.12 on PATH); pass --fromager-venv")


def ensure_fromager_venv(venv: Path, index_url: str) -> Path:
    """``venv/bin/fromager`` at version 0.101.0, creating the venv if needed."""
    exe = venv / "bin" / "fromager"
    if exe.exists():
        version = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, check=False
        ).stdout
        if FROMAGER_VERSION not in version:
            sys.exit(f"{exe} is not fromager {FROMAGER_VERSION}: {version.strip()}")
        return exe
    if REPO in venv.resolve().parents or venv.resolve() == REPO:
        sys.exit(f"--fromager-venv must be outside the repository: {venv}")
    python = find_python312()
    print(f"creating {venv} with {python} and fromager=={FROMAGER_VERSION}", flush=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--index-url",
            index_url,
            f"fromager=={FROMAGER_VERSION}",
        ],
        check=True,
        timeout=1800,
    )
    return exe


def requirement_names(files: list[Path]) -> set[str]:
    """Canonical names of the packages named in requirements and constraints files."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names: set[str] = set()
    for path in files:
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            try:
                names.add(canonicalize_name(Requirement(line).name))
            except InvalidRequirement:
                continue
    return names


def fromager_settings(settings_dir: Path, names: set[str], index_url: str) -> None:
    """One settings file per package pointing fromager's resolver at ``index_url``."""
    shutil.rmtree(settings_dir, ignore_errors=True)
    settings_dir.mkdir(parents=True)
    for name in sorted(names):
        (settings_dir / f"{name}.yaml").write_text(
            f"resolver_dist:\n  sdist_server_url: {json.dumps(index_url)}\n"
        )


# --------------------------------------------------------------------------------------------
# profiles


def nodagster_profile(run: Run) -> str | None:
    found = re.search(r"time spent \(summed over jobs\): (.*)", run.stderr)
    return found.group(1).strip() if found else None


def dagster_runs(run: Run) -> list[tuple[str, str, str]]:
    """(run id, job, "status, seconds") from the CLI's summary lines."""
    return re.findall(r"dagster run: (\S+) (\S+) \(([^)]*)\)", run.stderr)


def dagster_profile(dagster_home: Path, run: Run) -> list[str]:
    """Per-run figures read back from the Dagster instance: run and step durations, the
    discovery engine's own seconds, build seconds per wheel."""
    runs = dagster_runs(run)
    if not runs:
        return ["no Dagster run reported"]
    lines = []
    try:
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        from dagster import DagsterEventType, DagsterInstance

        with DagsterInstance.get() as instance:
            for run_id, job, status in runs:
                steps = instance.get_run_step_stats(run_id)
                spans = sorted(
                    ((s.end_time or 0) - (s.start_time or 0), s.step_key)
                    for s in steps
                    if s.start_time
                )
                mats = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
                metas: list[dict[str, Any]] = [
                    _materialization_metadata(e.dagster_event) for e in mats if e.dagster_event
                ]
                total = sum(s for s, _ in spans)
                line = f"{job} ({status}): {len(steps)} step(s), steps sum {total:.1f}s"
                builds = [float(m["build_seconds"].value) for m in metas if "build_seconds" in m]
                reused = sum(1 for m in metas if "reused" in m and m["reused"].value)
                if builds:
                    line += (
                        f"; {len(builds)} wheel(s), {reused} reused, "
                        f"build_seconds sum {sum(builds):.1f}s"
                    )
                for meta in metas:
                    if "seconds" in meta and "graph_path" in meta:  # discovery's
                        listed = meta.get("built_for_discovery")  # left out when empty
                        built = [x for x in str(listed.value if listed else "").split(", ") if x]
                        line += (
                            f"; discovery engine {meta['seconds'].value:.1f}s, "
                            f"{len(built)} wheel(s) built for discovery"
                        )
                if spans and len(spans) > 1:
                    slow = ", ".join(f"{k} {s:.1f}s" for s, k in reversed(spans[-3:]))
                    line += f"; slowest steps: {slow}"
                lines.append(line)
    except Exception as exc:  # noqa: BLE001  the profile is informative: never fail for it
        lines.append(f"profile unavailable: {type(exc).__name__}: {exc}")
    return lines


def _materialization_metadata(event: Any) -> dict[str, Any]:
    return dict(event.event_specific_data.materialization.metadata)


# --------------------------------------------------------------------------------------------
# graphs


def load_graph(path: Path) -> tuple[set[str], set[tuple[str, str, str]]] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    nodes = {k for k in data if k}
    edges = {
        (parent, edge["key"], edge["req_type"])
        for parent, node in data.items()
        for edge in node.get("edges", [])
    }
    return nodes, edges


def compare_graphs(ours_path: Path, theirs_path: Path, limit: int = 25) -> tuple[str, list[str]]:
    """("agree"/"DISAGREE"/"n/a ...", detail lines)."""
    ours, theirs = load_graph(ours_path), load_graph(theirs_path)
    if ours is None or theirs is None:
        missing = [str(p) for p, g in ((ours_path, ours), (theirs_path, theirs)) if g is None]
        return "n/a (no graph.json: " + ", ".join(missing) + ")", []
    (on, oe), (tn, te) = ours, theirs
    if on == tn and oe == te:
        return f"agree ({len(on)} nodes, {len(oe)} typed edges)", []
    lines = [
        (
            f"nodes: ours {len(on)}, fromager {len(tn)}; "
            f"typed edges: ours {len(oe)}, fromager {len(te)}"
        )
    ]
    for label, items in (
        ("nodes only in ours", sorted(on - tn)),
        ("nodes only in fromager's", sorted(tn - on)),
        ("edges only in ours", sorted(oe - te)),
        ("edges only in fromager's", sorted(te - oe)),
    ):
        if items:
            lines.append(f"{label} ({len(items)}):")
            for item in items[:limit]:
                text = (
                    item
                    if isinstance(item, str)
                    else f"{item[0] or '<root>'} -> {item[1]} [{item[2]}]"
                )
                lines.append(f"    {text}")
            if len(items) > limit:
                lines.append(f"    ... {len(items) - limit} more")
    return "DISAGREE", lines


# --------------------------------------------------------------------------------------------
# main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", type=Path, help="folder with requirements.txt and constraints.txt"
    )
    parser.add_argument("-r", dest="requirements", type=Path, action="append", default=[])
    parser.add_argument("-c", dest="constraints", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path, help="output folder (default: under the temp dir)")
    parser.add_argument("--fromager-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--skip-fromager", action="store_true", help="time only our tool")
    parser.add_argument("--index-url", help="default: from configuration, as our CLI reads it")
    parser.add_argument("--collection", help="collection name (default: from the tree's name)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ns = parser.parse_args()
    if ns.tree:
        ns.requirements = ns.requirements or [ns.tree / "requirements.txt"]
        if not ns.constraints and (ns.tree / "constraints.txt").exists():
            ns.constraints = [ns.tree / "constraints.txt"]
    if not ns.requirements:
        parser.error("give --tree DIR or -r FILE")
    ns.requirements = [p.resolve() for p in ns.requirements]
    ns.constraints = [p.resolve() for p in ns.constraints]
    name = ns.tree.resolve().name if ns.tree else ns.requirements[0].stem
    ns.name = name
    ns.collection = ns.collection or re.sub(r"[^A-Za-z0-9_]", "_", name)
    ns.out = (ns.out or Path(tempfile.gettempdir()) / "compare-fromager" / name).resolve()
    return ns


def index_url_source(explicit: str | None) -> str:
    if explicit:
        return "--index-url"
    for var in ("FROMAGER_DAGSTER_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(var, "").strip():
            return f"${var}"
    return "pip's configuration or pip's default"


def code_state() -> str:
    """Our commit, and whether fromager_dagster/ has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "fromager_dagster")
    return git("rev-parse", "--short", "HEAD") + (" (fromager_dagster/ modified)" if dirty else "")


def main() -> None:
    ns = parse_args()
    index_url = resolve_index_url(ns.index_url)
    ns.out.mkdir(parents=True, exist_ok=True)
    logs = ns.out / "logs"
    runs = {key: Run(key, key.replace("_", " ")) for key in RUN_KEYS}
    dirs = {
        "fromager_bootstrap": ns.out / "fromager-bootstrap",
        "fromager_parallel": ns.out / "fromager-parallel",
        "ours_dagster": ns.out / "ours-dagster",
        "ours_nodagster": ns.out / "ours-nodagster",
    }
    state = code_state()
    # pip byte-compiles fromager's package when it installs it; an editable install of ours is
    # not, and a shell with PYTHONDONTWRITEBYTECODE set would compile it again on every run
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "fromager_dagster")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    ns.load_before = os.getloadavg()
    print(
        f"tree {ns.name}: requirements {', '.join(map(str, ns.requirements))}; constraints "
        f"{', '.join(map(str, ns.constraints)) or 'none'}; "
        f"index URL from {index_url_source(ns.index_url)}; "
        f"fromager-dagster at {state}; output {ns.out}",
        flush=True,
    )

    if not ns.skip_fromager:
        fromager = ensure_fromager_venv(ns.fromager_venv.resolve(), index_url)
        settings_dir = ns.out / "fromager-settings"
        fromager_settings(
            settings_dir, requirement_names(ns.requirements + ns.constraints), index_url
        )
        env = dict(os.environ)
        env["PATH"] = f"{fromager.parent}{os.pathsep}{env.get('PATH', '')}"  # its uv
        env.pop("VIRTUAL_ENV", None)
        common = [str(fromager), "--settings-dir", str(settings_dir)]
        common += ["--settings-file", str(settings_dir / "settings.yaml")]  # absent: defaults
        common += ["--patches-dir", str(settings_dir / "patches")]
        for c in ns.constraints:
            common += ["-c", str(c)]
        reqs = [arg for r in ns.requirements for arg in ("-r", str(r))]
        for key, out_dir, cmd in (
            ("fromager_bootstrap", dirs["fromager_bootstrap"], ["bootstrap", *reqs]),
            (
                "fromager_parallel",
                dirs["fromager_parallel"],
                ["bootstrap-parallel", "-m", "2", *reqs],
            ),
            ("fromager_warm", dirs["fromager_bootstrap"], ["bootstrap", *reqs]),
        ):
            if key != "fromager_warm":
                shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            run_timed(
                runs[key],
                [*common, "-O", str(out_dir), *cmd],
                cwd=out_dir,
                env=env,
                timeout=ns.timeout,
                logs=logs,
            )

    ours_cmd = [sys.executable, "-m", "fromager_dagster", "bootstrap"]
    ours_cmd += [arg for r in ns.requirements for arg in ("-r", str(r))]
    ours_cmd += [arg for c in ns.constraints for arg in ("-c", str(c))]
    ours_cmd += ["--index-url", index_url]
    env = dict(os.environ)
    env.pop("FROMAGER_DAGSTER_BOOTSTRAP_NO_DAGSTER", None)
    dagster_home = dirs["ours_dagster"] / "dagster-home"
    shutil.rmtree(dirs["ours_dagster"], ignore_errors=True)
    dagster_home.mkdir(parents=True)
    env["DAGSTER_HOME"] = str(dagster_home)
    for key in ("ours_dagster_cold", "ours_dagster_warm"):
        run_timed(
            runs[key],
            [*ours_cmd, "-O", str(dirs["ours_dagster"]), "--collection", ns.collection],
            cwd=REPO,
            env=env,
            timeout=ns.timeout,
            logs=logs,
        )
    env.pop("DAGSTER_HOME")
    shutil.rmtree(dirs["ours_nodagster"], ignore_errors=True)
    run_timed(
        runs["ours_nodagster_cold"],
        [*ours_cmd, "--no-dagster", "-O", str(dirs["ours_nodagster"])],
        cwd=REPO,
        env=env,
        timeout=ns.timeout,
        logs=logs,
    )

    report(ns, runs, dirs, dagster_home, state)


def _ratio(ours: Run, best: Run | None) -> str:
    if best is None:
        return "n/a (no fromager run)"
    if not ours.ok:
        return "n/a (ours failed)"
    assert ours.wall is not None and best.wall is not None
    return f"{ours.wall / best.wall:.2f}"


def report(
    ns: argparse.Namespace,
    runs: dict[str, Run],
    dirs: dict[str, Path],
    dagster_home: Path,
    state: str,
) -> None:
    print(f"\n=== {ns.name}: wall times (fromager-dagster at {state})")
    for key in RUN_KEYS:
        print(f"{runs[key].label:<22} {runs[key].status()}")
    cold_candidates = [runs[k] for k in ("fromager_bootstrap", "fromager_parallel") if runs[k].ok]
    best_cold = min(cold_candidates, key=lambda r: r.wall or 0) if cold_candidates else None
    best_warm = runs["fromager_warm"] if runs["fromager_warm"].ok else None
    ratios = {
        "dagster cold / fromager best cold": _ratio(runs["ours_dagster_cold"], best_cold),
        "no-dagster cold / fromager best cold": _ratio(runs["ours_nodagster_cold"], best_cold),
        "dagster warm / fromager warm": _ratio(runs["ours_dagster_warm"], best_warm),
    }
    if best_cold:
        print(f"fromager best cold: {best_cold.label} ({best_cold.wall:.1f} s)")
    for label, value in ratios.items():
        print(f"ratio {label}: {value}")

    print("\n=== our per-phase profile")
    nd = nodagster_profile(runs["ours_nodagster_cold"])
    print(f"no-dagster cold (engine, summed over jobs): {nd or 'not reported'}")
    profiles = {}
    for key in ("ours_dagster_cold", "ours_dagster_warm"):
        lines = dagster_profile(dagster_home, runs[key]) if runs[key].wall is not None else []
        profiles[key] = lines
        for line in lines:
            print(f"{runs[key].label}: {line}")

    print("\n=== graph.json: ours against fromager's (nodes; typed edges parent, child, req_type)")
    theirs = dirs["fromager_bootstrap"] / "work-dir" / "graph.json"
    graphs = {}
    for key, label in (("ours_dagster", "dagster"), ("ours_nodagster", "no-dagster")):
        verdict, lines = compare_graphs(dirs[key] / "work-dir" / "graph.json", theirs)
        graphs[label] = {"verdict": verdict, "details": lines}
        print(f"{label}: {verdict}")
        for line in lines:
            print(f"  {line}")
    parallel = dirs["fromager_parallel"] / "work-dir" / "graph.json"
    verdict, lines = compare_graphs(parallel, theirs)
    graphs["fromager bootstrap-parallel vs bootstrap"] = {"verdict": verdict, "details": lines}
    print(f"fromager bootstrap-parallel against fromager bootstrap: {verdict}")

    failures = {k: r.errors for k, r in runs.items() if r.wall is not None and not r.ok}
    if failures:
        print("\n=== failures")
        for key, errors in failures.items():
            print(f"{runs[key].label}: {runs[key].status()}")
            for line in errors or ["(no error line; see the logs)"]:
                print(f"    {line}")
    summary = {
        "tree": ns.name,
        "date": time.strftime("%Y-%m-%d"),
        "fromager_dagster": state,
        "fromager": FROMAGER_VERSION,
        "runs": {
            k: {
                "wall": r.wall,
                "returncode": r.returncode,
                "timed_out": r.timed_out,
                "errors": r.errors,
            }
            for k, r in runs.items()
        },
        "ratios": ratios,
        "profile": {"no-dagster": nd, **profiles},
        "graphs": graphs,
        "load_average_before": ns.load_before,
        "load_average_after": os.getloadavg(),
    }
    (ns.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsummary: {ns.out / 'summary.json'}; logs: {ns.out / 'logs'}")


if __name__ == "__main__":
    main()
