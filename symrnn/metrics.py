"""The metrics file written beside a model: one CSV row per progress report (standard library only).

Columns: ``examples, tokens, seconds, training_loss, validation_loss,
learning_rate`` (losses in nats per token; an empty field where there is no
validation set or an older checkpoint did not record the figure). The whole
file is written again at every report, atomically, so it is always complete.
"""

from __future__ import annotations

import csv
import io
from typing import Sequence

from symrnn.files import write_or_raise

__all__ = ["METRICS_COLUMNS", "metrics_rows", "write_metrics"]

METRICS_COLUMNS = ("examples", "tokens", "seconds", "training_loss", "validation_loss", "learning_rate")


def metrics_rows(history: Sequence[Sequence]) -> list[list]:
    """Rows of the metrics file from a :class:`symrnn.training.TrainingState`'s history.

    Parameters
    ----------
    history : sequence of ``[examples, training_loss, validation_loss or None, tokens, seconds, learning_rate]``
        (rows of older checkpoints hold the first three only)

    Returns
    -------
    list of rows in the order of :data:`METRICS_COLUMNS`, None for unknown fields
    """
    rows = []
    for entry in history:
        examples, training, validation, *rest = list(entry) + [None] * (6 - len(entry))
        tokens, seconds, learning_rate = rest[:3]
        rows.append([examples, tokens, seconds, training, validation, learning_rate])
    return rows


def write_metrics(path: str, history: Sequence[Sequence]) -> str:
    """Write the metrics CSV (header and one row per report), replacing the file atomically.

    Returns
    -------
    str : the path written

    Raises
    ------
    SymrnnError
        The path is a folder, a special or read-only file, or writing fails
        (any previous file is unchanged).
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(METRICS_COLUMNS)
    for row in metrics_rows(history):
        writer.writerow(["" if value is None else (format(value, ".8g") if isinstance(value, float) else value) for value in row])
    data = text.getvalue().encode("utf-8")
    write_or_raise(path, lambda handle: handle.write(data), "metrics file")
    return path
