"""How close is the synthetic SherLock generator to the real data? Speed and realism.

Times ``generate_sherlock`` at full size against the 3 s target, then trains the teaching
baseline recipe (one hidden ReLU layer, softmax, Adam lr 0.0003, batch 32, stratified
random 80/20 split with random_state=34) over a range of hidden-layer widths and prints
the capacity curve next to the published one measured on the real file, followed by a
decision tree's accuracy and random-split vs blocked-split leakage and accuracy.

Usage::

    python benchmarks/synth_realism.py            # full size, 30 epochs (long)
    python benchmarks/synth_realism.py --quick    # 40k rows, 10 epochs (bar not expected)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from appsleuth.data.layouts import LABEL_COLUMN
from appsleuth.data.synth import generate_sherlock

_PUBLISHED = (
    Path(__file__).resolve().parents[1].parent
    / "shared/reference/lesson_results/post_processing_hpc_neurons.csv"
)
_GEN_TARGET_S = 3.0
# The realism bar: (neurons, lowest, highest) validation accuracy after full training.
_BAR = {1: (0.0, 0.6), 4: (0.75, 0.97), 18: (0.95, 1.0), 80: (0.98, 1.0)}
_TREE_TARGET = 0.95


def features(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The teaching cleaning recipe: drop cminflt/guest_time and incomplete rows, one-hot state."""
    clean = df.drop(columns=["cminflt", "guest_time"]).dropna()
    clean = clean.drop(columns=[c for c in ("UserId", "UUID") if c in clean.columns])
    y = clean.pop(LABEL_COLUMN).to_numpy()
    x = pd.get_dummies(clean, columns=["state"], dtype=float)
    return x.to_numpy(float), y, list(x.columns)


def random_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random 80/20 split of row positions with random_state=34."""
    idx = np.arange(len(y))
    train, val = train_test_split(idx, test_size=0.2, random_state=34, stratify=y)
    return train, val


def blocked_split(y: np.ndarray, seed: int = 34) -> tuple[np.ndarray, np.ndarray]:
    """Per app, rows in time order cut into 10 contiguous blocks; 2 random blocks validate."""
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(y), dtype=bool)
    for app in np.unique(y):
        rows = np.flatnonzero(y == app)
        blocks = np.array_split(rows, 10)
        for b in rng.choice(10, size=2, replace=False):
            val_mask[blocks[b]] = True
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)


def leak_share(x: np.ndarray, train: np.ndarray, val: np.ndarray) -> float:
    """Share of validation rows with an exact feature duplicate among the training rows."""
    seen = {row.tobytes() for row in np.ascontiguousarray(x[train])}
    return float(np.mean([row.tobytes() in seen for row in np.ascontiguousarray(x[val])]))


def tree_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray) -> float:
    """Validation accuracy of an unpruned decision tree (random_state=0)."""
    tree = DecisionTreeClassifier(random_state=0).fit(x[train], y[train])
    return float((tree.predict(x[val]) == y[val]).mean())


def train_network(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    neurons: int,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """Train the teaching baseline with ``neurons`` hidden units; return final val accuracy."""
    from appsleuth.model import teaching_baseline_accuracy

    xs = StandardScaler().fit(x[train]).transform(x).astype("float32")
    return teaching_baseline_accuracy(
        xs[train], y[train], xs[val], y[val],
        neurons=neurons, epochs=epochs, batch_size=batch_size, seed=seed,
    )  # fmt: skip


def _published() -> dict[int, float]:
    if not _PUBLISHED.exists():
        return {}
    pub = pd.read_csv(_PUBLISHED)
    return dict(zip(pub["hidden_neurons"].astype(int), pub["val_accuracy"], strict=True))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 (the numbers are for reading, not a pass/fail gate)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=273_129, help="rows to train on")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per width")
    parser.add_argument("--neurons", default="1,4,18,80", help="comma-separated widths")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--quick", action="store_true", help="40k rows and 10 epochs")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.epochs < 1:
        parser.error(f"--rows and --epochs must be at least 1; received {args.rows}, {args.epochs}")
    if args.quick:
        args.rows, args.epochs = min(args.rows, 40_000), min(args.epochs, 10)
    try:  # empty: no network, only the generator and the tree
        widths = [int(n) for n in args.neurons.split(",") if n.strip()]
    except ValueError:
        widths = [0]
    if any(w < 1 for w in widths):
        parser.error(f"--neurons takes positive widths, comma-separated; received {args.neurons!r}")

    generate_sherlock(1_000, seed=args.seed)  # warm imports and caches
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        full = generate_sherlock(seed=args.seed)
        times.append(time.perf_counter() - t0)
    gen = min(times)
    print(f"generation of {len(full):,} rows: {gen:.2f} s (target < {_GEN_TARGET_S:.0f} s, "
          f"ratio {gen / _GEN_TARGET_S:.2f})")  # fmt: skip

    df = full if args.rows == len(full) else generate_sherlock(args.rows, seed=args.seed)
    x, y, cols = features(df)
    train, val = random_split(y)
    print(f"data: {len(y):,} clean rows, {len(cols)} features, "
          f"{len(train):,} train / {len(val):,} validation")  # fmt: skip

    published = _published()
    print(f"\ncapacity curve ({args.epochs} epochs, batch 32; published: 30 epochs on real data)")
    print(f"{'neurons':>8} {'synthetic':>10} {'published':>10} {'ratio':>7} {'bar':>13} {'s':>6}")
    for n in widths:
        t0 = time.perf_counter()
        acc = train_network(x, y, train, val, n, args.epochs)
        pub = published.get(n, float("nan"))
        lo, hi = _BAR.get(n, (float("nan"), float("nan")))
        ok = "" if n not in _BAR else ("ok" if lo <= acc <= hi else "MISS")
        print(f"{n:>8} {acc:>10.4f} {pub:>10.4f} {acc / pub:>7.3f} "
              f"{f'[{lo:.2f},{hi:.2f}]':>13} {time.perf_counter() - t0:>6.0f} {ok}")  # fmt: skip
        sys.stdout.flush()

    tree_rand = tree_accuracy(x, y, train, val)
    print(f"\ndecision tree, random split: {tree_rand:.4f} (target >= {_TREE_TARGET}, "
          f"ratio {tree_rand / _TREE_TARGET:.3f})")  # fmt: skip
    btrain, bval = blocked_split(y)
    leak_r, leak_b = leak_share(x, train, val), leak_share(x, btrain, bval)
    tree_block = tree_accuracy(x, y, btrain, bval)
    chance = pd.Series(y).value_counts(normalize=True).iloc[0]
    print(f"\n{'split':>8} {'leak':>7} {'tree acc':>9}")
    print(f"{'random':>8} {leak_r:>7.3f} {tree_rand:>9.4f}")
    print(f"{'blocked':>8} {leak_b:>7.3f} {tree_block:>9.4f}")
    print(f"blocked/random tree accuracy ratio {tree_block / tree_rand:.3f}; "
          f"majority-class chance {chance:.3f}")  # fmt: skip
    if widths:
        n = 18 if 18 in widths else widths[-1]
        acc_b = train_network(x, y, btrain, bval, n, args.epochs)
        print(f"network {n} neurons, blocked split: {acc_b:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
