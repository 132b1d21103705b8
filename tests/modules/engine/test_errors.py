"""The entry's error handling: the user's errors are one line and exit 1, Ctrl-C exits 130, --debug shows all."""
from __future__ import annotations

import pytest

from dataloaders.errors import DataError
from models.weights import CheckpointError
from modules.engine import errors
from modules.engine.errors import RunError, RunInterrupted, cli


def _raising(exc: BaseException):
    def main(argv):
        raise exc
    return main


@pytest.mark.parametrize("exc", [DataError("a.csv: row at line 3 repeats video id 'v0'"),
                                 CheckpointError("w.bin: weight file not found"), RunError("out: holds a run")])
def test_user_errors_are_one_line(exc, capsys, monkeypatch):
    monkeypatch.delenv("HBI_DEBUG", raising=False)
    monkeypatch.setattr(errors, "_debug", {"on": False})
    with pytest.raises(SystemExit) as stop:
        cli(_raising(exc), [])
    assert stop.value.code == errors.EXIT_ERROR
    assert capsys.readouterr().err.strip().endswith(f"error: {exc}")


def test_under_torchrun_the_line_names_the_rank(capsys, monkeypatch):
    monkeypatch.delenv("HBI_DEBUG", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit):
        cli(_raising(RunError("x")), [])
    assert "error (rank 1): x" in capsys.readouterr().err


def test_interrupt_exits_130_with_its_message(capsys, monkeypatch):
    monkeypatch.delenv("HBI_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        cli(_raising(RunInterrupted("stopped by Ctrl-C in epoch 2; --resume 1")), [])
    assert stop.value.code == errors.EXIT_INTERRUPTED
    assert "interrupted: stopped by Ctrl-C in epoch 2; --resume 1" in capsys.readouterr().err


def test_a_programming_error_keeps_its_traceback(monkeypatch):
    monkeypatch.delenv("HBI_DEBUG", raising=False)
    with pytest.raises(ZeroDivisionError):
        cli(_raising(ZeroDivisionError("bug")), [])


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback(how, monkeypatch):
    monkeypatch.setattr(errors, "_debug", {"on": how == "flag"})
    if how == "environment":
        monkeypatch.setenv("HBI_DEBUG", "1")
    with pytest.raises(DataError):
        cli(_raising(DataError("bad")), [])
