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


def test_train_speed_offers_fit_the_engines_one_thread_products_as_xla_flags(monkeypatch):
    import subprocess
    import sys

    train_speed = _load("train_speed")
    flags = train_speed._one_thread_flags()
    assert flags == "--xla_cpu_multi_thread_eigen=false --xla_cpu_experimental_ynn_fusion_type="
    # XLA aborts on a flag it does not know, so this also checks that it takes them.
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    code = "import jax.numpy as j; print(float((j.ones((4, 4)) @ j.ones((4, 4))).sum()))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "64.0"

    seen = []

    def fake_run(command, env, **kwargs):
        seen.append((command, env.get("XLA_FLAGS", "")))
        line = '{"epoch_seconds": [1.0, 0.5], "val_accuracy": 0.5, "peak_rss_mb": 1.0, '
        return subprocess.CompletedProcess(command, 0, line + '"total_seconds": 2.0}\n', "")

    monkeypatch.setattr(train_speed.subprocess, "run", fake_run)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    for engine, one_thread in (("fit", True), ("fit", False), ("fused", True)):
        train_speed._run(sys.executable, "jax", engine, Path("d.npz"), 2, 1024, one_thread)
    assert [flags_seen for _, flags_seen in seen] == [flags, "", ""]
    assert seen[0][0][seen[0][0].index("--spe") + 1] == "1024"


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the floor is a JAX program")
def test_train_speed_floor_trains_the_baseline(capsys):
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    x, xv = (
        rng.normal(size=(100, 19)).astype("float32"),
        rng.normal(size=(40, 19)).astype("float32"),
    )
    y, yv = rng.integers(0, 18, 100), rng.integers(0, 18, 40)
    _load("train_speed")._floor_worker(x, y, xv, yv, epochs=3)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["epoch_seconds"]) == 3 and result["s_per_epoch"] > 0
    assert 0 <= result["val_accuracy"] <= 1


def test_train_speed_peak_memory_is_the_workers_own():
    import subprocess
    import sys

    # Linux carries ru_maxrss over exec: a worker of a parent holding 200 MB would say so.
    held = bytearray(200 * 2**20)
    held[::4096] = bytes([1]) * len(range(0, len(held), 4096))
    code = "import runpy, sys; print(runpy.run_path(sys.argv[1])['_peak_rss_mb']())"
    done = subprocess.run(
        [sys.executable, "-c", code, str(_BENCHMARKS / "train_speed.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    del held
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0 < float(done.stdout) < 100


def test_predict_speed_times_a_call_after_the_same_call_untimed():
    # The forward pass compiles per chunk shape, which follows the row count: a smaller
    # warm-up left the timed call's compilation inside its timing.
    calls = []
    result, seconds = _load("predict_speed")._warm_then_time(lambda: calls.append(0) or len(calls))
    assert (result, len(calls)) == (2, 2) and seconds >= 0


@pytest.mark.parametrize(
    ("script", "args", "said"),
    [
        ("load_speed", ["--repeats", "0"], "--rows and --repeats must be at least 1"),
        ("predict_speed", ["--rows", "-5"], "--rows must be at least 1; received -5"),
        ("study", ["--subset-epochs", "0"], "--subset-epochs must be at least 1; received 0"),
        ("synth_realism", ["--neurons", "a,b"], "--neurons takes positive widths"),
        ("synth_realism", ["--epochs", "0"], "--rows and --epochs must be at least 1"),
        ("device_speed", ["--rows", "0"], "--rows must be at least 1; received 0"),
        ("sweep_memory", ["--shapes", "1"], "--shapes must be at least 2 and --rows at least"),
        ("device_speed", ["--out", "/no/such/dir/x.json"], "its directory does not exist"),
        ("device_speed", ["--epochs", "2"], "--epochs must be at least 3 (the first 2 are"),
        ("train_speed", ["--epochs", "2"], "--epochs must be at least 3 (the first 2 are"),
    ],
)
def test_benchmark_options_are_checked_before_any_work(monkeypatch, capsys, script, args, said):
    # Each failed late before: a traceback after generating data, or, for device_speed's
    # --out, after minutes of measuring.
    monkeypatch.setattr("sys.argv", [f"{script}.py", *args])
    with pytest.raises(SystemExit) as stopped:
        _load(script).main()
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err


def test_train_speed_names_a_tf_python_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "no-python")
    python, why = _load("train_speed")._find_tensorflow(missing)
    assert python is None
    assert f"tried {missing}: no such file" in why  # not only "TensorFlow is not installed"
