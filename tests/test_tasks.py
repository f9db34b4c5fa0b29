"""tasks.py: the README's set-up script chooses how many processes run the tests."""

from __future__ import annotations

import importlib.util
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
