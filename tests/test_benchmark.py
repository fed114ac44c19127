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
    assert report["loss_check"]["gru"]["symrnn_loss"][0] > 0
    metrics = report["metrics"]
    assert set(EXPECTED_METRICS) <= set(metrics)
    for name in EXPECTED_METRICS:
        figure = metrics[name]
        assert figure["symrnn"] is not None and figure["symrnn"] > 0, name
        assert figure["pytorch"] is None and figure["ratio"] is None, name
    # The table is printed before the JSON line, with ratios shown as n/a.
    table = "\n".join(lines[:-1])
    assert "train tokens/s, batch 64" in table and "n/a" in table


# ------------------------------------------------ the PyTorch peers' models
SIZES = dict(word_dim=23, embedding_dim=5, hidden_dim=6)  # tiny; two layers as in the benchmark
LENGTHS = (7, 5, 3)  # right-padded to T=7: every padded position is masked


def _tiny_batch():
    rng = np.random.default_rng(3)
    T, B = max(LENGTHS), len(LENGTHS)
    mask = (np.arange(T)[:, None] < np.array(LENGTHS)[None, :]).astype(np.float64)
    ids = (rng.integers(1, SIZES["word_dim"], size=(T, B)) * mask).astype(np.int32)
    targets = (rng.integers(1, SIZES["word_dim"], size=(T, B)) * mask).astype(np.int32)
    return ids, targets, mask


def _symrnn_figures(cell, gate):
    """symrnn's float64 loss, gradients by parameter name and one step's logits, from seeded values."""
    import pytensor
    import pytensor.tensor as pt

    from models.language_model import RNNLanguageModel

    model = RNNLanguageModel(*SIZES.values(), num_layers=2, cell=cell, gate=gate, dtype="float64", seed=5)
    # Zero biases (the initial ones) would hide a mix-up of bias blocks: random ones.
    rng = np.random.default_rng(7)
    values = model.get_values()
    model.set_values({k: rng.uniform(-0.5, 0.5, v.shape) if k.endswith("/b") else v for k, v in values.items()})
    ids, targets, mask = pt.imatrix("ids"), pt.imatrix("targets"), pt.dmatrix("mask")
    total, _ = model.loss(ids, targets, mask)
    names = list(model.params)
    grads = pytensor.grad(total, [model.params[n] for n in names])
    loss_and_grads = pytensor.function([ids, targets, mask], [total, *grads], mode=model.mode)(*_tiny_batch())
    step_ids = np.array([4, 9, 1], dtype=np.int32)
    logits = model.compile_step()(step_ids, *model.initial_state_values(3))[0]
    return model, float(loss_and_grads[0]), dict(zip(names, loss_and_grads[1:])), step_ids, logits


def _torch_loss_and_logits(torch_model, step_ids):
    import torch

    ids, targets, mask = (torch.from_numpy(a) for a in _tiny_batch())
    loss, _ = torch_model.loss(ids.long(), targets.long(), mask)
    loss.backward()
    states = torch_model.initial_states(len(step_ids), "cpu")
    logits = torch_model.step(torch.from_numpy(step_ids).long(), states)[0]
    return float(loss.detach()), logits.numpy()


def _native_weight(matrix, cell):
    """symrnn's (rows, k*H) blocks as PyTorch's (k*H, rows) weight: nn.LSTM orders [i|f|g|o], symrnn [i|f|o|g]."""
    order = {"lstm": (0, 1, 3, 2), "rnn": (0,)}[cell]
    blocks = np.split(matrix, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1).T


@pytest.mark.parametrize("cell,gate", [("gru", "hard_sigmoid"), ("lstm", "hard_sigmoid"), ("lstm", "sigmoid"),
                                       ("rnn", "hard_sigmoid")])
