"""Production commands: build, build-sequence, build-parallel, bootstrap-parallel, step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
from click.testing import CliRunner

from fromager_dagster.cli.main import cli
from fromager_dagster.core.index.server import LocalIndexServer
from tests.fixtures.packages import FixturePackage, make_index, make_wheel

# fx-app builds with fx-lib (whose install closure brings fx-dep); fx-lib builds with fx-tool.
CHAIN = [
    FixturePackage("fx-tool"),
    FixturePackage("fx-dep"),
    FixturePackage("fx-lib", build_system_requires=("fx-tool",), install_requires=("fx-dep",)),
    FixturePackage("fx-app", build_system_requires=("fx-lib",)),
]
FIELDS = ["package", "version", "exception_type", "exception_message", "failure_type"]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FROMAGER_DAGSTER"))
    }
    environ["FROMAGER_DAGSTER_EXECUTOR"] = "threads"  # Dagster runs, without process start-ups
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fromager_dagster", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
        check=False,
    )


def _wheels(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.whl"))


def _order(*keys: str) -> str:
    return json.dumps([{"dist": k.split("==")[0], "version": k.split("==")[1]} for k in keys])


def _runs(out: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(out / "dagster-home")) as instance:
        return list(reversed(instance.get_runs()))


def test_build_and_build_sequence(tmp_path: Path) -> None:
    upstream = make_index(CHAIN, tmp_path / "up")
    out = tmp_path / "out"
    built = out / "wheels-repo" / "downloads"
    # INDEX_URL holds the sdists and the wheels built so far (fromager's wheel server)
    with LocalIndexServer([upstream, built]) as server:
        tool = _cli("build", "fx-tool", "1.0", server.url, "-O", str(out))
        assert tool.returncode == 0, tool.stderr
        assert tool.stdout.strip() == str(built / "fx_tool-1.0-0-py3-none-any.whl")
        lib = _cli("build", "fx-lib", "1.0", server.url, "-O", str(out))
        assert lib.returncode == 0, lib.stderr
    assert _wheels(built) == ["fx_lib-1.0-0-py3-none-any.whl", "fx_tool-1.0-0-py3-none-any.whl"]
    assert "fx-tool" in (out / "work-dir" / "logs" / "fx-lib-1.0.log").read_text()
    assert [(r.job_name, r.status) for r in _runs(out)] == [
        ("build_wheel_job", dg.DagsterRunStatus.SUCCESS)
    ] * 2
    with dg.DagsterInstance.from_config(str(out / "dagster-home")) as instance:
        assert instance.get_latest_materialization_event(
            dg.AssetKey(["wheels", "cpu", "fx-lib", "fx-lib-1.0"])
        )

    order = tmp_path / "build-order.json"
    order.write_text(_order("fx-tool==1.0", "fx-dep==1.0", "fx-lib==1.0", "fx-app==1.0"))
    seq = tmp_path / "seq"
    with LocalIndexServer([upstream]) as server:  # sdists only: builds use the local wheels
        first = _cli("build-sequence", str(order), "-O", str(seq), "--index-url", server.url)
        assert first.returncode == 0, first.stderr
        assert "4 packages, 4 built, 0 reused" in first.stderr
        lines = [x for x in first.stderr.splitlines() if "building fx-" in x]
        assert [x.split()[-1] for x in lines] == [
            "fx-tool==1.0", "fx-dep==1.0", "fx-lib==1.0", "fx-app==1.0"
        ]  # fmt: skip
        again = _cli("build-sequence", str(order), "-O", str(seq), "--index-url", server.url)
        assert again.returncode == 0 and "0 built, 4 reused" in again.stderr
        assert "building fx-" not in again.stderr
        forced = _cli(
            "build-sequence", str(order), "-O", str(seq), "--index-url", server.url, "--force"
        )
        assert forced.returncode == 0 and "4 built, 0 reused" in forced.stderr
    assert len(_wheels(seq / "wheels-repo" / "downloads")) == 4
    assert [r.job_name for r in _runs(seq)] == ["build_sequence_job"] * 3


def test_bootstrap_parallel_then_hermetic_build_parallel(tmp_path: Path) -> None:
    upstream = make_index(CHAIN, tmp_path / "up")
    out = tmp_path / "out"
    with LocalIndexServer([upstream]) as server:
        url = server.url
        boot = _cli("bootstrap-parallel", "fx-app", "-O", str(out), "--index-url", url, "-m", "2")
        assert boot.returncode == 0, boot.stderr
    assert "4 packages" in boot.stderr
    expected = [f"fx_{n}-1.0-0-py3-none-any.whl" for n in ("app", "dep", "lib", "tool")]
    assert _wheels(out / "wheels-repo" / "downloads") == expected
    assert [r.job_name for r in _runs(out)] == ["discover_fx_app_job", "__ASSET_JOB"]

    # The index is gone: build-parallel on a fresh repository must not need it.
    graph = tmp_path / "graph.json"
    shutil.copyfile(out / "work-dir" / "graph.json", graph)
    shutil.rmtree(out / "wheels-repo")
    shutil.rmtree(out / "work-dir")
    proc = _cli(
        "build-parallel", str(graph), "-O", str(out), "--index-url", url,
        FROMAGER_DAGSTER_BUILD_PARALLEL_MAX_WORKERS="2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "with 2 worker(s)" in proc.stderr and "4 built, 0 reused" in proc.stderr
    assert _wheels(out / "wheels-repo" / "downloads") == expected
    assert proc.stdout.split() and all(Path(p).is_file() for p in proc.stdout.split())
    for name in ("app", "dep", "lib", "tool"):
        log = (out / "work-dir" / "logs" / f"fx-{name}-1.0.log").read_text()
        first = log.splitlines()[0]
        assert first.startswith("# ===== build of") and "(hermetic, from the graph)" in first
        assert "build_wheel" in log
        assert "get_requires_for_build" not in log  # no discovery hook ran again
    assert (out / "work-dir" / "graph.json").read_text() == graph.read_text()
    runs = _runs(out)
    assert runs[-1].job_name == "__ASSET_JOB"
    assert runs[-1].status == dg.DagsterRunStatus.SUCCESS


def test_test_mode_build_sequence(tmp_path: Path) -> None:
    bad = FixturePackage("fx-bad", fail_build=True)
    packages = [
        bad,
        FixturePackage("fx-top", build_system_requires=("fx-bad",)),
        FixturePackage("fx-nowheel", fail_build=True),
    ]
    upstream = make_index(packages, tmp_path / "up")
    make_wheel(bad, upstream)  # the index's pre-built fallback for fx-bad
    order = tmp_path / "build-order.json"
    order.write_text(_order("fx-bad==1.0", "fx-top==1.0", "fx-nowheel==1.0"))
    out = tmp_path / "out"
    with LocalIndexServer([upstream]) as server:
        strict = _cli(
            "build-sequence", str(order), "-O", str(tmp_path / "s"), "--index-url", server.url
        )
        tested = _cli(
            "build-sequence", str(order), "-O", str(out), "--index-url", server.url, "--test-mode"
        )
    # without test mode the first failure stops the sequence
    assert strict.returncode == 1
    assert not list((tmp_path / "s" / "work-dir").glob("test-mode-failures-*.json"))
    assert _wheels(tmp_path / "s" / "wheels-repo" / "downloads") == []
    errors = [x for x in strict.stderr.splitlines() if x.startswith("error:")]
    assert errors == [
        (
            "error: fx-bad==1.0: build_wheel failed: PEP 517 hook build_wheel exited with status 1 "
            f"(log: {tmp_path / 's' / 'work-dir' / 'logs' / 'fx-bad-1.0.log'})"
        )
    ]

    assert tested.returncode == 1, tested.stderr
    assert _wheels(out / "wheels-repo" / "prebuilt") == ["fx_bad-1.0-py3-none-any.whl"]
    assert _wheels(out / "wheels-repo" / "downloads") == ["fx_top-1.0-0-py3-none-any.whl"]
    assert "using pre-built wheel of fx-bad==1.0" in tested.stderr
    [report] = (out / "work-dir").glob("test-mode-failures-*.json")
    assert f"failure report: {report}" in tested.stderr
    data = json.loads(report.read_text())
    assert list(data) == ["failures"]
    rows = data["failures"]
    assert [list(row) for row in rows] == [FIELDS, FIELDS]
    assert rows[0] == {
        "package": "fx-bad",
        "version": "1.0",
        "exception_type": "BuildError",
        "exception_message": "PEP 517 hook build_wheel exited with status 1",
        "failure_type": "bootstrap",
    }
    assert rows[1]["package"] == "fx-nowheel" and rows[1]["version"] == "1.0"
    assert (rows[1]["exception_type"], rows[1]["failure_type"]) == ("BuildError", "bootstrap")


def test_test_mode_build_parallel(tmp_path: Path) -> None:
    fails = tmp_path / "fx-bad-failures"
    fails.write_text("0")  # fx-bad builds during discovery, then fails in build-parallel
    bad = FixturePackage("fx-bad", fail_times_file=str(fails))
    packages = [
        bad,
        FixturePackage("fx-top", build_system_requires=("fx-bad",)),
        FixturePackage("fx-nowheel", fail_build=True),
    ]
    upstream = make_index(packages, tmp_path / "up")
    make_wheel(bad, upstream)
    out = tmp_path / "out"
    # the failure counter is a file outside fx-bad's tree: the sandbox would hide it
    with LocalIndexServer([upstream]) as server:
        boot = _cli(
            "bootstrap", "fx-top", "fx-nowheel", "--sdist-only", "-O", str(out),
            "--index-url", server.url, "--no-dagster", "--sandbox", "none",
        )  # fmt: skip
        assert boot.returncode == 0, boot.stderr
        shutil.rmtree(out / "wheels-repo")
        shutil.rmtree(out / "work-dir" / "cache")
        fails.write_text("9")
        proc = _cli(
            "build-parallel", str(out / "work-dir" / "graph.json"), "-O", str(out),
            "--index-url", server.url, "--test-mode", "-m", "2", "--sandbox", "none",
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert _wheels(out / "wheels-repo" / "prebuilt") == ["fx_bad-1.0-py3-none-any.whl"]
    # fx-top waited on fx-bad: built in a second run once the fallback wheel was there
    assert _wheels(out / "wheels-repo" / "downloads") == ["fx_top-1.0-0-py3-none-any.whl"]
    [report] = (out / "work-dir").glob("test-mode-failures-*.json")
    rows = json.loads(report.read_text())["failures"]
    assert [list(row) for row in rows] == [FIELDS, FIELDS]
    assert sorted(
        (r["package"], r["version"], r["exception_type"], r["failure_type"]) for r in rows
    ) == [
        ("fx-bad", "1.0", "BuildError", "bootstrap"),
        ("fx-nowheel", "1.0", "BuildError", "bootstrap"),
    ]
    assert all(
        r["exception_message"] == "PEP 517 hook build_wheel exited with status 1" for r in rows
    )
    runs = _runs(out)
    assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), obj={})
    return result.exit_code, result.output


def test_steps_one_at_a_time(tmp_path: Path) -> None:
    upstream = make_index(CHAIN[:1], tmp_path / "up")
    out = str(tmp_path / "out")
    common = ("-O", out, "--no-network-isolation")
    with LocalIndexServer([upstream]) as server:
        code, text = _invoke(
            "step", "download-source-archive", "fx-tool", "1.0", server.url, *common
        )
    assert code == 0, text
    assert text.strip() == str(
        tmp_path / "out" / "sdists-repo" / "downloads" / "fx_tool-1.0.tar.gz"
    )
    outputs = {}
    for step in ("prepare-source", "prepare-build", "build-sdist", "build-wheel"):
        code, text = _invoke("step", step, "fx-tool", "1.0", *common)
        assert code == 0, (step, text)
        outputs[step] = Path(text.strip().splitlines()[-1])
    assert (outputs["prepare-source"] / "pyproject.toml").is_file()
    assert (outputs["prepare-build"] / "bin" / "python").exists()
    assert outputs["build-sdist"].name == "fx_tool-1.0.tar.gz" and outputs["build-sdist"].is_file()
    assert outputs["build-wheel"].name == "fx_tool-1.0-0-py3-none-any.whl"
    assert outputs["build-wheel"].is_file()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad_order = tmp_path / "order.json"
    bad_order.write_text(json.dumps([{"dist": "fx-a"}, {"dist": "fx-b", "version": "one"}]))
    graph = tmp_path / "graph.json"
    root_edge = {"key": "fx-a==1.0", "req_type": "toplevel", "req": "fx-a"}
    source = "http://127.0.0.1:9/fx_a-1.0.tar.gz"
    graph.write_text(
        json.dumps(
            {
                "": {"canonicalized_name": "", "version": "0", "edges": [root_edge]},
                "fx-a==1.0": {
                    "canonicalized_name": "fx-a",
                    "version": "1.0",
                    "download_url": source,
                },
            }
        )
    )
    cases = [
        (("build-sequence", str(tmp_path / "missing.json")), "missing.json"),
        (("build-sequence", str(bad_order)), "entry 0: needs string fields 'dist' and 'version'"),
        (("build-sequence", str(bad_order)), "entry 1: 'one' is not a valid version of fx-b"),
        (("build-parallel", str(tmp_path / "nograph.json")), "nograph.json"),
        (("build-parallel", str(graph)), "the sources of fx-a==1.0 are not in"),
        (("build", "fx-a", "1.x", "http://127.0.0.1:9/simple/"), "'1.x' is not a valid version"),
        (("build", "fx-a", "1.0", "ftp://nowhere/"), "is not an http(s) URL"),
        (("step", "prepare-source", "fx-a", "1.0"), "no source archive of fx-a==1.0"),
        (("build-sequence", str(bad_order), "--settings-dir", str(tmp_path / "nope")), "nope"),
    ]
    for args, expected in cases:
        code, text = _invoke(*args, "-O", str(out))
        assert code == 1, (args, text)
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, text)
        assert expected in lines[0], (args, lines[0])
        assert not out.exists(), args


def test_pre_built_wheels_run_the_prebuilt_wheel_hook_with_the_commands_variant(
    tmp_path: Path,
) -> None:
    """build-sequence and build-parallel take a pre-built wheel with the command's settings:
    the installed example plugin's prebuilt_wheel hook sees --variant."""
    pre = FixturePackage("fx-pre")
    upstream = make_index([pre], tmp_path / "up")
    make_wheel(pre, upstream)
    order = tmp_path / "build-order.json"
    order.write_text(json.dumps([{"dist": "fx-pre", "version": "1.0", "prebuilt": True}]))
    graph = tmp_path / "graph.json"
    root_edge = {"key": "fx-pre==1.0", "req_type": "toplevel", "req": "fx-pre"}
    graph.write_text(
        json.dumps(
            {
                "": {"canonicalized_name": "", "version": "0", "edges": [root_edge]},
                "fx-pre==1.0": {
                    "canonicalized_name": "fx-pre",
                    "version": "1.0",
                    "pre_built": True,
                },
            }
        )
    )
    hook_log = tmp_path / "hooks.jsonl"
    log = {"FROMAGER_DAGSTER_PLUGIN_EXAMPLE_LOG": str(hook_log)}
    with LocalIndexServer([upstream]) as server:
        common = ("--index-url", server.url, "--variant", "rocm")
        seq = _cli("build-sequence", str(order), "-O", str(tmp_path / "seq"), *common, **log)
        assert seq.returncode == 0, seq.stderr
        par = _cli("build-parallel", str(graph), "-O", str(tmp_path / "par"), *common, **log)
        assert par.returncode == 0, par.stderr
    assert "1 pre-built" in seq.stderr and "1 pre-built" in par.stderr
    taken = {
        "hook": "prebuilt_wheel",
        "name": "fx-pre",
        "version": "1.0",
        "variant": "rocm",
        "wheel": pre.wheel_filename,
    }
    assert [json.loads(line) for line in hook_log.read_text().splitlines()] == [taken, taken]


