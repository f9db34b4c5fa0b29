"""Cleaning follows the teaching recipe and reports each step with counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from appsleuth.data.clean import clean_sherlock
from appsleuth.data.layouts import INCOMPLETE_ROW_COLUMNS, SHERLOCK18_FEATURES
from appsleuth.data.load import frame_info, from_dataframe, load_sherlock
from appsleuth.errors import DataError, SpecError
from tests.conftest import make_sherlock18


def _with_incomplete_rows(n: int = 4) -> pd.DataFrame:
    df = make_sherlock18()
    rows = df.index[:n]
    df.loc[rows, list(INCOMPLETE_ROW_COLUMNS)] = np.nan
    df.loc[rows, "state"] = None
    return from_dataframe(df)


def test_teaching_default_steps() -> None:
    df = _with_incomplete_rows(4)
    out, report = clean_sherlock(df)
    assert len(out) == len(df) - 4
    assert "cminflt" not in out.columns and "guest_time" not in out.columns
    actions = [s.action for s in report.steps]
    assert actions == [
        "drop all-missing columns",
        "drop constant columns",
        "drop incomplete rows",
        "one-hot encode",
    ]
    assert report.steps[0].columns == ("cminflt",)
    assert report.steps[1].columns == ("guest_time",)
    assert report.steps[2].rows_before - report.steps[2].rows_after == 4
    assert "dropped 4 of 180 rows" in report.steps[2].detail
    assert set(report.steps[2].columns) == set(INCOMPLETE_ROW_COLUMNS) - {"guest_time"}
    assert "state has 2 categories (R, S)" in report.steps[3].detail
    info = frame_info(out)
    assert "cminflt" not in info.features and info.categorical == ("state",)
    assert report.features_after == info.features
    assert len(df) == 180  # the input is untouched


def test_impute_keeps_rows_and_fills_median_and_mode() -> None:
    df = _with_incomplete_rows(3)
    out, report = clean_sherlock(df, missing="impute")
    assert len(out) == len(df)
    assert not out[list(frame_info(out).features)].isna().any().any()
    complete = df.drop(index=df.index[:3])
    assert out.loc[df.index[0], "rss"] == pytest.approx(complete["rss"].median())
    assert out.loc[df.index[0], "state"] == complete["state"].mode().iloc[0]
    assert report.steps[2].action == "impute missing values"


@pytest.mark.parametrize("missing", ["drop", "impute"])
def test_empty_columns_kept_on_request_are_not_dropped_as_constant(missing: str) -> None:
    # Describing cminflt (no value) as constant raised IndexError, and dropping it as
    # constant would have undone drop_empty_columns=False.
    df = make_sherlock18()  # cminflt has no value, guest_time is always 0
    if missing == "drop":
        with pytest.raises(DataError, match="no row is left after cleaning"):
            clean_sherlock(df, drop_empty_columns=False, missing=missing)
        return
    df.loc[df.index[:3], "rss"] = np.nan
    out, report = clean_sherlock(df, drop_empty_columns=False, missing=missing)
    assert "cminflt" in out.columns and out["cminflt"].isna().all()
    assert "guest_time" not in out.columns
    constant, imputed = report.steps[0], report.steps[1]
    assert constant.columns == ("guest_time",)
    assert imputed.detail.startswith("filled 3 incomplete rows")
    assert "in rss; cminflt has no value in any row to fill from and stays empty" in (
        imputed.detail
    )
    assert out["rss"].notna().all()


def test_drop_duplicates() -> None:
    df = make_sherlock18()  # values repeat in runs of 5, but state varies
    out, report = clean_sherlock(df, drop_duplicates=True)
    expected = df.drop(columns=["cminflt", "guest_time"]).duplicated().sum()
    assert report.steps[-2].action == "drop duplicate rows"
    assert len(out) == len(df) - expected


def test_real_raw_sample_report(shared_data) -> None:
    df = load_sherlock(shared_data / "sherlock_raw_sample.csv")
    out, report = clean_sherlock(df)
    assert report.steps[1].detail.startswith("guest_time (always 0)")
    assert "UserId" in out.columns and "UUID" in out.columns  # ids survive cleaning
    assert "PackageName" not in out.columns


def test_bad_missing_policy() -> None:
    with pytest.raises(
        SpecError,
        match=r"missing must be 'drop' or 'impute'; received "
        r"missing='mean'",
    ):
        clean_sherlock(make_sherlock18(), missing="mean")  # type: ignore[arg-type]


def test_nothing_left() -> None:
    df = from_dataframe(pd.DataFrame({"ApplicationName": ["a", "b"], "x": [1.0, 1.0]}))
    with pytest.raises(DataError, match="no feature column is left"):
        clean_sherlock(df)


def test_no_row_left() -> None:
    df = from_dataframe(
        pd.DataFrame(
            {
                "ApplicationName": ["a", "b", "c", "d"],
                "x": [1.0, np.nan, 3.0, np.nan],
                "y": [np.nan, 2.0, np.nan, 4.0],
            }
        )
    )
    with pytest.raises(DataError, match="no row is left after cleaning"):
        clean_sherlock(df)


# --- infinite values are missing values -------------------------------------------------


def test_rows_with_infinite_values_from_a_file_are_dropped(tmp_path) -> None:
    path = tmp_path / "inf.csv"
    df = make_sherlock18()
    df["CPU_USAGE"] = df["CPU_USAGE"].astype(str)
    df.iloc[4, df.columns.get_loc("CPU_USAGE")] = "inf"
    df.iloc[9, df.columns.get_loc("rss")] = -np.inf
    df.to_csv(path)
    out, report = clean_sherlock(load_sherlock(path))
    assert len(out) == len(df) - 2
    assert df.index[4] not in out.index and df.index[9] not in out.index
    assert np.isfinite(out[list(frame_info(out).numeric_features)].to_numpy()).all()
    assert "dropped 2 of 180 rows with a missing feature value" in report.steps[2].detail


def test_infinite_values_in_a_table_not_from_the_loader() -> None:
    df = make_sherlock18()  # no attrs: never went through the loader
    df.iloc[3, df.columns.get_loc("CPU_USAGE")] = np.inf
    df.iloc[5, df.columns.get_loc("utime")] = -np.inf
    df.iloc[6, df.columns.get_loc("utime")] = np.inf
    out, report = clean_sherlock(df)
    assert len(out) == len(df) - 3
    assert report.steps[2].detail == (
        "dropped 3 of 180 rows with a missing feature value (infinite values, counted as "
        "missing: 1 in CPU_USAGE, 2 in utime)"
    )
    assert np.isinf(df["CPU_USAGE"].iloc[3])  # the input is untouched


def test_impute_fills_infinite_values_like_missing_ones() -> None:
    df = make_sherlock18()
    df.iloc[3, df.columns.get_loc("CPU_USAGE")] = np.inf
    out, report = clean_sherlock(df, missing="impute")
    assert len(out) == len(df)
    finite = df["CPU_USAGE"].drop(index=df.index[3])
    assert out["CPU_USAGE"].iloc[3] == pytest.approx(finite.median())
    assert "infinite values, counted as missing: 1 in CPU_USAGE" in report.steps[2].detail


def test_column_of_only_infinite_values_is_dropped_as_all_missing() -> None:
    df = make_sherlock18()
    df["vsize"] = np.inf
    out, report = clean_sherlock(df)
    assert "vsize" not in out.columns
    assert "vsize" in report.steps[0].columns
    assert len(out) == len(df)


def test_empty_table_is_named_as_such() -> None:
    df = make_sherlock18(n_per_app=10).iloc[:0]
    with pytest.raises(DataError, match=r"the table has no rows; there is nothing to clean"):
        clean_sherlock(df)


def test_numbers_written_as_text_are_cleaned_as_numbers() -> None:
    df = make_sherlock18(n_per_app=10)
    text = df.assign(rss=[("nan" if i in (3, 4) else str(v)) for i, v in enumerate(df["rss"])])
    cleaned, _ = clean_sherlock(text)
    # The two "nan" rows are incomplete rows, dropped like missing values.
    assert len(cleaned) == len(clean_sherlock(df)[0]) - 2
    assert pd.api.types.is_float_dtype(cleaned["rss"])
    # pandas 2 parses some decimals one unit in the last place off from the CSV reader.
    np.testing.assert_allclose(
        cleaned["rss"], df["rss"].drop(index=df.index[[3, 4]]), rtol=1e-15, atol=0
    )


def test_a_hand_built_tables_labels_are_read_as_the_loader_reads_them() -> None:
    from appsleuth.data.prepare import prepare_data

    df = make_sherlock18(n_per_app=20, apps=("Gmail", "Chrome")).drop(columns="cminflt")
    df.attrs = {}
    labels = df["ApplicationName"].to_numpy().copy()
    labels[::2] = [f" {v}" if i % 2 else f"{v} " for i, v in enumerate(labels[::2])]
    df["ApplicationName"] = labels
    cleaned, _ = clean_sherlock(df)
    assert sorted(cleaned["ApplicationName"].unique()) == ["Chrome", "Gmail"]
    assert prepare_data(df).classes == ["Chrome", "Gmail"]


def test_unused_label_categories_are_no_classes() -> None:
    from appsleuth.data.quality import check_data

    df = make_sherlock18(n_per_app=20, apps=("Gmail", "Chrome"))
    df["ApplicationName"] = pd.Categorical(
        df["ApplicationName"], categories=["Gmail", "Chrome", "Tetris"]
    )
    classes = check_data(df)["classes"]
    assert classes.summary.startswith("2 classes") and "inf" not in classes.summary


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 1.0, np.nan],
        [np.nan, np.nan],
        [0.0, -0.0],
        [1, 2],
        pd.array([1, None], dtype="Int64"),
        pd.array([None, None], dtype="Int64"),
        pd.array([1.5, None, 2.5], dtype="Float64"),
        np.array([2**63 - 1, 2**63 - 2], dtype=np.int64),
        ["a", "a", None],
        ["a", "b"],
        [True, True],
        [True, False],
        np.array([], dtype=float),
    ],
)
def test_is_constant_answers_as_nunique_does(values) -> None:
    from appsleuth.data.clean import is_constant

    col = pd.Series(values)
    assert is_constant(col) is (col.nunique(dropna=True) <= 1)


def test_constant_numeric_columns_are_found_without_a_hash_table_per_column(monkeypatch) -> None:
    # nunique builds a hash table of every value: tens of ms a column on a wide table of
    # measurements, asked for every feature by cleaning and the quality report.
    from appsleuth.data.quality import check_data

    df = make_sherlock18()
    df["flat"] = 7.0
    df = from_dataframe(df, features=[*SHERLOCK18_FEATURES, "flat"])
    calls: list[str] = []
    nunique = pd.Series.nunique

    def counting(self, *args, **kwargs):
        calls.append(str(self.name))
        return nunique(self, *args, **kwargs)

    monkeypatch.setattr(pd.Series, "nunique", counting)
    out, report = clean_sherlock(df)
    assert {"guest_time", "flat"} <= set(report.steps[1].columns)
    assert "flat" not in out.columns
    constant = check_data(df)["useless_columns"].data["constant"]
    assert {"guest_time", "flat"} <= set(constant)
    assert not set(calls) & set(frame_info(df).numeric_features)


def _tricky_table(seed: int) -> pd.DataFrame:
    """Few distinct values, so that many rows repeat; values pandas compares loosely."""
    rng = np.random.default_rng(seed)
    n = 60
    pick = lambda values: [values[i] for i in rng.integers(0, len(values), n)]  # noqa: E731
    return pd.DataFrame(
        {
            "label": pick(["A", "B"]),
            "f": pick([0.0, -0.0, 1.5, np.nan]),
            "i": pd.array(pick([1, 2, None]), dtype="Int64"),
            "n": pick([3, 4]),
            "o": pd.Series(pick([1, 1.0, "1", None]), dtype=object),
            "state": pd.Categorical(pick(["S", "R"])),
        },
        index=pick([0, 1, 2, 3, 4, 5]),  # repeated index labels
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "columns", [["label", "f", "i", "n", "o", "state"], ["f", "i"], ["label", "o"], ["n"]]
)
def test_duplicate_rows_answers_as_pandas_duplicated_does(seed: int, columns) -> None:
    from appsleuth.data.clean import duplicate_rows

    df = _tricky_table(seed)
    expected = df.duplicated(subset=columns)
    found = duplicate_rows(df, columns)
    assert found.tolist() == expected.tolist()
    assert found.index.equals(df.index)


def test_duplicate_rows_are_found_where_pandas_hashes_0_and_minus_0_apart(monkeypatch) -> None:
    # pandas 2.2 (within the supported versions) hashed 0.0 and -0.0 apart, so rows that
    # differ only there were never compared and `data clean --drop-duplicates` kept them.
    from appsleuth.data.clean import duplicate_rows

    hash_frame = pd.util.hash_pandas_object

    def signed_hash(frame: pd.DataFrame, index: bool = True) -> pd.Series:
        signs = np.zeros(len(frame), dtype=np.uint64)
        for i, column in enumerate(frame.columns):
            if pd.api.types.is_float_dtype(frame[column].dtype):
                negative = np.signbit(frame[column].to_numpy(dtype=float, na_value=np.nan))
                signs |= negative.astype(np.uint64) << np.uint64(i)
        return hash_frame(frame, index=index) ^ signs

    monkeypatch.setattr(pd.util, "hash_pandas_object", signed_hash)
    df = pd.DataFrame({"f": [0.0, -0.0, 1.5, -0.0], "n": [1, 1, 2, 1]})
    assert duplicate_rows(df, ["f", "n"]).tolist() == [False, True, False, True]
    assert df.duplicated(subset=["f", "n"]).tolist() == [False, True, False, True]


def test_duplicates_of_a_wide_table_of_distinct_rows_are_not_factorized_column_by_column(
    monkeypatch,
) -> None:
    # DataFrame.duplicated factorizes every column (tens of ms a column of distinct
    # measurements): ~20 s for a 300k x 318 table. Only candidate rows are compared now.
    from appsleuth.data.quality import check_data

    rng = np.random.default_rng(0)
    wide = pd.DataFrame(rng.normal(size=(200, 30)), columns=[f"x{i}" for i in range(30)])
    wide.insert(0, "ApplicationName", ["Gmail", "Chrome"] * 100)
    wide = pd.concat([wide, wide.iloc[:7]], ignore_index=True)  # 7 exact repeats
    df = from_dataframe(wide)
    sizes: list[int] = []
    duplicated = pd.DataFrame.duplicated

    def recording(self, *args, **kwargs):
        sizes.append(len(self))
        return duplicated(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "duplicated", recording)
    assert check_data(df)["duplicates"].data["rows"] == 7
    steps = clean_sherlock(df, drop_duplicates=True)[1].steps
    assert [s.detail for s in steps if s.action == "drop duplicate rows"] == [
        "dropped 7 exact duplicate rows"
    ]
    assert sizes and max(sizes) <= 14


def test_cleaning_report_prints_one_line_per_step() -> None:
    _, report = clean_sherlock(_with_incomplete_rows(4))
    lines = repr(report).splitlines()
    assert lines[0] == "CleaningReport(rows 180 -> 176, features 18 -> 16)"
    assert lines[1:] == [f"  {line}" for line in report.lines()]
