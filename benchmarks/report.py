"""The benchmark's tables: training tokens/s of every cell against every peer, and the GRU's other figures.
"""

from __future__ import annotations

from benchmarks.workload import LOSS_CHECK_RTOL

ROWS = [
    ("train_tokens_per_s_b1", "train tokens/s, batch 1", "{:.0f}"),
    ("train_tokens_per_s_b64", "train tokens/s, batch 64", "{:.0f}"),
    ("generate_sentences_per_s_b1", "generate sentences/s (20 tokens), batch 1", "{:.2f}"),
    ("generate_sentences_per_s_b64", "generate sentences/s (20 tokens), batch 64", "{:.1f}"),
    ("cold_start_s", "cold start to 1st step b64, s (*)", "{:.1f}"),
    ("warm_start_s", "warm start to 1st step b64, s (*)", "{:.1f}"),
    ("peak_memory_mib_train_b64", "peak memory training b64, MiB (*)", "{:.0f}"),
    ("peak_gpu_memory_mib_train_b64", "peak GPU memory training b64, MiB (*)", "{:.0f}"),
    ("output_layer_gflops", "output layer fwd+bwd GFLOP/s (b64 x T20)", "{:.1f}"),
    ("output_layer_fraction_of_numpy_sgemm", "output layer / machine sgemm rate", "{:.0%}"),
]


PEER_TITLES = {"eager": "PyTorch eager", "compiled": "torch.compile", "native": "nn.<cell>"}

_NATIVE_DIFFERS = {
    "gru": "nn.GRU resets after the recurrent product, tanh(W_in x + b_in + r * (W_hn h + b_hn)), "
           "the tutorial before it, tanh(U x + W (r * h)): same size, another function",
    "lstm": "nn.LSTM's gates are sigmoid, symrnn's LSTM here has {gate}",
}


def _cell_name(cell, gate):
    return f"{cell} ({gate})" if gate else cell


def _library_lines(libraries):
    lines = []
    s = libraries.get("symrnn")
    if s:
        lines.append(
            f"symrnn side: numpy {s.get('numpy')}, BLAS {s.get('blas')} ({s.get('blas_architecture')} kernels, "
            f"{s.get('blas_threading')}), {s.get('blas_threads')} BLAS threads; the fused layers' kernels call "
            f"{s.get('kernel_blas', '?')} ({s.get('kernel_blas_architecture', '?')} kernels), "
            f"{s.get('kernel_blas_threads', '?')} thread(s); {s.get('numba_threads', '?')} threads for the softmax kernel")
    t = libraries.get("pytorch")
    if t:
        lines.append(
            f"PyTorch side: torch {t.get('torch')}, BLAS {t.get('blas')}, oneDNN {t.get('onednn')}, "
            f"CPU kernels {t.get('cpu_capability')}, {t.get('torch_threads')} intra-op threads, "
            f"{t.get('torch_interop_threads')} inter-op threads")
    return lines


def _loss_check_lines(checks):
    if not checks:
        return ["loss check: not run"]
    lines = []
    for cell, check in checks.items():
        if check is None:
            lines.append(f"  {cell}: FAILED to run")
            continue
        name = _cell_name(cell, None if cell == "rnn" else check["gate"])
        text = f"  {name}: symrnn loss {check['symrnn_loss'][0]:.4f} -> {check['symrnn_loss'][1]:.4f}"
        parts = [f"{peer} {p['max_rel_diff']:.1e} {'PASS' if p['passed'] else 'FAIL'}"
                 for peer, p in check.get("peers", {}).items()]
        for peer, why in check.get("not_checked", {}).items():
            parts.append(f"{peer} not checked ({_NATIVE_DIFFERS.get(cell, why).format(gate=check['gate']) if peer == 'native' else why})")
        lines.append(text + ("; " + "; ".join(parts) if parts else "; no PyTorch peer run"))
    first = next((c for c in checks.values() if c), None)
    head = (f"loss check (same parameters, same batch T={first['batch_shape'][0]} B={first['batch_shape'][1]}, "
            f"{first['tokens']} tokens: losses before/after one RMSprop step, grad norms, step logits; "
            f"max relative difference to symrnn, PASS <= {LOSS_CHECK_RTOL:g}), only for peers computing symrnn's function:"
            if first else "loss check:")
    return [head] + lines


def _table(header, rows):
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    sep = "-+-".join("-" * w for w in widths)
    fmt_row = lambda r: " | ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    return [fmt_row(header), sep] + [fmt_row(r) for r in rows]


