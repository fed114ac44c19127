"""The layout's rules, checked on the source: who may import what, call scan, read the environment or print.

The README's "Architecture" section states them; these tests keep them true.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "symrnn").rglob("*.py"))
MODELS = sorted((ROOT / "models").rglob("*.py"))

# Modules that work on NumPy arrays alone: importing one must not import PyTensor.
NUMPY_ONLY = [
    "symrnn.batching", "symrnn.checkpoint", "symrnn.config", "symrnn.corpus", "symrnn.default_corpus",
    "symrnn.errors", "symrnn.files", "symrnn.legacy", "symrnn.metrics", "symrnn.npz", "symrnn.ops.background_compile", "symrnn.ops.kernels",
    "symrnn.ops.lstm_kernels", "symrnn.ops.rnn_kernels", "symrnn.ops.sampling_kernels", "symrnn.paths",
    "symrnn.plotting", "symrnn.reading", "symrnn.sampling", "symrnn.settings_json", "symrnn.streams", "symrnn.token_cache",
    "symrnn.tokenize",
    "symrnn.training", "symrnn.vocab",
    "symrnn.ops.gru_kernels",
]

# The tutorial's own API prints by contract (load_data's five lines, print_sentence, the gradient check).
MAY_PRINT = {ROOT / "models" / "tutorial.py"}


def parsed(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_names(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def relative(path):
    return str(path.relative_to(ROOT))


def test_the_library_never_imports_models_or_scripts():
    offenders = [
        (relative(path), name) for path in LIBRARY for name in imported_names(parsed(path))
        if name.split(".")[0] in ("models", "scripts", "benchmarks")
    ]
    assert offenders == []


@pytest.mark.parametrize("module", NUMPY_ONLY)
def test_a_numpy_only_module_does_not_import_pytensor(module):
    code = f"import json, sys\nimport {module}\nprint(json.dumps('pytensor' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) is False


def calls_scan(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name == "scan":
                yield node.lineno


def test_only_recurrence_py_calls_scan():
    callers = [(relative(p), line) for p in LIBRARY + MODELS for line in calls_scan(parsed(p))]
    assert callers and all(path == "symrnn/recurrence.py" for path, _ in callers), callers


def reads_environment_or_prints(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv") and \
                isinstance(node.value, ast.Name) and node.value.id == "os":
            yield f"os.{node.attr} at line {node.lineno}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "input"):
            yield f"{node.func.id}() at line {node.lineno}"


def test_only_the_scripts_read_the_environment_or_print():
    found = [
        (relative(path), what) for path in LIBRARY + MODELS if path not in MAY_PRINT
        for what in reads_environment_or_prints(parsed(path))
    ]
    assert found == []
    assert any("print" in what for what in reads_environment_or_prints(parsed(ROOT / "models" / "tutorial.py")))


def test_the_checks_themselves_find_what_they_look_for():
    sample = ast.parse("import os\nfrom models.gru import x\nprint(os.environ['A'])\npytensor.scan(f)\n")
    assert "models.gru" in list(imported_names(sample))
    assert list(calls_scan(sample)) == [4]
    assert len(list(reads_environment_or_prints(sample))) == 2
