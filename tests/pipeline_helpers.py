"""Run the workflow on a copy of the repo's workflow files in a temp dir, with tiny local models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "config.yaml", "workflow", "scripts", "envs", "profiles"]


def tiny_llama(folder: Path, hidden: int, intermediate: int, heads: int = 4, kv_heads: int = 2):
    """A llama config.json small enough to sweep on the CPU in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": hidden,
                "intermediate_size": intermediate,
                "num_attention_heads": heads,
                "num_key_value_heads": kv_heads,
                "head_dim": hidden // heads,
                "num_hidden_layers": 2,
                "vocab_size": 1000,
            }
        )
    )
    return str(folder)


def make_workdir(tmp_path: Path) -> Path:
    work = tmp_path / "wf"
    work.mkdir()
    for name in WORKFLOW_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        elif source.exists():
            shutil.copy(source, work / name)
    return work


def small_config(models: list[str], **overrides) -> dict:
    config = {
        "models": models,
        "tp_sizes": [1],
        "had_sizes": [16, 32],
        "batch_sizes": [1, 2],
        "providers": ["torch-bf16", "nvfp4", "nvfp4-noquant"],
        "device": "cpu",
        "cpu": {"max_batch_size": 16, "rep_ms": 2},
        "accuracy": {
            "tokens": 16,
            "max_out_channels": 32,
            "distributions": ["gaussian", "outliers"],
        },
    }
    config.update(overrides)
    return config


def snakemake(work: Path, config: dict, *args: str, check: bool = True, timeout: int = 600):
    (work / "test-config.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        "--configfile",
        "test-config.yaml",
        *args,
    ]
    # The test-only providers (conftest) must be importable in Snakemake's processes too.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), *sys.path]))
    result = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def mtimes(folder: Path, pattern: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob(pattern))}
