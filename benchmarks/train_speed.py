"""Seconds per epoch of the baseline model: fit on TensorFlow, fit on JAX, and fused.

Trains the teaching baseline (19 inputs -> Dense(18, ReLU, RandomNormal(0, 0.05)) ->
Dense(18, softmax), Adam lr 0.0003, batch 32) on generated SherLock-like data
(``generate_sherlock(273_129)`` then ``prepare_data``: 218,461 training and 54,616
validation rows), validating after every epoch, with three engines:

- ``fit`` on TensorFlow with default settings (the design's reference),
- ``fit`` on JAX with its best ``steps_per_execution`` among a few values; on CPU also
  the best of them with XLA_FLAGS asking for the one-thread matrix products that the
  fused engine compiles small models with (a setting fit's users can make too),
- ``fused`` (appsleuth's engine, JAX),
- and, as the floor that any Keras-driven engine on XLA competes with, a hand-written
  JAX loop without Keras: the same network, Adam, shuffle and per-epoch validation as
  one compiled ``lax.scan`` of plain ``jax.numpy`` (logits cross-entropy, no metric
  objects), compiled with the fused engine's CPU options and, on a CPU, with its
  gradient products made plain (``appsleuth.engines._products``). It shows how much of
  the epoch is XLA's own per-step cost on this CPU.

Each configuration runs in its own subprocess, so that its peak memory (VmHWM, not
ru_maxrss, which Linux carries over from the parent) is its own and backends do not mix.
Seconds per epoch are the median of the epochs after the first two, each measured from
the previous epoch's end to its own (so nothing is left out when the fused engine starts
an epoch's work early); validation is included in every engine's epoch. The first epoch
includes compilation, and the fused engine trains the second one ahead while the first
is still compiling its validation, so the second ends soon after the first (a third of
the usual time, or less): counted, it pulled the fused median down by up to a fifth.
Shared or virtual machines have slow spells lasting seconds, so the JAX configurations
that are compared (best ``fit``, ``fused``, the floor) run ``--rounds`` times,
interleaved, and their timed epochs are pooled; the fastest is printed beside the median.

TensorFlow is looked for in ``--tf-python``, then in this interpreter, then in
``.cache/tf-venv/bin/python`` (a separate virtualenv with ``tensorflow-cpu`` and the same
Keras, which keeps TensorFlow out of the project's environment). Without it, the
TensorFlow reference is reported as unavailable and its ratio as ``n/a``.

Usage: ``python benchmarks/train_speed.py [--epochs 5] [--rounds 3] [--quick]
[--tf-python PATH]``.
The last line reads ``fused_vs_tf_fit=<ratio>x fused_vs_jax_fit=<ratio>x``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL_ROWS = 273_129
QUICK_ROWS = 60_000
BATCH_SIZE = 32
SPE_CHOICES = (1, 32, 256, 1024)
WARM_UP = 2  # Epochs left out of the timings: compilation, and its overlap (see above).
_TF_VENV_PYTHON = REPO / ".cache" / "tf-venv" / "bin" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per engine (default 5)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved runs of the JAX engines (default 3)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_ROWS:,} generated rows instead of all"
    )
    parser.add_argument("--tf-python", help="a Python interpreter with TensorFlow installed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--spe", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs <= WARM_UP:
        parser.error(
            f"--epochs must be at least {WARM_UP + 1} (the first {WARM_UP} are the warm-up)"
        )
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.worker:
        _worker(args.worker, Path(args.data), args.epochs, args.spe)
        return

    with tempfile.TemporaryDirectory(prefix="appsleuth-bench-") as tmp:
        data = Path(tmp) / "data.npz"
        n_train, n_val = _write_data(data, QUICK_ROWS if args.quick else FULL_ROWS)
        print(f"baseline 1H18N, batch {BATCH_SIZE}, {args.epochs} epochs ({WARM_UP} warm-up), ")
        print(f"{n_train:,} training rows, {n_val:,} validation rows (synthetic)\n", flush=True)

        results: dict[str, dict | None] = {}
        tf_python, why_not = _find_tensorflow(args.tf_python)
        if tf_python is None:
            print(f"fit/TensorFlow: reference unavailable ({why_not}); skipped\n")
            results["fit/tensorflow"] = None
        else:
            results["fit/tensorflow"] = _run(tf_python, "tensorflow", "fit", data, args.epochs)
        jax_fits: dict[tuple[int, bool], dict] = {
            (spe, False): _run(sys.executable, "jax", "fit", data, args.epochs, spe=spe)
            for spe in SPE_CHOICES
        }
        if jax_fits[SPE_CHOICES[0], False].get("platform", "cpu") == "cpu":
            # The fused engine computes small products on one thread (see _cpu_options);
            # fit's users can ask XLA for the same, process-wide: fit is offered it too.
            spe = min(SPE_CHOICES, key=lambda s: jax_fits[s, False]["s_per_epoch"])
            jax_fits[spe, True] = _run(
                sys.executable, "jax", "fit", data, args.epochs, spe=spe, one_thread=True
            )
        best = min(jax_fits, key=lambda c: jax_fits[c]["s_per_epoch"])
        rounds: dict[str, list[dict]] = {"fit": [jax_fits[best]], "fused": [], "floor": []}
        for r in range(args.rounds):
            for engine, runs in rounds.items():
                if engine != "fit" or r:  # The first fit round is the search's.
                    runs.append(_run(sys.executable, "jax", engine, data, args.epochs, *best))
        fit_name = f"fit/jax (steps_per_execution={best[0]}{', 1 thread' * best[1]}, best)"
        results[fit_name] = _pool(rounds["fit"])
        results["fused/jax"] = _pool(rounds["fused"])
        results["floor: hand-written JAX loop, no Keras"] = _pool(rounds["floor"])

    print(f"\n{'engine':44} {'s/epoch':>9} {'(min)':>7} {'val_acc':>8} {'peak RSS':>10}")
    for name, r in results.items():
        if r is None:
            print(f"{name:44} {'n/a':>9} {'':>7} {'n/a':>8} {'n/a':>10}")
        else:
            fastest = min(r["epoch_seconds"][WARM_UP:])
            print(
                f"{name:44} {r['s_per_epoch']:9.3f} {fastest:7.3f} {r['val_accuracy']:8.4f} "
                f"{r['peak_rss_mb']:8.0f} MB"
            )
    print("fit/jax by steps_per_execution: " + ", ".join(
        f"{spe}{' (1 thread)' * one}: {r['s_per_epoch']:.3f} s"
        for (spe, one), r in jax_fits.items()
    ))  # fmt: skip

    fused = results["fused/jax"]
    tf = results["fit/tensorflow"]
    jax_best = results[fit_name]
    floor = results["floor: hand-written JAX loop, no Keras"]
    tf_ratio = "n/a" if tf is None else f"{tf['s_per_epoch'] / fused['s_per_epoch']:.1f}x"
    jax_ratio = f"{jax_best['s_per_epoch'] / fused['s_per_epoch']:.1f}x"
    print()
    for name, ref in (("fit/tensorflow", tf), ("fit/jax best", jax_best)):
        if ref is not None:
            gap = 100 * (fused["val_accuracy"] - ref["val_accuracy"])
            print(f"final val_accuracy, fused minus {name}: {gap:+.2f} pp")
    fastest = min(fused["epoch_seconds"][WARM_UP:])
    print(
        f"fastest epochs: fused {fastest:.3f} s, fit/jax best "
        f"{min(jax_best['epoch_seconds'][WARM_UP:]):.3f} s "
        f"({min(jax_best['epoch_seconds'][WARM_UP:]) / fastest:.1f}x)"
    )
    print(
        f"fused takes {fused['s_per_epoch'] / floor['s_per_epoch']:.2f}x the floor's time "
        "(Keras train_step, metrics and callbacks included)"
    )
    print(
        f"the floor itself is {jax_best['s_per_epoch'] / floor['s_per_epoch']:.1f}x faster "
        "than the best fit/jax (what the same network written by hand in JAX gains here)"
    )
    print(f"fused_vs_tf_fit={tf_ratio} fused_vs_jax_fit={jax_ratio}")


def _one_thread_flags() -> str:
    """The fused engine's one-thread product options as process-wide XLA_FLAGS."""
    from appsleuth.engines.fused import _ONE_THREAD_PRODUCTS

    return " ".join(
        f"--{name}={str(value).lower() if isinstance(value, bool) else value}"
        for name, value in _ONE_THREAD_PRODUCTS.items()
    )


