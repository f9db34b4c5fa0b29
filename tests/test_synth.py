"""Tests of the synthetic SherLock generator: layout, determinism, data issues, realism."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from appsleuth.data.layouts import (
    APP_COUNTS_18,
    APPS_18,
    INCOMPLETE_ROW_COLUMNS,
    LABEL_COLUMN,
    MALWARE_APP,
    SHERLOCK18_COLUMNS,
    SHERLOCK18_FEATURES,
    SHERLOCK18_INT_FEATURES,
    STATE_VALUES,
)
from appsleuth.data.synth import generate_sherlock
from appsleuth.errors import DataError, SpecError

FULL = 273_129
NET = ("UidRxBytes", "UidRxPackets", "UidTxBytes", "UidTxPackets")
# Summary statistics of the real file (25 %, 50 %, 75 %, max) from the reference notes.
REAL_STATS = {
    "CPU_USAGE": (0.05, 0.13, 0.37, 110.9),
    "UidRxBytes": (0, 0, 0, 8_872_786),
    "UidRxPackets": (0, 0, 0, 6_165),
    "UidTxBytes": (0, 0, 0, 9_830_372),
    "UidTxPackets": (0, 0, 0, 6_748),
    "cutime": (0, 0, 0, 11),
    "importance": (300, 300, 400, 400),
    "lru": (0, 0, 11, 16),
    "num_threads": (17, 30, 55, 141),
    "otherPrivateDirty": (1_480, 4_308, 13_548, 192_856),
    "priority": (20, 20, 20, 20),
    "rss": (4_894, 6_959, 11_206, 54_668),
    "stime": (91, 345, 1_474, 46_629),
    "utime": (102, 565, 2_636, 42_845),
    "vsize": (1.958e9, 2.027e9, 2.126e9, 2.457e9),
}
REALISM_EPOCHS = 20
REAL_NET_MIN = {"UidRxBytes": -280, "UidRxPackets": -11, "UidTxBytes": -60, "UidTxPackets": -1}


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    return generate_sherlock(seed=0, with_ids=True)


def _features(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The teaching cleaning recipe, as the realism bar is defined with it."""
    clean = df.drop(columns=["cminflt", "guest_time", "UserId", "UUID"], errors="ignore")
    clean = clean.dropna()
    y = clean.pop(LABEL_COLUMN).to_numpy()
    return pd.get_dummies(clean, columns=["state"], dtype=float).to_numpy(float), y


