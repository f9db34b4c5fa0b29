"""Tasks (multi-class, subsets, one-vs-rest) and the whole prepare step."""

from __future__ import annotations

import numpy as np
import pytest

from appsleuth.data.load import from_dataframe, load_sherlock
from appsleuth.data.prepare import one_vs_rest, prepare_data, select_apps
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
