"""The data-quality report: every finding, its numbers, JSON and the terminal table."""

from __future__ import annotations

import collections
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from appsleuth.cli import main
from appsleuth.data.layouts import INCOMPLETE_ROW_COLUMNS, SHERLOCK18_FEATURES
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
        "identical": [],
    }
    inc = report["incomplete_rows"]
    assert inc.data["rows"] == 3
    assert set(inc.data["most_common_pattern"]["columns"]) == set(INCOMPLETE_ROW_COLUMNS)
    assert "miss the same 10 column(s)" in inc.summary
    assert "leave" not in inc.recommendation  # ten columns: no one column to leave out


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


def test_leakage_rate_counts_copies_across_column_types() -> None:
    # The same values, but val's counter is float (it has a gap) and its state categorical:
    # 5 and 5.0 hashed apart, so copies went uncounted and the rate read too low.
    train = pd.DataFrame({"utime": [5, 7, 9], "state": ["S", "R", "S"]})
    val = pd.DataFrame({"utime": [5.0, 7.0, np.nan], "state": pd.Categorical(["S", "R", "S"])})
    assert leakage_rate(train, val, ["utime", "state"]) == pytest.approx(2 / 3)


def test_chosen_split_naming_a_missing_column_is_an_error() -> None:
    df = from_dataframe(make_sherlock18())
    with pytest.raises(DataError, match="group column 'UserId'"):
        check_data(df, split=SplitSpec(kind="group"))
    with pytest.raises(DataError, match="time column 'when' for the blocked split"):
        check_data(df, split=SplitSpec(kind="blocked", time_column="when"))


def test_json_and_render(report) -> None:
    d = json.loads(report.to_json())
    assert [f["key"] for f in d["findings"]] == [
        "classes",
        "missing",
        "infinite_values",
        "useless_columns",
        "incomplete_rows",
        "negative_values",
        "duplicates",
        "time_structure",
        "leakage",
        "feature_notes",
    ]
    out = io.StringIO()
    report.render(Console(file=out, width=160))
    text = out.getvalue()
    assert "Data quality" in text and "leakage" in text and "Moriarty" in text
    assert "cumulative since process start" in text


def test_real_files(shared_data) -> None:
    raw = check_data(load_sherlock(shared_data / "sherlock_raw_sample.csv"))
    assert raw.layout == "raw" and raw.n_columns == 58
    assert raw["useless_columns"].data["all_missing"] == ["cminflt"]
    mystery = check_data(load_sherlock(shared_data / "sherlock_mystery.csv"))
    assert mystery["incomplete_rows"].data["rows"] == 48
    # All 48 miss cminflt alone: leaving it out keeps a quarter of the file.
    assert "or leave cminflt out of the features" in mystery["incomplete_rows"].recommendation
    assert mystery["classes"].data["counts"] == {"Facebook": 121, "WhatsApp": 79}


# --- infinite values --------------------------------------------------------------------


def _csv_with_infinite_values(tmp_path: Path) -> Path:
    df = make_sherlock18()
    df["CPU_USAGE"] = df["CPU_USAGE"].astype(str)
    df.iloc[4, df.columns.get_loc("CPU_USAGE")] = "inf"
    df.iloc[9, df.columns.get_loc("rss")] = -np.inf
    df.iloc[11, df.columns.get_loc("rss")] = np.inf
    path = tmp_path / "inf.csv"
    df.to_csv(path)
    return path


def test_infinite_values_are_listed_per_column_and_counted_as_missing(tmp_path: Path) -> None:
    report = check_data(load_sherlock(_csv_with_infinite_values(tmp_path)))
    f = report["infinite_values"]
    assert f.severity == "warning"
    assert f.summary == (
        "CPU_USAGE: 1 infinite value in data row 4 (line 6); rss: 2 infinite values in "
        "data row 9 (line 11), data row 11 (line 13); treated as missing"
    )
    assert f.data["per_column"]["rss"]["count"] == 2
    assert f.data["per_column"]["rss"]["positive"] == 1
    assert report["missing"].data["per_column"]["CPU_USAGE"] == 1
    assert report["missing"].data["per_column"]["rss"] == 2
    assert report["incomplete_rows"].data["rows"] == 3


def test_infinite_values_in_a_table_not_from_the_loader() -> None:
    df = make_sherlock18()
    df.iloc[2, df.columns.get_loc("utime")] = -np.inf
    report = check_data(df)
    f = report["infinite_values"]
    assert (
        f.summary == f"utime: 1 infinite value in row 2 (index {df.index[2]}); treated as missing"
    )
    assert report["missing"].data["per_column"]["utime"] == 1
    assert report["incomplete_rows"].data["rows"] == 1
    assert np.isinf(df["utime"].iloc[2])  # the input is untouched


