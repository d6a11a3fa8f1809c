"""profiles/slurm against a real SLURM cluster (a one-node one: ci/slurm/start.sh).

One scenario, shared by the tests below (they only read it):

1. a small CPU sweep through profiles/slurm (edited the way a user would: partition, CPUs,
   memory), in which one bench job is cancelled with scancel while its script runs;
2. a second run through profiles/slurm with --rerun-incomplete, which must redo that job and what
   depends on it, and nothing else;
3. alongside 2, the same sweep through profiles/local, the reference.

Skipped when there is no SLURM client or no cluster answering; NVFP4BENCH_REQUIRE_SLURM=1 (CI,
after ci/slurm/start.sh) turns the skip into a failure. Per-job timings (local vs SLURM) are
printed (pytest -s) and, with NVFP4BENCH_SLURM_TIMINGS=path, written there as JSON.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_helpers import ROOT, make_workdir, tiny_llama

from nvfp4bench.io import read_tsv

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# A tiny Llama whose qkv and gate_up are both (512, 256), o and down both (256, 256): two shapes,
# so two bench jobs, one of which is cancelled.
SHAPES = {(512, 256), (256, 256)}
CONFIG = [
    'models=["tiny-llama"]',
    "tp_sizes=[1]",
    "batch_sizes=[1,2]",
    "had_sizes=[16]",
    'providers=["torch-bf16","nvfp4"]',
    "device=cpu",
    "device_label=cpu",
    "cpu={rep_ms: 2}",
    "accuracy={tokens: 16, max_out_channels: 32}",
]
# Fast polling. The plugin checks init s after a submission or a finished job (default 40), then
# waits 10 s longer each time no job has finished: with 5, at 5, 20, 45 s. A job here takes 9 to
# 19 s from submission (two Snakemake start-ups), so 5 has it seen at 20 s; 1 (1, 12, 33 s) would
# see most at 33 s.
SLURM_FLAGS = [
    "--slurm-init-seconds-before-status-checks",
    "5",
    "--seconds-between-status-checks",
    "2",
    "--slurm-keep-successful-logs",
    "--latency-wait",
    "5",
]
# Columns that hold measured times (differ between any two runs).
TIMING_COLUMN = re.compile(r"^(ms_|tflops_|speedup|linear_ms|samples$|noise$)")
RUN_TIMEOUT_S = 240


def _require(reason: str):
    if os.environ.get("NVFP4BENCH_REQUIRE_SLURM") == "1":
        pytest.fail(f"NVFP4BENCH_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def _cluster() -> dict:
    """The default partition and the smallest usable node; skips (or fails) without a cluster."""
    if shutil.which("sinfo") is None:
        _require("sinfo not found: no SLURM client here (ci/slurm/start.sh starts a test cluster)")
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%P|%a|%T|%c|%m"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        _require("SLURM cluster not up: sinfo timed out (slurmctld unreachable)")
    if out.returncode != 0:
        _require(f"SLURM cluster not up: sinfo: {out.stderr.strip() or out.returncode}")
    nodes = []
    for line in out.stdout.split():
        partition, avail, state, cpus, mem = line.split("|")
        if avail == "up" and state.rstrip("*~#") in ("idle", "mixed", "allocated", "completing"):
            nodes.append((partition, int(cpus), int(mem)))
    if not nodes:
        _require(f"SLURM cluster not up: no usable node in sinfo: {out.stdout.strip()!r}")
    default = [p for p, _, _ in nodes if p.endswith("*")]
    partition = (default or [nodes[0][0]])[0].rstrip("*")
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    age = re.search(r"^MinJobAge\s*=\s*(\d+)", config.stdout, re.M)
    if not age or int(age.group(1)) < 60:
        _require(
            "MinJobAge below 60 s: finished jobs leave squeue before the status check sees them"
        )
    return {
        "partition": partition,
        "cpus": min(c for _, c, _ in nodes),
        "mem_mb": min(m for _, _, m in nodes),
    }


# --- Snakemake's log -------------------------------------------------------------------------


@dataclass
class Job:
    jobid: int
    rule: str
    local: bool
    start: datetime.datetime
    wildcards: dict = field(default_factory=dict)
    end: datetime.datetime | None = None
    slurm_id: str | None = None
    slurm_log: str | None = None

    @property
    def key(self) -> tuple:
        return (self.rule, *sorted(self.wildcards.items()))


def parse_log(text: str) -> list[Job]:
    """Every job Snakemake started, with its times, wildcards and SLURM job id."""
    jobs: dict[int, Job] = {}
    stamp = None
    current = None
    for line in text.splitlines():
        if m := re.fullmatch(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line):
            stamp = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            current = None
        elif m := re.fullmatch(r"(local)?(?:rule|checkpoint) (\w+):", line):
            current = {"rule": m.group(2), "local": bool(m.group(1)), "start": stamp}
        elif current is not None and (m := re.fullmatch(r"    (\w+): (.*)", line)):
            current[m.group(1)] = m.group(2)
            if m.group(1) == "jobid":
                jobid = int(m.group(2))
                jobs[jobid] = Job(jobid, current["rule"], current["local"], current["start"])
            if m.group(1) == "wildcards" and "jobid" in current:
                jobs[int(current["jobid"])].wildcards = dict(
                    pair.split("=", 1) for pair in m.group(2).split(", ")
                )
        elif m := re.match(
            r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)", line
        ):
            jobs[int(m.group(1))].slurm_id = m.group(2)
            jobs[int(m.group(1))].slurm_log = m.group(3)
        elif m := re.fullmatch(r"Finished jobid: (\d+) \(Rule: \w+\)", line):
            jobs[int(m.group(1))].end = stamp
    return list(jobs.values())


def scontrol_job(slurm_id: str) -> dict:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def slurm_time(value: str) -> datetime.datetime:
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")


# --- running Snakemake -----------------------------------------------------------------------


def _env() -> dict:
    # The test-only providers (conftest) must be importable in every Snakemake process, the
    # SLURM jobs included (sbatch --export=ALL).
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), *sys.path]),
        HF_HUB_OFFLINE="1",
    )


def _run_uuid(log: Path) -> str | None:
    m = re.search(r"^SLURM run ID: (\S+)", log.read_text(), re.M) if log.exists() else None
    return m.group(1) if m else None


def _cancel_run(log: Path) -> None:
    """scancel whatever the run of this log still has in SLURM (its jobs carry its run id)."""
    uuid = _run_uuid(log)
    if uuid:
        subprocess.run(["scancel", "--name", uuid], capture_output=True)


def run_snakemake(work: Path, name: str, args: list[str], during=None) -> tuple[int, str, object]:
    """Run Snakemake in `work`, log to work/<name>.log; `during(proc, log)` runs meanwhile."""
    log = work / f"{name}.log"
    command = [sys.executable, "-m", "snakemake", *args]
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command,
            cwd=work,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            seen = during(proc, log) if during else None
            proc.wait(timeout=max(1, RUN_TIMEOUT_S - (time.monotonic() - started)))
        except BaseException as error:
            # Never leave a hung Snakemake (e.g. a status query that never answers) or its jobs.
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            _cancel_run(log)
            tail = log.read_text()[-4000:]
            raise AssertionError(
                f"snakemake {name} did not finish properly ({error!r}); log tail:\n{tail}"
            ) from error
    return proc.returncode, log.read_text(), seen


def _final_state(slurm_id: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        state = scontrol_job(slurm_id).get("JobState", "")
        if state not in ("PENDING", "RUNNING", "COMPLETING") or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def cancel_a_running_bench(proc, log: Path):
    """Once a bench job's script is running (its log exists), scancel it; -> (slurm id, N, K)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    tried = set()
    while time.monotonic() < deadline and proc.poll() is None:
        uuid = _run_uuid(log)
        if uuid:
            queue = subprocess.run(
                ["squeue", "-h", "--name", uuid, "-o", "%i|%T|%k"], capture_output=True, text=True
            ).stdout
            for line in queue.split():
                slurm_id, state, comment = line.split("|", 2)
                m = re.fullmatch(r"rule_bench_wildcards_(\d+)_(\d+)", comment)
                if state != "RUNNING" or not m or slurm_id in tried:
                    continue
                N, K = int(m.group(1)), int(m.group(2))
                if (log.parent / f"results/cpu/logs/bench/n{N}_k{K}.log").exists():
                    tried.add(slurm_id)
                    subprocess.run(["scancel", slurm_id], capture_output=True)
                    # Lost the race if the job ended first: then try the next bench job.
                    if _final_state(slurm_id) == "CANCELLED":
                        return slurm_id, N, K
        time.sleep(0.1)
    raise AssertionError("no bench job was seen running (the run ended or hung before)")