def test_hand_written_pytorch_model_computes_symrnns_loss_gradients_and_logits(cell, gate):
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install .[bench])")
    from benchmarks.torch_models import HandWrittenLanguageModel

    model, loss, grads, step_ids, logits = _symrnn_figures(cell, gate)
    torch_model = HandWrittenLanguageModel(model.get_values(), cell, gate)
    assert torch_model.W_out.dtype == torch_model.embedding.dtype  # float64 kept
    torch_loss, torch_logits = _torch_loss_and_logits(torch_model, step_ids)
    np.testing.assert_allclose(torch_loss, loss, rtol=1e-10)
    np.testing.assert_allclose(torch_logits, logits, rtol=1e-9, atol=1e-12)
    torch_grads = {"embedding": torch_model.embedding.grad, "output/W": torch_model.W_out.grad,
                   "output/b": torch_model.b_out.grad}
    for l in range(2):
        torch_grads.update({f"layer{l}/W_x": torch_model.W_x[l].grad, f"layer{l}/W_h": torch_model.W_h[l].grad,
                            f"layer{l}/b": torch_model.b[l].grad})
    assert set(torch_grads) == set(grads)
    for name, grad in grads.items():
        assert np.abs(grad).max() > 0, name
        np.testing.assert_allclose(torch_grads[name].numpy(), grad, rtol=1e-8, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_native_pytorch_layer_computes_symrnns_function_where_the_loss_check_says_so(cell):
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install .[bench])")
    from benchmarks.peers import native_computes_symrnn_function
    from benchmarks.torch_models import NativeLanguageModel

    assert native_computes_symrnn_function(cell, "sigmoid")
    model, loss, grads, step_ids, logits = _symrnn_figures(cell, "sigmoid")
    native = NativeLanguageModel(model.get_values(), cell)
    torch_loss, torch_logits = _torch_loss_and_logits(native, step_ids)
    np.testing.assert_allclose(torch_loss, loss, rtol=1e-10)
    np.testing.assert_allclose(torch_logits, logits, rtol=1e-9, atol=1e-12)
    for l in range(2):
        for torch_name, name in ((f"weight_ih_l{l}", f"layer{l}/W_x"), (f"weight_hh_l{l}", f"layer{l}/W_h")):
            np.testing.assert_allclose(getattr(native.rnn, torch_name).grad.numpy(), _native_weight(grads[name], cell),
                                       rtol=1e-8, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(getattr(native.rnn, f"bias_ih_l{l}").grad.numpy(),
                                   _native_weight(grads[f"layer{l}/b"][None, :], cell)[:, 0], rtol=1e-8, atol=1e-12)
        assert not getattr(native.rnn, f"bias_hh_l{l}").requires_grad  # symrnn has no second bias
    np.testing.assert_allclose(native.embedding.grad.numpy(), grads["embedding"], rtol=1e-8, atol=1e-12)


def test_native_gru_is_a_peer_of_the_same_size_computing_another_function():
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install .[bench])")
    from benchmarks.peers import native_computes_symrnn_function
    from benchmarks.torch_models import NativeLanguageModel

    assert not native_computes_symrnn_function("gru", "sigmoid")
    assert not native_computes_symrnn_function("lstm", "hard_sigmoid")
    model, loss, _, step_ids, _ = _symrnn_figures("gru", "sigmoid")
    native = NativeLanguageModel(model.get_values(), "gru")
    trainable = sum(p.numel() for p in native.parameters() if p.requires_grad)
    assert trainable == sum(v.size for v in model.get_values().values())
    torch_loss, _ = _torch_loss_and_logits(native, step_ids)
    assert abs(torch_loss - loss) > 1e-6 * abs(loss)