def test_many_infinite_values_say_how_many_more() -> None:
    df = make_sherlock18().reset_index(drop=True)
    df.loc[:19, "vsize"] = np.inf
    f = check_data(df)["infinite_values"]
    assert f.summary == (
        "vsize: 20 infinite values in row 0, row 1, row 2, row 3, row 4 and 15 more; "
        "treated as missing"
    )


def test_no_infinite_values() -> None:
    f = check_data(from_dataframe(make_sherlock18()))["infinite_values"]
    assert f.severity == "ok" and f.data == {"per_column": {}}


def test_cli_check_mentions_infinite_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(_csv_with_infinite_values(tmp_path)), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    finding = next(f for f in report["findings"] if f["key"] == "infinite_values")
    assert "CPU_USAGE: 1 infinite value in data row 4 (line 6)" in finding["summary"]


# --- tiny tables: parts that cannot be computed say so ----------------------------------


@pytest.mark.parametrize(
    ("kind", "advice"),
    [
        ("random", "also report a blocked split (--split blocked) or a group split by device"),
        ("blocked", "also report a group split by device (--split group), or a copy without"),
        ("group", "identical rows recur across the groups: also report a copy without exact"),
    ],
)
def test_a_leaky_split_is_told_what_it_does_not_already_do(kind: str, advice: str) -> None:
    # Every app's rows identical: any split leaks. A leaky blocked split was told to
    # "also report a blocked split".
    df = make_sherlock18(n_per_app=40, with_ids=True)
    features = list(SHERLOCK18_FEATURES)
    df[features] = df.groupby("ApplicationName")[features].transform("first")
    df["UserId"] = np.arange(len(df)) % 5  # five devices
    leak = check_data(from_dataframe(df), split=SplitSpec(kind=kind))["leakage"]
    assert leak.severity == "warning"
    assert leak.recommendation.startswith("accuracy on this split is optimistic: ")
    assert advice in leak.recommendation
    assert f"a {kind} split" not in leak.recommendation


def _tiny(tmp_path: Path, apps: tuple[str, ...] = ("Chrome", "Gmail")) -> Path:
    """One complete row per app (the reviewer's tiny2.csv)."""
    df = make_sherlock18(n_per_app=5, apps=apps).groupby("ApplicationName").head(1)
    path = tmp_path / "tiny2.csv"
    df.to_csv(path)
    return path


def test_tiny_table_report_is_produced(tmp_path: Path) -> None:
    report = check_data(load_sherlock(_tiny(tmp_path)))
    leak = report["leakage"]
    assert "random" in leak.data["rates"] and "blocked" not in leak.data["rates"]
    assert leak.data["not_computable"]["blocked"].startswith("tiny2.csv: the blocked split left")
    assert "a blocked split: not computable (tiny2.csv: the blocked split left" in leak.summary
    # The random split is made, but its training side holds one class: training would fail.
    assert leak.severity == "problem"
    assert "its training rows hold a single class, 'Gmail'" in leak.summary
    ts = report["time_structure"]
    assert ts.severity == "info"
    assert ts.summary == "not computable: no app has two samples with values to compare"


def test_cli_check_of_tiny_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(_tiny(tmp_path)), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    leak = next(f for f in report["findings"] if f["key"] == "leakage")
    assert "blocked" in leak["data"]["not_computable"]


def test_chosen_split_that_cannot_be_made_is_a_problem_finding() -> None:
    df = from_dataframe(
        pd.DataFrame(
            {"ApplicationName": ["a", "b", "c"], "x": [1.0, np.nan, 2.0], "y": [1.0, 2.0, np.nan]}
        )
    )
    leak = check_data(df)["leakage"]  # one row is left after cleaning
    assert leak.severity == "problem"
    assert leak.summary == (
        "not computable: the random split cannot be made (dataframe: 1 row(s) cannot be "
        "split into training and validation)"
    )
    assert leak.data["rate"] is None and leak.data["rates"] == {}
    assert "would fail the same way" in leak.recommendation


def test_single_class_table_is_a_problem_not_a_crash() -> None:
    df = from_dataframe(make_sherlock18(apps=("Gmail",)), require_label=False)
    report = check_data(df)
    classes = report["classes"]
    assert classes.severity == "problem"
    assert classes.summary == "one class, Gmail (60 rows); a classifier needs at least two classes"
    assert report["leakage"].severity == "problem"
    assert "its training rows hold a single class, 'Gmail'" in report["leakage"].summary


def test_table_without_label_reports_what_it_can() -> None:
    df = from_dataframe(make_sherlock18().drop(columns="ApplicationName"), require_label=False)
    report = check_data(df)
    assert report["classes"].severity == "problem"
    assert report["leakage"].summary == "not computable: the table has no label column"
    assert report["time_structure"].summary == "not computable: the table has no label column"


