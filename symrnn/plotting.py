"""Loss curves as PNG images (needs the optional matplotlib: ``pip install symrnn[plot]``)."""

from __future__ import annotations

from typing import Sequence

from symrnn.files import write_or_raise

__all__ = ["plot_available", "write_loss_curve"]


def plot_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_loss_curve(path: str, history: Sequence[Sequence], title: str = "") -> str:
    """Draw per-word training (and validation) loss against examples seen.

    Parameters
    ----------
    path : str
        PNG file to write; replaced atomically.
    history : sequence of ``[examples_seen, training_loss, validation_loss or None]``
    title : str

    Returns
    -------
    str : the path written

    Raises
    ------
    SymrnnError
        The path is a folder, a special or read-only file, or writing fails
        (any previous image is unchanged).
    """
    # A Figure of its own (no pyplot) draws through Agg for PNG without
    # matplotlib.use, which would change the backend for the whole process.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.subplots()
    seen = [row[0] for row in history]
    axes.plot(seen, [row[1] for row in history], marker="o", label="training (first 10,000 sentences)")
    valid = [(row[0], row[2]) for row in history if row[2] is not None]
    if valid:
        axes.plot([v[0] for v in valid], [v[1] for v in valid], marker="s", label="validation")
    axes.set_xlabel("examples seen")
    axes.set_ylabel("per-word loss (nats)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    write_or_raise(path, lambda handle: figure.savefig(handle, format="png"), "loss curve")
    return path