# ------------------------------------------------------------------ the table
def _fake_report():
    from benchmarks.runner import training_row

    def train(rate, first=None):
        return {"tokens_per_s": rate, "first_step_s": first}

    training = [
        training_row("gru", 1, {"symrnn": train(900.0), "eager": train(700.0), "compiled": train(800.0, 21.4),
                                "native": train(1500.0)}),
        training_row("lstm", 64, {"symrnn": train(3000.0), "eager": train(4000.0),
                                  "compiled": {"unavailable": "torch.compile failed: InvalidCxxCompiler: no g++"},
                                  "native": None}),
        training_row("rnn", 1, {"symrnn": None, "eager": train(600.0)}),
    ]
    check = {"gate": "hard_sigmoid", "batch_shape": [33, 64], "tokens": 2072, "symrnn_loss": [18621.53, 18600.98]}
    metric = {"symrnn": 2.0, "pytorch": 4.0, "ratio": 2.0}
    return {
        "machine": {"cpu": "Fake CPU 9000", "cores": 2, "load_start": [1.0], "load_end": [1.5], "python": "3.11",
                    "pytensor": "3.0.7", "numpy": "2.4", "torch": "2.13.0", "numpy_sgemm_gflops": 150.0,
                    "load_1min_range": [1.0, 2.0]},
        "config": {"threads": "default", "word_dim": 8000, "embedding_dim": 48, "hidden_dim": 128, "num_layers": 2,
                   "gate": "hard_sigmoid", "backend": "cpu", "implementation": "auto", "device": "cpu",
                   "peers": ["eager", "compiled", "native"]},
        "libraries": {
            "symrnn": {"numpy": "2.4", "blas": "openblas 0.3.31", "blas_architecture": "Haswell",
                       "blas_threading": "pthreads", "blas_threads": 2, "numba_threads": 2},
            "pytorch": {"torch": "2.13.0", "blas": "mkl 2024.2", "onednn": "v3.12.0", "cpu_capability": "AVX512",
                        "torch_threads": 2, "torch_interop_threads": 2},
        },
        "data": {"sentences": 3200, "min_length": 5, "max_length": 60, "mean_length": 20.1, "batch64_shapes": [[33, 64]]},
        "loss_check": {
            "gru": {**check, "peers": {"eager": {"max_rel_diff": 3e-6, "passed": True}},
                    "not_checked": {"native": "computes another function (speed peer only)"}},
            "rnn": {**check, "gate": "hard_sigmoid", "peers": {"native": {"max_rel_diff": 2e-3, "passed": False}},
                    "not_checked": {}},
        },
        "training": training,
        "metrics": {"train_tokens_per_s_b64": metric, "cold_start_s": {**metric, "pytorch": None, "ratio": None}},
        "failures": ["rnn loss check failed (> 0.0001): native 2.00e-03"],
        "script_seconds": 432.0,
    }


def test_training_row_names_the_fastest_peer_that_ran_and_the_ratio_to_it():
    gru, lstm, rnn = _fake_report()["training"]
    assert (gru["best_peer"], gru["best_peer_tokens_per_s"], gru["ratio"]) == ("native", 1500.0, 900.0 / 1500.0)
    assert (lstm["best_peer"], lstm["ratio"]) == ("eager", 3000.0 / 4000.0)
    assert lstm["peers"]["compiled"]["unavailable"].startswith("torch.compile failed")
    assert lstm["peers"]["native"]["unavailable"] == "failed (see FAILURE)"
    assert rnn["best_peer"] == "eager" and rnn["ratio"] is None  # symrnn's side failed
    assert rnn["gate"] is None and gru["gate"] == "hard_sigmoid"


