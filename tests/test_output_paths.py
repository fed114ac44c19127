"""Nothing lost, ever: every output path is checked before training, and no file is replaced by mistake.

Most runs here are refused before any data is read or anything compiled (about a
second each); the few that train share one module fixture and run side by side.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from symrnn.checkpoint import load_checkpoint, save_checkpoint
from symrnn.config import Settings
from symrnn.errors import CheckpointError, ConfigError, SymrnnError
from symrnn.paths import check_output_path, replace_problem
from symrnn.training import TrainingState
from tests.test_scripts import GENERATE, TRAIN, assert_one_line_error, command, run_all, small_env, write_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import train as train_script  # noqa: E402  (scripts/train.py)


def fingerprint(path: Path):
    """Bytes, mode and modification time: what 'untouched' means here."""
    info = os.lstat(path)
    content = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
    return content, info.st_mode, info.st_mtime_ns


def run_train(folder: Path, **env):
    settings = small_env(folder, **env)
    for name in [name for name, value in env.items() if value is None]:
        del settings[name]
    return subprocess.run(command(TRAIN), env=settings, cwd=folder, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def folder(tmp_path):
    write_corpus(tmp_path / "corpus.txt")
    return tmp_path


def refuse(folder: Path, *needles, **env):
    """Run train.py, expect a refusal before any work, and check no file in `folder` changed or appeared."""
    before = {path: fingerprint(path) for path in folder.rglob("*")}
    result = run_train(folder, **env)
    assert_one_line_error(result, *needles)
    assert result.stdout == ""
    assert {path: fingerprint(path) for path in folder.rglob("*")} == before
    return result


def fake_resumable_checkpoint(path: Path) -> Path:
    """The smallest file train.py accepts for RESUME, with the settings of :func:`small_env`:
    enough for everything checked before training."""
    save_checkpoint(path, {"embedding": np.zeros((4, 8), np.float32)}, vocabulary=["<MASK/>", "UNKNOWN_TOKEN", "a", "b"],
                    settings=Settings.from_environ(small_env(path.parent)).as_dict(), training_state={"state_json": np.array(TrainingState(learning_rate=0.001).to_json())})
    return path


# --------------------------------------------------------------------------
# 1. An output that is an input of the run
# --------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink"])
def test_a_model_file_that_is_the_corpus_is_refused_and_the_corpus_kept(folder, spelling):
    target = {"same": str(folder / "corpus.txt"), "relative": "./corpus.txt", "symlink": str(folder / "model.npz")}[spelling]
    if spelling == "symlink":
        (folder / "model.npz").symlink_to(folder / "corpus.txt")
    refuse(folder, "MODEL_OUTPUT_FILE", "reads", MODEL_OUTPUT_FILE=target)


def test_a_model_file_that_is_the_resumed_runs_corpus_is_refused(folder):
    resumed = fake_resumable_checkpoint(folder / "resumed.npz")
    refuse(folder, "corpus.txt", "reads", RESUME=resumed, MODEL_OUTPUT_FILE=folder / "corpus.txt", INPUT_DATA_FILE=None)


def test_a_best_model_file_that_is_the_corpus_is_refused(folder):
    (folder / "corpus.txt").rename(folder / "m.best.txt")
    refuse(folder, "best-model file", "m.best.txt", MODEL_OUTPUT_FILE=folder / "m.txt", INPUT_DATA_FILE=folder / "m.best.txt",
           VALIDATION_FRACTION="0.1")


@pytest.mark.parametrize("name", ["b.txt", "new.TXT", "more.csv"])
def test_a_model_file_in_the_data_folder_under_a_name_the_reader_reads_is_refused(folder, name):
    data = folder / "data"
    data.mkdir()
    (folder / "corpus.txt").rename(data / "a.txt")
    (data / "b.txt").write_text("an own file of the corpus, to be kept.\n", encoding="utf-8")
    refuse(folder, "data folder", "corpus reader", MODEL_OUTPUT_FILE=data / name, INPUT_DATA_FILE=data)


def test_a_model_file_in_the_data_folder_under_a_name_the_reader_skips_is_accepted(tmp_path):
    from symrnn.paths import check_output_path

    (tmp_path / "a.txt").write_text("text\n", encoding="utf-8")
    check_output_path(str(tmp_path / "model.npz"), [str(tmp_path)])
    check_output_path(str(tmp_path / "model.loss.png"), [str(tmp_path)])
    with pytest.raises(ConfigError, match="data folder"):
        check_output_path(str(tmp_path / "model.txt"), [str(tmp_path)])


# --------------------------------------------------------------------------
# 4, 5 and 7. Places a file cannot or must not be written
# --------------------------------------------------------------------------


def test_a_fifo_at_the_model_path_is_refused_and_stays_a_fifo(folder):
    os.mkfifo(folder / "pipe.npz")
    refuse(folder, "special file", "FIFO", MODEL_OUTPUT_FILE=folder / "pipe.npz")
    assert stat.S_ISFIFO(os.lstat(folder / "pipe.npz").st_mode)


def test_a_device_at_the_model_path_is_refused_and_stays_a_device(folder):
    # A private copy of /dev/null: were the check ever broken, a run as root would replace the real one.
    device = folder / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("creating a device file needs root")
    refuse(folder, "special file", "character device", MODEL_OUTPUT_FILE=device)
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_a_read_only_model_file_is_refused_even_as_root(folder):
    model = folder / "model.npz"
    model.write_bytes(b"a model the user protected")
    model.chmod(0o444)
    refuse(folder, "read-only", "0444", MODEL_OUTPUT_FILE=model)


def test_a_read_only_resume_file_is_refused_unless_another_output_is_named(folder):
    resumed = fake_resumable_checkpoint(folder / "resumed.npz")
    resumed.chmod(0o444)
    refuse(folder, "RESUME", "read-only", RESUME=resumed, MODEL_OUTPUT_FILE=None)


@pytest.mark.parametrize("case", ["missing folder", "a folder", "a file as folder", "name too long", "path too long"])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(folder, case):
    (folder / "models").mkdir()
    target, needle = {
        "missing folder": (folder / "no" / "such" / "m.npz", "does not exist"),
        "a folder": (folder / "models", "directory"),
        "a file as folder": (folder / "corpus.txt" / "m.npz", "is a file, not a folder"),
        "name too long": (folder / ("m" * 300 + ".npz"), "too long"),
        "path too long": (folder / "/".join(["d" * 200] * 25) / "m.npz", "too long"),
    }[case]
    refuse(folder, needle, MODEL_OUTPUT_FILE=target)
    assert not (folder / "no").exists()


def test_a_read_only_folder_is_refused(folder):
    if os.geteuid() == 0:
        pytest.skip("as root, permission bits do not stop writes (the probe test below covers root)")
    readonly = folder / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        refuse(folder, "cannot write in folder", MODEL_OUTPUT_FILE=readonly / "m.npz")
    finally:
        readonly.chmod(0o755)


def test_a_folder_not_even_root_can_write_in_is_refused(folder):
    if not os.path.isdir("/sys"):
        pytest.skip("no /sys here")
    try:
        handle, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        pass
    else:
        os.close(handle)
        os.unlink(probe)
        pytest.skip("/sys is writable here")
    refuse(folder, "cannot write in folder", "/sys", MODEL_OUTPUT_FILE="/sys/m.npz")


def test_the_folder_check_creates_a_file_so_it_holds_for_root_too(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(ConfigError, match="cannot write in folder .*Permission denied") as info:
        check_output_path(str(tmp_path / "m.npz"), what="MODEL_OUTPUT_FILE")
    assert "\n" not in str(info.value) and "MODEL_OUTPUT_FILE" in str(info.value)


def test_the_folder_check_leaves_nothing_behind(tmp_path):
    (tmp_path / "old.npz").write_bytes(b"x")
    check_output_path(str(tmp_path / "old.npz"))
    check_output_path(str(tmp_path / "new.npz"))
    assert [p.name for p in tmp_path.iterdir()] == ["old.npz"]


def test_a_loss_curve_path_that_is_a_folder_is_refused_at_start(folder):
    pytest.importorskip("matplotlib", reason="the loss curve needs the optional matplotlib")
    (folder / "m.loss.png").mkdir()
    refuse(folder, "loss-curve image", MODEL_OUTPUT_FILE=folder / "m.npz")


def test_a_loss_curve_that_cannot_be_written_during_the_run_is_one_warning_and_training_goes_on(folder, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="the loss curve needs the optional matplotlib")
    run = train_script.Run(Settings(input_data_file=str(folder / "corpus.txt"), model_output_file=str(folder / "m.npz")), {})
    Path(run.plot_path).mkdir()  # appears after the start-up check
    run.loss_curve.write([[100, 5.0, None], [200, 4.0, None]], title="m.npz")
    run.loss_curve.write([[100, 5.0, None], [200, 4.0, None], [300, 3.5, None]], title="m.npz")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "loss curve" in lines[0] and "goes on" in lines[0]
    assert Path(run.plot_path).is_dir() and not any(Path(run.plot_path).iterdir())


@pytest.mark.parametrize("kind", ["fifo", "read-only", "folder"])
def test_the_atomic_writers_never_replace_a_special_read_only_or_folder_path(tmp_path, kind):
    path = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"protected")
        path.chmod(0o444)
    before = fingerprint(path)
    assert replace_problem(str(path))
    with pytest.raises(CheckpointError, match="cannot write model file"):
        save_checkpoint(path, {"E": np.zeros((2, 2), np.float32)})
    if kind != "folder":  # a folder is refused at start; see above
        pytest.importorskip("matplotlib", reason="the loss curve needs the optional matplotlib")
        from symrnn.plotting import write_loss_curve

        with pytest.raises(SymrnnError, match="cannot write loss curve"):
            write_loss_curve(str(path), [[1, 2.0, None]])
    assert fingerprint(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


# --------------------------------------------------------------------------
# 3. Default names
# --------------------------------------------------------------------------


def test_a_default_model_name_that_exists_belongs_to_another_run_and_is_not_reused(folder, monkeypatch):
    monkeypatch.chdir(folder)
    (folder / "taken.npz").write_bytes(b"another run's model")
    before = fingerprint(folder / "taken.npz")
    names = iter(["taken.npz", "free.npz"])
    monkeypatch.setattr(Settings, "output_path", lambda self, now=None, tag=None: next(names))
    run = train_script.Run(Settings(input_data_file=str(folder / "corpus.txt")), {})
    assert run.output_path == "free.npz"
    assert fingerprint(folder / "taken.npz") == before


def test_when_no_free_default_name_is_found_the_run_is_refused(folder, monkeypatch):
    monkeypatch.chdir(folder)
    (folder / "taken.npz").write_bytes(b"another run's model")
    monkeypatch.setattr(Settings, "output_path", lambda self, now=None, tag=None: "taken.npz")
    with pytest.raises(ConfigError, match="MODEL_OUTPUT_FILE"):
        train_script.Run(Settings(input_data_file=str(folder / "corpus.txt")), {})


# --------------------------------------------------------------------------
# Warnings about settings that would be ignored
# --------------------------------------------------------------------------


def test_a_mistyped_setting_is_named_with_the_nearest_known_one(folder):
    result = run_train(folder, HIDDEN_DIMS="64", MODEL_OUTPUT_FILE=folder / "corpus.txt")
    warning, error = result.stderr.strip().splitlines()
    assert "HIDDEN_DIMS" in warning and "did you mean HIDDEN_DIM?" in warning
    assert result.returncode == 2 and "reads" in error


def test_settings_given_again_on_resume_that_the_checkpoint_overrides_are_named(folder):
    resumed = fake_resumable_checkpoint(folder / "resumed.npz")
    result = run_train(folder, RESUME=resumed, MODEL_OUTPUT_FILE=folder / "corpus.txt", HIDDEN_DIM="32", NEPOCH="3")
    warning, error = result.stderr.strip().splitlines()
    assert "HIDDEN_DIM=32 is ignored" in warning and "16" in warning
    assert "NEPOCH" not in result.stderr  # a resumed run may change NEPOCH


# --------------------------------------------------------------------------
# generate.py's options
# --------------------------------------------------------------------------


@pytest.mark.parametrize("options, needle", [
    (["--min-length", "50", "--max-length", "10"], "--min-length (50) must not exceed --max-length (10)"),
    (["--min-length", "-1"], "--min-length must be 0 or more"),
    (["--num", "-2"], "--num"),
    (["--temperature", "-1"], "--temperature"),
    (["--max-data-mb", "0"], "--max-data-mb"),
    (["--temperature", "nan"], "finite"),
    (["--temperature", "inf"], "finite"),
])
def test_generate_refuses_inconsistent_options_with_one_line(tmp_path, options, needle):
    model = tmp_path / "m.npz"
    model.write_bytes(b"never read")
    result = subprocess.run(command(GENERATE, str(model), *options), capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, needle)
    assert result.stdout == ""


# --------------------------------------------------------------------------
# Runs that train: resume, divergence, generate, SIGHUP
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``first``: trains ``m.npz`` (named relative to its folder); ``diverge``: an explicit older file, a huge step.

    Then ``resume``: RESUME of a copy of ``m.npz`` in a subfolder; ``generate``: generate.py on ``m.npz``.
    """
    first, other = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("diverge")
    for place in (first, other):
        write_corpus(place / "corpus.txt")
    (other / "old.npz").write_bytes(b"the model of an earlier run")
    results = run_all({
        "first": (command(TRAIN), small_env(first, MODEL_OUTPUT_FILE="m.npz"), first),
        "diverge": (command(TRAIN), small_env(other, MODEL_OUTPUT_FILE="old.npz", LEARNING_RATE="1e30", OPTIMIZER="sgd",
                                               PRINT_EVERY="100000", NEPOCH="3"), other),
        "diverge_reports": (command(TRAIN), small_env(other, MODEL_OUTPUT_FILE="new.npz", LEARNING_RATE="1e30",
                                                       PRINT_EVERY="8", NEPOCH="3"), other),
    })
    assert results["first"].returncode == 0, results["first"].stderr
    (first / "copies").mkdir()
    shutil.copy(first / "m.npz", first / "copies" / "copy.npz")
    fingerprints = {"m.npz": fingerprint(first / "m.npz"), "copy.npz": fingerprint(first / "copies" / "copy.npz")}
    resume_env = small_env(first, RESUME="copies/copy.npz", NEPOCH="2")
    del resume_env["MODEL_OUTPUT_FILE"]
    results.update(run_all({
        "resume": (command(TRAIN), resume_env, first),
        "generate": (command(GENERATE, "m.npz", "--num", "2", "--seed", "1"), None, first),
    }))
    return {"first": first, "diverge": other}, results, fingerprints


