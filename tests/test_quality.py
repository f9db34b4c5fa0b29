"""The data-quality report: every finding, its numbers, JSON and the terminal table."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from appsleuth.data.layouts import INCOMPLETE_ROW_COLUMNS
from appsleuth.data.load import from_dataframe, load_sherlock
from appsleuth.data.quality import check_data, leakage_rate
from appsleuth.data.split import SplitSpec
from appsleuth.errors import DataError
from tests.conftest import make_sherlock18


@pytest.fixture
def report():
    df = make_sherlock18(n_per_app=100, with_ids=True)
    df.loc[df.index[:3], list(INCOMPLETE_ROW_COLUMNS)] = np.nan
    df.loc[df.index[:3], "state"] = None
    df.loc[df.index[5], "UidRxBytes"] = -280
    return check_data(from_dataframe(df))


def test_classes_and_malware(report) -> None:
    f = report["classes"]
    assert f.data["n_classes"] == 3
    assert f.data["imbalance_ratio"] == pytest.approx(1.0)
    assert f.data["malware"] == {"app": "Moriarty", "rows": 100, "share": pytest.approx(1 / 3)}
    assert "malware Moriarty: 100 rows" in f.summary


def test_imbalance_recommends_class_weights() -> None:
    df = make_sherlock18(n_per_app=100)
    df = pd.concat([df, df.loc[df["ApplicationName"] == "Gmail"]] * 4)
    df = df.loc[~((df["ApplicationName"] == "Moriarty") & (df["CPU_USAGE"] > 0))].copy()
    df = pd.concat([df, make_sherlock18(n_per_app=20, apps=("Moriarty",), seed=3)])
    f = check_data(from_dataframe(df.reset_index(drop=True)))["classes"]
    assert f.severity == "warning" and f.data["imbalance_ratio"] >= 5
    assert "class_weight='balanced'" in f.recommendation


def test_missing_empty_constant_incomplete(report) -> None:
    assert report["missing"].data["per_column"]["cminflt"] == 300
    assert report["missing"].data["per_column"]["rss"] == 3
    assert report["useless_columns"].data == {
        "all_missing": ["cminflt"],
        "constant": ["guest_time"],
    }
    inc = report["incomplete_rows"]
    assert inc.data["rows"] == 3
    assert set(inc.data["most_common_pattern"]["columns"]) == set(INCOMPLETE_ROW_COLUMNS)
    assert "miss the same 10 column(s)" in inc.summary


def test_negative_counters(report) -> None:
    f = report["negative_values"]
    assert f.data["columns"]["UidRxBytes"]["worst"] == -280
    assert f.severity == "info" and "reboot" in f.recommendation


def test_negative_non_network_counter_is_a_warning() -> None:
    df = make_sherlock18()
    df.loc[df.index[0], "rss"] = -5
    f = check_data(from_dataframe(df))["negative_values"]
    assert f.severity == "warning" and f.data["columns"]["rss"] == {"rows": 1, "worst": -5}


def test_duplicates_time_structure_and_leakage(report) -> None:
    dup = report["duplicates"]
    assert dup.data["rows"] > 0
    ts = report["time_structure"]
    # The table repeats each value 5 times in a row: 4 of 5 steps change nothing numeric.
    assert ts.data["unchanged_features_share"] > 0.7
    assert ts.data["order"] == "UUID"
    leak = report["leakage"]
    assert leak.data["rates"]["random"] > leak.data["rates"]["blocked"]
    assert leak.severity == "warning" and "blocked" in leak.recommendation


def test_leakage_rate_exact() -> None:
    train = pd.DataFrame({"a": [1, 2, 3], "b": [0, 0, 1]})
    val = pd.DataFrame({"a": [1, 3, 3, 9], "b": [0, 0, 1, 1]})
    assert leakage_rate(train, val, ["a", "b"]) == pytest.approx(0.5)
    assert leakage_rate(train, val.iloc[:0], ["a", "b"]) == 0.0


def test_chosen_split_failure_is_an_error() -> None:
    df = from_dataframe(make_sherlock18())
    with pytest.raises(DataError, match="group column 'UserId'"):
        check_data(df, split=SplitSpec(kind="group"))


def test_json_and_render(report) -> None:
    d = json.loads(report.to_json())
    assert [f["key"] for f in d["findings"]] == [
        "classes",
        "missing",
        "useless_columns",
        "incomplete_rows",
        "negative_values",
        "duplicates",
        "time_structure",
        "leakage",
    ]
    out = io.StringIO()
    report.render(Console(file=out, width=160))
    text = out.getvalue()
    assert "Data quality" in text and "leakage" in text and "Moriarty" in text


def test_real_files(shared_data) -> None:
    raw = check_data(load_sherlock(shared_data / "sherlock_raw_sample.csv"))
    assert raw.layout == "raw" and raw.n_columns == 58
    assert raw["useless_columns"].data["all_missing"] == ["cminflt"]
    mystery = check_data(load_sherlock(shared_data / "sherlock_mystery.csv"))
    assert mystery["incomplete_rows"].data["rows"] == 48
    assert mystery["classes"].data["counts"] == {"Facebook": 121, "WhatsApp": 79}