def test_validation_class_missing_from_training_is_a_problem() -> None:
    df = make_sherlock18(n_per_app=40)
    df = from_dataframe(pd.concat([df, df.iloc[:1].assign(ApplicationName="Waze")]))
    # The single Waze row goes to validation for some seeds: find one (deterministic).
    for seed in range(50):
        leak = check_data(df, split=SplitSpec(seed=seed))["leakage"]
        if "Waze" in leak.summary:
            break
    assert leak.severity == "problem"
    assert "class(es) ['Waze'] are in validation/test rows but not in training" in leak.summary


def test_nothing_left_after_cleaning_is_a_problem_finding() -> None:
    df = from_dataframe(
        pd.DataFrame(
            {
                "ApplicationName": ["a", "b", "c", "d"],
                "x": [1.0, np.nan, 3.0, np.nan],
                "y": [np.nan, 2.0, np.nan, 4.0],
            }
        )
    )
    leak = check_data(df)["leakage"]
    assert leak.severity == "problem"
    assert leak.summary.startswith(
        "not computable: nothing is left to split after cleaning (dataframe: no row is left"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((["nope"],), r"train lacks the feature column\(s\) \['nope'\] to compare; columns found"),
        (("rss,nope",), r"train lacks the feature column\(s\) \['nope'\]"),
    ],
)
def test_leakage_rate_names_an_absent_feature(args, expected) -> None:
    df = make_sherlock18(n_per_app=10)
    with pytest.raises(DataError, match=expected):
        leakage_rate(df, df, *args)
    with pytest.raises(DataError, match=r"val must be a DataFrame of rows; received list"):
        leakage_rate(df, [], ["rss"])


def test_consecutive_samples_are_one_process_over_time(shared_data: Path) -> None:
    # The raw sample is one snapshot: rows of one instant are processes, not neighbours.
    raw = check_data(load_sherlock(shared_data / "sherlock_raw_sample.csv"))["time_structure"]
    assert raw.summary == "not computable: no app has two samples with values to compare"
    # Two processes of one app, each constant over ten snapshots: all values unchanged.
    rows = [
        {"ApplicationName": app, "UserId": "u1", "UUID": 1000 + 5000 * t, "pid": pid,
         "CPU_USAGE": float(pid), "rss": 10.0 * pid}
        for t in range(10)
        for app, pid in (("Google App", 1), ("Google App", 2), ("Chrome", 3))
    ]  # fmt: skip
    finding = check_data(from_dataframe(pd.DataFrame(rows)))["time_structure"]
    assert finding.data["pairs"] == 27 and finding.data["unchanged_features_share"] == 1.0
    assert finding.severity == "warning"


def test_identical_columns_are_named(shared_data: Path) -> None:
    # In the real 2-app file, Mem equals vsize in every row: one feature counted twice.
    finding = check_data(load_sherlock(shared_data / "sherlock_mystery.csv"))["useless_columns"]
    assert finding.severity == "warning"
    assert "identical: vsize = Mem" in finding.summary
    assert finding.data["identical"] == [["vsize", "Mem"]]
    assert "keep one column of each identical group" in finding.recommendation
    varied = from_dataframe(make_sherlock18(n_per_app=10).drop(columns=["cminflt", "guest_time"]))
    assert check_data(varied)["useless_columns"].data["identical"] == []


def test_labels_that_differ_only_in_case_are_flagged() -> None:
    df = make_sherlock18(n_per_app=10, apps=("Facebook", "Chrome", "Gmail"))
    df.loc[df["ApplicationName"] == "Gmail", "ApplicationName"] = "FACEBOOK"
    finding = check_data(from_dataframe(df))["classes"]
    assert finding.severity == "warning"
    assert [sorted(g) for g in finding.data["differ_only_in_case"]] == [["FACEBOOK", "Facebook"]]
    assert "labels that differ only in case: " in finding.summary
    assert "write each app's name one way" in finding.recommendation


def test_labels_that_are_one_number_written_two_ways_are_a_problem() -> None:
    df = make_sherlock18(n_per_app=10, apps=("Facebook", "Chrome", "Gmail"))
    df["ApplicationName"] = df["ApplicationName"].map(
        {"Facebook": "1", "Chrome": "1.0", "Gmail": "2"}
    )
    finding = check_data(from_dataframe(df))["classes"]
    # Training refuses such a table: the report says so before it is trained.
    assert finding.severity == "problem"
    assert finding.data["same_number"] == [["1", "1.0"]]
    assert "labels that are one number written differently: 1 / 1.0" in finding.summary
    assert "training refuses a number written two ways" in finding.recommendation


