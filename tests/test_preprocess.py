"""The Preprocessor: fitted on training rows only, applied unchanged, saved as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from appsleuth.data.clean import clean_sherlock
from appsleuth.data.load import from_dataframe
from appsleuth.data.preprocess import RETRAIN_HINT, Preprocessor
from appsleuth.errors import AppSleuthWarning, DataError, SpecError
from tests.conftest import make_sherlock18


@pytest.fixture
def table():
    return clean_sherlock(from_dataframe(make_sherlock18()))[0]


def test_standard_scaling_matches_scikit_learn(table) -> None:
    train = table.iloc[:120]
    pre = Preprocessor().fit(train)
    x = pre.transform(table.iloc[120:])
    numeric = pre.numeric_features
    expected = StandardScaler().fit(train[numeric]).transform(table.iloc[120:][numeric])
    np.testing.assert_allclose(x[:, : len(numeric)], expected, rtol=1e-5, atol=1e-5)
    assert x.dtype == np.float32


def test_one_hot_columns_follow_numeric_features(table) -> None:
    pre = Preprocessor().fit(table)
    assert pre.output_columns[-2:] == ["state_R", "state_S"]
    x = pre.transform(table)
    onehot = x[:, -2:]
    assert np.all(onehot.sum(axis=1) == 1)
    assert np.all(onehot[:, 1] == (table["state"] == "S").to_numpy())


def test_fitted_on_training_rows_only(table) -> None:
    pre_all = Preprocessor().fit(table)
    pre_train = Preprocessor().fit(table.iloc[:60])
    assert pre_all.to_dict()["offset"] != pre_train.to_dict()["offset"]


@pytest.mark.parametrize("scaling", ["minmax", "none"])
def test_other_scalings(table, scaling: str) -> None:
    pre = Preprocessor(scaling=scaling).fit(table)
    x = pre.transform(table)[:, : len(pre.numeric_features)]
    if scaling == "minmax":
        assert x.min() == pytest.approx(0.0) and x.max() == pytest.approx(1.0)
    else:
        np.testing.assert_allclose(x, table[pre.numeric_features].to_numpy(), rtol=1e-6)


def test_unknown_category_is_all_zero_with_a_warning(table) -> None:
    pre = Preprocessor().fit(table)
    new = table.iloc[:3].copy()
    new["state"] = ["S", "Z", "Z"]
    with pytest.warns(
        AppSleuthWarning,
        match=r"column 'state' has value\(s\) \['Z'\] not "
        r"seen in training \(2 rows\)",
    ):
        x = pre.transform(new)
    assert x[1:, -2:].sum() == 0 and x[0, -1] == 1


def test_missing_feature_column(table) -> None:
    pre = Preprocessor().fit(table)
    with pytest.raises(DataError, match=r"lacks feature column\(s\) \['rss'\]") as caught:
        pre.transform(table.drop(columns="rss"))
    # A public name: prediction gives the same advice for a file without the column.
    assert str(caught.value).endswith(RETRAIN_HINT)


def test_missing_values_are_reported(table) -> None:
    pre = Preprocessor().fit(table)
    new = table.iloc[:4].copy()
    new.iloc[1, new.columns.get_loc("rss")] = np.nan
    assert pre.missing_rows(new).tolist() == [False, True, False, False]
    with pytest.raises(DataError, match=r"missing values in rss \(1\)"):
        pre.transform(new)


def test_labels(table) -> None:
    pre = Preprocessor().fit(table)
    assert pre.classes == ["Chrome", "Gmail", "Moriarty"]  # sorted, like pd.get_dummies
    assert pre.task == "multiclass"
    codes = pre.encode_labels(["Moriarty", "Chrome"])
    assert codes.tolist() == [2, 0]
    assert pre.decode_labels(codes).tolist() == ["Moriarty", "Chrome"]
    with pytest.raises(DataError, match=r"label value\(s\) \['Waze'\] are not among"):
        pre.encode_labels(["Waze"])


def test_binary_positive_class(table) -> None:
    two = table.loc[table["ApplicationName"].isin(["Moriarty", "Gmail"])]
    pre = Preprocessor(positive_class="Gmail").fit(two)
    assert pre.classes == ["Moriarty", "Gmail"] and pre.task == "binary"
    with pytest.raises(DataError, match="positive_class 'Waze' is not among"):
        Preprocessor(positive_class="Waze").fit(two)


def test_json_roundtrip(table, tmp_path: Path) -> None:
    pre = Preprocessor().fit(table.iloc[:100])
    path = pre.save(tmp_path / "preprocessor.json")
    again = Preprocessor.load(path)
    np.testing.assert_array_equal(pre.transform(table), again.transform(table))
    assert again.to_dict() == pre.to_dict()
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="sklearn"), "is not an appsleuth preprocessor"),
        (lambda d: d.update(format_version=99), "has format_version 99"),
        (lambda d: d.pop("classes"), r"is damaged: KeyError"),
        (lambda d: d.update(scale=[1.0]), "its scaling does not match"),
        (lambda d: d.update(scaling="log"), r"is damaged: SpecError"),
        (lambda d: d["scale"].__setitem__(0, float("inf")), "finite positive scales"),
        (lambda d: d["scale"].__setitem__(0, 0.0), "finite positive scales"),
        (lambda d: d["offset"].__setitem__(0, float("nan")), "finite offsets"),
        (lambda d: d["classes"].__setitem__(1, d["classes"][0]), "a class named twice"),
        (lambda d: d.update(positive_class="Tinder"), "positive or rest class that is not"),
        (lambda d: d.update(categories={"state": "RS"}), r"damaged: TypeError: categories must"),
    ],
)
def test_tampered_file(table, tmp_path: Path, mutate, message: str) -> None:
    d = Preprocessor().fit(table).to_dict()
    mutate(d)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    with pytest.raises(DataError, match=message):
        Preprocessor.load(path)


def test_not_json_and_missing(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(DataError, match="is not readable JSON"):
        Preprocessor.load(tmp_path / "p.json")
    with pytest.raises(DataError, match="does not exist"):
        Preprocessor.load(tmp_path / "none.json")


def test_unfitted_and_bad_scaling() -> None:
    with pytest.raises(DataError, match="not fitted yet"):
        Preprocessor().transform(make_sherlock18())
    with pytest.raises(
        SpecError,
        match=r"scaling must be one of standard, minmax, none; "
        r"received scaling='robust'",
    ):
        Preprocessor(scaling="robust")  # type: ignore[arg-type]


def test_single_class_training(table) -> None:
    with pytest.raises(
        DataError,
        match=r"the training rows \(60\) hold a single class, 'Gmail'; a classifier needs "
        r"at least two classes in training",
    ):
        Preprocessor().fit(table.loc[table["ApplicationName"] == "Gmail"])


def test_no_training_rows(table) -> None:
    with pytest.raises(DataError, match="there are no training rows"):
        Preprocessor().fit(table.iloc[:0])


# --- infinite values never reach the model ----------------------------------------------


def test_infinite_value_makes_a_row_incomplete(table) -> None:
    pre = Preprocessor().fit(table)
    new = table.iloc[:5].copy()
    new.iloc[1, new.columns.get_loc("CPU_USAGE")] = np.inf
    new.iloc[3, new.columns.get_loc("rss")] = -np.inf
    assert pre.missing_rows(new).tolist() == [False, True, False, True, False]
    x, missing = pre.transform_complete(new)
    assert missing.tolist() == [False, True, False, True, False]
    assert x.shape == (3, pre.n_outputs) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, pre.transform(new.iloc[[0, 2, 4]]))
    with pytest.raises(
        DataError, match=r"rows have infinite values in CPU_USAGE \(1\), rss \(1\); clean"
    ):
        pre.transform(new)


def test_missing_and_infinite_values_are_both_named(table) -> None:
    pre = Preprocessor().fit(table)
    new = table.iloc[:5].copy()
    new.iloc[0, new.columns.get_loc("utime")] = np.nan
    new.iloc[2, new.columns.get_loc("utime")] = np.inf
    with pytest.raises(
        DataError, match=r"have missing values in utime \(1\) and infinite values in utime \(1\)"
    ):
        pre.transform(new)


def test_fit_refuses_infinite_training_values(table) -> None:
    train = table.copy()
    train.iloc[0, train.columns.get_loc("vsize")] = np.inf
    with pytest.raises(DataError, match=r"training rows have infinite values in vsize \(1\)"):
        Preprocessor().fit(train)


def test_transform_complete_leaves_out_incomplete_rows_without_warning(table) -> None:
    import warnings

    pre = Preprocessor().fit(table)
    new = table.iloc[:5].copy()
    new.iloc[1, new.columns.get_loc("rss")] = np.nan
    new.iloc[3, new.columns.get_loc("state")] = None  # missing, not an unknown category
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, missing = pre.transform_complete(new)
    assert missing.tolist() == [False, True, False, True, False]
    np.testing.assert_array_equal(x, pre.transform(new.iloc[[0, 2, 4]]))
    with pytest.raises(DataError, match=r"lacks feature column\(s\) \['rss'\]"):
        pre.transform_complete(new.drop(columns="rss"))


def test_decode_labels_refuses_indices_outside_the_classes(table) -> None:
    pre = Preprocessor().fit(table)
    assert list(pre.decode_labels([0, 1])) == pre.classes[:2]
    for bad in ([-1], [len(pre.classes)], [0.5]):
        with pytest.raises(DataError, match=r"class indices must be whole numbers from 0 to"):
            pre.decode_labels(bad)


def test_values_too_large_to_scale(table) -> None:
    col = Preprocessor().fit(table).numeric_features[0]
    huge = table.copy()
    huge.loc[huge.index[:2], col] = 1e308
    with pytest.raises(DataError, match=rf"\['{col}'\] hold values too large to scale"):
        Preprocessor().fit(huge)
    pre = Preprocessor().fit(table)
    rows = table.head(6).copy()
    rows.loc[rows.index[:2], col] = 1e300  # finite, but beyond float32 once scaled
    x, skipped = pre.transform_complete(rows)
    assert skipped.tolist() == [True, True, False, False, False, False]
    assert np.isfinite(x).all() and len(x) == 4
    with pytest.raises(DataError, match=r"too large \(beyond float32 once scaled\) values in"):
        pre.transform(rows)


def test_decode_no_labels(table) -> None:
    assert len(Preprocessor().fit(table).decode_labels([])) == 0


def test_fill_values_fill_missing_and_infinite_values_and_are_saved(table, tmp_path) -> None:
    pre = Preprocessor().fit(table).set_fill_values({"rss": 123.0, "state": "R"})
    holes = table.iloc[:4].copy()
    holes.iloc[0, holes.columns.get_loc("rss")] = np.nan
    holes.iloc[1, holes.columns.get_loc("rss")] = np.inf
    holes.iloc[2, holes.columns.get_loc("state")] = None
    filled = table.iloc[:4].copy()
    filled.iloc[[0, 1], filled.columns.get_loc("rss")] = 123.0
    filled.iloc[2, filled.columns.get_loc("state")] = "R"
    assert not pre.missing_rows(holes).any()
    np.testing.assert_array_equal(pre.transform(holes), pre.transform(filled))
    again = Preprocessor.load(pre.save(tmp_path / "p.json"))
    assert again.fill_values == {"rss": 123.0, "state": "R"}
    x, skipped = again.transform_complete(holes)
    assert not skipped.any()
    np.testing.assert_array_equal(x, pre.transform(filled))


@pytest.mark.parametrize("dtype", ["Int64", "Float64"])
def test_fill_values_fill_nullable_number_columns(table, dtype) -> None:
    # A table in memory with pandas' nullable numbers (read from Parquet, say): a fill
    # value of 123.5 used to be refused by the Int64 column, as a TypeError.
    pre = Preprocessor().fit(table).set_fill_values({"rss": 123.5})
    holes = table.iloc[:3].copy()
    holes["rss"] = pd.array([1000, None, 1002], dtype=dtype)
    filled = holes.assign(rss=[1000.0, 123.5, 1002.0])
    assert pre.filled_rows(holes).tolist() == [False, True, False]
    np.testing.assert_array_equal(pre.transform(holes), pre.transform(filled))


def test_files_without_fill_values_still_skip_incomplete_rows(table, tmp_path) -> None:
    # Files of models trained with missing='drop' (and of every model before the fill
    # values were recorded) carry no fill_values: incomplete rows stay incomplete.
    d = Preprocessor().fit(table).to_dict()
    assert "fill_values" not in d
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    pre = Preprocessor.load(path)
    holes = table.iloc[:3].copy()
    holes.iloc[0, holes.columns.get_loc("rss")] = np.nan
    assert pre.fill_values == {} and pre.missing_rows(holes).tolist() == [True, False, False]
    with pytest.raises(DataError, match=r"missing values in rss \(1\)"):
        pre.transform(holes)


@pytest.mark.parametrize(
    ("fills", "message"),
    [
        ([1.0], r"is damaged: fill_values must map input columns to values; found \[1.0\]"),
        ({"Tinder": 1.0}, r"fill_values name column\(s\) \['Tinder'\] that are not input"),
        ({"rss": "NaN"}, r"the fill value of 'rss' must be a number; found 'NaN'"),
        ({"rss": float("inf")}, r"the fill value of 'rss' must be finite; found inf"),
        ({"state": "Z"}, r"the fill value 'Z' of 'state' is not one of its categories"),
    ],
)
def test_damaged_fill_values_are_named(table, tmp_path: Path, fills, message: str) -> None:
    d = Preprocessor().fit(table).to_dict()
    d["fill_values"] = fills
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    with pytest.raises(DataError, match=message):
        Preprocessor.load(path)


def test_fill_values_reach_pandas_category_and_nullable_columns(table) -> None:
    # Parquet files give category columns, which refuse a value not among their own
    # categories, and nullable numbers, whose gaps are pd.NA.
    pre = Preprocessor().fit(table).set_fill_values({"rss": 123.0, "state": "R"})
    rows = table.iloc[:3].copy()
    rows["state"] = pd.Categorical(["S", None, "S"], categories=["S"])
    rows["rss"] = pd.array([pd.NA, 1.0, 2.0], dtype="Float64")
    filled = table.iloc[:3].copy()
    filled["state"] = ["S", "R", "S"]
    filled["rss"] = [123.0, 1.0, 2.0]
    np.testing.assert_array_equal(pre.transform(rows), pre.transform(filled))


def test_filled_rows_are_the_rows_a_fill_value_completes(table) -> None:
    pre = Preprocessor().fit(table.dropna())
    new = table.dropna().iloc[:5].copy()
    new["rss"] = new["rss"].astype(object)
    new.iloc[1, new.columns.get_loc("rss")] = "nan"  # text read as a number: missing
    new.iloc[2, new.columns.get_loc("rss")] = np.inf
    new.iloc[3, new.columns.get_loc("CPU_USAGE")] = np.nan  # no fill value for it
    assert not pre.filled_rows(new).any()  # a run that drops incomplete rows fills none
    pre.set_fill_values({"rss": 5000.0})
    assert pre.filled_rows(new).tolist() == [False, True, True, False, False]
    assert pre.missing_rows(new).tolist() == [False, False, False, True, False]


def test_numeric_category_codes_are_one_category_with_or_without_gaps(tmp_path) -> None:
    # A gap makes a column of codes float: code 1 was "1.0" in the training file and
    # "1" in a new file without gaps, which then got all-zero one-hot columns.
    from appsleuth.data.load import load_sherlock

    rows = "".join(f"a,{i},1\nb,{i + 50},2\n" for i in range(20))
    train_file = tmp_path / "train.csv"
    train_file.write_text(f"ApplicationName,rss,state\n{rows}a,3,\n")
    new_file = tmp_path / "new.csv"
    new_file.write_text("ApplicationName,rss,state\na,3,1\nb,55,2\n")
    train = clean_sherlock(load_sherlock(train_file))[0]
    pre = Preprocessor().fit(train)
    assert pre.categories == {"state": ["1", "2"]}
    x = pre.transform(load_sherlock(new_file, require_label=False))
    np.testing.assert_array_equal(x[:, -2:], [[1, 0], [0, 1]])
    in_memory = pd.DataFrame({"rss": [3.0, 55.0], "state": [1.0, 2.0]})
    np.testing.assert_array_equal(pre.transform(in_memory)[:, -2:], [[1, 0], [0, 1]])


def test_a_file_nested_past_pythons_limit_is_not_readable_json(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    # Nested past Python's limit: json.loads raises RecursionError, no ValueError
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"p.json is not readable JSON: maximum recursion"):
        Preprocessor.load(path)


def test_a_class_number_written_another_way_is_that_class(table) -> None:
    numbered = table.assign(
        ApplicationName=table["ApplicationName"].map({"Chrome": "1", "Gmail": "2", "Moriarty": "3"})
    )
    pre = Preprocessor().fit(numbered)
    labels = pd.Series(["1.0", "02", "3", "2e0", "4.0", "0x1", "1_0", None])
    # A file that wrote the labels as floats ("1.0", as pandas does after a gap) is scored
    # against classes 1 to 3, not counted as apps the model never saw.
    named = pre.task_labels(labels)
    assert named[:-1].tolist() == ["1", "2", "3", "2", "4.0", "0x1", "1_0"]
    assert pd.isna(named.iloc[-1])


def test_classes_of_one_number_take_no_alias(table) -> None:
    pre = Preprocessor().fit(table)
    pre.classes = ["01", "1", "Moriarty"]  # as a model trained before such labels were refused
    assert pre.task_labels(pd.Series(["1.0", "01"])).tolist() == ["1.0", "01"]


def test_unscaled_training_values_beyond_float32_are_refused_by_name(table) -> None:
    col = Preprocessor().fit(table).numeric_features[0]
    huge = table.copy()
    huge.loc[huge.index[:2], col] = 1e39  # finite, so cleaning keeps it; float32 cannot
    with pytest.raises(
        DataError,
        match=rf"feature\(s\) \['{col}'\] hold values beyond the model's float32 inputs "
        rf"\(up to 3.4e\+38\) with scaling='none': largest magnitude {col} 1e\+39 in 2 "
        r"value\(s\); remove those rows or rescale the column \(other units\) or use "
        r"scaling='standard'$",
    ):
        Preprocessor(scaling="none").fit(huge)
