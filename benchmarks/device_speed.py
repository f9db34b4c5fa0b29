"""Where a GPU helps: fused-engine seconds per epoch on the CPU and on the GPU.

Trains Dense networks on generated SherLock-like data (``generate_sherlock`` then
``prepare_data``, as ``train_speed.py``) with the fused engine, for every batch size and
hidden-layer shape in the grid, once on this machine's CPU (all cores) and once on its
CUDA GPU. Each device runs in its own subprocess, since JAX fixes its devices when it
starts. Seconds per epoch are the median of the epochs after the first two: the first
compiles, and on a CPU with a second core the fused engine trains the second one ahead
while the first still compiles its validation, so the second ends soon after the first.
Validation is included. The ratio column is the CPU's time over the GPU's on the same
machine in the same run: above 1 the GPU is faster.

Without a GPU (or without ``appsleuth[cuda]``) only the CPU column is measured and the
ratios read ``n/a``.

Usage: ``python benchmarks/device_speed.py [--rows 273129] [--epochs 4]
[--batch 32 --batch 1024 ...] [--hidden 18 --hidden 1024,1024 ...] [--out FILE.json]``.
The last line reads ``gpu_vs_cpu_baseline=<ratio>x gpu_vs_cpu_best=<ratio>x``: the GPU's
speed-up for the teaching baseline (hidden 18, batch 32) and its largest one in the grid.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from appsleuth._epochs import WARM_UP_EPOCHS, steady_seconds_per_epoch

REPO = Path(__file__).resolve().parents[1]
FULL_ROWS = 273_129
BATCHES = (32, 1024, 8192)
HIDDEN = ("18", "256,256", "2048,2048")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS, help="generated rows (default all)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per setting (default 4)")
    parser.add_argument("--batch", type=int, action="append", help=f"default {BATCHES}")
    parser.add_argument(
        "--hidden", action="append", help=f"hidden widths, comma-separated; default {HIDDEN}"
    )
    parser.add_argument("--out", help="also write the results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs <= WARM_UP_EPOCHS:
        first = WARM_UP_EPOCHS
        parser.error(f"--epochs must be at least {first + 1} (the first {first} are the warm-up)")
    batches = args.batch or list(BATCHES)
    try:
        shapes = [tuple(int(w) for w in h.split(",")) for h in (args.hidden or HIDDEN)]
    except ValueError:
        parser.error(f"--hidden takes comma-separated widths; received {args.hidden}")
    if any(b < 1 for b in batches) or any(w < 1 for s in shapes for w in s):
        parser.error("batch sizes and widths must be positive")
    if args.rows < 1:
        parser.error(f"--rows must be at least 1; received {args.rows}")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        # Checked now: the results come after minutes of measuring.
        parser.error(f"--out {args.out}: its directory does not exist")
    grid = [(b, s) for s in shapes for b in batches]
    if args.worker:
        _worker(args.worker, Path(args.data), args.epochs, grid)
        return

    with tempfile.TemporaryDirectory(prefix="appsleuth-devices-") as tmp:
        data = Path(tmp) / "data.npz"
        n_train, n_val = _write_data(data, args.rows)
        print(
            f"{n_train:,} training rows, {n_val:,} validation rows (synthetic); "
            f"{args.epochs} epochs per setting ({WARM_UP_EPOCHS} warm-up)",
            flush=True,
        )
        results = {device: _run(device, data, args.epochs, grid) for device in ("cpu", "gpu")}

    _report(results, grid, args.out)


def _run(device: str, data: Path, epochs: int, grid: list) -> dict:
    """One device's measurements, or its reason for having none."""
    print(f"measuring on {device} ...", flush=True)
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": "jax"}
    command = [sys.executable, __file__, "--worker", device, "--data", str(data)]
    command += ["--epochs", str(epochs)]
    for batch in sorted({b for b, _ in grid}):
        command += ["--batch", str(batch)]
    for shape in dict.fromkeys(s for _, s in grid):
        command += ["--hidden", ",".join(map(str, shape))]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {device}: unavailable or failed: {reason}", flush=True)
        return {"error": reason, "rows": rows}
    return {"rows": rows, "name": rows[0].get("device_name") if rows else None}


