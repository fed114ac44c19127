"""Everything symrnn's scripts change for the whole process, in one place.

The library (``symrnn/``) never changes process-wide state: no thread counts,
no logging or warnings set-up, no Numba or JAX configuration, no allocator
settings. A script calls :func:`configure_process` once, right after reading
its settings and before any model is built. This module imports nothing of
symrnn, so the benchmark's measured child processes can use it without the
cost of importing NLTK.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import warnings

__all__ = ["BLAS_ENVIRONMENT", "blas_kernel_warning", "configure_process", "prepare_environment", "warn"]

#: Environment for NumPy's OpenBLAS, which reads it once, when NumPy is imported.
#: ``OPENBLAS_THREAD_TIMEOUT=20``: an idle worker thread spins for 2^20 cycles
#: (about 0.4 ms) before sleeping, instead of OpenBLAS's default 2^28 (about
#: 0.1 s, longer than a training step). A spinning worker held the second core
#: through the softmax kernel's and the Numba kernels' time, so that their
#: threads waited for it: measured on an AMD EPYC, 2 cores (numpy's OpenBLAS
#: 0.3.31, SkylakeX kernels, 2 threads),
#: the batch-64 GRU training step 37.2 -> 34.2 ms; batch-1 training and
#: generation unchanged within noise, where 2^16 already slowed the batch-1
#: generation step (66 -> 90 us) by waking sleeping workers too often.
BLAS_ENVIRONMENT = {"OPENBLAS_THREAD_TIMEOUT": "20"}

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters

#: OpenBLAS's names (``OPENBLAS_CORETYPE``) of its kernel families that use AVX-512.
_AVX512_CORETYPES = {"skylakex", "cooperlake", "sapphirerapids"}


def warn(message: str) -> None:
    """One warning line on stderr, named after the script: ``train.py: warning: ...``."""
    print(f"{os.path.basename(sys.argv[0])}: warning: {message}", file=sys.stderr, flush=True)


def blas_kernel_warning(cpu_flags=None) -> str | None:
    """A warning where ``OPENBLAS_CORETYPE`` holds OpenBLAS below an AVX-512 CPU's kernels, else None.

    Some machine images set ``OPENBLAS_CORETYPE=Haswell`` (and
    ``OPENBLAS_L2_SIZE``) for older OpenBLAS builds that crash or compute
    wrong results on newer CPUs; a current OpenBLAS then runs AVX2 kernels on
    an AVX-512 CPU, which halved numpy's float32 matrix products on an AMD
    EPYC (Zen 5). The scripts leave the variable as it is, as every setting
    of the user's, and say so: train.py after its settings, the benchmark on
    stderr.

    Parameters
    ----------
    cpu_flags : set of str, optional
        The CPU's feature flags (default: read from ``/proc/cpuinfo``; none elsewhere than Linux).
    """
    forced = os.environ.get("OPENBLAS_CORETYPE", "")
    if not forced or forced.lower() in _AVX512_CORETYPES:
        return None
    if "avx512f" not in (_cpu_flags() if cpu_flags is None else cpu_flags):
        return None
    return (f"OPENBLAS_CORETYPE={forced} holds OpenBLAS to its {forced} kernels on this AVX-512 CPU: matrix products "
            "may run at half speed. Older OpenBLAS builds need it on some CPUs; a current one chooses by itself "
            "(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...)")


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def configure_process(blas_threads: int = 0, backend: str = "cpu", verbose: bool = False) -> None:
    """Set up logging, warnings, threads, the allocator and (for ``backend="jax"``) JAX.

    Parameters
    ----------
    blas_threads : int
        Threads for the BLAS and symrnn's Numba kernels (0: leave each library's default).
    backend : str
        ``"jax"`` also configures JAX (full float32 products, persistent compile cache).
    verbose : bool
        Log at DEBUG instead of INFO.
    """
    setup_logging(verbose)
    # PyTensor warns once that its C code found no BLAS to link; matrix products
    # then run through NumPy's BLAS, which is what symrnn is measured with.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    keep_freed_memory_for_reuse()
    limit_blas_threads(blas_threads)
    if backend == "jax":
        configure_jax()


def prepare_environment() -> None:
    """Set :data:`BLAS_ENVIRONMENT` where the user has not, if NumPy is not loaded yet (else it is too late: nothing)."""
    if "numpy" in sys.modules:
        return
    for name, value in BLAS_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def setup_logging(verbose: bool = False) -> None:
    """Timestamped log lines on stderr; PyTensor's own chatter kept quiet."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("pytensor", "numba", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # JAX logs at INFO that it looked for TPUs and found none.
    logging.getLogger("jax").setLevel(logging.WARNING)


