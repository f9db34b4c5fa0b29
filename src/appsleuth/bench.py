"""``appsleuth bench``: how fast this machine trains, and how to split its cores.

Two measurements, on generated SherLock-like data of reduced size:

1. seconds per epoch of the teaching baseline (one hidden layer of 18, batch 32, Adam
   3e-4) for each available engine (``fused``, ``fit``) and thread counts 1, 2, 4, ...
   up to the available cores (plus a GPU row when the backend has a CUDA device). Each
   measurement runs in a fresh subprocess (``python -m appsleuth.bench --worker ...``)
   that applies its thread limit and device *before* importing Keras, since both are
   fixed when the backend starts;
2. sweep throughput (trials per minute) of the local executor for the ``workers x
   threads`` splits that fill the machine (on 2 cores: 1 x 2 and 2 x 1).

The result is a table, a recommendation, and ``bench.json`` and ``bench.png`` in the
output directory (written atomically).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appsleuth._epochs import WARM_UP_EPOCHS, steady_seconds_per_epoch
from appsleuth.errors import SpecError
from appsleuth.hardware import available_cores, configure_backend

__all__ = [
    "BenchSettings",
    "bench_command",
    "gpu_worker_splits",
    "print_bench",
    "run_bench",
    "thread_counts",
    "worker_splits",
]

_FULL_ROWS = 273_129
_BATCH_SIZE = 32
_FORMAT = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """Sizes of a benchmark.

    Attributes:
        rows: Generated rows (before the 80/20 split). Defaults to 40,000.
        epochs: Epochs per engine measurement; the first two are the warm-up (see
            ``steady_seconds_per_epoch``), or the first only when there are two.
            Defaults to 4.
        sweep_epochs: Epochs per sweep trial. Defaults to 2.
        sweep_rounds: Trials per worker in each sweep measurement. Defaults to 2.
        all_thread_counts: Measure every power of two up to the cores, not only 1 and
            all cores. Defaults to True.
        engines: Engines to measure. Defaults to None: every one the backend offers.
        threads: Thread counts to measure. Defaults to None: see ``all_thread_counts``.
        splits: ``(workers, threads)`` pairs of the sweep measurement. Defaults to None:
            :func:`worker_splits`.
    """

    rows: int = 40_000
    epochs: int = 4
    sweep_epochs: int = 2
    sweep_rounds: int = 2
    all_thread_counts: bool = True
    engines: tuple[str, ...] | None = None
    threads: tuple[int, ...] | None = None
    splits: tuple[tuple[int, int], ...] | None = None

    @classmethod
    def quick(cls) -> BenchSettings:
        """Smaller still, for a first look (under a minute on 2 cores).

        8,000 rows, engines at 1 thread only (the worker splits still compare thread
        counts), sweep trials of 1 epoch.
        """
        return cls(rows=8_000, epochs=2, sweep_epochs=1, sweep_rounds=2, threads=(1,))


def thread_counts(cores: int, *, all_counts: bool = True) -> list[int]:
    """Thread counts to measure: 1, 2, 4, ... below ``cores``, then ``cores`` itself.

    Args:
        cores: The available cores.
        all_counts: Every power of two; False keeps only 1 and ``cores``. Defaults to True.
    """
    counts = [1]
    while all_counts and counts[-1] * 2 < cores:
        counts.append(counts[-1] * 2)
    if cores not in counts:
        counts.append(cores)
    return counts


def worker_splits(cores: int, *, limit: int = 4) -> list[tuple[int, int]]:
    """``(workers, threads)`` pairs that fill ``cores``: one worker per core first.

    Args:
        cores: The available cores.
        limit: At most this many pairs (evenly spread; ``1 x cores`` always kept).
            Defaults to 4.
    """
    splits = [(cores // t, t) for t in thread_counts(cores) if cores % t == 0]
    if len(splits) > limit:
        keep = {round(i * (len(splits) - 1) / (limit - 1)) for i in range(limit)}
        splits = [s for i, s in enumerate(splits) if i in keep]
    return splits


def gpu_worker_splits(cores: int) -> list[tuple[int, int]]:
    """``(workers, threads)`` pairs measured on a GPU: one worker, then up to 4 sharing it.

    Several small models on one GPU keep it busier than one can at batch 32.

    Args:
        cores: The available cores (each worker gets an equal share for its host side).
    """
    splits = [(1, cores)]
    if cores > 1:
        workers = min(4, cores)
        splits.append((workers, cores // workers))
    return splits


# --- engine measurements (one subprocess each) --------------------------------------------


def _worker(args: dict[str, Any]) -> dict[str, Any]:
    """Train the baseline once in this fresh process; the parent reads the returned dict."""
    applied = configure_backend(threads=args["threads"], device=args["device"])
    import numpy as np

    from appsleuth._keras import import_keras

    keras = import_keras()  # first: it fixes the backend before anything imports Keras

    from appsleuth.engines import EpochTimer, resolve_engine, run_engine
    from appsleuth.model import build_model, loss_name, targets_for
    from appsleuth.spec import ModelSpec, TrainSpec

    arrays = np.load(args["data"])
    x, y, xv, yv = arrays["x"], arrays["y"], arrays["xv"], arrays["yv"]
    classes = [str(c) for c in arrays["classes"]]
    keras.utils.set_random_seed(0)
    train = TrainSpec(batch_size=_BATCH_SIZE, epochs=args["epochs"])
    model = build_model(ModelSpec(hidden=(18,)), x.shape[1], classes, train)
    engine, why = resolve_engine(args["engine"], model)
    if engine != args["engine"]:
        return {"error": why or f"engine {args['engine']} unavailable"}
    loss = loss_name(train, len(classes))
    # Validation happens within the epoch for both engines, so it is timed too.
    timer = EpochTimer()
    history = run_engine(
        engine,
        model,
        x,
        targets_for(y, loss, len(classes)),
        validation_data=(xv, targets_for(yv, loss, len(classes))),
        epochs=args["epochs"],
        batch_size=_BATCH_SIZE,
        seed=0,
        callbacks=[timer],
        verbose=0,
    )
    seconds = timer.seconds
    return {
        "epoch_seconds": seconds,
        "s_per_epoch": steady_seconds_per_epoch(seconds),
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "platform": _trained_on(applied["backend"], args["device"]),
        "affinity": applied["cores"],
        "os_threads": _os_threads(),
    }


def _warm_up_words(epochs: int) -> str:
    """Which of ``epochs`` epochs an engine row leaves out, in words."""
    if epochs > WARM_UP_EPOCHS:
        return f"the first {WARM_UP_EPOCHS}, compilation and what overlaps it, not counted"
    return "the first, with compilation, not counted" if epochs > 1 else "all counted"


def _trained_on(backend: str, device: str) -> str:
    """The platform a measurement trained on: JAX's first device, else the one asked for.

    TensorFlow and PyTorch place the model on their first GPU when they see one, and
    ``configure_backend`` hid theirs for ``cpu`` and checked there is one for ``gpu``.
    """
    if backend == "jax":
        import jax

        return jax.devices()[0].platform
    return "gpu" if device == "gpu" else "cpu"


def _os_threads() -> int | None:
    """Threads of this process as the kernel counts them (None where /proc is absent)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("Threads")), None)
    except OSError:
        return None


