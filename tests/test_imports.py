"""The package's import graph: no module imports itself through others (imports inside functions
count too), and every module imports on its own, first of the package."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import nvfp4bench

PACKAGE = Path(nvfp4bench.__file__).parent


def _modules() -> dict[str, Path]:
    """module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            targets |= submodules or {base}
    return targets & known


def test_the_package_has_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert graph["nvfp4bench.models"] == {"nvfp4bench.shapes"}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def _fresh_python(script: str, modules: list[str]) -> str:
    """Run `script` with the module names as arguments in a fresh interpreter; its stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), *sys.path]))
    result = subprocess.run(
        [sys.executable, "-c", script, *modules],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_every_module_imports_alone():
    """Each module in a fresh interpreter, imported before any other module of the package."""
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'nvfp4bench']:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    _fresh_python(script, list(_modules()))


def test_a_snakemake_start_imports_no_plotting_or_compressed_tensors():
    """Every Snakemake start, every dry run and every SLURM job's own Snakemake imports what
    workflow/rules/common.smk imports and what its config checks load. matplotlib and
    compressed-tensors (which imports transformers' model code) stay out: seconds each."""
    common = (PACKAGE.parents[1] / "workflow" / "rules" / "common.smk").read_text()
    workflow = set(re.findall(r"^from (nvfp4bench[\w.]*) import", common, re.MULTILINE))
    assert "nvfp4bench.report" in workflow  # the parse above read the imports
    # what check_schema, check_providers and check_models import when called
    checks = {"nvfp4bench.providers", "nvfp4bench.numerics", "nvfp4bench.models"}
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print(*sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'seaborn',"
        " 'compressed_tensors'}))\n"
    )
    assert _fresh_python(script, sorted(workflow | checks)).split() == []