def keep_freed_memory_for_reuse() -> None:
    """Ask glibc's malloc to keep large freed blocks for reuse instead of unmapping them.

    A training step allocates (tokens x vocabulary) arrays of tens of MiB (logits
    and their gradient). By default glibc serves blocks that large with fresh
    ``mmap`` pages and unmaps them on free, so every step page-faults them in
    again; with batches of varying length (no reuse by shape) that cost as much
    as the arithmetic (measured: 1.7 s -> 0.74 s per batch-64 step on a busy
    2-core machine). Elsewhere than glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


def limit_blas_threads(threads: int) -> None:
    """Thread counts of the BLAS libraries and symrnn's Numba kernels.

    ``threads`` > 0: NumPy's BLAS (the big products of the graph), the
    softmax kernel's and the fused layers' row blocks run on ``threads``
    threads; 0 leaves them as they are (all cores). SciPy's own BLAS, which the fused layers' Numba
    kernels call, runs on one thread where it is a library of its own (the
    PyPI wheels ship one beside NumPy's): the kernels' per-step products are
    small, and two OpenBLAS thread pools whose workers
    spin after each product took the cores from each other (measured on 2
    cores: a batch-1 training step 16 ms with both pools on 2 threads, 3.3 ms
    with SciPy's on one).
    """
    import numba
    from threadpoolctl import threadpool_limits

    scipy_own = scipy_own_blas()  # loads SciPy's BLAS first, so that the limits reach it
    if threads > 0:
        threadpool_limits(limits=threads, user_api="blas")
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if scipy_own:
        scipy_own.limit(limits=1)


def scipy_own_blas():
    """threadpoolctl's controller of SciPy's own BLAS (the Numba kernels' products), or None where SciPy shares NumPy's.

    Loads it first (``scipy.linalg.cython_blas``): SciPy loads its BLAS only when asked.
    """
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    paths = [lib.filepath for lib in controller.lib_controllers
             if lib.user_api == "blas" and _inside_package(lib.filepath, scipy)]
    return controller.select(filepath=paths) if paths else None


def _inside_package(path: str, package) -> bool:
    """Whether ``path`` lies in ``package``'s folder or in the wheel's ``<package>.libs`` beside it."""
    root = os.path.dirname(os.path.realpath(package.__file__))
    folder = os.path.dirname(os.path.realpath(path))
    return folder == root or folder.startswith(root + os.sep) or folder == root + ".libs"


def configure_jax() -> None:
    """JAX's float32 products in full float32, and its persistent compile cache beside PyTensor's.

    On recent NVIDIA GPUs JAX's default precision rounds float32 matrix
    products' inputs to TF32 (10-bit mantissa), so the JAX backend's losses
    and updates drifted from the CPU backend's by 1e-3 relative. XLA's compiled
    programs go to JAX's persistent cache under PyTensor's compile directory,
    so a second run skips XLA compilation as the C backend skips C compilation.
    Either is left alone when the user chose it (``JAX_DEFAULT_MATMUL_PRECISION``,
    ``JAX_COMPILATION_CACHE_DIR``).
    """
    import jax
    import pytensor

    if not os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"):
        jax.config.update("jax_default_matmul_precision", "highest")
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", os.path.join(pytensor.config.compiledir, "jax"))