def _measure_engine(
    engine: str, threads: int, device: str, data: Path, epochs: int
) -> dict[str, Any]:
    args = {"engine": engine, "threads": threads, "device": device, "data": str(data)}
    args["epochs"] = epochs
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "appsleuth.bench", "--worker", json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    row: dict[str, Any] = {"engine": engine, "threads": threads, "device": device}
    row["process_s"] = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        row["error"] = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return row
    row.update(json.loads(lines[-1]))
    return row


# --- sweep measurements --------------------------------------------------------------------


def _measure_sweep(
    workers: int, threads: int, *, rows: int, epochs: int, rounds: int, out: Path, device: str
) -> dict[str, Any]:
    from appsleuth.spec import DataSpec, RunSpec, TrainSpec
    from appsleuth.sweep import SweepSpec, prepare_sweep_dir, run_local

    n_trials = workers * rounds
    spec = SweepSpec(
        name=f"bench-{workers}x{threads}-{device}",
        data=DataSpec(rows=rows),
        base=RunSpec(train=TrainSpec(epochs=epochs, batch_size=_BATCH_SIZE)),
        repeats=n_trials,
    )
    sweep_dir = prepare_sweep_dir(spec, out)
    # Spawned workers inherit the environment: on a GPU machine the CPU splits must not
    # quietly train on the GPU.
    hide = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}
    # Per-trial lines would bury the table.
    with _environment(hide), contextlib.redirect_stderr(io.StringIO()):
        summary = run_local(
            sweep_dir,
            workers=workers,
            threads_per_trial=threads,
            progress=False,
            device=device if device == "gpu" else "auto",
        )
    done = summary.count("complete")
    finished = [o.seconds for o in summary.outcomes if o.status == "complete"]
    # Each worker's first trial carries its one-off costs (data loading, compilation),
    # which makes it that worker's slowest; the others show the rate a long sweep settles
    # at. (Finishing order cannot tell workers apart: a fast worker may finish two
    # trials before a slow one finishes its first.)
    steady = sorted(finished)[: len(finished) - summary.workers] or finished
    row: dict[str, Any] = {
        "workers": summary.workers,
        "threads": threads,
        "device": device,
        "trials": n_trials,
        "completed": done,
        "wall_s": summary.wall_s,
        "trials_per_min": 60.0 * done / summary.wall_s if summary.wall_s > 0 else 0.0,
        "trial_seconds": finished,
        "steady_trials_per_min": (
            60.0 * summary.workers / statistics.median(steady) if steady else 0.0
        ),
        "steady_excludes_first_trials": len(steady) < len(finished),
    }
    if done < n_trials:
        errors = [o.error for o in summary.outcomes if o.error]
        row["error"] = errors[0] if errors else f"{n_trials - done} trial(s) did not complete"
    return row


