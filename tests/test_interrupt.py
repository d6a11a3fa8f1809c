"""A sweep killed mid bench job leaves no result behind for that shape and resumes cleanly.

What Snakemake 9 does (checked here on the local executor):

* SIGINT to the process group (Ctrl-C): the running job dies, Snakemake reports it failed, removes
  its lock; the incomplete markers (.snakemake/incomplete/) of the killed job's outputs stay, but
  as the bench job writes its TSV atomically at the very end, no output file exists, so the next
  plain run simply runs the missing shapes: no flag needed.
* SIGKILL of the whole process group: the lock (.snakemake/locks/) stays, so the next run stops
  with "Directory cannot be locked" until ``snakemake --unlock`` (with the same config). The
  incomplete markers stay too; with no output file they do not matter. Only if the kill landed
  between the TSV's and the env.json's rename (the job's last milliseconds) would an output exist
  with its marker: then Snakemake stops with IncompleteFilesException until ``--rerun-incomplete``
  (simulated below).
* A second Snakemake started on a directory a running one holds stops at once with
  "Directory cannot be locked" and touches nothing.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import ROOT, make_workdir, mtimes, small_config, tiny_llama

from nvfp4bench.io import read_bench

pytestmark = pytest.mark.slow

# Three of tiny-a's four shapes: one bench job each, ~3 s of test-slow sleep plus start-up.
SHAPES = [(256, 256), (512, 256), (1024, 256)]
TARGETS = [f"results/cpu/bench/n{N}_k{K}.tsv" for N, K in SHAPES]
DEADLINE_S = 120


@pytest.fixture
def work(tmp_path):
    work = make_workdir(tmp_path)
    model = tiny_llama(tmp_path / "models" / "tiny-a", hidden=256, intermediate=512)
    config = small_config([model], providers=["test-slow"], had_sizes=[16], batch_sizes=[1])
    (work / "test-config.yaml").write_text(yaml.safe_dump(config))
    return work


def command(*args: str) -> list[str]:
    # Targets first: --configfile takes every following word up to the next option.
    return [
        sys.executable, "-m", "snakemake", *TARGETS, "--cores", "1",
        "--configfile", "test-config.yaml", *args,
    ]  # fmt: skip


def environment() -> dict:
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), *sys.path]),
        NVFP4BENCH_PROVIDER_MODULES="misbehaving_providers",
        HF_HUB_OFFLINE="1",
    )


def start(work: Path, *args: str) -> subprocess.Popen:
    """Snakemake in its own process group (as a shell would run it), output to a file."""
    with open(work / f"snakemake-{time.monotonic_ns()}.out", "w") as log:
        return subprocess.Popen(
            command(*args),
            cwd=work,
            env=environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args), cwd=work, env=environment(), capture_output=True, text=True, timeout=300
    )


def bench(work: Path) -> Path:
    return work / "results" / "cpu" / "bench"


def sweeping(work: Path, N: int, K: int) -> bool:
    """The shape's bench job has started its sweep (the job logs it before the first row)."""
    log = work / "results" / "cpu" / "logs" / "bench" / f"n{N}_k{K}.log"
    return log.exists() and "sweep N=" in log.read_text()


def wait_for_mid_job(work: Path, process: subprocess.Popen) -> tuple[int, int]:
    """Block until one shape is finished and another is mid-sweep; return the latter."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "snakemake ended before it could be interrupted"
        done = {(N, K) for N, K in SHAPES if (bench(work) / f"n{N}_k{K}.tsv").exists()}
        running = [s for s in SHAPES if s not in done and sweeping(work, *s)]
        if done and running:
            return running[0]  # test-slow sleeps 3 s in its first row: still running
        time.sleep(0.05)
    raise AssertionError("no bench job was caught mid-sweep")


def processes_in(work: Path) -> list[int]:
    """Live processes whose working directory is the workdir (orphaned jobs, workers)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == work:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def interrupt(work: Path, sig: signal.Signals) -> tuple[tuple[int, int], dict[str, int]]:
    """Start the sweep, send ``sig`` to its process group mid job; return (killed shape,
    mtimes of the finished shapes' TSVs)."""
    process = start(work)
    try:
        killed = wait_for_mid_job(work, process)
        os.killpg(process.pid, sig)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0
    # Nothing left that could still write a result (the killed ones may take a moment to go).
    deadline = time.monotonic() + 30
    while processes_in(work) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_in(work) == []
    finished = mtimes(bench(work), "*.tsv")
    assert finished and f"n{killed[0]}_k{killed[1]}.tsv" not in finished
    # Nothing half-written: only finished shapes' TSV + env.json, no temp files.
    names = {p.name for p in bench(work).iterdir()}
    assert names == set(finished) | {n.replace(".tsv", ".env.json") for n in finished}
    return killed, finished