def test_test_mode_fallbacks_honour_ignore_platform(tmp_path: Path) -> None:
    """A failed build's fallback wheel may be of another platform where the package's
    resolver_dist.ignore_platform says so (build-sequence and build-parallel alike)."""
    bad = FixturePackage("fx-bad", fail_build=True)
    upstream = make_index([bad], tmp_path / "up")
    built = make_wheel(bad, tmp_path / "wheel")
    foreign = upstream / "fx_bad-1.0-cp27-cp27m-win32.whl"  # the index's only wheel
    built.rename(foreign)
    settings = tmp_path / "overrides" / "settings"
    settings.mkdir(parents=True)
    (settings / "fx_bad.yaml").write_text(  # built from source here, pre-built for rocm
        "variants:\n  rocm:\n    pre_built: true\nresolver_dist:\n  ignore_platform: true\n"
    )
    order = tmp_path / "build-order.json"
    order.write_text(_order("fx-bad==1.0"))
    seq, par = tmp_path / "seq", tmp_path / "par"
    with LocalIndexServer([upstream]) as server:
        common = ("--index-url", server.url, "--settings-dir", str(settings), "--test-mode")
        tested = _cli("build-sequence", str(order), "-O", str(seq), *common)
        boot = _cli(
            "bootstrap", "fx-bad", "--sdist-only", "-O", str(par), "--index-url", server.url,
            "--no-dagster",
        )  # fmt: skip
        assert boot.returncode == 0, boot.stderr
        graph = par / "work-dir" / "graph.json"
        parallel = _cli("build-parallel", str(graph), "-O", str(par), *common)
    for proc, out in ((tested, seq), (parallel, par)):
        assert proc.returncode == 1, proc.stderr  # the build failed: reported, then taken
        assert _wheels(out / "wheels-repo" / "prebuilt") == [foreign.name], proc.stderr
        assert (out / "wheels-repo" / "prebuilt" / foreign.name).read_bytes() == (
            foreign.read_bytes()
        )