def _training_table(training, peers):
    """The training table: one row per cell and batch size."""
    header = ["cell (gate)", "batch", "symrnn"]
    header += [f"{PEER_TITLES[p]} (1st step)" if p == "compiled" else PEER_TITLES[p] for p in peers]
    header += ["best peer", "symrnn/best (**)"]
    rows, unavailable = [], []
    for row in training:
        cells = [_cell_name(row["cell"], row["gate"]), str(row["batch"]), _number(row["symrnn"], "{:.0f}")]
        for peer in peers:
            p = row["peers"].get(peer)
            if p is None:
                cells.append("n/a")
            elif p["tokens_per_s"] is None:
                cells.append("unavailable (***)")
                unavailable.append(f"{_cell_name(row['cell'], row['gate'])} batch {row['batch']}, {peer}: {p['unavailable']}")
            elif peer == "compiled":
                cells.append(f"{p['tokens_per_s']:.0f} ({p['first_step_s']:.0f} s)")
            else:
                cells.append(f"{p['tokens_per_s']:.0f}")
        cells.append(row["best_peer"] or "n/a")
        cells.append(_number(row["ratio"], "{:.2f}"))
        rows.append(cells)
    return _table(header, rows), unavailable


def _number(value, fmt):
    return "n/a" if value is None else fmt.format(value)


def format_report(report) -> str:
    m = report["machine"]
    cfg = report["config"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_start']} at start, {m.get('load_end')} at end; "
        f"Python {m['python']}, pytensor {m['pytensor']}, numpy {m['numpy']}, torch {m['torch'] or 'not installed'}"
    ]
    lines += _library_lines(report.get("libraries", {}))
    if m.get("load_1min_range"):
        low, high = m["load_1min_range"]
        lines.append(f"1-minute load average before each measurement: {low:.2f} .. {high:.2f} on {m['cores']} cores")
    rate = m.get("numpy_sgemm_gflops")
    what = "CUDA float32 matmul 8192^3" if cfg.get("device") == "gpu" else "numpy float32 matmul 2048^3"
    lines.append(f"{what}: {rate:.1f} GFLOP/s" if rate else f"{what}: failed")
    if m.get("gpu") or m.get("jax"):
        lines.append(f"GPU: {m.get('gpu') or 'none'}; jax {m.get('jax')}")
    lines.append(f"threads: --threads {cfg['threads']} (default: each library's own, all cores)")
    d = report["data"]
    lines.append(
        f"model: V={cfg['word_dim']} D={cfg['embedding_dim']} H={cfg['hidden_dim']} x{cfg['num_layers']}, "
        f"gates {cfg['gate']} (symrnn and the hand-written peers), float32, RMSprop; symrnn backend={cfg['backend']} "
        f"implementation={cfg['implementation']}; device={cfg.get('device', 'cpu')}"
        + (f"; every batch padded to a multiple of {cfg['bucket_width']} steps (JAX static shapes)" if cfg.get("bucket_width") else "")
    )
    lines.append(
        f"data: {d['sentences']} sentences, lengths {d['min_length']}..{d['max_length']} mean {d['mean_length']:.1f}; "
        f"batch-64 T: {[s[0] for s in d['batch64_shapes']]}"
    )
    lines += _loss_check_lines(report.get("loss_check"))
    if report.get("torch_note"):
        lines.append(f"note: {report['torch_note']}")

    training = report.get("training", [])
    peers = [p for p in cfg.get("peers", []) if any(p in row["peers"] for row in training)]
    unavailable = []
    if training:
        lines += ["", "Training tokens/s, every cell (higher is better)"]
        table, unavailable = _training_table(training, peers)
        lines += table

    lines += ["", "The tutorial's GRU: symrnn against the eager PyTorch peer (the same function)"]
    header = ("metric", "symrnn", "PyTorch", "symrnn/PyTorch (**)")
    rows = []
    for key, label, fmt in ROWS:
        if key not in report["metrics"]:
            continue
        x = report["metrics"][key]
        rows.append((label, _number(x["symrnn"], fmt), _number(x["pytorch"], fmt), _number(x["ratio"], "{:.2f}")))
    lines += _table(header, rows)
    lines.append("")
    lines.append("(*)  lower is better; cold = empty PyTensor compile directory, warm = the same directory again;")
    lines.append("     PyTorch has no compile cache: both of its figures are process start to the first step.")
    lines.append("(**) > 1 means symrnn is better: symrnn/PyTorch for rates, PyTorch/symrnn for seconds and MiB;")
    lines.append("     best peer = the fastest PyTorch peer that ran for that row.")
    if training:
        lines.append("Peers: PyTorch eager = symrnn's equations and parameter layout by hand, time loop in Python;")
        lines.append("     torch.compile = the same with the cell step and the output layer's loss compiled (the loop stays in")
        lines.append("     Python: compiling it would unroll every step and recompile per sentence length); its 1st step,")
        lines.append("     in brackets, is where it compiles, from an empty cache; nn.<cell> = nn.GRU / nn.LSTM (oneDNN) /")
        lines.append("     nn.RNN (ATen's C++ loop), sigmoid gates, hidden biases held at zero. nn.GRU is a speed peer of the")
        lines.append("     same size computing another function, as is nn.LSTM beside hard_sigmoid gates: the loss check covers")
        lines.append("     only the peers computing symrnn's function.")
    for text in unavailable:
        lines.append(f"(***) {text}")
    lines.append("Medians over repetitions; a busy machine (see load average) makes every figure noisy.")
    for failure in report.get("failures", []):
        lines.append(f"FAILURE: {failure}")
    lines.append(f"benchmark script: {report['script_seconds']:.0f} s wall")
    return "\n".join(lines)


