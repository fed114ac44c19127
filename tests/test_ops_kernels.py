"""The Numba kernels (symrnn.ops.kernels): the vectorised exp and the disk cache of the serial and parallel kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from symrnn.ops import kernels

ROOT = Path(__file__).resolve().parent.parent


def test_the_exp_kernel_is_within_two_float32_ulps_of_exp_on_the_whole_useful_range():
    x = np.linspace(-87.0, 0.0, 200_001).astype(np.float32)
    got = x.copy()
    kernels.exp_shifted_inplace(got, np.float32(0.0), np.empty(len(x), dtype=np.int32))
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - want) / want) < 2.5e-7
    shifted = np.array([3.0, 2.0, -200.0], dtype=np.float32)
    kernels.exp_shifted_inplace(shifted, np.float32(3.0), np.empty(3, dtype=np.int32))
    np.testing.assert_allclose(shifted[:2], [1.0, np.exp(-1.0)], rtol=2e-7)
    assert shifted[2] == 0.0  # below the range: exactly zero, never inf or nan


def test_the_parallel_kernel_loaded_from_the_disk_cache_still_runs_on_threads_after_the_serial_one_compiled_first(tmp_path):
    # Numba's disk cache keys code by function name and signature, not by
    # parallel=: with one name for both, the serial kernel compiled first was
    # loaded as the parallel one by every later process, which ran on one thread.
    serial = (
        "import numpy as np\n"
        "from symrnn.ops import kernels\n"
        "kernels.softmax_cross_entropy_inplace_serial(np.zeros((3, 40), np.float32), np.zeros(40, np.float32),"
        " np.zeros(3, np.int32), np.ones(3, np.float32), 1)\n"
    )
    parallel = (
        "import numpy as np, numba\n"
        "numba.config.THREADING_LAYER = 'workqueue'\n"
        "from symrnn.ops import kernels\n"
        "kernels.softmax_cross_entropy_inplace(np.zeros((300, 4000), np.float32), np.zeros(4000, np.float32),"
        " np.zeros(300, np.int32), np.ones(300, np.float32), 2)\n"
        "print(numba.threading_layer())\n"
    )
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))  # this checkout's symrnn
    for name, code in (("serial.py", serial), ("parallel.py", parallel), ("parallel_again.py", parallel)):
        (tmp_path / name).write_text(code)
        out = subprocess.run([sys.executable, str(tmp_path / name)], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[-1] == "workqueue"
