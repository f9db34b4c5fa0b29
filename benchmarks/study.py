"""The full published tuning study with the local executor: wall time and parallel efficiency.

Runs the teaching material's four scans (hidden neurons, learning rate, batch size,
layers: 22 trials x 30 epochs) on full-size generated data (273,129 rows; 218,461
training rows) with the local executor, one worker per core, and then measures the
throughput of 2 workers against 1 on a subset (the hidden-neuron scan, 8 trials, at 10
epochs; each worker pays its own start-up: imports, data, first compilation).

Each scan's line also splits its workers' time (core-seconds: wall time x workers) into
the training epochs themselves, the rest of ``train`` (building the model, compiling
the epoch programs, evaluating, writing the run directory), the rest of a trial (mostly
loading and preparing the data, on a worker's first trial; and whatever a worker first
imports there) and time outside trials (starting the worker processes and importing
Keras and JAX, ending them, and a worker idle while the other trains the scan's last
trial). The epochs come from each run's metadata
(first epoch + median epoch x the others).

Targets: the whole study under 5 minutes on a 2-core machine; 2 workers at least 1.7x
the throughput of 1. Final line: ``study_wall_s=<seconds> efficiency_2w=<ratio>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from appsleuth.hardware import available_cores, describe_hardware
from appsleuth.run import read_metadata
from appsleuth.sweep import load_sweep_spec, prepare_sweep_dir, run_local, trial_states

STUDIES = ("scan-hidden-neurons", "scan-learning-rate", "scan-batch-size", "scan-layers")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
TARGET_S = 300.0


def _with_epochs(spec, epochs: int, rows: int | None, name: str | None = None):
    base = spec.base
    train = dataclasses.replace(base.train, epochs=epochs)
    data = dataclasses.replace(spec.data, rows=rows)
    d = spec.to_dict()
    d["base"]["train"] = train.to_dict()
    d["data"] = data.to_dict()
    if name:
        d["name"] = name
    return type(spec).from_dict(d)


_PARTS = ("epochs", "train_other", "trial_other", "outside")


def _run(spec, out: Path, workers: int) -> tuple[float, int, dict[str, float]]:
    sweep_dir = prepare_sweep_dir(spec, out)
    start = time.perf_counter()
    summary = run_local(sweep_dir, workers=workers, progress=False)
    wall = time.perf_counter() - start
    done = sum(1 for s in trial_states(sweep_dir) if s.status == "complete")
    if summary.failed:
        print(f"  warning: {summary.failed} trial(s) of {spec.name} failed")
    return wall, done, _split(sweep_dir, summary, wall)


def _split(sweep_dir: Path, summary, wall: float) -> dict[str, float]:
    """Core-seconds of the sweep's workers by where they went (see the module docstring)."""
    parts = dict.fromkeys(_PARTS, 0.0)
    in_trials = 0.0
    for outcome in summary.outcomes:
        in_trials += outcome.seconds
        meta = read_metadata(sweep_dir / outcome.name) or {}
        if outcome.status != "complete" or meta.get("status") != "complete":
            parts["trial_other"] += outcome.seconds
            continue
        epochs = meta["first_epoch_s"] + meta["seconds_per_epoch"] * (meta["epochs_run"] - 1)
        parts["epochs"] += epochs
        parts["train_other"] += meta["wall_time_s"] - epochs
        parts["trial_other"] += outcome.seconds - meta["wall_time_s"]
    parts["outside"] = summary.workers * wall - in_trials
    return parts


def _split_text(parts: dict[str, float]) -> str:
    total = sum(parts.values()) or 1.0
    names = {
        "epochs": "epochs",
        "train_other": "model+compile+eval+files",
        "trial_other": "data+checks",
        "outside": "worker start/end+idle",
    }
    return ", ".join(f"{names[k]} {parts[k]:.0f} ({parts[k] / total:.0%})" for k in _PARTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rows", type=int, default=None, help="default: 273,129")
    parser.add_argument("--subset-epochs", type=int, default=10)
    parser.add_argument("--skip-study", action="store_true", help="only the 1-vs-2 subset")
    args = parser.parse_args()
    for name in ("epochs", "rows", "subset_epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1; received {value}")

    cores = available_cores()
    hw = describe_hardware()
    print(f"machine: {hw['machine']}, {cores} core(s) available, device {hw['device']}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        # The study starts from an empty compilation cache, as a first study would.
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(out / "jax-cache-study")
        study_wall = 0.0
        n_trials = 0
        totals = dict.fromkeys(_PARTS, 0.0)
        if not args.skip_study:
            for name in STUDIES:
                spec = _with_epochs(
                    load_sweep_spec(EXAMPLES / f"{name}.yaml"), args.epochs, args.rows
                )
                wall, done, parts = _run(spec, out / "study", workers=cores)
                study_wall += wall
                n_trials += done
                for k, v in parts.items():
                    totals[k] += v
                print(f"{name:<22} {done:>2} trials  {wall:7.1f} s; core-s: {_split_text(parts)}")
            print(f"whole study, core-seconds: {_split_text(totals)}")
            print(
                f"whole study: {n_trials} trials x {args.epochs} epochs in {study_wall:.1f} s "
                f"({n_trials / study_wall * 60:.1f} trials/min) with {cores} worker(s); "
                f"target under {TARGET_S:.0f} s -> "
                f"{'met' if study_wall < TARGET_S else 'MISSED'} "
                f"({study_wall / TARGET_S:.2f} of the budget)"
            )

        subset = load_sweep_spec(EXAMPLES / "scan-hidden-neurons.yaml")
        times = {}
        for workers in (1, 2):
            spec = _with_epochs(subset, args.subset_epochs, args.rows, name=f"subset-{workers}w")
            # A fresh compilation cache for each: neither run may reuse the other's programs.
            os.environ["JAX_COMPILATION_CACHE_DIR"] = str(out / f"jax-cache-{workers}w")
            times[workers], _, _ = _run(spec, out / "subset", workers=min(workers, cores))
            print(
                f"subset (hidden-neuron scan, 8 trials, {args.subset_epochs} epochs), "
                f"{workers} worker(s): {times[workers]:.1f} s"
            )
        efficiency = times[1] / times[2]
        print(
            f"2 workers: {efficiency:.2f}x the throughput of 1 (target 1.7x) -> "
            f"{'met' if efficiency >= 1.7 else 'MISSED'}"
            + ("" if cores >= 2 else " (only 1 core available: no parallelism possible)")
        )
    print(f"study_wall_s={study_wall:.1f} efficiency_2w={efficiency:.2f}")


if __name__ == "__main__":
    main()