def test_resuming_a_copied_checkpoint_writes_to_the_copy_not_to_the_name_stored_inside(trained):
    folders, results, before = trained
    result, folder = results["resume"], folders["first"]
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(str(folder / "m.npz")).settings["model_output_file"] == "m.npz"  # what the copy carries too
    assert "Model file: copies/copy.npz" in result.stdout
    assert fingerprint(folder / "m.npz") == before["m.npz"]
    assert fingerprint(folder / "copies" / "copy.npz") != before["copy.npz"]
    assert TrainingState.from_json(str(load_checkpoint(str(folder / "copies" / "copy.npz")).training_state["state_json"])).epoch == 2


def test_after_divergence_no_file_of_another_run_is_called_the_last_good_model(trained):
    folders, results, _ = trained
    result, folder = results["diverge"], folders["diverge"]
    assert result.returncode == 3, result.stdout + result.stderr
    assert "train.py: error: training diverged" in result.stderr and "This run saved no model." in result.stderr
    assert "last good model" not in result.stdout + result.stderr
    assert (folder / "old.npz").read_bytes() == b"the model of an earlier run"


def test_a_model_whose_loss_is_no_longer_finite_is_never_saved_nor_called_good(trained):
    folders, results, _ = trained
    result, folder = results["diverge_reports"], folders["diverge"]
    assert result.returncode == 3, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and "training diverged" in errors[0] and "this run saved no model" in errors[0].lower()
    assert "Saved model to" not in result.stdout
    assert not (folder / "new.npz").exists()


