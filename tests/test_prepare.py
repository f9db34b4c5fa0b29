"""Tasks (multi-class, subsets, one-vs-rest) and the whole prepare step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from appsleuth.data.load import frame_info, from_dataframe, load_sherlock
from appsleuth.data.prepare import one_vs_rest, prepare_data, select_apps, select_features
from appsleuth.data.split import SplitSpec
from appsleuth.errors import DataError
from tests.conftest import make_sherlock18


@pytest.fixture
def df():
    return from_dataframe(make_sherlock18(n_per_app=100, with_ids=True))


def test_multiclass(df) -> None:
    p = prepare_data(df)
    assert p.classes == ["Chrome", "Gmail", "Moriarty"]
    assert p.x_train.shape == (240, p.preprocessor.n_outputs)
    assert p.x_val.shape[0] == 60 and p.x_test.shape[0] == 0
    assert set(np.unique(p.y_train)) == {0, 1, 2}
    meta = p.describe()
    assert meta["split"]["kind"] == "random" and meta["split"]["n_val"] == 60
    assert "cminflt" not in meta["features"]


def test_two_apps_make_a_binary_task(df) -> None:
    p = prepare_data(df, apps=["Gmail", "Chrome"])
    assert p.preprocessor.task == "binary"
    assert p.classes == ["Chrome", "Gmail"]


def test_malware_vs_rest(df) -> None:
    p = prepare_data(df, positive="Moriarty", split=SplitSpec(kind="blocked"))
    assert p.classes == ["other", "Moriarty"]  # the malware is class 1
    assert p.y_val.mean() == pytest.approx(1 / 3, abs=0.05)


def test_feature_subset(df) -> None:
    p = prepare_data(df, features=["CPU_USAGE", "utime", "state"])
    assert p.preprocessor.output_columns == ["CPU_USAGE", "utime", "state_R", "state_S"]


def test_mystery_file_binary(shared_data) -> None:
    p = prepare_data(load_sherlock(shared_data / "sherlock_mystery.csv"))
    assert p.preprocessor.task == "binary"
    assert p.x_train.shape[0] + p.x_val.shape[0] == 152  # 48 rows miss cminflt


def test_select_apps_errors(df) -> None:
    with pytest.raises(DataError, match=r"app\(s\) \['Waze'\] are not in the label column"):
        select_apps(df, ["Gmail", "Waze"])
    with pytest.raises(DataError, match="at least two different apps"):
        select_apps(df, ["Gmail"])


def test_one_vs_rest_errors(df) -> None:
    with pytest.raises(DataError, match="app 'Waze' is not in the label column"):
        one_vs_rest(df, "Waze")
    only = select_apps(df, ["Gmail", "Chrome"])
    with pytest.raises(DataError, match="rest_name must differ"):
        one_vs_rest(only, "Gmail", rest_name="Gmail")


# --- fewer than two classes: the message names the class found --------------------------


def test_training_rows_of_one_class_name_it(tmp_path) -> None:
    # The reviewer's tiny2.csv: one complete row per app, so training gets one row.
    raw = make_sherlock18(n_per_app=5, apps=("Chrome", "Gmail")).groupby("ApplicationName")
    path = tmp_path / "tiny2.csv"
    raw.head(1).to_csv(path)
    with pytest.raises(
        DataError,
        match=r"tiny2\.csv: the training rows of the random split \(1 of 2 rows\) hold a "
        r"single class, '(Chrome|Gmail)' \(the table has 2: 'Chrome', 'Gmail'\); a "
        r"classifier needs at least two classes in training",
    ):
        prepare_data(load_sherlock(path))


def test_a_class_only_in_validation_gets_advice_for_its_split() -> None:
    df = make_sherlock18(n_per_app=10, apps=("Chrome", "Gmail", "Skype", "Waze"))
    three = df[df["ApplicationName"] != "Waze"]
    # One Waze row: seed 4 of the random split sends it to validation.
    table = from_dataframe(pd.concat([three, df[df["ApplicationName"] == "Waze"].head(1)]))
    with pytest.raises(
        DataError,
        match=r"class\(es\) \['Waze'\] appear in validation/test rows but not in training "
        r"rows of the random split .* or use a smaller val_fraction/test_fraction$",
    ):
        prepare_data(table, split=SplitSpec(seed=4))


def test_one_class_left_after_cleaning_names_it() -> None:
    raw = make_sherlock18(n_per_app=20, apps=("Chrome", "Gmail"))
    raw.loc[raw["ApplicationName"] == "Gmail", "rss"] = np.nan
    with pytest.raises(
        DataError,
        match=r"after cleaning \(20 of 40 rows kept, 20 dropped for missing values\), the "
        r"label column 'ApplicationName' holds a single class, 'Chrome'; a classifier needs "
        r"at least two classes",
    ):
        prepare_data(from_dataframe(raw))


def test_rows_with_infinite_values_never_reach_the_arrays() -> None:
    raw = make_sherlock18(n_per_app=50)
    raw.iloc[[3, 70], raw.columns.get_loc("CPU_USAGE")] = [np.inf, -np.inf]
    p = prepare_data(from_dataframe(raw))
    assert len(p.table) == len(raw) - 2
    for x in (p.x_train, p.x_val):
        assert np.isfinite(x).all()


def test_apps_and_features_as_comma_separated_strings(df) -> None:
    assert sorted(select_apps(df, "Gmail, Chrome")["ApplicationName"].unique()) == [
        "Chrome",
        "Gmail",
    ]
    p = prepare_data(df, apps="Gmail,Chrome", features="CPU_USAGE, utime")
    assert p.classes == ["Chrome", "Gmail"]
    assert p.preprocessor.numeric_features == ["CPU_USAGE", "utime"]
    assert frame_info(select_features(df, "CPU_USAGE")).features == ("CPU_USAGE",)


def test_a_single_app_string_is_not_split_into_characters(df) -> None:
    with pytest.raises(
        DataError, match=r"apps must name at least two different apps; received apps=\['Gmail'\]"
    ):
        select_apps(df, "Gmail")
    with pytest.raises(DataError, match=r"apps must be a list of names .*received apps=3 \(int\)"):
        prepare_data(df, apps=3)  # type: ignore[arg-type]


def test_repeated_features_are_refused(df) -> None:
    with pytest.raises(DataError, match=r"features names \['CPU_USAGE'\] more than once"):
        select_features(df, ["CPU_USAGE", "CPU_USAGE"])
    with pytest.raises(DataError, match=r"features names \['CPU_USAGE'\] more than once"):
        prepare_data(df, features=["CPU_USAGE", "utime", "CPU_USAGE"])


def test_one_vs_rest_refuses_a_rest_name_that_is_an_app(df) -> None:
    with pytest.raises(DataError, match=r"rest_name 'Gmail' is an app in the label column"):
        one_vs_rest(df, "Moriarty", rest_name="Gmail")


def test_one_vs_rest_is_recorded_for_prediction(df) -> None:
    p = prepare_data(df, positive="Moriarty")
    assert p.preprocessor.rest_class == "other"
    labels = p.preprocessor.task_labels(["Gmail", "Moriarty", None])
    assert labels[:2].tolist() == ["other", "Moriarty"] and pd.isna(labels[2])
    assert prepare_data(df).preprocessor.rest_class is None


def test_tables_changed_after_loading_are_explained(df) -> None:
    missing_label = df.copy()
    missing_label.loc[missing_label.index[:3], "ApplicationName"] = None
    with pytest.raises(DataError, match=r"'ApplicationName' is missing in 3 row\(s\) \(the first"):
        prepare_data(missing_label)
    feature = frame_info(df).features[0]
    fewer = prepare_data(df.drop(columns=[feature]))  # a dropped feature is not used
    assert feature not in fewer.preprocessor.numeric_features
    with pytest.raises(DataError, match=r"UUID gives the time order, not a feature"):
        prepare_data(df, features=["UUID", feature])


def test_one_vs_rest_takes_one_name(df) -> None:
    from appsleuth.errors import SpecError

    with pytest.raises(SpecError, match=r"positive must be one app name \(text\); received pos"):
        one_vs_rest(df, ["Moriarty"])


def test_a_named_feature_without_values_is_refused(df) -> None:
    feature = frame_info(df).features[0]
    empty = df.copy()
    empty[feature] = np.nan
    with pytest.raises(DataError, match=rf"feature\(s\) \['{feature}'\] named in features have no"):
        prepare_data(empty, features=[feature, frame_info(df).features[1]])
    assert feature not in prepare_data(empty).preprocessor.numeric_features  # unnamed: dropped


@pytest.mark.parametrize("cached", [False, True])
def test_columns_added_to_embedded_data_are_said_not_to_be_features(
    tmp_path, monkeypatch, cached
) -> None:
    from appsleuth.data.tables import embedded_data
    from appsleuth.errors import AppSleuthWarning

    # Freshly generated, the table recorded no columns and the warning never came; read
    # back from the cache it did.
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path))
    if cached:
        embedded_data(400)
    grown = embedded_data(400)
    grown["rss_per_thread"] = 1.0
    with pytest.warns(AppSleuthWarning, match=r"\['rss_per_thread'\] were added after the table"):
        prepare_data(grown)


def test_columns_added_after_loading_are_said_not_to_be_features(df) -> None:
    from appsleuth.errors import AppSleuthWarning

    grown = df.copy()
    grown["rss_per_thread"] = np.arange(len(grown), dtype=float)
    with pytest.warns(AppSleuthWarning, match=r"\['rss_per_thread'\] were added after the table"):
        p = prepare_data(grown)
    assert "rss_per_thread" not in p.preprocessor.numeric_features
    named = [*frame_info(df).features[:3], "rss_per_thread"]
    assert "rss_per_thread" in prepare_data(grown, features=named).preprocessor.numeric_features


def _with_gaps() -> pd.DataFrame:
    raw = make_sherlock18(n_per_app=100, with_ids=True)
    raw.loc[raw.index[::7], "rss"] = np.nan
    raw.loc[raw.index[3::11], "state"] = None
    return raw


def test_the_default_drop_policy_gives_the_arrays_it_always_gave() -> None:
    # Digest of the arrays this fixed-seed table gave before imputation moved after the
    # split: missing='drop' must not have moved.
    import hashlib

    p = prepare_data(from_dataframe(_with_gaps()))
    digest = hashlib.sha256()
    for a in (p.x_train, p.y_train, p.x_val, p.y_val):
        digest.update(np.ascontiguousarray(np.round(a, 4)).tobytes())
    assert (p.x_train.shape, p.x_val.shape) == ((187, 17), (47, 17))
    assert digest.hexdigest()[:16] == "eb076721efa5078e"
    assert p.preprocessor.fill_values == {}


def test_impute_fills_every_row_from_the_training_rows_only() -> None:
    raw = _with_gaps()
    split = prepare_data(from_dataframe(raw), missing="impute").split
    train_rows = raw.index[split.train]  # imputing keeps every row: positions are raw's
    held_out = raw.index[np.concatenate([split.val, split.test])]
    # Extreme values in held-out rows would pull a whole-table median far up.
    raw.loc[held_out, "rss"] = 1e9
    raw.loc[held_out[:5], "rss"] = np.nan  # held-out gaps take the training value too
    raw.loc[held_out[5:], "state"] = "R"
    p = prepare_data(from_dataframe(raw), missing="impute")
    np.testing.assert_array_equal(p.split.train, split.train)
    expected = float(raw.loc[train_rows, "rss"].median())
    whole = float(raw["rss"].median())
    assert whole > expected + 5  # the held-out rows pull a whole-table median up
    fills = p.preprocessor.fill_values
    assert fills["rss"] == pytest.approx(expected)
    assert fills["state"] == raw.loc[train_rows, "state"].mode().iloc[0] == "S"
    gaps = raw["rss"].isna()
    np.testing.assert_allclose(p.table.loc[gaps, "rss"], expected)
    assert (p.table.loc[raw["state"].isna(), "state"] == "S").all()
    detail = next(s.detail for s in p.cleaning.steps if s.action == "impute missing values")
    assert "computed over the training rows only" in detail


def test_impute_names_a_feature_without_training_values() -> None:
    raw = make_sherlock18(n_per_app=100)
    split = prepare_data(from_dataframe(raw), missing="impute").split
    raw.loc[raw.index[split.train], "rss"] = np.nan
    with pytest.raises(
        DataError, match=r"feature\(s\) \['rss'\] have no value in any of the 240 training rows"
    ):
        prepare_data(from_dataframe(raw), missing="impute")


def test_prepared_data_prints_shapes_not_arrays(df) -> None:
    text = repr(prepare_data(df, split={"kind": "blocked"}))
    assert text.startswith("PreparedData(x_train=(240, ") and "x_val=(60, " in text
    assert "classes=3, split='blocked', preprocessor=Preprocessor(" in text
    assert "array(" not in text and "\n" not in text


def test_one_number_written_two_ways_in_the_labels_is_refused() -> None:
    df = make_sherlock18(n_per_app=10, apps=("Chrome", "Gmail"))
    # Two files joined: one wrote its labels as whole numbers, the other as floats.
    df["ApplicationName"] = ["1", "1.0", "2", "2"] * 5
    with pytest.raises(
        DataError,
        match=r"label column 'ApplicationName' writes the same number in different ways: "
        r"'1' \(5 rows\) and '1.0' \(5 rows\); each spelling would be a class of its own",
    ):
        prepare_data(from_dataframe(df))
    df["ApplicationName"] = ["1", "1", "2", "2"] * 5
    df.iloc[0, df.columns.get_loc("ApplicationName")] = "1.0"  # a single row: "1 row", not "1 rows"
    with pytest.raises(DataError, match=r"'1' \(9 rows\) and '1.0' \(1 row\); each"):
        prepare_data(from_dataframe(df))


def test_one_number_written_two_ways_is_refused_after_a_space_too() -> None:
    df = make_sherlock18(n_per_app=10, apps=("Chrome", "Gmail"))
    # A frame given as it is (not through from_dataframe, which strips labels): " 1.0"
    # is class "1.0" once stripped, but passed the check unstripped and became a class
    # apart from "1", while `data check` called it a problem.
    df["ApplicationName"] = ["1", " 1.0", "2", "2"] * 5
    with pytest.raises(DataError, match=r"'1' \(5 rows\) and '1.0' \(5 rows\)"):
        prepare_data(df)
