"""``appsleuth bench``: a tiny real run gives well-formed results, table and files."""

from __future__ import annotations

import io
import json
import os

import pytest
from click.testing import CliRunner
from rich.console import Console

from appsleuth import bench
from appsleuth.bench import (
    BenchSettings,
    gpu_worker_splits,
    print_bench,
    run_bench,
    thread_counts,
    worker_splits,
)
from appsleuth.cli import main

# Smallest meaningful run: both engines at 1 thread (a fresh process each) and one sweep
# of 1 worker; `bench --quick` measures more and is for people, not for the test suite.
_TINY = BenchSettings(
    rows=4_000, epochs=2, sweep_epochs=1, sweep_rounds=1, threads=(1,), splits=((1, 1),)
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    lines: list[str] = []
    return run_bench(_TINY, out=out, echo=lines.append), out, lines


def test_thread_counts_and_splits():
    assert thread_counts(1) == [1]
    assert thread_counts(2) == [1, 2]
    assert thread_counts(6) == [1, 2, 4, 6]
    assert thread_counts(6, all_counts=False) == [1, 6]
    assert worker_splits(2) == [(2, 1), (1, 2)]
    assert worker_splits(6) == [(6, 1), (3, 2), (1, 6)]
    assert len(worker_splits(64)) == 4
    assert worker_splits(64)[0] == (64, 1) and worker_splits(64)[-1] == (1, 64)


@pytest.mark.parametrize(
    ("cores", "expected"), [(1, [(1, 1)]), (2, [(1, 2), (2, 1)]), (16, [(1, 16), (4, 4)])]
)
def test_gpu_worker_splits(cores, expected):
    assert gpu_worker_splits(cores) == expected


def _engine(device, seconds):
    return {"engine": "fused", "threads": 2, "device": device, "s_per_epoch": seconds}


def _sweep(device, workers, rate):
    return {"workers": workers, "threads": 1, "device": device, "steady_trials_per_min": rate}


@pytest.mark.parametrize(
    ("gpu_seconds", "gpu_rate", "single", "sweeps"),
    [
        (0.5, 30.0, "the CPU is 5.0x faster", "the GPU is 1.5x faster"),
        (0.05, 10.0, "the GPU is 2.0x faster", "the CPU is 2.0x faster"),
    ],
)
def test_recommendation_compares_gpu_with_cpu(gpu_seconds, gpu_rate, single, sweeps):
    result = {
        "engines": [_engine("cpu", 0.1), _engine("cpu", 0.2), _engine("gpu", gpu_seconds)],
        "sweep": [_sweep("cpu", 2, 20.0), _sweep("cpu", 1, 12.0), _sweep("gpu", 4, gpu_rate)],
    }
    rec = bench._recommend(result)
    gpu_lines = [line for line in rec["text"] if line.startswith("GPU")]
    assert len(gpu_lines) == 2
    assert single in gpu_lines[0] and "0.100 on the CPU" in gpu_lines[0]
    assert sweeps in gpu_lines[1] and "4 workers x 1 thread on the GPU" in gpu_lines[1]
    assert rec["gpu_single_run_speedup"] == pytest.approx(0.1 / gpu_seconds)
    assert rec["gpu_sweep_speedup"] == pytest.approx(gpu_rate / 20.0)
    # The CPU split recommendation ignores GPU rows.
    assert rec["sweep"]["workers"] == 2


def test_recommendation_compares_fused_with_fit_on_the_same_device():
    engines = [
        {**_engine("cpu", 0.1), "engine": "fit"},
        _engine("cpu", 0.05),
        {**_engine("gpu", 3.0), "engine": "fit"},
        _engine("gpu", 0.01),
    ]
    rec = bench._recommend({"engines": engines, "sweep": []})
    line = next(line for line in rec["text"] if line.startswith("single runs"))
    assert "engine fused on gpu" in line and "(300.0x faster than fit)" in line


def test_recommendation_without_gpu_has_no_gpu_line():
    result = {"engines": [_engine("cpu", 0.1)], "sweep": [_sweep("cpu", 1, 12.0)]}
    rec = bench._recommend(result)
    assert rec["text"] and not any(line.startswith("GPU") for line in rec["text"])
    assert "gpu_single_run_speedup" not in rec


def test_result_is_well_formed(tiny):
    result, out, lines = tiny
    assert set(result) >= {"device", "devices", "settings", "engines", "sweep", "recommendation"}
    assert result["device"] in ("cpu", "gpu")
    assert result["settings"]["reduced"] is True
    assert result["settings"]["rows"] == 4_000
    engines = {(r["engine"], r["threads"]) for r in result["engines"]}
    assert engines == {("fused", 1), ("fit", 1)}
    for row in result["engines"]:
        assert "error" not in row, row
        assert row["s_per_epoch"] > 0 and len(row["epoch_seconds"]) == 2
        assert len(row["affinity"]) == 1  # the worker applied its limit before Keras
        assert row["platform"] == "cpu"
    (sweep,) = result["sweep"]
    assert "error" not in sweep, sweep
    assert (sweep["workers"], sweep["threads"], sweep["completed"]) == (1, 1, 1)
    assert sweep["trials_per_min"] > 0 and sweep["steady_trials_per_min"] > 0
    assert result["recommendation"]["text"]
    saved = json.loads((out / "bench.json").read_text())
    assert saved["engines"] == json.loads(json.dumps(result["engines"]))
    assert (out / "bench.png").stat().st_size > 0
    assert any("engine fused" in line for line in lines)


def test_table_says_sizes_are_reduced(tiny):
    result, _, _ = tiny
    buffer = io.StringIO()
    print_bench(result, Console(file=buffer, width=120))
    text = buffer.getvalue()
    assert "sizes reduced" in text and "4,000 generated rows" in text
    assert "2 epochs per engine row (the first, with compilation, not counted)" in text
    assert "seconds per epoch" in text and "sweep throughput" in text
    assert "fused" in text and "fit" in text
    assert "recommendation" in text
    assert "core ids" in text  # the affinity column lists ids: "0" is core 0, not no cores


@pytest.mark.parametrize(
    ("epochs", "words"),
    [
        (4, "the first 2, compilation and what overlaps it, not counted"),
        (3, "the first 2, compilation and what overlaps it, not counted"),
        (2, "the first, with compilation, not counted"),
        (1, "all counted"),
    ],
)
def test_the_table_says_which_epochs_an_engine_row_leaves_out(epochs, words):
    assert bench._warm_up_words(epochs) == words


def test_table_shows_errors_as_text_not_markup():
    error = (
        "SpecError: device 'gpu' requested but JAX sees no CUDA GPU (install "
        "JAX's CUDA build: pip install -e '.[cuda]' in the appsleuth checkout)"
    )
    sizes = ("rows", "train_rows", "val_rows", "full_rows", "epochs", "sweep_epochs")
    failed = {
        "settings": dict.fromkeys(sizes, 2),
        "recommendation": {"text": []},
        "engines": [{"engine": "fused", "threads": 1, "device": "gpu", "error": error}],
        "sweep": [{"workers": 1, "threads": 1, "device": "gpu", "error": "bad [/] value"}],
    }
    buffer = io.StringIO()
    print_bench(failed, Console(file=buffer, width=400))
    text = buffer.getvalue()
    assert "in the appsleuth checkout)" in text and "bad [/] value" in text


def test_command_prints_and_saves(tiny, tmp_path, monkeypatch):
    result, _, _ = tiny
    seen = {}

    def fake_run(settings, *, out, echo):
        seen["settings"] = settings
        seen["out"] = out
        return result

    monkeypatch.setattr(bench, "run_bench", fake_run)
    done = CliRunner().invoke(bench.bench_command, ["--quick", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert seen["settings"] == BenchSettings.quick()
    assert "sizes reduced" in done.output and "recommendation" in done.output
    done = CliRunner().invoke(bench.bench_command, ["--rows", "50000", "--epochs", "4"])
    assert done.exit_code == 0, done.output
    assert (seen["settings"].rows, seen["settings"].epochs) == (50_000, 4)


def test_command_rejects_one_epoch():
    assert bench.bench_command.name == "bench"
    done = CliRunner().invoke(bench.bench_command, ["--epochs", "1"])
    assert done.exit_code == 2
    assert "--epochs" in done.output


def test_unwritable_out_fails_before_measuring(tmp_path, monkeypatch):
    def no_measuring():
        raise AssertionError("measured although the output directory is unusable")

    monkeypatch.setattr(bench, "_detect_in_subprocess", no_measuring)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="file"):
        run_bench(_TINY, out=blocker / "results")
    assert blocker.read_text() == "x"


def test_a_backend_training_refuses_stops_before_measuring(tmp_path, monkeypatch, capsys):
    problem = "KERAS_BACKEND must be 'jax' (appsleuth's default), 'tensorflow' or 'torch'"
    monkeypatch.setattr(bench, "_detect_in_subprocess", lambda: {"backend_problem": problem})

    def no_data(*args):
        raise AssertionError("generated data for a benchmark that cannot run")

    monkeypatch.setattr(bench, "_write_data", no_data)
    assert main(["bench", "--out", str(tmp_path / "out")]) == 2
    assert f"appsleuth: invalid setting: {problem}" in capsys.readouterr().err


def test_a_tensorflow_or_torch_gpu_row_says_gpu():
    # These backends' rows said "cpu" whatever device they ran on.
    assert bench._trained_on("tensorflow", "gpu") == "gpu"
    assert bench._trained_on("torch", "cpu") == "cpu"


def test_the_environment_of_a_measurement_is_restored_even_on_error(monkeypatch):
    monkeypatch.setenv("APPSLEUTH_BENCH_SET", "before")
    monkeypatch.delenv("APPSLEUTH_BENCH_NEW", raising=False)
    values = {"APPSLEUTH_BENCH_SET": "during", "APPSLEUTH_BENCH_NEW": "during"}
    seen = {}

    def measure() -> None:
        with bench._environment(values):
            seen.update((k, os.environ.get(k)) for k in values)
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        measure()
    assert seen == values
    assert os.environ["APPSLEUTH_BENCH_SET"] == "before"
    assert "APPSLEUTH_BENCH_NEW" not in os.environ