def test_generate_says_at_once_that_it_is_sampling_then_prints_the_sentences(trained):
    result = trained[1]["generate"]
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == "generate.py: sampling 2 sentences from m.npz ..."
    assert len(result.stdout.splitlines()) == 2


def test_closing_the_terminal_saves_the_model_like_sigterm(folder):
    env = small_env(folder, NEPOCH="500", PRINT_EVERY="1000000", MODEL_OUTPUT_FILE=folder / "m.npz")
    process = subprocess.Popen(command(TRAIN), env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Training ("):
            break
    process.send_signal(signal.SIGHUP)
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 128 + signal.SIGHUP, output
    assert "Stopped by SIGHUP" in output and "Resume with: RESUME=" in output
    assert load_checkpoint(str(folder / "m.npz")).layout == "symrnn"


def test_generate_reads_a_tutorial_files_corpus_within_max_data_mb(tmp_path):
    from symrnn.legacy import save_tutorial_model

    rng = np.random.default_rng(0)
    V, H = 30, 4
    save_tutorial_model(str(tmp_path / "tutorial.npz"), rng.normal(size=(H, V)), rng.normal(size=(6, H, H)),
                        rng.normal(size=(6, H, H)), rng.normal(size=(V, H)), np.zeros((6, H)), np.zeros(V))
    (tmp_path / "big.txt").write_text("a few words of text. " * 60000, encoding="utf-8")  # 1.2 MB
    result = subprocess.run(command(GENERATE, str(tmp_path / "tutorial.npz"), "--data", str(tmp_path / "big.txt"),
                                    "--vocabulary-size", str(V), "--max-data-mb", "1"),
                            capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, "--max-data-mb")
