"""Random, blocked and group splits: sizes, stratification, determinism, leakage."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from appsleuth.data.load import from_dataframe
from appsleuth.data.quality import check_data, leakage_rate
from appsleuth.data.split import SplitSpec, split_data
from appsleuth.errors import DataError, SpecError
from tests.conftest import make_sherlock18


def _timed_table(n_per_app: int = 200, n_users: int = 5) -> pd.DataFrame:
    df = make_sherlock18(n_per_app=n_per_app, with_ids=True)
    df["UserId"] = [f"user{i % n_users}" for i in range(len(df))]
    return from_dataframe(df)


def test_teaching_sizes_match_the_published_split() -> None:
    # 273,077 cleaned rows, 20 %, seed 34 -> 218,461 training and 54,616 validation rows.
    n = 273_077
    labels = np.where(np.arange(n) % 3 == 0, "a", "b")
    df = from_dataframe(pd.DataFrame({"ApplicationName": labels, "x": np.arange(n) % 7}))
    split = split_data(df)
    assert (len(split.train), len(split.val)) == (218_461, 54_616)


def test_random_split_is_the_teaching_materials_deterministic_and_disjoint() -> None:
    from sklearn.model_selection import train_test_split

    df = _timed_table()
    a, b = split_data(df), split_data(df)
    np.testing.assert_array_equal(a.val, b.val)
    assert set(a.train).isdisjoint(a.val)
    assert len(a.train) + len(a.val) == len(df)
    # The teaching material's call, unstratified: the same validation rows.
    _, val = train_test_split(np.arange(len(df)), test_size=0.2, random_state=34)
    np.testing.assert_array_equal(np.sort(a.val), np.sort(val))
    c = split_data(df, seed=35)
    assert not np.array_equal(a.val, c.val)


def test_stratified_random_split_keeps_class_shares() -> None:
    from sklearn.model_selection import train_test_split

    df = _timed_table()
    s = split_data(df, stratify=True)
    shares = df.iloc[s.val]["ApplicationName"].value_counts(normalize=True)
    assert shares.max() - shares.min() < 0.02  # three equal classes stay equal
    labels = df["ApplicationName"].to_numpy()
    _, val = train_test_split(np.arange(len(df)), test_size=0.2, random_state=34, stratify=labels)
    np.testing.assert_array_equal(np.sort(s.val), np.sort(val))
    assert s.describe()["stratify"] is True


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"stratify": "yes"}, r"stratify must be true or false; received stratify='yes'"),
        ({"kind": "group", "stratify": True}, r"stratify applies to the random split only"),
    ],
)
def test_bad_stratify(fields, expected) -> None:
    with pytest.raises(SpecError, match=expected):
        SplitSpec(**fields)


def test_test_fraction() -> None:
    df = _timed_table()
    s = split_data(df, val_fraction=0.2, test_fraction=0.1)
    assert len(s.val) == 120 and len(s.test) == 60
    assert set(s.test).isdisjoint(s.train) and set(s.test).isdisjoint(s.val)
    assert s.describe()["n_test"] == 60


def test_blocked_split_keeps_runs_together_and_leaks_less() -> None:
    df = _timed_table()
    features = ["CPU_USAGE", "rss", "utime", "state"]
    random_split = split_data(df)
    blocked = split_data(df, kind="blocked")
    assert abs(len(blocked.val) / len(df) - 0.2) < 0.02
    for cls, rows in df.iloc[blocked.val].groupby("ApplicationName"):
        order = df.loc[df["ApplicationName"] == cls].sort_values("UUID").index
        positions = np.flatnonzero(order.isin(rows.index))
        assert np.diff(positions).max() <= len(order) // 10 * 8 + 2, cls  # two blocks
    leak_random = leakage_rate(df.iloc[random_split.train], df.iloc[random_split.val], features)
    leak_blocked = leakage_rate(df.iloc[blocked.train], df.iloc[blocked.val], features)
    assert leak_random > leak_blocked


def test_which_splits_depend_on_the_file_row_order() -> None:
    # As the README's Reproducibility section says: the random split picks row positions
    # (train_test_split's), so the same rows re-sorted give another split; the blocked
    # split (in UUID order) and the group split depend on the rows only.
    df = _timed_table()
    shuffled = df.iloc[np.random.default_rng(0).permutation(len(df))]
    for kind, same in (("random", False), ("blocked", True), ("group", True)):
        a, b = split_data(df, kind=kind), split_data(shuffled, kind=kind)
        assert (set(df.index[a.val]) == set(shuffled.index[b.val])) is same, kind


def test_blocked_split_without_time_column_uses_file_order() -> None:
    df = from_dataframe(make_sherlock18())
    s = split_data(df, kind="blocked")
    assert len(s.val) > 0 and len(s.train) > 0


def test_group_split_keeps_groups_apart() -> None:
    df = _timed_table(n_users=10)
    s = split_data(df, kind="group", group_column="UserId")
    train_users = set(df.iloc[s.train]["UserId"])
    val_users = set(df.iloc[s.val]["UserId"])
    assert train_users.isdisjoint(val_users)
    assert val_users and len(train_users) >= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"kind": "shuffle"},
            r"split kind must be one of random, blocked, group; received "
            r"kind='shuffle'",
        ),
        (
            {"val_fraction": 1.5},
            r"val_fraction must be a number in \(0, 1\); received "
            r"val_fraction=1.5",
        ),
        ({"val_fraction": "0.2"}, r"val_fraction must be a number"),
        ({"val_fraction": 0}, r"val_fraction must be a number in \(0, 1\); received val_fra"),
        ({"seed": 2**32}, r"seed must be an integer from 0 to 4294967295; received seed=42"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, r"must leave training rows"),
        ({"seed": -1}, r"seed must be an integer from 0 to 4294967295; received seed=-1"),
        ({"seed": "7"}, r"seed must be an integer from 0 to 4294967295; received seed='7' \(it"),
        ({"n_blocks": 1}, r"n_blocks must be an integer >= 2; received n_blocks=1"),
        ({"group_column": 5}, r"group_column must be a column name; received group_column=5"),
        ({"group_column": ""}, r"group_column must be a column name; received group_column=''"),
        ({"time_column": 3}, r"time_column must be a column name or null; received time_col"),
    ],
)
def test_invalid_specs(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        SplitSpec(**kwargs)


def test_spec_roundtrip_and_unknown_field() -> None:
    spec = SplitSpec(kind="group", group_column="UserId", seed=3)
    assert SplitSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match=r"unknown split field\(s\) folds"):
        SplitSpec.from_dict({"folds": 5})


def test_group_split_errors() -> None:
    df = from_dataframe(make_sherlock18())
    with pytest.raises(
        DataError,
        match=r"group column 'UserId' for the group split is not in "
        r"the table",
    ):
        split_data(df, kind="group")
    one_user = df.assign(UserId="u1")
    with pytest.raises(DataError, match=r"needs at least 2 groups in 'UserId'; found 1"):
        split_data(one_user, kind="group")


def test_group_split_names_rows_without_a_group() -> None:
    df = from_dataframe(make_sherlock18()).assign(UserId="u1")
    df["UserId"] = [f"u{i % 4}" for i in range(len(df))]
    df.loc[df.index[[7, 9]], "UserId"] = None
    with pytest.raises(
        DataError, match=r"group column 'UserId' is missing in 2 row\(s\) \(the first at row 7\)"
    ):
        split_data(df, kind="group")


@pytest.mark.parametrize("seed", range(8))
def test_group_split_does_not_overshoot_with_one_large_group(seed: int) -> None:
    # One device holds 90 % of the rows: it must never become the validation side.
    df = from_dataframe(make_sherlock18(n_per_app=100))
    users = np.array(["big"] * 270 + ["a"] * 15 + ["b"] * 15)
    df["UserId"] = users
    s = split_data(df, kind="group", seed=seed)
    assert set(df.iloc[s.val]["UserId"]) <= {"a", "b"}
    assert 0.04 <= len(s.val) / len(df) <= 0.11


def test_group_split_with_only_large_groups_still_validates() -> None:
    df = from_dataframe(make_sherlock18(n_per_app=100))
    df["UserId"] = ["a"] * 150 + ["b"] * 150
    s = split_data(df, kind="group", val_fraction=0.2)
    assert len(s.val) == 150 and len(s.train) == 150


def test_quality_report_shows_the_share_a_blocked_split_holds() -> None:
    from appsleuth.data.quality import check_data

    df = from_dataframe(make_sherlock18(n_per_app=100))
    report = check_data(df, split=SplitSpec(kind="blocked", val_fraction=0.05))
    leak = next(f for f in report.findings if f.key == "leakage")
    assert "val 0.05 asked, 0.100 held: whole blocks or groups" in leak.summary


@pytest.mark.parametrize("val_fraction", [0.95, 0.9999])
def test_a_blocked_split_asked_for_every_block_keeps_one_per_class_in_training(
    val_fraction: float,
) -> None:
    df = from_dataframe(make_sherlock18(n_per_app=100))
    # 0.95 of 10 blocks rounds to all 10: training was left empty (an error naming no field).
    s = split_data(df, kind="blocked", val_fraction=val_fraction)
    assert len(s.train) == 30 and len(s.val) == 270
    assert set(df["ApplicationName"].iloc[s.train]) == set(df["ApplicationName"])
    report = check_data(df, split=SplitSpec(kind="blocked", val_fraction=val_fraction))
    leak = next(f for f in report.findings if f.key == "leakage")
    assert f"val {val_fraction} asked, 0.900 held: whole blocks or groups" in leak.summary


def test_a_class_of_two_rows_keeps_one_in_training() -> None:
    table = pd.DataFrame({"ApplicationName": ["x", "x", "y", "y", "y"], "rss": [1.0, 2, 3, 4, 5]})
    s = split_data(from_dataframe(table), kind="blocked", val_fraction=0.8)
    assert sorted(table["ApplicationName"].iloc[s.train]) == ["x", "y"]


def test_blocked_split_missing_time_column() -> None:
    df = from_dataframe(make_sherlock18())
    with pytest.raises(DataError, match=r"time column 'UUID' for the blocked split"):
        split_data(df, kind="blocked", time_column="UUID")


def test_too_small() -> None:
    df = from_dataframe(pd.DataFrame({"ApplicationName": ["a"], "x": [1.0]}), require_label=False)
    with pytest.raises(DataError, match=r"1 row\(s\) cannot be split"):
        split_data(df)


@pytest.mark.parametrize(
    ("fractions", "taken"),
    [({"val_fraction": 0.9999}, "100 validation and 0 test"),
     ({"val_fraction": 0.5, "test_fraction": 0.4999}, "50 validation and 50 test")],
    ids=["validation", "validation-and-test"],
)  # fmt: skip
def test_fractions_that_round_up_to_every_row_are_refused(fractions, taken) -> None:
    df = from_dataframe(make_sherlock18().iloc[:100])
    with pytest.raises(DataError, match=rf"of 100 rows take {taken} rows \(rounded up\), leaving"):
        split_data(df, **fractions)


@pytest.mark.parametrize(("key", "kind"), [(1, "int"), (None, "NoneType"), (("kind",), "tuple")])
def test_split_keys_must_be_text(key: object, kind: str) -> None:
    with pytest.raises(
        SpecError,
        match=rf"the keys of split must be field names \(text\); received the key "
        rf"{re.escape(repr(key))} \({kind}\) in split",
    ):
        SplitSpec.from_dict({key: 2, "kind": "random"})


def test_leakage_rate_features_as_a_string() -> None:
    df = from_dataframe(make_sherlock18())
    train, val = df.iloc[:100], df.iloc[100:]
    assert leakage_rate(train, val, "CPU_USAGE, utime") == leakage_rate(
        train, val, ["CPU_USAGE", "utime"]
    )
    with pytest.raises(DataError, match=r"features must name at least one column"):
        leakage_rate(train, val, [])


def test_blocked_split_refuses_blocks_of_single_rows() -> None:
    df = _timed_table(n_per_app=30)  # 18 apps x ~30 rows: at most 15 blocks of 2 rows
    largest = int(df["ApplicationName"].value_counts().max())
    assert len(split_data(df, kind="blocked", n_blocks=largest // 2).train) > 0
    with pytest.raises(
        DataError,
        match=rf"n_blocks={largest // 2 + 1} blocks per class would cut even the largest "
        rf"class \({largest} rows\)",
    ):
        split_data(df, kind="blocked", n_blocks=largest // 2 + 1)
    tiny = _timed_table(n_per_app=3)
    assert len(split_data(tiny, kind="blocked").val) > 0  # the default 10 is clamped


def test_largest_seed_works_with_a_test_part() -> None:
    df = _timed_table(n_per_app=20)
    parts = split_data(df, seed=2**32 - 1, test_fraction=0.1)
    assert len(parts.test) > 0 and len(parts.val) > 0


def test_split_accepts_a_mapping_and_names_unknown_fields() -> None:
    from appsleuth.data.prepare import prepare_data
    from appsleuth.data.quality import check_data

    df = _timed_table(n_per_app=20)
    assert prepare_data(df, split={"kind": "blocked"}).split.spec.kind == "blocked"
    assert check_data(df, split={"kind": "blocked", "n_blocks": 4})["leakage"] is not None
    with pytest.raises(SpecError, match=r"unknown split field\(s\) foo; valid fields"):
        split_data(df, foo=1)
    with pytest.raises(SpecError, match=r"split must be a SplitSpec or a mapping .*split=3"):
        split_data(df, 3)


def test_stratified_split_with_a_test_share_smaller_than_the_classes() -> None:
    # 18 classes, 10 test rows: the test part cannot be stratified and is drawn plainly
    # (it used to be checked against the validation count, and scikit-learn failed).
    n = 1000
    labels = [f"app{i % 18}" for i in range(n)]
    df = from_dataframe(pd.DataFrame({"ApplicationName": labels, "x": np.arange(n) % 7}))
    s = split_data(df, stratify=True, val_fraction=0.5, test_fraction=0.01)
    assert (len(s.train), len(s.val), len(s.test)) == (490, 500, 10)
    val_counts = df.iloc[s.val]["ApplicationName"].value_counts()
    assert val_counts.max() - val_counts.min() <= 1  # validation is still stratified


def test_blocked_split_refuses_a_time_column_of_numbers_and_text() -> None:
    df = pd.DataFrame({"ApplicationName": ["a", "b"] * 20, "x": np.arange(40.0)})
    df["UUID"] = pd.Series([1] * 20 + ["later"] * 20, dtype=object)
    with pytest.raises(DataError, match=r"time column 'UUID' mixes values .*\(int, str\)"):
        split_data(from_dataframe(df), kind="blocked")


def test_blocked_split_puts_missing_times_last() -> None:
    # None in a column of objects is a missing time, as NaN is in a column of numbers.
    df = pd.DataFrame({"ApplicationName": ["a", "b"] * 20, "x": np.arange(40.0)})
    df["UUID"] = pd.Series([None, None, *range(38)], dtype=object)
    s = split_data(from_dataframe(df), kind="blocked")
    assert len(s.train) + len(s.val) == 40


def test_a_split_prints_its_sizes_not_its_row_positions() -> None:
    split = split_data(from_dataframe(make_sherlock18(n_per_app=1000)), kind="blocked")
    assert repr(split) == (
        f"DataSplit(spec={split.spec!r}, train=2,400 rows, val=600 rows, test=0 rows)"
    )
