"""Load and clean 273k SherLock rows: appsleuth vs the teaching material's pandas recipe.

Writes the embedded synthetic data (273,129 rows, the real file's size and layout) to a
temporary CSV, then times, in the same run:

- reference: ``pd.read_csv(path, index_col=0)`` (pandas' default C engine) followed by
  the teaching cleaning (drop cminflt and guest_time, dropna);
- appsleuth: ``load_sherlock`` (layout detection, validation) + ``clean_sherlock``.

Prints the medians, the ratio, and the check against the 2 s target.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from appsleuth.data.clean import clean_sherlock
from appsleuth.data.load import load_sherlock
from appsleuth.data.synth import generate_sherlock

TARGET_S = 2.0
FULL_ROWS = 273_129  # the size the target is for


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.rows < 1 or args.repeats < 1:
        parser.error(
            f"--rows and --repeats must be at least 1; received {args.rows}, {args.repeats}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sherlock_18apps_synthetic.csv"
        generate_sherlock(args.rows, seed=0).to_csv(path)
        size_mb = path.stat().st_size / 1e6

        def reference() -> None:
            df = pd.read_csv(path, index_col=0)
            df.drop(columns=["cminflt", "guest_time"]).dropna()

        def appsleuth() -> None:
            clean_sherlock(load_sherlock(path))

        appsleuth()  # warm-up: imports, file cache
        t_ref = _median_time(reference, args.repeats)
        t_app = _median_time(appsleuth, args.repeats)

    print(f"rows={args.rows:,} file={size_mb:.1f} MB repeats={args.repeats} (median)")
    print(f"pandas read_csv + teaching cleaning : {t_ref:6.3f} s")
    print(f"appsleuth load_sherlock + clean     : {t_app:6.3f} s")
    print(
        f"target: under {TARGET_S:.1f} s -> {'met' if t_app < TARGET_S else 'MISSED'} "
        f"({t_app / TARGET_S:.2f} of the budget)"
        + ("" if args.rows == FULL_ROWS else f"; the target is for {FULL_ROWS:,} rows")
    )
    print(f"appsleuth_vs_pandas_load={t_ref / t_app:.2f}x")


if __name__ == "__main__":
    main()
