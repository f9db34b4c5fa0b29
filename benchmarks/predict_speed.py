"""Prediction throughput: rows per second, in memory and from file to predictions file.

Trains a small baseline model (18 hidden neurons) on generated data, then times:

- in memory: ``predict(run, df)`` on 1 million generated rows already loaded
  (preprocessing + model + result table), and the model alone on the prepared array
  (``predict_proba``, the compiled forward pass that ``predict`` runs);
- end to end: ``predict_file`` from a CSV of the same rows to a predictions CSV.

Reference measured in the same run: scikit-learn's ``DecisionTreeClassifier.predict`` on
the same array (a fast classical model). Each in-memory call runs once untimed first
(compilation). Final line: ``predict_rows_per_s=<number>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from appsleuth.data.synth import generate_sherlock
from appsleuth.hardware import describe_hardware
from appsleuth.predict import predict, predict_file
from appsleuth.run import load_run, predict_proba, prepare_run_data, train
from appsleuth.spec import ModelSpec, RunSpec, TrainSpec

TARGET = 500_000


def _warm_then_time(fn):
    """``fn()`` once untimed, then once timed: (its result, seconds).

    The warm-up is the timed call itself: the forward pass compiles once per chunk
    shape, the shape follows the row count, and a smaller warm-up (10,000 rows once)
    left the compilation of the timed call's shape inside the timing.
    """
    fn()
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.rows < 1:
        parser.error(f"--rows must be at least 1; received {args.rows}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        spec = RunSpec(model=ModelSpec(hidden=(18,)), train=TrainSpec(epochs=2))
        train_table = generate_sherlock(50_000, seed=0)
        run = train(spec, data=train_table, out=tmp_path, verbose=False, log=lambda m: None)
        loaded = load_run(run.run_dir)
        table = generate_sherlock(args.rows, seed=1)
        prepared = prepare_run_data(spec, table)

        preds, t_mem = _warm_then_time(lambda: predict(loaded, table))
        n_classes = len(prepared.classes)
        _, t_model = _warm_then_time(
            lambda: predict_proba(loaded.model, prepared.x_train, n_classes)
        )
        n_model = len(prepared.x_train)

        from sklearn.tree import DecisionTreeClassifier

        tree = DecisionTreeClassifier(random_state=0).fit(prepared.x_val, prepared.y_val)
        start = time.perf_counter()
        tree.predict(prepared.x_train)
        t_tree = time.perf_counter() - start

        path = tmp_path / "big.csv"
        table.to_csv(path)
        start = time.perf_counter()
        summary = predict_file(loaded.run_dir, path, tmp_path / "preds.csv")
        t_file = time.perf_counter() - start

    mem_rate = len(preds) / t_mem
    print(f"rows={args.rows:,} (generated), model 1H18N, {describe_hardware()['device']}")
    print(f"in memory, predict(run, df)        : {mem_rate:12,.0f} rows/s ({t_mem:.2f} s)")
    print(f"in memory, model on prepared array : {n_model / t_model:12,.0f} rows/s")
    print(f"reference: sklearn tree.predict    : {n_model / t_tree:12,.0f} rows/s")
    print(
        f"file to file, predict_file         : {summary.rows / t_file:12,.0f} rows/s "
        f"({t_file:.2f} s, {summary.skipped} rows skipped)"
    )
    print(
        f"target: above {TARGET:,} rows/s in memory -> "
        f"{'met' if mem_rate > TARGET else 'MISSED'} ({mem_rate / TARGET:.2f}x the target)"
    )
    print(f"appsleuth_vs_sklearn_tree={(len(preds) / t_mem) / (n_model / t_tree):.2f}x")
    print(f"predict_rows_per_s={mem_rate:.0f}")


if __name__ == "__main__":
    main()
