"""tasks.py: the README's set-up script chooses how many processes run the tests."""

from __future__ import annotations

import importlib.util
import venv
from pathlib import Path

import pytest

_TASKS = Path(__file__).resolve().parents[1] / "tasks.py"


@pytest.fixture
def tasks():
    spec = importlib.util.spec_from_file_location("appsleuth_tasks", _TASKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, []), (2, ["-n", "2", "--dist", "loadfile"]), (16, ["-n", "4", "--dist", "loadfile"])],
)
def test_one_test_process_per_core_at_most_four(tasks, monkeypatch, cores, expected) -> None:
    monkeypatch.setattr(tasks.os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert tasks._parallel_options([]) == expected
    assert tasks._parallel_options(["-x", "tests/test_spec.py"]) == expected


@pytest.mark.parametrize(
    "args", [["-n", "0"], ["-n3"], ["--numprocesses", "2"], ["-p", "no:xdist"]]
)
def test_arguments_that_choose_processes_are_left_alone(tasks, monkeypatch, args) -> None:
    monkeypatch.setattr(tasks.os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert tasks._parallel_options(args) == []


@pytest.fixture
def venv_dir(tasks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / ".venv"
    monkeypatch.setattr(tasks, "VENV", where)
    monkeypatch.setattr(tasks, "PYTHON", where / "bin" / "python")
    monkeypatch.setattr(tasks, "STAMP", where / ".appsleuth-install")
    return where


def test_a_venv_whose_creation_was_interrupted_is_made_anew(tasks, venv_dir, monkeypatch) -> None:
    # Killed while ensurepip ran, .venv had a Python but no pip: every later run failed at
    # "upgrading pip in .venv failed" instead of repairing it.
    venv.create(venv_dir, with_pip=False, symlinks=True)
    assert "no pip" in tasks._venv_problem()
    made, commands = [], []
    monkeypatch.setattr(tasks, "_create_venv", lambda: made.append(True))
    monkeypatch.setattr(tasks, "_run", lambda *cmd: commands.append(cmd) or 0)
    tasks.ensure_environment("test")
    assert made == [True] and commands  # made anew, then installed into


def test_a_complete_venv_is_reused_and_a_missing_python_is_not(tasks, venv_dir) -> None:
    assert tasks._venv_problem() == "does not exist"
    venv.create(venv_dir, with_pip=False, symlinks=True)
    site = next(venv_dir.glob("lib/python3*/site-packages"))
    (site / "pip").mkdir()
    (site / "pip" / "__init__.py").write_text("")
    assert tasks._venv_problem() is None
    # The Python that made it is gone (removed, or upgraded away): a dangling link.
    (venv_dir / "bin" / "python").unlink()
    (venv_dir / "bin" / "python").symlink_to(venv_dir / "gone" / "python3")
    assert tasks._venv_problem() == "has no Python"
