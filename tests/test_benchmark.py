"""scripts/benchmark.py: its synthetic data, and one quick symrnn-only run end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.workload import MAX_LENGTH, MIN_LENGTH, WORD_DIM, make_sentences

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"

EXPECTED_METRICS = (
    "train_tokens_per_s_b1",
    "train_tokens_per_s_b64",
    "generate_sentences_per_s_b1",
    "generate_sentences_per_s_b64",
    "cold_start_s",
    "warm_start_s",
    "peak_memory_mib_train_b64",
    "output_layer_gflops",
    "output_layer_fraction_of_numpy_sgemm",
)


def test_sentences_have_realistic_lengths_and_are_deterministic():
    sentences = make_sentences(3200, seed=0)
    lengths = np.array([len(s) for s in sentences])
    assert len(sentences) == 3200
    assert lengths.min() >= MIN_LENGTH == 5
    assert lengths.max() <= MAX_LENGTH == 60
    assert 17 <= lengths.mean() <= 23
    ids = np.concatenate(sentences)
    assert ids.dtype == np.int32
    assert ids.min() >= 1 and ids.max() < WORD_DIM
    # Zipf-like: the most frequent word is far more common than a mid-rank one.
    counts = np.bincount(ids, minlength=WORD_DIM)
    assert counts[3] > 50 * max(1, counts[3 + 1000])

    again = make_sentences(3200, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(sentences, again))
    other = make_sentences(3200, seed=1)
    assert not all(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(sentences, other))


@pytest.mark.slow
def test_quick_symrnn_only_run_prints_json_with_positive_figures():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--skip-torch"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert {"machine", "config", "data", "loss_check", "metrics", "script_seconds"} <= set(report)
    assert report["config"]["quick"] is True
    assert report["machine"]["numpy_sgemm_gflops"] > 0
    assert report["loss_check"]["symrnn_loss"][0] > 0
    metrics = report["metrics"]
    assert set(EXPECTED_METRICS) <= set(metrics)
    for name in EXPECTED_METRICS:
        figure = metrics[name]
        assert figure["symrnn"] is not None and figure["symrnn"] > 0, name
        assert figure["pytorch"] is None and figure["ratio"] is None, name
    # The table is printed before the JSON line, with ratios shown as n/a.
    table = "\n".join(lines[:-1])
    assert "train tokens/s, batch 64" in table and "n/a" in table
