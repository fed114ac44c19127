"""scripts/process.py: the one place that changes process-wide state, and a library that changes none."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_probe(tmp_path, code, **env_changes):
    """Run ``code`` as a script file in a fresh interpreter with the checkout importable; its last line as JSON."""
    probe = tmp_path / "probe.py"
    probe.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + code)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "JAX_DEFAULT_MATMUL_PRECISION")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_blas_thread_limit_reaches_the_blas_of_the_numba_kernels_too(tmp_path):
    # NumPy and the Numba kernels (through SciPy) each load their own OpenBLAS; the GRU kernels load SciPy's late
    code = "from scripts.process import configure_process\nconfigure_process(blas_threads=1)\n"
    code += "import numpy as np\nfrom symrnn.ops.gru import FusedGRU\n"
    code += "FusedGRU().forward(np.ones((2, 9, 12)), np.ones((2, 9)), [np.zeros((9, 4))], np.ones((4, 12)))\n"
    code += "from symrnn.ops.lstm import FusedLSTM\nf = np.float32\n"
    code += "FusedLSTM().forward(np.zeros((2, 2, 64), f), np.ones((2, 2), f), [np.zeros((2, 16), f)] * 2, np.zeros((16, 64), f))\n"
    code += "import json, threadpoolctl\n"
    code += "blas = [i for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas']\n"
    code += "print(json.dumps([(i['filepath'], i['num_threads']) for i in blas]))\n"
    libraries = run_probe(tmp_path, code)
    assert len(libraries) >= 2 and all(threads == 1 for _, threads in libraries), libraries


def test_by_default_the_numba_kernels_own_blas_runs_on_one_thread_and_numpy_s_is_left_alone(tmp_path):
    code = "import json, threadpoolctl, numpy, scipy\n"
    code += "before = {i['filepath']: i['num_threads'] for i in threadpoolctl.threadpool_info()}\n"
    code += "from scripts.process import configure_process\nconfigure_process()\n"
    code += "after = {i['filepath']: i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'}\n"
    code += "print(json.dumps([[p, n, before.get(p), 'scipy' in p.split('site-packages')[-1].split('/')[1]] for p, n in after.items()]))\n"
    libraries = run_probe(tmp_path, code)
    scipy_own = [lib for lib in libraries if lib[3]]
    others = [lib for lib in libraries if not lib[3]]
    if not scipy_own:
        pytest.skip("SciPy shares NumPy's BLAS here (no separate library to limit)")
    assert all(threads == 1 for _, threads, _, _ in scipy_own), libraries
    assert all(threads == before for _, threads, before, _ in others), libraries


def test_importing_and_using_the_library_changes_no_process_wide_setting(tmp_path):
    code = """
import json, logging, warnings
import numba, nltk, scipy.special, pytensor, matplotlib.figure, threadpoolctl  # their own filters come first
try:  # PyTensor imports it at its first C compile; an old one (a Python 3.11 venv's 65.5) adds pkg_resources' filter
    import setuptools
except ImportError:
    pass
before = {"numba": numba.config.THREADING_LAYER, "filters": len(warnings.filters),
          "handlers": len(logging.getLogger().handlers), "level": logging.getLogger().level}
import importlib, pkgutil, symrnn
for module in pkgutil.walk_packages(symrnn.__path__, "symrnn."):
    importlib.import_module(module.name)
import models.language_model
model = models.language_model.RNNLanguageModel(20, 4, 5, num_layers=1)
model.compile_train()
symrnn.plotting.write_loss_curve(sys.argv[0] + ".png", [[1, 2.0, None], [2, 1.5, 1.7]])
after = {"numba": numba.config.THREADING_LAYER, "filters": len(warnings.filters),
         "handlers": len(logging.getLogger().handlers), "level": logging.getLogger().level}
print(json.dumps([before, after]))
"""
    before, after = run_probe(tmp_path, code)
    assert before == after


def test_configure_process_sets_jax_to_full_float32_products_only_for_the_jax_backend(tmp_path):
    import pytest

    pytest.importorskip("jax", reason="JAX is an optional extra: pip install .[gpu]")
    code = """
import json, jax
from scripts.process import configure_process
configure_process(backend="cpu")
cpu = jax.config.jax_default_matmul_precision
configure_process(backend="jax")
print(json.dumps([cpu, jax.config.jax_default_matmul_precision, bool(jax.config.jax_compilation_cache_dir)]))
"""
    assert run_probe(tmp_path, code) == [None, "highest", True]



@pytest.mark.parametrize("user_value", [None, "25"])
def test_the_scripts_set_openblas_s_thread_timeout_before_numpy_loads_and_keep_a_user_s_own(tmp_path, user_value,
                                                                                             monkeypatch):
    code = "import json, os, sys\nimport scripts.common\n"
    code += "print(json.dumps([os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'numpy' in sys.modules]))\n"
    env = {"OPENBLAS_THREAD_TIMEOUT": user_value} if user_value else {}
    if not user_value:
        monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    timeout, numpy_loaded = run_probe(tmp_path, code, **env)
    assert numpy_loaded  # common imports symrnn, and NumPy with it: the setting came first
    assert timeout == (user_value or "20")


def test_preparing_the_environment_after_numpy_has_loaded_changes_nothing(tmp_path):
    code = "import json, os, numpy\nfrom scripts.process import prepare_environment\n"
    code += "os.environ.pop('OPENBLAS_THREAD_TIMEOUT', None)\nprepare_environment()\n"
    code += "print(json.dumps(os.environ.get('OPENBLAS_THREAD_TIMEOUT')))\n"
    assert run_probe(tmp_path, code) is None


@pytest.mark.parametrize("script", ["train.py", "generate.py", "evaluate.py"])
def test_every_script_imports_common_before_numpy(script):
    import ast

    tree = ast.parse((ROOT / "scripts" / script).read_text())
    order = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            order += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            order += [(node.lineno, node.module or alias.name) for alias in node.names]
    first = {name: line for line, name in sorted(order, reverse=True)}
    assert first["common"] < first["numpy"]


@pytest.mark.parametrize("coretype, flags, warned", [
    ("Haswell", {"avx2", "avx512f"}, True),
    ("haswell", {"avx512f"}, True),
    ("Haswell", {"avx2", "fma"}, False),  # the CPU has no AVX-512: Haswell's kernels are its best
    ("SkylakeX", {"avx512f"}, False),
    ("", {"avx512f"}, False),
    (None, {"avx512f"}, False),
])
def test_a_coretype_below_an_avx512_cpu_gets_a_warning_naming_the_variable_and_the_fix(coretype, flags, warned,
                                                                                        monkeypatch):
    from scripts.process import blas_kernel_warning

    if coretype is None:
        monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_CORETYPE", coretype)
    message = blas_kernel_warning(cpu_flags=flags)
    if not warned:
        assert message is None
    else:
        assert f"OPENBLAS_CORETYPE={coretype}" in message and "env -u OPENBLAS_CORETYPE" in message