def test_report_shows_every_cell_and_peer_with_libraries_checks_and_unavailable_peers():
    from benchmarks.report import format_report

    text = format_report(_fake_report())
    lines = text.splitlines()
    assert "Fake CPU 9000" in lines[0]
    assert any(l.startswith("symrnn side:") and "openblas 0.3.31" in l and "Haswell" in l and "2 BLAS threads" in l
               for l in lines)
    assert any(l.startswith("PyTorch side:") and "mkl 2024.2" in l and "oneDNN v3.12.0" in l and "2 intra-op" in l
               for l in lines)
    header = next(l for l in lines if l.startswith("cell (gate)"))
    assert [c.strip() for c in header.split("|")] == [
        "cell (gate)", "batch", "symrnn", "PyTorch eager", "torch.compile (1st step)", "nn.<cell>", "best peer",
        "symrnn/best (**)"]
    rows = {l.split("|")[0].strip() + " " + l.split("|")[1].strip(): [c.strip() for c in l.split("|")]
            for l in lines if l.startswith(("gru (", "lstm (", "rnn "))}
    assert rows["gru (hard_sigmoid) 1"][2:] == ["900", "700", "800 (21 s)", "1500", "native", "0.60"]
    assert rows["lstm (hard_sigmoid) 64"][2:] == ["3000", "4000", "unavailable (***)", "unavailable (***)", "eager", "0.75"]
    assert rows["rnn 1"][2:] == ["n/a", "600", "n/a", "n/a", "eager", "n/a"]
    assert "(***) lstm (hard_sigmoid) batch 64, compiled: torch.compile failed: InvalidCxxCompiler: no g++" in lines
    gru_check = next(l for l in lines if l.startswith("  gru (hard_sigmoid): symrnn loss 18621.5300 -> 18600.9800"))
    assert "eager 3.0e-06 PASS" in gru_check and "native not checked (nn.GRU resets after the recurrent product" in gru_check
    assert "native 2.0e-03 FAIL" in next(l for l in lines if l.startswith("  rnn: "))
    assert "FAILURE: rnn loss check failed (> 0.0001): native 2.00e-03" in lines
    tutorial = lines.index("The tutorial's GRU: symrnn against the eager PyTorch peer (the same function)")
    assert [c.strip() for c in lines[tutorial + 3].split("|")] == ["train tokens/s, batch 64", "2", "4", "2.00"]
    assert [c.strip() for c in lines[tutorial + 4].split("|")][2:] == ["n/a", "n/a"]
    assert "only the peers computing symrnn's function." in text