# --- the whole benchmark -------------------------------------------------------------------


def _write_data(path: Path, rows: int) -> tuple[int, int]:
    import numpy as np

    from appsleuth.data.prepare import prepare_data
    from appsleuth.data.tables import embedded_data

    prepared = prepare_data(embedded_data(rows))
    np.savez(
        path,
        x=prepared.x_train,
        y=prepared.y_train,
        xv=prepared.x_val,
        yv=prepared.y_val,
        classes=np.array(prepared.classes),
    )
    return len(prepared.x_train), len(prepared.x_val)


@contextlib.contextmanager
def _compile_cache(tmp: str) -> Any:
    """A JAX compilation cache shared by the benchmark's processes (environment-inherited).

    Compiling the same small programs in every fresh process would double the
    benchmark's run time on a small machine; the per-epoch and steady-state figures
    exclude compilation either way.
    """
    values = {
        "JAX_COMPILATION_CACHE_DIR": str(Path(tmp) / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    with _environment(values):
        yield


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Any:
    """Set environment variables for the block; each is then restored, or unset again."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _detect_in_subprocess() -> dict[str, Any]:
    """:func:`~appsleuth.hardware.detect_devices`, run in a child process.

    Starting JAX here would make this process hold (by default 75 % of) the GPU's
    memory for the whole benchmark, starving the GPU workers; a child releases it.
    """
    code = "import json; from appsleuth.hardware import detect_devices as d; print(json.dumps(d()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"device detection failed: {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def _split_name(workers: int, threads: int) -> str:
    return f"{workers} worker{'s' * (workers > 1)} x {threads} thread{'s' * (threads > 1)}"


def _recommend(result: dict[str, Any]) -> dict[str, Any]:
    """The best worker split for sweeps and the best engine/threads for single runs."""
    text: list[str] = []
    rec: dict[str, Any] = {}
    sweeps = [r for r in result["sweep"] if "error" not in r and r["device"] == "cpu"]
    if sweeps:
        rate = "steady_trials_per_min"
        best = max(sweeps, key=lambda r: r[rate])
        single = max(sweeps, key=lambda r: r["threads"])  # fewest workers, most threads
        name = _split_name(best["workers"], best["threads"])
        ratio = best[rate] / single[rate] if single[rate] else 1.0
        rec["sweep"] = {"workers": best["workers"], "threads": best["threads"], "speedup": ratio}
        if best is single:
            line = f"sweeps: {name} is fastest"
            others = sorted((r for r in sweeps if r is not best), key=lambda r: -r[rate])
            if others:
                o = others[0]
                line += f"; {o['workers']} x {o['threads']} reaches {o[rate] / best[rate]:.2f}x"
        else:
            line = (
                f"sweeps: {name}: {ratio:.1f}x the throughput of {single['workers']} x "
                f"{single['threads']} (workers={best['workers']}, "
                f"threads_per_trial={best['threads']})"
            )
        text.append(line)
    runs = [r for r in result["engines"] if "error" not in r]
    if runs:
        best = min(runs, key=lambda r: r["s_per_epoch"])
        rec["single_run"] = {k: best[k] for k in ("engine", "threads", "device")}
        line = (
            f"single runs: engine {best['engine']} on {best['device']} with "
            f"{best['threads']} thread(s), {best['s_per_epoch']:.3f} s/epoch"
        )
        same = [  # fit under the same conditions: the same threads on the same device
            r
            for r in runs
            if r["engine"] == "fit"
            and (r["threads"], r["device"]) == (best["threads"], best["device"])
            and best["engine"] != "fit"
        ]
        if same:
            line += f" ({same[0]['s_per_epoch'] / best['s_per_epoch']:.1f}x faster than fit)"
        text.append(line)
    text += _gpu_lines(result, rec)
    rec["text"] = text
    return rec


def _gpu_lines(result: dict[str, Any], rec: dict[str, Any]) -> list[str]:
    """The GPU against the CPU of the same machine, for single runs and for sweeps."""
    lines = []
    runs = [r for r in result["engines"] if "error" not in r]
    gpu = [r for r in runs if r["device"] == "gpu"]
    cpu = [r for r in runs if r["device"] == "cpu"]
    if gpu and cpu:
        g = min(gpu, key=lambda r: r["s_per_epoch"])
        c = min(cpu, key=lambda r: r["s_per_epoch"])
        ratio = c["s_per_epoch"] / g["s_per_epoch"]
        rec["gpu_single_run_speedup"] = ratio
        lines.append(
            f"GPU, single runs: {g['s_per_epoch']:.3f} s/epoch against {c['s_per_epoch']:.3f} "
            f"on the CPU: {_faster(ratio)} for this small model at batch {_BATCH_SIZE}"
        )
    sweeps = [r for r in result["sweep"] if "error" not in r]
    rate = "steady_trials_per_min"
    gpu = [r for r in sweeps if r["device"] == "gpu"]
    cpu = [r for r in sweeps if r["device"] == "cpu"]
    if gpu and cpu:
        g = max(gpu, key=lambda r: r[rate])
        c = max(cpu, key=lambda r: r[rate])
        ratio = g[rate] / c[rate] if c[rate] else 1.0
        rec["gpu_sweep_speedup"] = ratio
        lines.append(
            f"GPU, sweeps: {_split_name(g['workers'], g['threads'])} on the GPU "
            f"{g[rate]:.1f} trials/min against {c[rate]:.1f} for "
            f"{_split_name(c['workers'], c['threads'])} on the CPU: {_faster(ratio)}"
        )
    return lines


def _faster(ratio: float) -> str:
    """``ratio`` = CPU time over GPU time, as words."""
    if ratio >= 1:
        return f"the GPU is {ratio:.1f}x faster"
    return f"the CPU is {1 / ratio:.1f}x faster"


def run_bench(
    settings: BenchSettings | None = None,
    *,
    out: str | os.PathLike[str] | None = "bench-results",
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure engines, thread counts and worker splits on this machine.

    Args:
        settings: Sizes. Defaults to ``BenchSettings()`` (under 2 minutes on 2 cores).
        out: Directory for ``bench.json`` and ``bench.png``, checked for writing before
            anything is measured; None writes nothing. Defaults to ``bench-results``.
        echo: Called with a progress line before each measurement. Defaults to none.

    Returns:
        The result: ``device``, ``settings``, ``engines`` (one row per engine, threads
        and device), ``sweep`` (one row per workers x threads), ``recommendation``.

    Raises:
        OSError: ``out`` cannot be created or written; raised before measuring.
        SpecError: ``KERAS_BACKEND`` names a backend that training refuses (unknown or
            not installed); raised before measuring.
    """
    settings = settings or BenchSettings()
    say = echo or (lambda _line: None)
    if out is not None:
        _check_writable(Path(out))  # before minutes of measuring, not after
    devices = _detect_in_subprocess()
    if devices.get("backend_problem"):
        # Every measurement would fail on it, one process after another: say it now.
        raise SpecError(devices["backend_problem"])
    cores = available_cores()
    backend = devices["backend"]
    engines = list(settings.engines or (["fused", "fit"] if backend == "jax" else ["fit"]))
    has_gpu = devices["device"] == "gpu"  # JAX's GPUs, or TensorFlow's or PyTorch's
    result: dict[str, Any] = {
        "format_version": _FORMAT,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": "gpu" if has_gpu else "cpu",
        "devices": devices,
        "backend": backend,
        "cores": cores,
    }
    with tempfile.TemporaryDirectory(prefix="appsleuth-bench-") as tmp, _compile_cache(tmp):
        data = Path(tmp) / "data.npz"
        say(f"generating {settings.rows:,} rows of synthetic data ...")
        n_train, n_val = _write_data(data, settings.rows)
        result["settings"] = {
            **dataclasses.asdict(settings),
            "train_rows": n_train,
            "val_rows": n_val,
            "batch_size": _BATCH_SIZE,
            "model": "1H18N, Adam lr 0.0003",
            "reduced": True,
            "full_rows": _FULL_ROWS,
        }
        counts = settings.threads or thread_counts(cores, all_counts=settings.all_thread_counts)
        plan = [(e, t, "cpu") for t in counts for e in engines]
        plan += [(e, cores, "gpu") for e in engines] if has_gpu else []
        rows = []
        for engine, threads, device in plan:
            say(f"engine {engine}, {threads} thread(s), {device} ...")
            rows.append(_measure_engine(engine, threads, device, data, settings.epochs))
        result["engines"] = rows
        sweeps = []
        splits = [(w, t, "cpu") for w, t in (settings.splits or worker_splits(cores))]
        splits += [(w, t, "gpu") for w, t in gpu_worker_splits(cores)] if has_gpu else []
        for workers, threads, device in splits:
            say(f"sweep {workers} worker(s) x {threads} thread(s), {device} ...")
            sweeps.append(
                _measure_sweep(
                    workers,
                    threads,
                    rows=settings.rows,
                    epochs=settings.sweep_epochs,
                    rounds=settings.sweep_rounds,
                    out=Path(tmp) / "sweeps",
                    device=device,
                )
            )
        result["sweep"] = sweeps
    result["recommendation"] = _recommend(result)
    if out is not None:
        _save(result, Path(out))
    return result


def _check_writable(out: Path) -> None:
    """Create ``out`` and write a probe file there.

    Raises:
        OSError: ``out`` cannot be created or written (the message names the path).
    """
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out, prefix=".bench-probe-"):
        pass


def _save(result: dict[str, Any], out: Path) -> None:
    from appsleuth._atomic import atomic_write_text
    from appsleuth.plots import off_screen, save_figure, subplots

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.json", json.dumps(result, indent=2) + "\n")
    with off_screen():
        fig, (left, right) = subplots(1, 2, figsize=(10, 4))
    engines = [r for r in result["engines"] if "error" not in r]
    left.bar(
        [f"{r['engine']}\n{r['threads']}t {r['device']}" for r in engines],
        [r["s_per_epoch"] for r in engines],
        color=["tab:blue" if r["engine"] == "fused" else "tab:orange" for r in engines],
    )
    left.set_ylabel("seconds per epoch (lower is better)")
    left.set_yscale("log")
    left.set_title(f"baseline, {result['settings']['train_rows']:,} training rows")
    sweeps = [r for r in result["sweep"] if "error" not in r]
    right.bar(
        [f"{r['workers']} x {r['threads']}\n{r['device']}" for r in sweeps],
        [r["steady_trials_per_min"] for r in sweeps],
        color="tab:green",
    )
    right.set_ylabel("trials per minute, steady state (higher is better)")
    right.set_title(f"sweep throughput, {result['settings']['sweep_epochs']} epochs per trial")
    fig.suptitle(
        f"appsleuth bench on {result['devices'].get('hostname')} ({result['cores']} cores)"
    )
    fig.tight_layout()
    save_figure(fig, out / "bench.png")


def print_bench(result: dict[str, Any], console: Any = None) -> None:
    """Print a benchmark result as two tables and the recommendation."""
    from rich.console import Console
    from rich.table import Table

    from appsleuth.display import plain_text

    console = console or Console()
    s = result["settings"]
    console.print(
        f"[bold]sizes reduced[/] for a short measurement: {s['rows']:,} generated rows "
        f"({s['train_rows']:,} training, {s['val_rows']:,} validation; the full data has "
        f"{s['full_rows']:,}), {s['epochs']} epochs per engine row "
        f"({_warm_up_words(s['epochs'])}), {s['sweep_epochs']} epoch(s) per sweep trial. "
        f"Seconds per epoch grow about linearly with rows."
    )
    table = Table(title="seconds per epoch, baseline 1H18N batch 32", title_justify="left")
    # The cores a measurement was pinned to, by id: "0" is core 0, not zero cores.
    for col in ("engine", "threads", "device", "s/epoch", "val_acc", "OS threads", "core ids"):
        table.add_column(col, justify="left" if col in ("engine", "device") else "right")
    for r in result["engines"]:
        if "error" in r:
            error = plain_text(r["error"])  # a child's last stderr line: "[...]" is no markup
            table.add_row(r["engine"], str(r["threads"]), r["device"], "failed", error, "", "")
            continue
        table.add_row(
            r["engine"],
            str(r["threads"]),
            r.get("platform", r["device"]),
            f"{r['s_per_epoch']:.3f}",
            f"{r['val_accuracy']:.4f}",
            str(r.get("os_threads")),
            ",".join(map(str, r.get("affinity", []))),
        )
    console.print(table)
    table = Table(title="sweep throughput (local executor)", title_justify="left")
    for col in ("workers x threads", "device", "trials", "wall s", "trials/min", "steady"):
        table.add_column(col, justify="right")
    for r in result["sweep"]:
        if "error" in r:
            table.add_row(
                f"{r['workers']} x {r['threads']}",
                r["device"],
                "",
                "",
                "failed",
                plain_text(r["error"]),
            )
            continue
        table.add_row(
            f"{r['workers']} x {r['threads']}",
            r["device"],
            f"{r['completed']}/{r['trials']}",
            f"{r['wall_s']:.1f}",
            f"{r['trials_per_min']:.1f}",
            f"{r['steady_trials_per_min']:.1f}",
        )
    console.print(table)
    console.print(
        "trials/min: over the whole call, worker start-up included; steady: from the "
        "trials after each worker's first (no start-up, data loading or compilation), "
        "the rate a long sweep settles at"
    )
    for line in result["recommendation"]["text"]:
        console.print(f"[bold green]recommendation[/] {line}")


@click.command("bench")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Directory for bench.json and bench.png.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Smaller: 8,000 rows, engines at 1 thread only (~45 s on 2 cores).",
)
@click.option(
    "--rows",
    type=click.IntRange(min=2_000),
    default=None,
    help=f"Generated rows (default: {BenchSettings().rows:,}; "
    f"{BenchSettings.quick().rows:,} with --quick).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=2),
    default=None,
    help=f"Epochs per engine row, the first two a warm-up (default: {BenchSettings().epochs}; "
    f"{BenchSettings.quick().epochs} with --quick).",
)
def bench_command(out: Path, quick: bool, rows: int | None, epochs: int | None) -> None:
    """Measure engines, thread counts and worker splits on this machine; recommend one."""
    settings = BenchSettings.quick() if quick else BenchSettings()
    changes = {k: v for k, v in (("rows", rows), ("epochs", epochs)) if v is not None}
    settings = dataclasses.replace(settings, **changes)
    result = run_bench(settings, out=out, echo=lambda line: click.echo(line, err=True))
    print_bench(result)
    click.echo(f"saved {out / 'bench.json'} and {out / 'bench.png'}")


def _main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--worker":
        print(json.dumps(_worker(json.loads(argv[1]))), flush=True)
    else:
        bench_command.main(args=argv, prog_name="python -m appsleuth.bench")


if __name__ == "__main__":
    _main(sys.argv[1:])
