"""Memory of one process training model after model of a different shape (a sweep worker).

Trains ``--shapes`` models with one hidden layer of 4, 5, 6, ... neurons, one after the
other in one process through ``appsleuth.train`` (as a local sweep worker does), twice,
each in a fresh process:

- reference: Keras' own clean-up between runs only (``keras.backend.clear_session``), the
  way a notebook loop over ``model.fit`` leaves it; JAX keeps every program compiled;
- appsleuth: the same, plus appsleuth's release of compiled programs once resident memory
  has grown past its limit (``appsleuth._memory``).

Prints each variant's resident memory after the first run and its largest growth beyond
that, then ``growth_reference_mb=<MB> growth_appsleuth_mb=<MB> ratio=<x>``. Linux only
(resident memory is read from /proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")


def _variant(name: str, shapes: int, rows: int) -> None:
    """Train the models in this process and print ``first peak seconds``."""
    import time

    import appsleuth.run
    from appsleuth._memory import resident_mb
    from appsleuth.data.synth import generate_sherlock
    from appsleuth.spec import ModelSpec, RunSpec, TrainSpec

    if name == "reference":
        import appsleuth.engines.fused

        # Both callers: train after each run, the fused engine as each run starts.
        appsleuth.run.release_programs_if_grown = lambda **kwargs: False
        appsleuth.engines.fused.release_programs_if_grown = lambda **kwargs: False
    table = generate_sherlock(rows, seed=0)
    first = peak = 0.0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        for i in range(shapes):
            spec = RunSpec(
                model=ModelSpec(hidden=(4 + i,)),
                train=TrainSpec(epochs=1, batch_size=32, learning_rate=0.003),
            )
            appsleuth.run.train(spec, data=table, out=out, verbose=False, log=lambda m: None)
            now = resident_mb() or 0.0
            if i == 0:
                first = now
            peak = max(peak, now)
    print(first, peak, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=int, default=40, help="models (default: 40)")
    parser.add_argument("--rows", type=int, default=5000, help="data rows (default: 5000)")
    parser.add_argument("--variant", choices=["reference", "appsleuth"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shapes < 2 or args.rows < 100:
        parser.error(
            f"--shapes must be at least 2 and --rows at least 100; received "
            f"{args.shapes}, {args.rows}"
        )
    if not os.path.exists("/proc/self/statm"):
        parser.error("resident memory is read from /proc/self/statm, which this system lacks")
    if args.variant:
        _variant(args.variant, args.shapes, args.rows)
        return

    growth = {}
    for name in ("reference", "appsleuth"):
        done = subprocess.run(
            [sys.executable, __file__, "--variant", name, "--shapes", str(args.shapes),
             "--rows", str(args.rows)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            sys.exit(f"the {name} run failed:\n{done.stderr[-3000:]}")
        first, peak, seconds = (float(v) for v in done.stdout.split()[-3:])
        growth[name] = peak - first
        print(
            f"{name:>9}: {first:7.0f} MB after the first model, largest growth "
            f"{growth[name]:6.0f} MB over {args.shapes} shapes ({seconds:.0f} s)"
        )
    ratio = growth["reference"] / max(growth["appsleuth"], 1.0)
    print(
        f"growth_reference_mb={growth['reference']:.0f} "
        f"growth_appsleuth_mb={growth['appsleuth']:.0f} ratio={ratio:.1f}x"
    )


if __name__ == "__main__":
    main()