@pytest.mark.parametrize("option,value", [("--cells", "gru,lstn"), ("--peers", "eager,jit"), ("--cells", ",")])
def test_unknown_cells_or_peers_are_one_error_line_with_exit_status_2(option, value, capsys):
    from scripts.benchmark import parse_arguments

    with pytest.raises(SystemExit) as exit_info:
        parse_arguments([option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in error and "comma-separated list of" in error and repr(value) in error


def test_cells_and_peers_default_to_all_and_keep_the_order_given():
    from scripts.benchmark import parse_arguments

    options = parse_arguments([])
    assert (options.cells, options.peers) == (["gru", "lstm", "rnn"], ["eager", "compiled", "native"])
    options = parse_arguments(["--cells", "rnn,gru,rnn", "--peers", "native"])
    assert (options.cells, options.peers) == (["rnn", "gru"], ["native"])


# ------------------------------------------------------------ the stream section
def _tiny_stream_windows():
    """Five consecutive windows (T 10, B 4) of a seeded stream over 20 symbols, cut by symrnn.streams."""
    from benchmarks.stream import window_arrays
    from benchmarks.workload import load_batches

    ids = np.random.default_rng(0).integers(0, 20, size=4 * 60).astype(np.int32)
    return load_batches(window_arrays(ids, 5, batch=4, seq=10), "stream")


def test_stream_training_in_pytorch_has_symrnns_losses_step_by_step_with_states_carried():
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install .[bench])")
    from benchmarks.stream import SymrnnStreamSide, TorchStreamSide, initial_values, relative_differences, train_steps

    windows = _tiny_stream_windows()
    assert all(np.array_equal(a[1][-1], b[0][0]) for a, b in zip(windows, windows[1:]))  # the streams continue
    values = initial_values(20, 16, 1, seed=3, embedding=8, dtype="float64")
    symrnn_side = SymrnnStreamSide(values)
    symrnn_side.compile_train()
    symrnn = train_steps(symrnn_side, windows)
    pytorch = train_steps(TorchStreamSide(values), windows)
    assert len(symrnn["loss"]) == len(pytorch["loss"]) == 5
    # Norms on both sides of the clipping limit: both branches of the rule are compared.
    assert min(symrnn["grad_norm"]) < 5.0 < max(symrnn["grad_norm"])
    assert relative_differences(symrnn["loss"], pytorch["loss"]).max() < 1e-12
    assert relative_differences(symrnn["grad_norm"], pytorch["grad_norm"]).max() < 1e-12
    # The comparison sees a side that does not carry the states.
    forgetful = TorchStreamSide(values)
    losses = []
    for window in windows:
        forgetful.reset_states(4)
        losses.append(forgetful.train_step(*window)[0])
    assert losses[0] == pytest.approx(pytorch["loss"][0], rel=1e-12)
    assert relative_differences(symrnn["loss"], losses).max() > 1e-6


def test_character_ids_number_the_sorted_distinct_characters():
    from benchmarks.stream import character_ids

    ids, alphabet = character_ids("abca\né")
    assert alphabet == "\nabcé"
    assert ids.dtype == np.int32 and ids.tolist() == [1, 2, 3, 1, 0, 4]


def _fake_stream_report():
    from benchmarks.stream import STREAM_PLANS

    losses = [100.0, 90.0, 80.0]
    side = {"loss": losses, "grad_norm": [9.0, 8.0, 7.0], "step_s": [0.5, 0.04, 0.05], "median_step_ms": 45.0}
    return {
        "machine": {"cpu": "Fake CPU 9000", "cores": 2, "load_start": [1.0], "load_end": [2.0],
                    "load_1min_range": [1.0, 2.0]},
        "config": {"cell": "lstm", "gate": "sigmoid", "vocabulary": 98, "characters": 1000, "embedding_dim": 64,
                   "batch": 50, "seq_length": 50, "learning_rate": 2e-3, "decay": 0.95, "epsilon": 1e-6,
                   "grad_clip": 5.0, "backend": "c", "threads": 1, "plan": STREAM_PLANS["quick"],
                   "check": {"layers": 2, "hidden": 128, "steps": 3, "rtol": 1e-4}},
        "check": {"windows": 3, "window_shape": [50, 50], "symrnn": side,
                  "pytorch": {**side, "loss": [100.0, 90.0, 80.008], "median_step_ms": 15.0},
                  "max_rel_diff_loss": 1e-4, "max_rel_diff_grad_norm": 0.0, "passed": True},
        "rows": [{"layers": 1, "hidden": 128, "symrnn": {"median_step_ms": 20.0, "peak_rss_mib": 300.0},
                  "pytorch": {"median_step_ms": 10.0, "peak_rss_mib": 330.0}},
                 {"layers": 3, "hidden": 512, "symrnn": None, "pytorch": {"median_step_ms": 99.0, "peak_rss_mib": 400.0}}],
        "failures": [], "script_seconds": 61.0,
    }


def test_stream_report_shows_the_check_step_by_step_and_ms_and_memory_per_configuration():
    from benchmarks.report import format_stream_report

    lines = format_stream_report(_fake_stream_report()).splitlines()
    check = [[c.strip() for c in l.split("|")] for l in lines if l.startswith("  ") and "|" in l]
    assert check[0] == ["step", "symrnn loss", "nn.LSTM loss", "rel. diff", "symrnn ms", "nn.LSTM ms"]
    assert check[1:] == [["1", "100.0000", "100.0000", "0.0e+00", "500", "500"],
                         ["2", "90.0000", "90.0000", "0.0e+00", "40", "40"],
                         ["3", "80.0000", "80.0080", "1.0e-04", "50", "50"]]
    summary = next(l for l in lines if "max relative difference: losses 1.0e-04" in l)
    assert "PASS (<= 0.0001)" in summary and "symrnn 45, nn.LSTM 15" in summary
    rows = {tuple(c.strip() for c in l.split("|")[:2]): [c.strip() for c in l.split("|")[2:]]
            for l in lines if l[:1].isdigit()}
    assert rows[("1", "128")] == ["20", "10", "0.50", "300", "330", "1.10"]
    assert rows[("3", "512")] == ["n/a", "99", "n/a", "n/a", "400", "n/a"]
    assert lines[-1] == "stream section: 61 s wall"


def test_stream_options_select_the_stream_section_and_refuse_the_gpu(capsys):
    from scripts.benchmark import parse_arguments

    assert (parse_arguments([]).stream, parse_arguments([]).stream_only) == (False, False)
    assert parse_arguments(["--stream"]).stream and parse_arguments(["--stream-only"]).stream_only
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(["--stream-only", "--device", "gpu"])
    assert exit_info.value.code == 2
    assert "the stream section runs on the CPU" in capsys.readouterr().err.strip().splitlines()[-1]
