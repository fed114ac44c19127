"""The benchmark's table.
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


def format_report(report) -> str:
    m = report["machine"]
    lines = []
    threads = report.get("threads", {})
    thread_text = "; ".join(
        f"{side}: " + ", ".join(f"{k}={v}" for k, v in t.items()) for side, t in threads.items() if t
    )
    lines.append(
        f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_start']} at start, {m.get('load_end')} at end; "
        f"Python {m['python']}, pytensor {m['pytensor']}, numpy {m['numpy']}, torch {m['torch'] or 'not installed'}"
    )
    if m.get("load_1min_range"):
        low, high = m["load_1min_range"]
        lines.append(f"1-minute load average before each measurement: {low:.2f} .. {high:.2f} on {m['cores']} cores")
    rate = m.get("numpy_sgemm_gflops")
    what = "CUDA float32 matmul 8192^3" if report["config"].get("device") == "gpu" else "numpy float32 matmul 2048^3"
    lines.append(f"{what}: {rate:.1f} GFLOP/s" if rate else f"{what}: failed")
    if m.get("gpu") or m.get("jax"):
        lines.append(f"GPU: {m.get('gpu') or 'none'}; jax {m.get('jax')}")
    lines.append(f"threads: {thread_text or 'n/a'}  (options: --threads {report['config']['threads']})")
    cfg = report["config"]
    d = report["data"]
    lines.append(
        f"model: V={cfg['word_dim']} D={cfg['embedding_dim']} H={cfg['hidden_dim']} x{cfg['num_layers']} GRU hard_sigmoid, "
        f"float32, RMSprop; symrnn backend={cfg['backend']} implementation={cfg['implementation']}; "
        f"device={cfg.get('device', 'cpu')}"
        + (f"; every batch padded to a multiple of {cfg['bucket_width']} steps (JAX static shapes)" if cfg.get("bucket_width") else "")
    )
    lines.append(
        f"data: {d['sentences']} sentences, lengths {d['min_length']}..{d['max_length']} mean {d['mean_length']:.1f}; "
        f"batch-64 T: {[s[0] for s in d['batch64_shapes']]}"
    )
    check = report.get("loss_check")
    if check is None:
        lines.append("loss check: FAILED to run")
    elif "pytorch_loss" in check:
        lines.append(
            f"loss check (same params, same batch T={check['batch_shape'][0]} B={check['batch_shape'][1]}, "
            f"{check['tokens']} tokens): symrnn {check['symrnn_loss'][0]:.4f} -> {check['symrnn_loss'][1]:.4f}, "
            f"PyTorch {check['pytorch_loss'][0]:.4f} -> {check['pytorch_loss'][1]:.4f} (before/after one RMSprop step); "
            f"max relative difference (losses, grad norms, step logits) {check['max_rel_diff']:.1e} "
            f"{'<=' if check['passed'] else '>'} {LOSS_CHECK_RTOL:g}: {'PASS' if check['passed'] else 'FAIL'}"
        )
    else:
        lines.append(f"loss check: symrnn loss {check['symrnn_loss'][0]:.4f} on {check['tokens']} tokens; PyTorch side not run")
    if report.get("torch_note"):
        lines.append(f"note: {report['torch_note']}")
    lines.append("")
    header = ("metric", "symrnn", "PyTorch", "symrnn/PyTorch (**)")
    rows = []
    for key, label, fmt in ROWS:
        if key not in report["metrics"]:
            continue
        x = report["metrics"][key]
        cell = lambda v: "n/a" if v is None else fmt.format(v)  # noqa: E731
        rows.append((label, cell(x["symrnn"]), cell(x["pytorch"]), "n/a" if x["ratio"] is None else f"{x['ratio']:.2f}"))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    sep = "-+-".join("-" * w for w in widths)
    fmt_row = lambda r: " | ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    lines += [fmt_row(header), sep] + [fmt_row(r) for r in rows]
    lines.append("")
    lines.append("(*)  lower is better; cold = empty PyTensor compile directory, warm = the same directory again;")
    lines.append("     PyTorch has no compile cache: both of its figures are process start to the first step.")
    lines.append("(**) > 1 means symrnn is better: symrnn/PyTorch for rates, PyTorch/symrnn for seconds and MiB.")
    lines.append("Medians over repetitions; a busy machine (see load average) makes every figure noisy.")
    for failure in report.get("failures", []):
        lines.append(f"FAILURE: {failure}")
    lines.append(f"benchmark script: {report['script_seconds']:.0f} s wall")
    return "\n".join(lines)
