"""Memory over many trainings in one process: JAX's compiled programs are let go in time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from appsleuth import _memory
from appsleuth._keras import import_keras
from appsleuth.data.synth import generate_sherlock
from appsleuth.engines import fused
from appsleuth.run import train
from appsleuth.spec import ModelSpec, RunSpec, TrainSpec


@pytest.fixture
def fresh(monkeypatch):
    """A process whose first run is still to come, with a resident size the test sets."""
    import_keras()
    sizes = {"now": 1000.0}
    monkeypatch.setattr(_memory, "_baseline_mb", None)
    monkeypatch.setattr(_memory, "_run_started", False)
    monkeypatch.setattr(_memory, "resident_mb", lambda: sizes["now"])
    cleared = []
    monkeypatch.setattr(sys.modules["jax"], "clear_caches", lambda: cleared.append(sizes["now"]))
    return sizes, cleared


def test_programs_are_kept_until_memory_grows_past_the_limit(fresh, monkeypatch) -> None:
    sizes, cleared = fresh
    monkeypatch.setitem(fused._PROGRAMS, ("a program",), object())
    assert not _memory.release_programs_if_grown(100)  # the first run sets the baseline
    sizes["now"] = 1100.0
    assert not _memory.release_programs_if_grown(100)
    assert cleared == [] and ("a program",) in fused._PROGRAMS
    sizes["now"] = 1100.5
    assert _memory.release_programs_if_grown(100)
    assert cleared == [1100.5] and ("a program",) not in fused._PROGRAMS


def test_the_first_runs_own_memory_is_not_growth(fresh) -> None:
    sizes, cleared = fresh
    # The fused engine checks as a run starts, train as it ends: the first check, before
    # any run, set the baseline, and the first run's data and programs (~160 MB at the
    # default rows) made the second run of the same shape clear and compile again.
    assert not _memory.release_programs_if_grown(100, before_run=True)
    sizes["now"] = 1150.0  # the first run, trained
    assert not _memory.release_programs_if_grown(100)  # its end: the baseline
    assert not _memory.release_programs_if_grown(100, before_run=True)  # the second run
    sizes["now"] = 1251.0
    assert _memory.release_programs_if_grown(100, before_run=True)
    assert cleared == [1251.0]


def test_a_loop_of_the_fused_engine_alone_measures_from_its_first_run(fresh) -> None:
    sizes, cleared = fresh
    assert not _memory.release_programs_if_grown(100, before_run=True)
    sizes["now"] = 1150.0
    assert not _memory.release_programs_if_grown(100, before_run=True)  # the baseline
    sizes["now"] = 1251.0
    assert _memory.release_programs_if_grown(100, before_run=True)
    assert cleared == [1251.0]


def test_memory_clearing_cannot_give_back_does_not_clear_after_every_run(fresh) -> None:
    sizes, cleared = fresh
    _memory.release_programs_if_grown(100)
    sizes["now"] = 1300.0  # and it stays there: clearing gave nothing back
    assert _memory.release_programs_if_grown(100)
    assert not _memory.release_programs_if_grown(100)
    sizes["now"] = 1401.0  # grown again, past the limit, from where clearing left it
    assert _memory.release_programs_if_grown(100)
    assert len(cleared) == 2


def test_other_backends_and_unknown_sizes_are_left_alone(fresh, monkeypatch) -> None:
    sizes, cleared = fresh
    monkeypatch.setattr(_memory, "backend_name", lambda: "tensorflow")
    _memory.release_programs_if_grown(100)
    sizes["now"] = 5000.0
    assert not _memory.release_programs_if_grown(100)
    monkeypatch.setattr(_memory, "backend_name", lambda: "jax")
    monkeypatch.setattr(_memory, "resident_mb", lambda: None)
    assert not _memory.release_programs_if_grown(100)
    assert cleared == []


def test_resident_size_is_read_where_the_system_tells_it(monkeypatch) -> None:
    if Path("/proc/self/statm").exists():
        assert 10 < _memory.resident_mb() < 1e6
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(OSError("no")))
    assert _memory.resident_mb() is None


def test_clearing_reaches_jax_compiled_programs(monkeypatch) -> None:
    import_keras()
    import jax

    monkeypatch.setattr(_memory, "_baseline_mb", None)
    add_one = jax.jit(lambda x: x + 1)
    add_one(1.0)
    assert add_one._cache_size() == 1
    _memory.release_programs_if_grown(-1.0)
    assert _memory.release_programs_if_grown(-1.0)  # any growth at all, for the test
    assert add_one._cache_size() == 0


def test_every_training_run_ends_with_the_check(monkeypatch, tmp_path: Path) -> None:
    # The check sits in train's `finally`: a run that ends with an exception or an
    # interrupt reaches it as a complete one does. (Training one to the end compiled a
    # model for ~7 s of this test; the engine is stopped instead.)
    calls = []
    monkeypatch.setattr("appsleuth.run.release_programs_if_grown", lambda: calls.append(1))
    table = generate_sherlock(400, seed=1)
    bad = RunSpec(model=ModelSpec(hidden=(4,)), train=TrainSpec(epochs=1, class_weight={"x": 2}))
    with pytest.raises(Exception, match="x"):
        train(bad, data=table, out=tmp_path, verbose=False, log=lambda m: None)
    assert calls == [1]

    def stopped(*args, **kwargs):
        assert calls == [1]  # not before the run has trained
        raise KeyboardInterrupt

    monkeypatch.setattr("appsleuth.engines.run_engine", stopped)
    spec = RunSpec(model=ModelSpec(hidden=(4,)), train=TrainSpec(epochs=1))
    with pytest.raises(KeyboardInterrupt):
        train(spec, data=table, out=tmp_path / "stopped", verbose=False, log=lambda m: None)
    assert calls == [1, 1]


def test_the_fused_engine_checks_before_it_compiles(monkeypatch) -> None:
    # A notebook loop over run_fused with models of other shapes, without appsleuth.train.
    import numpy as np

    keras = import_keras()
    calls = []
    monkeypatch.setattr(
        fused,
        "release_programs_if_grown",
        lambda before_run: calls.append((before_run, len(fused._PROGRAMS))),
    )
    monkeypatch.setattr(fused, "_PROGRAMS", type(fused._PROGRAMS)())
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.ones((8, 3), "float32"), np.zeros(8, "int32")
    fused.run_fused(model, x, y, epochs=1, batch_size=4)
    assert calls == [(True, 0)]  # once, before this run compiled its program