def jobs_run(output: str) -> set[tuple[int, int]]:
    """The (N, K) of the bench jobs a Snakemake run started, from its log."""
    shapes = set()
    for line in output.splitlines():
        if line.strip().startswith("wildcards: N="):
            n, k = line.split("N=")[1].split(", K=")
            shapes.add((int(n), int(k)))
    return shapes


def assert_resumed(work: Path, result, finished: dict[str, int]) -> None:
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    unfinished = {s for s in SHAPES if f"n{s[0]}_k{s[1]}.tsv" not in finished}
    assert jobs_run(result.stdout + result.stderr) == unfinished
    after = mtimes(bench(work), "*.tsv")
    assert {name: after[name] for name in finished} == finished  # finished shapes untouched
    assert set(after) == {f"n{N}_k{K}.tsv" for N, K in SHAPES}
    for name in after:
        frame = read_bench(bench(work) / name)
        assert list(frame["status"]) == ["ok"], frame
        assert (bench(work) / name.replace(".tsv", ".env.json")).exists()


def test_ctrl_c_mid_job_then_a_plain_rerun_redoes_only_unfinished_shapes(work):
    killed, finished = interrupt(work, signal.SIGINT)
    assert not list((work / ".snakemake" / "locks").glob("*"))  # Snakemake unlocked on SIGINT
    assert_resumed(work, run(work), finished)


def test_sigkill_mid_job_needs_unlock_then_redoes_only_unfinished_shapes(work):
    killed, finished = interrupt(work, signal.SIGKILL)
    assert list((work / ".snakemake" / "locks").glob("*.lock"))  # the lock survives SIGKILL
    assert list((work / ".snakemake" / "incomplete").iterdir())  # so do incomplete markers

    locked = run(work)
    assert locked.returncode != 0
    assert "Directory cannot be locked" in locked.stdout + locked.stderr
    assert "--unlock" in locked.stdout + locked.stderr
    assert mtimes(bench(work), "*.tsv") == finished

    unlocked = run(work, "--unlock")
    assert unlocked.returncode == 0 and "Unlocked" in unlocked.stdout + unlocked.stderr

    # Had the kill come right after the TSV's rename, the TSV would exist with its incomplete
    # marker: Snakemake refuses to take it as a result until --rerun-incomplete redoes it.
    partial = bench(work) / f"n{killed[0]}_k{killed[1]}.tsv"
    partial.write_text("N\tK\tM\n")
    refused = run(work, "-n")
    assert refused.returncode != 0
    assert "IncompleteFilesException" in refused.stdout + refused.stderr
    assert str(partial.relative_to(work)) in refused.stdout + refused.stderr
    assert "--rerun-incomplete" in refused.stdout + refused.stderr

    result = run(work, "--rerun-incomplete")
    assert_resumed(work, result, finished)
    assert read_bench(partial)["provider"].tolist() == ["test-slow"]


def test_second_run_on_the_same_directory_is_locked_out_and_changes_nothing(work):
    first = start(work)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not any(sweeping(work, *s) for s in SHAPES):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = run(work)
        output = second.stdout + second.stderr
        assert second.returncode != 0
        # Snakemake refuses it at the lock or, when its DAG is built while a job of the first run
        # is under way, at that job's incomplete marker (Snakemake checks those before locking).
        refusals = ("Directory cannot be locked", "IncompleteFilesException")
        assert any(refusal in output for refusal in refusals), output[-3000:]
        assert first.poll() is None  # the first run was holding the lock throughout
        assert jobs_run(output) == set() and "rule bench" not in output  # it started nothing
        assert first.wait(timeout=DEADLINE_S) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    for N, K in SHAPES:
        frame = read_bench(bench(work) / f"n{N}_k{K}.tsv")
        assert list(frame["status"]) == ["ok"] and (frame["N"] == N).all()
    assert not list((work / ".snakemake" / "locks").glob("*"))