def _pool(runs: list[dict]) -> dict:
    """One result from interleaved runs: their post-warm-up epochs pooled."""
    epochs = [t for r in runs for t in r["epoch_seconds"][WARM_UP:]]
    return {
        "epoch_seconds": [*runs[0]["epoch_seconds"][:WARM_UP], *epochs],
        "s_per_epoch": statistics.median(epochs),
        "val_accuracy": statistics.mean(r["val_accuracy"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "total_seconds": statistics.mean(r["total_seconds"] for r in runs),
    }


def _write_data(path: Path, rows: int) -> tuple[int, int]:
    import numpy as np

    from appsleuth.data.prepare import prepare_data
    from appsleuth.data.synth import generate_sherlock

    prepared = prepare_data(generate_sherlock(rows))
    np.savez(path, x=prepared.x_train, y=prepared.y_train, xv=prepared.x_val, yv=prepared.y_val)
    return len(prepared.x_train), len(prepared.x_val)


def _find_tensorflow(explicit: str | None) -> tuple[str | None, str]:
    candidates = [explicit] if explicit else [sys.executable, str(_TF_VENV_PYTHON)]
    # Keras must not start on this process's backend (KERAS_BACKEND=jax, say) while probing:
    # an interpreter with TensorFlow but without JAX would be taken for one without either.
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    errors = []
    for python in candidates:
        if not python or not Path(python).exists():
            if python == explicit:  # the user's own choice is never passed over silently
                errors.append(f"{python}: no such file")
            continue
        probe = subprocess.run(
            [python, "-c", "import tensorflow, keras"], capture_output=True, text=True, env=env
        )
        if probe.returncode == 0:
            return python, ""
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        errors.append(f"{python}: {last}")
    return None, (
        "TensorFlow is not installed; install tensorflow-cpu (the 'bench' extra) "
        "or pass --tf-python" + (f" (tried {'; '.join(errors)})" if errors else "")
    )


def _run(
    python: str,
    backend: str,
    engine: str,
    data: Path,
    epochs: int,
    spe: int = 1,
    one_thread: bool = False,
) -> dict:
    """Train in a subprocess; ``one_thread`` (fit only) sets XLA_FLAGS for one-thread products."""
    label = f"{engine}/{backend}"
    if engine == "fit":
        label += f" steps_per_execution={spe}"
        if one_thread:
            label += f" XLA_FLAGS='{_one_thread_flags()}'"
    if engine == "floor":
        label = "floor (hand-written JAX loop)"
    print(f"running {label} ...", flush=True)
    # Prepend, not replace: the interpreter may find Keras itself through PYTHONPATH.
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": path}
    if one_thread and engine == "fit":
        env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_one_thread_flags()}".strip()
    command = [python, __file__, "--worker", engine, "--data", str(data), "--epochs", str(epochs)]
    done = subprocess.run(
        [*command, "--spe", str(spe)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"  epochs (s): {', '.join(f'{t:.3f}' for t in result['epoch_seconds'])}; "
        f"val_accuracy {result['val_accuracy']:.4f}; peak RSS {result['peak_rss_mb']:.0f} MB; "
        f"whole run incl. compilation {result['total_seconds']:.1f} s; "
        f"on {result.get('platform', 'cpu')}",
        flush=True,
    )
    return result


def _worker(engine: str, data: Path, epochs: int, spe: int) -> None:
    """Train once in this process and print one JSON line with the measurements."""
    import keras
    import numpy as np

    arrays = np.load(data)
    x, y, xv, yv = arrays["x"], arrays["y"], arrays["xv"], arrays["yv"]
    if engine == "floor":
        _floor_worker(x, y, xv, yv, epochs)
        return
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(
                18,
                activation="relu",
                kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05),
            ),
            keras.layers.Dense(int(max(y.max(), yv.max())) + 1, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.0003),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=spe,
    )

    class EpochTimer(keras.callbacks.Callback):
        # fit validates before on_epoch_end, fused inside its epoch program: both included.
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        # From one epoch's end to the next (the first from the start of training), for
        # every engine: the fused engine may start an epoch's work before its
        # on_epoch_begin, while the previous epoch is validated.
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.seconds.append(now - self.start)
            self.start = now

    timer = EpochTimer()
    start = time.perf_counter()
    kwargs = {
        "validation_data": (xv, yv),
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "callbacks": [timer],
        "verbose": 0,
    }
    if engine == "fused":
        from appsleuth.engines.fused import run_fused

        history = run_fused(model, x, y, seed=0, **kwargs)
    else:  # Plain Keras fit, as the TensorFlow interpreter may not have appsleuth.
        history = model.fit(x, y, **kwargs)
    total = time.perf_counter() - start  # Compilation and set-up included.
    print(
        json.dumps(
            {
                "epoch_seconds": timer.seconds,
                "s_per_epoch": statistics.median(timer.seconds[WARM_UP:]),
                "val_accuracy": history.history["val_accuracy"][-1],
                "peak_rss_mb": _peak_rss_mb(),
                "total_seconds": total,
                "platform": _platform(),
            }
        )
    )


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB, from its own start.

    Linux keeps ``ru_maxrss`` across ``exec``: a worker started by a parent holding the
    generated data would report at least the parent's peak. VmHWM belongs to the
    worker's own address space.
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS


