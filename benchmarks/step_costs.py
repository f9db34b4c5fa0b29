"""Where the time of one fused training step goes on this CPU: dispatch or arithmetic.

The fused engine runs an epoch as one ``lax.scan`` of small steps (batch 32). This script
measures, each as a scan of the same length as the baseline's epoch (6,826 steps):

- **dispatch**: 40 trivial element-wise operations per step that XLA cannot merge, which
  is what launching a step's ~40 compiled operations costs, with almost no arithmetic;
- **one product**: one (32 x 19) @ (19 x 18) matrix product per step, the size of the
  baseline's first layer (each step of the baseline does five products of this size:
  two forward, three for the gradients);
- **fused step**: the fused engine's own step loop for the baseline (1 hidden layer of
  18, Adam, sparse categorical cross-entropy, accuracy), without the shuffle and the
  validation.

It prints microseconds per step (median and fastest of ``--rounds`` scans) and the share
of the fused step that the dispatch of its operations and five products account for.
Usage: ``python benchmarks/step_costs.py [--rounds 25]``. The last line reads
``dispatch_share=<p>% products_share=<p>%``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

STEPS = 6_826  # Full batches of 32 in the baseline's 218,461 training rows.


def _options() -> dict:
    """XLA's options as the fused engine compiles the baseline's steps on CPU."""
    from appsleuth.engines.fused import _option_sets

    return _option_sets(32 * 19 * 18)[0]  # Its largest product: (32 x 19) @ (19 x 18).


def _time(compiled, args, rounds: int) -> tuple[float, float]:
    """Median and fastest microseconds per step over ``rounds`` calls (after a warm-up)."""
    import jax

    jax.block_until_ready(compiled(*args))
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) / STEPS * 1e6, min(seconds) / STEPS * 1e6


def _dispatch(rounds: int) -> tuple[float, float, int]:
    import jax
    import jax.numpy as jnp

    carry = tuple(jnp.full((18,), float(i), jnp.float32) for i in range(40))

    def body(c, _):
        return tuple(v * 1.0001 + 0.5 for v in c), None

    def loop(c):
        return jax.lax.scan(body, c, None, length=STEPS)[0]

    compiled = jax.jit(loop).lower(carry).compile(_options())
    return (*_time(compiled, (carry,), rounds), compiled.as_text().count(" fusion("))


def _product(rounds: int) -> tuple[float, float]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    x = jnp.asarray(np.random.default_rng(0).random((STEPS, 32, 19), np.float32))
    w = jnp.ones((19, 18), jnp.float32)

    def body(w, xb):
        return w + 1e-6 * jnp.sum(xb @ w, axis=0), None  # Keeps the product live.

    def loop(w, x):
        return jax.lax.scan(body, w, x)[0]

    return _time(jax.jit(loop).lower(w, x).compile(_options()), (w, x), rounds)


def _fused_step(rounds: int) -> tuple[float, float]:
    import jax
    import keras
    import numpy as np

    from appsleuth.engines import fused

    rng = np.random.default_rng(0)
    n = STEPS * 32
    x, y = rng.normal(size=(n, 19)).astype(np.float32), rng.integers(0, 18, n).astype(np.int32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((19,)),
            keras.layers.Dense(18, activation="relu"),
            keras.layers.Dense(18, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model._symbolic_build(data_batch=(x[:32], y[:32], None))
    batches = jax.device_put(fused._in_order((x, y), 32))
    args = (fused._read_state(model), [v.value for v in model.metrics_variables], *batches)
    # As run_fused compiles its training program (logits plan, cheaper accuracy).
    compiled = fused._compiled(
        model,
        None,
        fused.logits_plan(model) if fused._FROM_LOGITS else None,
        ("train", 32),
        lambda plan: fused._train_function(model, plan=plan),
        args,
        fused._cpu_options(model, 32),
    )
    return _time(compiled, args, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25, help="timed scans each (default 25)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    dispatch_median, dispatch_min, n_ops = _dispatch(args.rounds)
    product_median, product_min = _product(args.rounds)
    step_median, step_min = _fused_step(args.rounds)
    per_op = dispatch_median / n_ops
    print(f"{STEPS:,} steps per scan; microseconds per step, median (fastest) of {args.rounds}")
    print(f"dispatch: {n_ops} trivial operations  {dispatch_median:6.2f} ({dispatch_min:.2f})"
          f"  = {1000 * per_op:.0f} ns per operation")  # fmt: skip
    print(f"one (32x19)@(19x18) product        {product_median:6.2f} ({product_min:.2f})")
    print(f"fused step, baseline                 {step_median:6.2f} ({step_min:.2f})")
    dispatch_share = 100 * 40 * per_op / step_median
    products_share = 100 * min(5 * product_median, step_median) / step_median
    print(f"dispatch_share={dispatch_share:.0f}% products_share={products_share:.0f}%")


if __name__ == "__main__":
    main()