def test_documented_feature_meanings_are_noted() -> None:
    finding = check_data(from_dataframe(make_sherlock18(n_per_app=10)))["feature_notes"]
    assert finding.severity == "info"
    assert "CPU_USAGE is deprecated upstream" in finding.summary
    assert "utime and stime are cumulative since process start, so they also tell" in (
        finding.summary
    )
    one = from_dataframe(make_sherlock18(n_per_app=10).drop(columns="stime"))
    assert "utime is cumulative since process start, so it also tells" in (
        check_data(one)["feature_notes"].summary
    )
    plain = from_dataframe(pd.DataFrame({"ApplicationName": ["a", "b"] * 5, "x": range(10)}))
    assert "feature_notes" not in [f.key for f in check_data(plain).findings]


def _reference_gap(gaps: pd.DataFrame) -> tuple[tuple[str, ...], int]:
    """Per-row tuples of missing columns counted in plain Python; of equal counts the
    pattern seen first (pandas' value_counts orders ties differently from version to
    version)."""
    counts = collections.Counter(tuple(r.index[r]) for _, r in gaps.iterrows())
    return max(counts.items(), key=lambda item: item[1])


@pytest.mark.parametrize("seed", range(6))
def test_most_common_missing_pattern_matches_per_row_counting_ties_included(seed: int) -> None:
    from appsleuth.data.quality import _most_common_gap

    rng = np.random.default_rng(seed)
    # Few rows, few columns, high rates: many patterns with equal counts.
    columns = [f"c{i}" for i in range(int(rng.integers(1, 11)))]
    gaps = pd.DataFrame(rng.random((int(rng.integers(1, 30)), len(columns))) < 0.4, columns=columns)
    gaps = gaps.loc[gaps.any(axis=1)]
    if gaps.empty:
        gaps = pd.DataFrame([[True] * len(columns)], columns=columns)
    assert _most_common_gap(gaps.to_numpy(), columns) == _reference_gap(gaps)


def test_incomplete_rows_pattern_is_found_without_a_python_call_per_row(monkeypatch) -> None:
    # A large file with a sparsely filled column has millions of incomplete rows: a
    # per-row apply took ~200 us a row (minutes of silence in `data check`).
    from appsleuth.data.quality import _incomplete_rows

    df = make_sherlock18(n_per_app=40)
    df.loc[df.index[::2], "rss"] = np.nan
    df.loc[df.index[::3], ["lru", "vsize"]] = np.nan

    def no_apply(*args, **kwargs):
        raise AssertionError("DataFrame.apply called")

    features = [f for f in SHERLOCK18_FEATURES if f != "cminflt"]
    expected = _reference_gap(df[features].isna().loc[df[features].isna().any(axis=1)])
    monkeypatch.setattr(pd.DataFrame, "apply", no_apply)
    found = _incomplete_rows(df, features)
    assert found.data["rows"] == int(df[features].isna().any(axis=1).sum()) > 0
    assert found.data["most_common_pattern"] == {
        "columns": list(expected[0]),
        "rows": expected[1],
    }


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_data_check_says_what_it_does_at_a_terminal_only(
    tmp_path: Path, monkeypatch, capsys, terminal: bool
) -> None:
    # Reading and checking a file of millions of rows takes tens of seconds: a person at
    # a terminal is told what is going on; a pipe or log gets the report alone.
    path = tmp_path / "t.csv"
    make_sherlock18().to_csv(path)
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["data", "check", str(path), "--json"]) == 0
    json.loads(capsys.readouterr().out)
    notes = err.getvalue()
    if terminal:
        assert f"appsleuth: reading {path} (" in notes
        assert "appsleuth: checking 180 rows x 19 columns ..." in notes
    else:
        assert "appsleuth:" not in notes


def test_report_refuses_a_time_column_of_numbers_and_text() -> None:
    df = pd.DataFrame({"ApplicationName": ["a", "b"] * 20, "x": np.arange(40.0)})
    df["UUID"] = pd.Series([1] * 20 + ["later"] * 20, dtype=object)
    with pytest.raises(DataError, match=r"time column 'UUID' mixes values"):
        check_data(from_dataframe(df))


def test_report_prints_one_line_per_finding(report) -> None:
    # A bare `report` in a notebook was one long line of every finding's numbers.
    lines = repr(report).splitlines()
    assert lines[0].startswith("QualityReport(") and "300 rows" in lines[0]
    assert len(lines) == 1 + len(report.findings)
    assert lines[1].split()[:2] == [report.findings[0].severity, report.findings[0].title]
    assert "'counts'" not in repr(report)  # the numbers stay in report[key].data


def test_app_names_with_square_brackets_are_shown_as_they_are() -> None:
    apps = ["[/x]", "[bold]Evil[/bold]"]  # rich markup: a MarkupError, and a styled "Evil"
    df = pd.DataFrame(
        {"ApplicationName": apps * 20, "cpu": np.arange(40.0), "mem": np.arange(40.0) * 2}
    )
    out = io.StringIO()
    check_data(df).render(Console(file=out, width=400))
    assert all(app in out.getvalue() for app in apps)