def _platform() -> str:
    """The device the backend trained on ("cpu", "gpu"); TensorFlow runs are CPU-only here."""
    import keras

    if keras.backend.backend() != "jax":
        return "cpu"
    import jax

    return jax.devices()[0].platform


def _floor_worker(x, y, xv, yv, epochs: int) -> None:
    """The same training as plain JAX: what XLA itself needs per epoch on this machine."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from appsleuth.engines._products import with_plain_products
    from appsleuth.engines.fused import _option_sets, _permutation

    start = time.perf_counter()
    n, n_classes = len(x), int(max(y.max(), yv.max())) + 1
    n_full, rest = divmod(n, BATCH_SIZE)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": 0.05 * jax.random.normal(k1, (x.shape[1], 18)),
        "b1": jnp.zeros(18),
        "w2": jax.random.uniform(k2, (18, n_classes), minval=-0.4, maxval=0.4),
        "b2": jnp.zeros(n_classes),
    }
    lr, beta1, beta2, eps = 0.0003, 0.9, 0.999, 1e-7  # Keras' Adam defaults

    def logits(p, xb):
        return jax.nn.relu(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def loss(p, xb, yb):
        z = logits(p, xb)
        return jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, yb[:, None], 1)[:, 0])

    def step(carry, batch):
        p, m, v, t = carry
        value, g = jax.value_and_grad(loss)(p, *batch)
        t = t + 1
        m = jax.tree.map(lambda m, g: m + (g - m) * (1 - beta1), m, g)
        v = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - beta2), v, g)
        alpha = lr * jnp.sqrt(1 - beta2**t) / (1 - beta1**t)
        p = jax.tree.map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + eps), p, m, v)
        return (p, m, v, t), value

    if jax.default_backend() == "cpu":  # As the fused engine traces its training steps.
        step = with_plain_products(step)

    def take(a, rows):
        return jnp.take(a, rows, axis=0, mode="clip")

    def epoch(carry, x, y, xv, yv, index):
        order = _permutation(jax.random.fold_in(jax.random.key(0), index), n)
        cut = n_full * BATCH_SIZE
        # Gathered straight into batches, as the fused engine does (no copy to cut them).
        full, last = order[:cut].reshape(n_full, BATCH_SIZE), order[cut:]
        carry, losses = jax.lax.scan(step, carry, (take(x, full), take(y, full)))
        if rest:
            carry, _ = step(carry, (take(x, last), take(y, last)))
        val_accuracy = jnp.mean(jnp.argmax(logits(carry[0], xv), -1) == yv)
        return carry, jnp.mean(losses), val_accuracy

    zeros = jax.tree.map(jnp.zeros_like, params)
    carry = (params, zeros, zeros, jnp.float32(0))
    data = [jax.device_put(a) for a in (x, y, xv, yv)]
    options = None
    if jax.default_backend() == "cpu":  # As the fused engine compiles the baseline's epoch.
        options = _option_sets(BATCH_SIZE * x.shape[1] * 18)[0]
    compiled = jax.jit(epoch).lower(carry, *data, np.int32(0)).compile(options)
    seconds, val_accuracy = [], 0.0
    for index in range(epochs):
        tick = time.perf_counter()
        carry, _, val_accuracy = compiled(carry, *data, np.int32(index))
        val_accuracy = float(val_accuracy)  # Waits for the epoch, like the engines' logs.
        seconds.append(time.perf_counter() - tick)
    print(
        json.dumps(
            {
                "epoch_seconds": seconds,
                "s_per_epoch": statistics.median(seconds[WARM_UP:]),
                "val_accuracy": val_accuracy,
                "peak_rss_mb": _peak_rss_mb(),
                "total_seconds": time.perf_counter() - start,
                "platform": _platform(),
            }
        )
    )


if __name__ == "__main__":
    main()
