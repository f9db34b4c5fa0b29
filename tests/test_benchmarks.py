"""The benchmark scripts that reach into the fused engine still run (tiny sizes)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import pytest

_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", _BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="step_costs measures JAX programs")
def test_step_costs_measures_each_part(monkeypatch):
    # It compiles the fused engine's own step loop through engine internals, which a
    # change to the engine can break without any engine test noticing.
    step_costs = _load("step_costs")
    monkeypatch.setattr(step_costs, "STEPS", 4)
    median, fastest, n_ops = step_costs._dispatch(1)
    assert n_ops >= 40 and 0 < fastest <= median
    for measure in (step_costs._product, step_costs._fused_step):
        median, fastest = measure(1)
        assert 0 < fastest <= median