def _worker(device: str, data: Path, epochs: int, grid: list) -> None:
    """Train every grid setting on ``device``; one JSON line per setting."""
    from appsleuth.hardware import configure_backend

    configure_backend(device=device)  # before Keras: it fixes the visible devices
    import jax
    import numpy as np

    from appsleuth._keras import import_keras

    keras = import_keras()
    from appsleuth.engines import EpochTimer, run_engine
    from appsleuth.model import build_model, loss_name, targets_for
    from appsleuth.spec import ModelSpec, TrainSpec

    arrays = np.load(data)
    x, y, xv, yv = arrays["x"], arrays["y"], arrays["xv"], arrays["yv"]
    classes = [str(c) for c in range(int(max(y.max(), yv.max())) + 1)]
    platform = jax.devices()[0]

    for batch, hidden in grid:
        keras.utils.set_random_seed(0)
        train = TrainSpec(batch_size=batch, epochs=epochs)
        model = build_model(ModelSpec(hidden=hidden), x.shape[1], classes, train)
        timer = EpochTimer()  # End to end: validation and work started ahead included.
        loss = loss_name(train, len(classes))
        y1, yv1 = (targets_for(a, loss, len(classes)) for a in (y, yv))
        history = run_engine(
            "fused", model, x, y1, validation_data=(xv, yv1), epochs=epochs,
            batch_size=batch, seed=0, callbacks=[timer], verbose=0,
        )  # fmt: skip
        row = {
            "batch": batch,
            "hidden": list(hidden),
            "weights": int(model.count_params()),
            "epoch_seconds": timer.seconds,
            "s_per_epoch": steady_seconds_per_epoch(timer.seconds),
            "val_accuracy": float(history.history["val_accuracy"][-1]),
            "platform": platform.platform,
            "device_name": getattr(platform, "device_kind", platform.platform),
        }
        print(json.dumps(row), flush=True)
        keras.backend.clear_session()


def _report(results: dict, grid: list, out: str | None) -> None:
    by_key = {
        device: {(r["batch"], tuple(r["hidden"])): r for r in res["rows"]}
        for device, res in results.items()
    }
    gpu_name = results["gpu"].get("name") or "GPU (none)"
    print(f"\nfused engine, seconds per epoch; GPU: {gpu_name}")
    print(f"{'hidden':>12} {'weights':>9} {'batch':>6} {'CPU':>9} {'GPU':>9} {'CPU/GPU':>8}")
    ratios: dict = {}
    for batch, hidden in grid:
        cpu = by_key["cpu"].get((batch, hidden))
        gpu = by_key["gpu"].get((batch, hidden))
        ratio = cpu["s_per_epoch"] / gpu["s_per_epoch"] if cpu and gpu else None
        if ratio is not None:
            ratios[(batch, hidden)] = ratio
        weights = (cpu or gpu or {}).get("weights", "")
        print(
            f"{','.join(map(str, hidden)):>12} {weights:>9} {batch:>6} "
            f"{_cell(cpu):>9} {_cell(gpu):>9} {f'{ratio:.2f}x' if ratio else 'n/a':>8}"
        )
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    baseline = ratios.get((32, (18,)))
    best = max(ratios.values()) if ratios else None
    print(
        f"gpu_vs_cpu_baseline={f'{baseline:.2f}x' if baseline else 'n/a'} "
        f"gpu_vs_cpu_best={f'{best:.2f}x' if best else 'n/a'}"
    )


def _cell(row: dict | None) -> str:
    return f"{row['s_per_epoch']:.3f}" if row else "n/a"


def _write_data(path: Path, rows: int) -> tuple[int, int]:
    import numpy as np

    from appsleuth.data.prepare import prepare_data
    from appsleuth.data.synth import generate_sherlock

    prepared = prepare_data(generate_sherlock(rows))
    np.savez(path, x=prepared.x_train, y=prepared.y_train, xv=prepared.x_val, yv=prepared.y_val)
    return len(prepared.x_train), len(prepared.x_val)


if __name__ == "__main__":
    main()
