"""Nothing runs that the user did not write: no pickle is ever loaded, no remote code enabled.

The pipeline writes a pickle per shape for users (plots/*.pkl) but reads only TSV and JSON back;
loading a pickle can run arbitrary code. (The sweep's own worker processes talk to their parent
through a multiprocessing pipe, which pickles: that data never comes from a file.) Remote model
code is refused where configs are loaded: see tests/test_models.py::test_auto_map_is_refused and
tests/test_bad_input.py::test_config_asking_for_remote_code_is_refused_and_not_run.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOADERS = re.compile(
    r"read_pickle|pickle\.loads?\b|Unpickler|torch\.load\b|joblib\.load|dill\.loads?\b"
    r"|cloudpickle|shelve\.open|allow_pickle\s*=\s*True"
)


def pipeline_sources() -> list[Path]:
    files = [ROOT / "Snakefile", *(ROOT / "workflow").rglob("*.smk")]
    for folder in ("src", "scripts"):
        files += (ROOT / folder).rglob("*.py")
    return sorted(files)


def test_the_scan_sees_the_pipeline():
    names = {p.relative_to(ROOT).as_posix() for p in pipeline_sources()}
    assert {"Snakefile", "scripts/bench.py", "src/nvfp4bench/io.py"} <= names
    assert "workflow/rules/common.smk" in names


@pytest.mark.parametrize(
    "line",
    [
        "frame = pd.read_pickle(path)",
        "obj = pickle.load(handle)",
        "obj = pickle.loads(data)",
        "state = torch.load(path)",
        "arr = np.load(path, allow_pickle=True)",
    ],
)
def test_the_pattern_catches_pickle_loads(line):
    assert LOADERS.search(line)


@pytest.mark.parametrize("line", ["pickle.dump(obj, handle)", "io.write_pickle(frame, path)"])
def test_the_pattern_lets_pickle_writes_through(line):
    assert not LOADERS.search(line)


def test_no_pipeline_code_loads_a_pickle():
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in pipeline_sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if LOADERS.search(line)
    ]
    assert hits == []


def test_trust_remote_code_is_never_true():
    """Every trust_remote_code= argument in src/ and scripts/ is the literal False."""
    calls = []
    for path in pipeline_sources():
        if path.suffix != ".py":
            assert "trust_remote_code" not in path.read_text(), path
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for keyword in getattr(node, "keywords", []) if isinstance(node, ast.Call) else []:
                if keyword.arg == "trust_remote_code":
                    value = keyword.value
                    is_false = isinstance(value, ast.Constant) and value.value is False
                    calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", is_false))
    assert calls, "the config loader passes trust_remote_code=False explicitly"
    assert [where for where, is_false in calls if not is_false] == []
