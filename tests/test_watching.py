"""Watching a run: progress bar only on terminals, loss-curve PNG, --help everywhere."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import train_callbacks  # noqa: E402  (scripts/train_callbacks.py)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_bar_is_off_when_output_is_not_a_terminal():
    assert train_callbacks.make_progress_bar(100, io.StringIO()) is None


def test_the_progress_bar_shows_examples_rate_and_eta_on_a_terminal():
    stream = FakeTerminal()
    bar = train_callbacks.make_progress_bar(100, stream)
    assert bar is not None
    bar.n = 40
    bar.set_postfix(loss="3.210", tokens_s="1234")
    bar.refresh()
    bar.close()
    text = stream.getvalue()
    assert "40/100" in text and "loss=3.210" in text and "tokens_s=1234" in text


def test_the_loss_curve_is_written_as_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional [plot] extra")
    from symrnn.plotting import write_loss_curve

    path = tmp_path / "model.loss.png"
    written = write_loss_curve(str(path), [[100, 5.0, 5.2], [200, 4.5, 4.8], [300, 4.2, None]], title="model.npz")
    assert written == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model.loss.png"]


def test_the_loss_curve_gets_a_new_files_usual_permissions_not_the_private_temporary_ones(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional [plot] extra")
    import os
    import stat

    from symrnn.plotting import write_loss_curve

    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "model.loss.png"
        write_loss_curve(str(path), [[100, 5.0, None], [200, 4.5, None]])
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("script", ["train.py", "generate.py", "evaluate.py", "benchmark.py"])
def test_every_script_answers_help(script):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