def _stream_check_lines(check, cfg):
    """The step-by-step check: both sides' losses per window, their largest relative difference, step times."""
    c = cfg["check"]
    if check is None:
        return [f"step-by-step check ({c['layers']} x {c['hidden']}): FAILED to run (see FAILURE)"]
    sym, pt = check["symrnn"], check["pytorch"]
    lines = [
        f"step-by-step check: {c['layers']} layers of {c['hidden']}, the first {check['windows']} windows "
        f"(T={check['window_shape'][0]} B={check['window_shape'][1]}), the same initial values on both sides:",
    ]
    header = ("step", "symrnn loss", "nn.LSTM loss", "rel. diff", "symrnn ms", "nn.LSTM ms")
    rows = [(str(i + 1), f"{a:.4f}", f"{b:.4f}", f"{abs(a - b) / max(abs(a), abs(b)):.1e}",
             f"{1000 * ta:.0f}", f"{1000 * tb:.0f}")
            for i, (a, b, ta, tb) in enumerate(zip(sym["loss"], pt["loss"], sym["step_s"], pt["step_s"]))]
    lines += ["  " + line for line in _table(header, rows)]
    lines.append(
        f"  max relative difference: losses {check['max_rel_diff_loss']:.1e}, gradient norms (before clipping) "
        f"{check['max_rel_diff_grad_norm']:.1e}; {'PASS' if check['passed'] else 'FAIL'} (<= {c['rtol']:g}); "
        f"ms per step, median of steps 2..{check['windows']}: symrnn {sym['median_step_ms']:.0f}, "
        f"nn.LSTM {pt['median_step_ms']:.0f}")
    return lines


def format_stream_report(report) -> str:
    """The stream section: the check and the table of ms per step and peak memory per configuration."""
    m, cfg = report["machine"], report["config"]
    plan = cfg["plan"]
    lines = [
        f"Stream training (char-rnn style, torch-rnn's benchmark): {cfg['cell'].upper()} with {cfg['gate']} gates, "
        f"symrnn against PyTorch's nn.LSTM (the same function and parameters)",
        f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_start']} at start, {m.get('load_end')} at end"
        + (f" (1-minute {m['load_1min_range'][0]:.2f} .. {m['load_1min_range'][1]:.2f} before the children)"
           if m.get("load_1min_range") else ""),
        f"data: the embedded corpus's {cfg['characters']} characters ({cfg['vocabulary']} symbols) as "
        f"{cfg['batch']} parallel streams, windows of {cfg['seq_length']}, each layer's final states carried into the "
        f"next window on both sides",
        f"model: embedding {cfg['embedding_dim']} (at every size), float32; RMSprop lr {cfg['learning_rate']:g} decay "
        f"{cfg['decay']:g} eps {cfg['epsilon']:g}, gradient clipped to global norm {cfg['grad_clip']:g}, loss summed "
        f"over the window; symrnn backend={cfg['backend']}; threads {cfg['threads']}",
    ]
    if report.get("torch_note"):
        lines.append(f"note: {report['torch_note']}")
    if "check" in report:
        lines += _stream_check_lines(report["check"], cfg)
    else:
        lines.append("step-by-step check: not run (no PyTorch side)")
    lines += ["", f"ms per training step (forward + backward + update; median of {plan['steps']} after "
                  f"{plan['warmup']} warm-up) and peak memory (ru_maxrss of each child process)"]
    header = ("layers", "hidden", "symrnn ms", "nn.LSTM ms", "nn.LSTM/symrnn (**)", "symrnn MiB", "nn.LSTM MiB",
              "nn.LSTM/symrnn (**)")
    rows = []
    for row in report.get("rows", []):
        s, p = row.get("symrnn") or {}, row.get("pytorch") or {}
        cells = [str(row["layers"]), str(row["hidden"])]
        for key, fmt in (("median_step_ms", "{:.0f}"), ("peak_rss_mib", "{:.0f}")):
            a, b = s.get(key), p.get(key)
            cells += [_number(a, fmt), _number(b, fmt), _number(b / a if a and b else None, "{:.2f}")]
        rows.append(cells)
    lines += _table(header, rows)
    lines.append("(**) > 1 means symrnn is better (faster, less memory). symrnn's memory includes PyTensor's "
                 "compilation; a busy machine (see load average) makes every figure noisy.")
    for failure in report.get("failures", []):
        lines.append(f"FAILURE: {failure}")
    lines.append(f"stream section: {report['script_seconds']:.0f} s wall")
    return "\n".join(lines)