def slurm_profile(work: Path, cluster: dict) -> None:
    """Fit the copied profile to the test cluster, in its one place, as a user would."""
    path = work / "profiles" / "slurm" / "config.yaml"
    profile = yaml.safe_load(path.read_text())
    per_cpu_mb = cluster["mem_mb"] // cluster["cpus"]
    profile["default-resources"]["slurm_partition"] = cluster["partition"]
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        resources["cpus_per_task"] = 1
        resources["mem_mb"] = min(resources.get("mem_mb", per_cpu_mb), per_cpu_mb)
    path.write_text(yaml.safe_dump(profile, sort_keys=False))


def result_files(work: Path) -> dict[str, int]:
    """Visible files under results/ and their mtimes (a temp file starts with a dot)."""
    results = work / "results"
    return {
        str(p.relative_to(results)): p.stat().st_mtime_ns
        for p in sorted(results.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    cluster = _cluster()
    tmp = tmp_path_factory.mktemp("slurm")
    works = {}
    for name in ("local", "slurm"):
        (tmp / name).mkdir()
        works[name] = make_workdir(tmp / name)
        tiny_llama(works[name] / "tiny-llama", hidden=256, intermediate=256, heads=4, kv_heads=2)
    slurm_profile(works["slurm"], cluster)
    config = ["--config", *CONFIG]

    slurm = ["--profile", "profiles/slurm", *SLURM_FLAGS, *config]
    started = time.monotonic()
    rc1, log1, cancelled = run_snakemake(
        works["slurm"], "slurm-1", slurm, during=cancel_a_running_bench
    )
    slurm1_s = time.monotonic() - started
    files1 = result_files(works["slurm"])
    leftovers = sorted(
        str(p.relative_to(works["slurm"]))
        for p in (works["slurm"] / "results").rglob(".*")
        if p.is_file()
    )

    # The reference local run goes alongside the rerun, which mostly waits on SLURM (it keeps
    # the test under 4 minutes; the rerun's timings are not reported).
    def local_run():
        began = time.monotonic()
        rc, log, _ = run_snakemake(
            works["local"], "local", ["--profile", "profiles/local", "--cores", "2", *config]
        )
        return rc, log, time.monotonic() - began

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        local = pool.submit(local_run)
        rc2, log2, _ = run_snakemake(works["slurm"], "slurm-2", [*slurm, "--rerun-incomplete"])
        rc, local_log, local_s = local.result()
    assert rc == 0, local_log[-4000:]
    return {
        "works": works,
        "local_log": local_log,
        "local_s": local_s,
        "slurm1": (rc1, log1, files1, leftovers),
        "slurm2": (rc2, log2),
        "slurm1_s": slurm1_s,
        "cancelled": cancelled,
    }


# --- the tests -------------------------------------------------------------------------------


def test_every_non_local_job_ran_as_a_slurm_job_and_the_light_ones_locally(scenario):
    cancelled_id = scenario["cancelled"][0]
    rc2, log2 = scenario["slurm2"]
    assert rc2 == 0, log2[-4000:]
    rules, local_rules = set(), set()
    for log in (scenario["slurm1"][1], log2):
        jobs = parse_log(log)
        assert jobs
        for job in jobs:
            if job.local:
                local_rules.add(job.rule)
                continue
            rules.add(job.rule)
            assert job.slurm_id, f"{job.rule} {job.wildcards} was not submitted to SLURM"
            info = scontrol_job(job.slurm_id)
            assert info["Comment"].startswith(f"rule_{job.rule}"), info
            expected = "CANCELLED" if job.slurm_id == cancelled_id else "COMPLETED"
            assert info["JobState"] == expected, (job, info["JobState"])
            # The SLURM job log (kept by --slurm-keep-successful-logs) is the job's own Snakemake.
            inner = Path(job.slurm_log).read_text()
            assert re.search(rf"^(rule|checkpoint) {job.rule}:$", inner, re.M), inner[-2000:]
    # The measured work goes to SLURM; the few seconds of shapes work stay on the submitting host
    # (the Snakefile's localrules).
    assert {"bench", "accuracy", "plot_shape"} <= rules, rules
    assert {"layer_shapes", "unique_shapes"} <= local_rules, local_rules


def test_gpu_request_reaches_slurm(scenario):
    jobs = [job for job in parse_log(scenario["slurm1"][1]) if job.slurm_id]
    for job in jobs:
        info = scontrol_job(job.slurm_id)
        gres = info.get("TresPerJob", "") + info.get("TresPerNode", "")
        if job.rule == "bench":  # accuracy jobs run on the CPU by default
            assert re.search(r"gpu:1\b", gres), (job.rule, info)
        else:
            assert "gpu" not in gres, (job.rule, info)


def _compare_tsv(local: Path, slurm: Path) -> None:
    a, b = read_tsv(local), read_tsv(slurm)
    assert list(a.columns) == list(b.columns), local.name
    assert len(a) == len(b), local.name
    for column in a.columns:
        if TIMING_COLUMN.match(column):
            continue
        x, y = a[column], b[column]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            same = (x.isna() & y.isna()) | ((x - y).abs() <= 1e-4 * y.abs() + 1e-9)
            assert same.all(), (local.name, column, x[~same].tolist(), y[~same].tolist())
        else:
            assert x.tolist() == y.tolist(), (local.name, column)


def test_outputs_match_a_local_run(scenario):
    local = scenario["works"]["local"] / "results"
    slurm = scenario["works"]["slurm"] / "results"
    assert scenario["slurm2"][0] == 0
    local_files = set(result_files(scenario["works"]["local"]))
    assert local_files == set(result_files(scenario["works"]["slurm"]))
    shapes = {
        (int(N), int(K)) for N, K in re.findall(r"bench/n(\d+)_k(\d+)\.tsv", str(local_files))
    }
    assert shapes == SHAPES
    tsvs = sorted(name for name in local_files if name.endswith(".tsv"))
    # shapes: the tp1 table, unique, skipped_tp; per shape: bench, accuracy; summary; forward
    assert len(tsvs) == 3 + 2 * len(SHAPES) + 1 + 1
    for name in tsvs:
        _compare_tsv(local / name, slurm / name)


def test_cancelled_job_left_nothing_complete_and_only_it_was_redone(scenario):
    slurm_id, N, K = scenario["cancelled"]
    rc1, log1, files1, leftovers = scenario["slurm1"]
    assert rc1 != 0  # a job failed; --keep-going finished the others
    assert "CANCELLED" in log1
    stem = f"n{N}_k{K}"
    assert f"cpu/bench/{stem}.tsv" not in files1 and f"cpu/bench/{stem}.env.json" not in files1
    # Every other shape is complete; its outputs must not be touched by the rerun.
    for n, k in SHAPES - {(N, K)}:
        assert (
            f"cpu/bench/n{n}_k{k}.tsv" in files1 and f"cpu/plots/accuracy_n{n}_k{k}.png" in files1
        )
    assert all(stem in name for name in leftovers), leftovers  # temp files of that job only

    rc2, log2 = scenario["slurm2"]
    assert rc2 == 0, log2[-4000:]
    redone = {job.key for job in parse_log(log2) if job.rule != "all"}
    shape = (("K", str(K)), ("N", str(N)))
    forward = ("forward_pass", ("model", "tiny-llama"))  # the per-model table reads every shape
    # So do the summary and the report's front page.
    throughput = ("plot_throughput", *shape, ("format", "nvfp4"))  # the shape's figure per format
    expected = {("bench", *shape), ("plot_shape", *shape), throughput, ("summary",),
                ("describe_run",), forward}  # fmt: skip
    assert redone == expected, redone
    files2 = result_files(scenario["works"]["slurm"])
    rewritten = {name for name, mtime in files1.items() if files2[name] != mtime}
    assert rewritten <= {f"cpu/logs/bench/{stem}.log"}, rewritten


def _median(values):
    return round(statistics.median(values), 1) if values else math.nan


def test_overhead_per_job(scenario):
    """Wall time per job, local vs SLURM (submit to finish), and where SLURM's extra time goes."""
    local = {}
    for job in parse_log(scenario["local_log"]):
        if job.rule != "all":
            local.setdefault(job.rule, []).append((job.end - job.start).total_seconds())
    cancelled_id = scenario["cancelled"][0]
    rows = {}
    for job in parse_log(scenario["slurm1"][1]):
        if not job.slurm_id or job.slurm_id == cancelled_id:
            continue
        info = scontrol_job(job.slurm_id)
        submit, start, end = (slurm_time(info[k]) for k in ("SubmitTime", "StartTime", "EndTime"))
        row = rows.setdefault(job.rule, {"queue": [], "in_job": [], "detect": [], "total": []})
        row["queue"].append((start - submit).total_seconds())
        row["in_job"].append((end - start).total_seconds())
        row["detect"].append((job.end - end).total_seconds())
        row["total"].append((job.end - job.start).total_seconds())
    table = {
        rule: {
            "jobs": len(row["total"]),
            "local_s": _median(local.get(rule, [])),
            "slurm_submit_to_finish_s": _median(row["total"]),
            "slurm_queue_s": _median(row["queue"]),
            "slurm_in_job_s": _median(row["in_job"]),
            "slurm_status_lag_s": _median(row["detect"]),
        }
        for rule, row in rows.items()
    }
    for entry in table.values():
        # What a job costs beyond its local run once it has a node: job start-up + status lag.
        entry["overhead_s"] = round(
            entry["slurm_in_job_s"] - entry["local_s"] + entry["slurm_status_lag_s"], 1
        )
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "local_run_s": round(scenario["local_s"], 1),
        "slurm_run_s": round(scenario["slurm1_s"], 1),
        "per_rule": table,
    }
    print("\nper-job wall time, local vs SLURM (medians, s):")
    print(json.dumps(report, indent=2))
    if os.environ.get("NVFP4BENCH_SLURM_TIMINGS"):
        Path(os.environ["NVFP4BENCH_SLURM_TIMINGS"]).write_text(json.dumps(report, indent=2))
    assert {"bench", "accuracy"} <= set(table)
    for rule, entry in table.items():
        # Generous: once it has a node, a SLURM job costs seconds more than locally, not minutes.
        assert entry["overhead_s"] < 60, (rule, entry)
