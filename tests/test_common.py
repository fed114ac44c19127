"""scripts/common.py: every fault a script meets ends as one line on stderr."""

import errno
import sys

import pytest

from scripts import common
from symrnn.errors import ConfigError


def exit_of(main, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(SystemExit) as stopped:
        common.run(main)
    return stopped.value.code, capsys.readouterr().err


def raising(exc):
    def main():
        raise exc

    return main


def test_a_symrnn_error_is_one_line_with_exit_status_2(capsys, monkeypatch):
    code, err = exit_of(raising(ConfigError("HIDDEN_DIM='x' must be an integer")), capsys, monkeypatch)
    assert code == 2 and err == "train.py: error: HIDDEN_DIM='x' must be an integer\n"


def test_a_full_disk_while_compiling_is_one_line_with_exit_status_1(capsys, monkeypatch):
    fault = OSError(errno.ENOSPC, "No space left on device", "/root/.pytensor/compiledir/mod.cpp")
    code, err = exit_of(raising(fault), capsys, monkeypatch)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("train.py: error: No space left on device (/root/.pytensor/")
    assert "Traceback" not in err


def test_running_out_of_memory_is_one_line_with_exit_status_1(capsys, monkeypatch):
    code, err = exit_of(raising(MemoryError()), capsys, monkeypatch)
    assert code == 1 and err.count("\n") == 1 and "out of memory" in err


def test_the_exit_status_of_main_is_passed_on(capsys, monkeypatch):
    assert exit_of(lambda: 3, capsys, monkeypatch)[0] == 3
    assert exit_of(lambda: None, capsys, monkeypatch)[0] == 0