def _blocked(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per app, time-ordered rows in 10 contiguous blocks; 2 random blocks validate."""
    rng = np.random.default_rng(34)
    val = np.zeros(len(y), dtype=bool)
    for app in np.unique(y):
        blocks = np.array_split(np.flatnonzero(y == app), 10)
        for b in rng.choice(10, size=2, replace=False):
            val[blocks[b]] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


def _random(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return train_test_split(np.arange(len(y)), test_size=0.2, random_state=34)


def _leak(x: np.ndarray, train: np.ndarray, val: np.ndarray) -> float:
    seen = {r.tobytes() for r in np.ascontiguousarray(x[train])}
    return float(np.mean([r.tobytes() in seen for r in np.ascontiguousarray(x[val])]))


def _tree(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray) -> float:
    model = DecisionTreeClassifier(random_state=0).fit(x[train], y[train])
    return float((model.predict(x[val]) == y[val]).mean())


# --- layout -------------------------------------------------------------------------


def test_layout_and_dtypes() -> None:
    df = generate_sherlock(5_000)
    assert tuple(df.columns) == SHERLOCK18_COLUMNS
    for name in SHERLOCK18_FEATURES:
        if name == "state":
            assert df[name].dtype == object
        elif name in SHERLOCK18_INT_FEATURES:
            assert df[name].dtype == np.int64, name
        else:
            assert df[name].dtype == np.float64, name
    assert df[LABEL_COLUMN].dtype == object
    assert set(df["state"].dropna()) <= set(STATE_VALUES)
    assert all(isinstance(v, str) for v in df["state"].dropna())
    assert df.index.dtype == np.int64
    assert df.index.name is None
    assert df.index[0] == 0
    assert (np.diff(df.index) > 0).all()
    # A subsample of a larger table: gaps, about 3.66 original rows per kept row.
    assert 3.3 < df.index[-1] / len(df) < 4.0


def test_full_size_matches_real_shape(full: pd.DataFrame) -> None:
    assert len(full) == FULL
    assert full.index[-1] == 999_994
    counts = full[LABEL_COLUMN].value_counts()
    assert counts.to_dict() == APP_COUNTS_18


def test_attrs_contract() -> None:
    meta = generate_sherlock(100, seed=7).attrs["appsleuth"]
    assert meta == {
        "source": "synthetic",
        "dataset": "synthetic-sherlock18(seed=7)",
        "synthetic": True,
        "layout": "sherlock18",
        "label": "ApplicationName",
        "features": list(SHERLOCK18_FEATURES),
        "categorical": ["state"],
        "id_columns": [],
        "time_column": None,
        "columns": list(SHERLOCK18_COLUMNS),
    }


def test_with_ids(full: pd.DataFrame) -> None:
    assert list(full.columns[:2]) == ["UserId", "UUID"]
    assert tuple(full.columns[2:]) == SHERLOCK18_COLUMNS
    assert full["UUID"].dtype == np.int64
    assert full["UserId"].str.fullmatch(r"[0-9a-f]{10}").all()
    assert 10 <= full["UserId"].nunique() <= 50
    # Epoch milliseconds within the SherLock collection period (2015-2016).
    assert full["UUID"].between(1_420_070_400_000, 1_483_228_800_000).all()
    for _, uuid in full.groupby("UserId")["UUID"]:
        assert uuid.is_monotonic_increasing
    meta = full.attrs["appsleuth"]
    assert meta["id_columns"] == ["UserId", "UUID"]
    assert meta["time_column"] == "UUID"
    # Asking for ids changes nothing else.
    pd.testing.assert_frame_equal(
        full.drop(columns=["UserId", "UUID"]), generate_sherlock(seed=0), check_like=False
    )


def test_rows_in_time_order_across_apps(full: pd.DataFrame) -> None:
    assert full["UUID"].is_monotonic_increasing
    # Not grouped by app: the label changes often along the file.
    assert (full[LABEL_COLUMN] != full[LABEL_COLUMN].shift()).mean() > 0.3


# --- determinism and sizes ------------------------------------------------------------


def test_deterministic() -> None:
    a = generate_sherlock(3_000, seed=5, with_ids=True)
    b = generate_sherlock(3_000, seed=5, with_ids=True)
    pd.testing.assert_frame_equal(a, b)
    c = generate_sherlock(3_000, seed=6, with_ids=True)
    assert not a.equals(c)
    assert not np.array_equal(a["num_threads"].to_numpy(), c["num_threads"].to_numpy())


def test_proportions_scaled() -> None:
    n = 10_000
    counts = generate_sherlock(n)[LABEL_COLUMN].value_counts()
    assert counts.sum() == n
    for app, real in APP_COUNTS_18.items():
        assert abs(counts[app] - real * n / FULL) <= 1, app


@pytest.mark.parametrize("n_rows", [1, 2, 17, 18, 50, 123])
def test_tiny_sizes(n_rows: int) -> None:
    df = generate_sherlock(n_rows, with_ids=True)
    assert len(df) == n_rows
    assert tuple(df.columns[2:]) == SHERLOCK18_COLUMNS
    assert (np.diff(df.index) > 0).all()
    if n_rows >= len(APPS_18):
        assert set(df[LABEL_COLUMN]) == set(APPS_18)
    assert df["cminflt"].isna().all()


def test_apps_subset() -> None:
    df = generate_sherlock(4_000, apps=["WhatsApp", "Facebook", MALWARE_APP])
    counts = df[LABEL_COLUMN].value_counts()
    assert counts.sum() == 4_000
    assert set(counts.index) == {"WhatsApp", "Facebook", MALWARE_APP}
    total = APP_COUNTS_18["WhatsApp"] + APP_COUNTS_18["Facebook"] + APP_COUNTS_18[MALWARE_APP]
    for app in counts.index:
        assert abs(counts[app] - 4_000 * APP_COUNTS_18[app] / total) <= 1
    # The order in which apps are named does not matter.
    other = generate_sherlock(4_000, apps=[MALWARE_APP, "Facebook", "WhatsApp"])
    pd.testing.assert_frame_equal(df, other)


def test_unknown_app_raises() -> None:
    with pytest.raises(DataError, match=r"'Tinder'.*valid names.*Google App.*Moriarty"):
        generate_sherlock(100, apps=["Facebook", "Tinder"])
    with pytest.raises(DataError, match="valid names"):
        generate_sherlock(100, apps=[])


@pytest.mark.parametrize("bad", [0, -5, 2.5, "100", None, True])
def test_bad_n_rows_raises(bad: object) -> None:
    with pytest.raises(SpecError, match=rf"n_rows.*{bad!r}"):
        generate_sherlock(bad)  # type: ignore[arg-type]


def test_row_counts_beyond_any_memory_are_refused() -> None:
    # 10**23 rows overflowed NumPy's int64 arithmetic: a traceback, not a message.
    with pytest.raises(SpecError, match=r"n_rows must be at most 1,000,000,000,000 .*=10{23}"):
        generate_sherlock(10**23)
    from appsleuth.data.tables import embedded_data

    with pytest.raises(SpecError, match=r"^rows must be at most 1,000,000,000,000 .*rows=10{23}"):
        embedded_data(10**23)


@pytest.mark.parametrize("bad", [-1, 1.5, "x", 2**32])
def test_bad_seed_raises(bad: object) -> None:
    from appsleuth.data.tables import embedded_data

    with pytest.raises(SpecError, match=r"seed must be an integer from 0 to 4294967295"):
        generate_sherlock(100, seed=bad)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=rf"received seed={bad!r}"):
        embedded_data(100, seed=bad, cache=False)  # type: ignore[arg-type]


# --- data issues ----------------------------------------------------------------------


def test_data_issues(full: pd.DataFrame) -> None:
    assert full["cminflt"].isna().all()
    missing = full[list(SHERLOCK18_FEATURES)].isna()
    incomplete = missing[list(INCOMPLETE_ROW_COLUMNS)].any(axis=1)
    assert incomplete.sum() == 52
    # Incomplete rows miss exactly those columns together, and nothing else is missing.
    assert missing.loc[incomplete, list(INCOMPLETE_ROW_COLUMNS)].all().all()
    others = [c for c in SHERLOCK18_FEATURES if c not in (*INCOMPLETE_ROW_COLUMNS, "cminflt")]
    assert not missing[others].any().any()
    assert not missing.loc[~incomplete, list(INCOMPLETE_ROW_COLUMNS)].any().any()
    assert (full.loc[~incomplete, "guest_time"] == 0.0).all()


@pytest.mark.parametrize(("n_rows", "expected"), [(50, 0), (2_626, 0), (2_627, 1), (30_000, 6)])
def test_incomplete_rows_scale(n_rows: int, expected: int) -> None:
    df = generate_sherlock(n_rows)
    assert df["state"].isna().sum() == expected == round(n_rows * 52 / FULL)


def test_cumulative_cpu_grows_along_processes(full: pd.DataFrame) -> None:
    df = full.dropna(subset=["utime"])
    steps = df.groupby(["UserId", LABEL_COLUMN], sort=False)[["utime", "stime"]].diff()
    ut, st = steps["utime"].dropna(), steps["stime"].dropna()
    # Counters fall only when a process restarts, which is rare ...
    assert 0 < (ut < 0).mean() < 0.02
    assert ((ut < 0) == (st < 0)).mean() > 0.99
    # ... and grow as sparse events, not every sample.
    assert 0.05 < (ut > 0).mean() < 0.5
    assert df["utime"].min() >= 2
    assert df["stime"].min() >= 3


def test_consecutive_samples_mostly_identical(full: pd.DataFrame) -> None:
    numeric = [c for c in SHERLOCK18_FEATURES if c not in ("state", "cminflt")]
    prev = full.groupby(["UserId", LABEL_COLUMN], sort=False)[numeric].shift()
    has_prev = prev.notna().any(axis=1)
    same = (full.loc[has_prev, numeric] == prev.loc[has_prev]).mean(axis=1)
    # The real raw data: about 83 % of numeric features unchanged between samples.
    assert 0.6 <= same.mean() <= 0.95


# --- scales ---------------------------------------------------------------------------


def test_scales_match_reference(full: pd.DataFrame) -> None:
    for col, (q25, q50, q75, real_max) in REAL_STATS.items():
        values = full[col].dropna()
        ours = values.quantile([0.25, 0.5, 0.75]).to_numpy()
        for real, got in zip((q25, q50, q75), ours, strict=True):
            if real == 0:
                assert got == 0, col
            else:
                assert 0.5 <= got / real <= 2.0, (col, real, got)
        assert 0.2 <= values.max() / real_max <= 5.0, (col, real_max, values.max())
    vsize = full["vsize"].dropna()
    assert 0.5 <= vsize.std() / 1.18e8 <= 2.0


def test_categorical_ranges(full: pd.DataFrame) -> None:
    imp = full["importance"].value_counts(normalize=True)
    assert set(imp.index) == {100, 200, 300, 400}
    assert imp[300] + imp[400] > 0.7
    assert full["lru"].between(0, 16).all()
    assert (full.loc[full["importance"] == 100, "lru"] == 0).all()
    prio = full["priority"].dropna()
    assert (prio == 20).mean() > 0.9
    assert prio.min() <= 12
    states = full["state"].value_counts(normalize=True)
    assert states["S"] > 0.9
    assert {"R", "D", "Z"} <= set(states.index)


def test_network_deltas(full: pd.DataFrame) -> None:
    for col in NET:
        values = full[col]
        assert (values == 0).mean() > 0.9, col
        assert values.max() > 1000 * max(1.0, values.mean()), col  # bursts
        assert REAL_NET_MIN[col] <= values.min() <= -1, col
    # After a reboot all four counters read -1 together.
    reboot = (full[list(NET)] == -1).all(axis=1)
    assert reboot.sum() > 0
    # Moriarty exfiltrates: its transmit bursts are bigger than other apps'.
    tx = full.loc[full["UidTxBytes"] > 0]
    by_app = tx.groupby(LABEL_COLUMN)["UidTxBytes"].median()
    assert by_app[MALWARE_APP] == by_app.max()


# --- realism --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def medium() -> tuple[np.ndarray, np.ndarray]:
    return _features(generate_sherlock(30_000, seed=1))


def test_tree_and_leakage(medium: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = medium
    train, val = _random(y)
    btrain, bval = _blocked(y)
    acc_random, acc_blocked = _tree(x, y, train, val), _tree(x, y, btrain, bval)
    leak_random, leak_blocked = _leak(x, train, val), _leak(x, btrain, bval)
    chance = pd.Series(y).value_counts(normalize=True).iloc[0]
    assert acc_random >= 0.95
    # A random split leaks near-duplicates of validation rows into training ...
    assert leak_random > 0.5
    assert leak_blocked < 0.5 * leak_random
    # ... so a blocked split scores visibly lower, yet far above chance.
    assert acc_blocked < acc_random - 0.03
    assert acc_blocked > 3 * chance


@pytest.mark.slow
def test_capacity_curve_like_published(medium: tuple[np.ndarray, np.ndarray]) -> None:
    from appsleuth.model import teaching_baseline_accuracy

    x, y = medium
    train, val = _random(y)
    xs = StandardScaler().fit(x[train]).transform(x).astype("float32")
    accuracy = {
        neurons: teaching_baseline_accuracy(
            xs[train], y[train], xs[val], y[val], neurons=neurons, epochs=REALISM_EPOCHS
        )
        for neurons in (1, 4, 18, 80)
    }
    # The published bar is for 30 epochs on 218k rows (~205k Adam steps at batch 32);
    # here 24k rows x 20 epochs is ~15k steps, so the models are far from converged and
    # the lower bounds are lowered to what that budget reaches (measured: about 0.20,
    # 0.68, 0.966, 0.989). The full-size bar is checked by benchmarks/synth_realism.py.
    assert accuracy[1] < 0.6
    assert 0.55 <= accuracy[4] <= 0.97
    assert accuracy[18] >= 0.93
    assert accuracy[80] >= 0.97
    assert accuracy[1] < accuracy[4] < accuracy[18] <= accuracy[80] + 0.01


@pytest.mark.parametrize("rows", [-5, 0, 2.5, True])
def test_embedded_data_names_its_own_argument(rows) -> None:
    from appsleuth.data.tables import embedded_data
    from appsleuth.errors import SpecError

    with pytest.raises(SpecError, match=r"^rows must be a positive integer; received rows="):
        embedded_data(rows)
