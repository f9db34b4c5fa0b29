"""The classical baselines: scores on the same split, and clear errors on unusable data."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from appsleuth.baselines import run_baselines
from appsleuth.cli import main
from appsleuth.data.load import from_dataframe
from appsleuth.data.prepare import prepare_data
from appsleuth.errors import DataError, SpecError
from tests.conftest import make_sherlock18


@pytest.fixture
def prepared():
    return prepare_data(from_dataframe(make_sherlock18(n_per_app=40)))


def test_both_baselines_score(prepared) -> None:
    results = run_baselines(prepared)
    assert set(results) == {"logistic_regression", "decision_tree"}
    for metrics in results.values():
        assert 0 <= metrics["accuracy"] <= 1 and metrics["fit_seconds"] >= 0


def test_unknown_baseline(prepared) -> None:
    with pytest.raises(SpecError, match=r"baselines must be among .*received \['svm'\]"):
        run_baselines(prepared, which=["svm"])


def test_single_class_training_rows_name_the_class(prepared) -> None:
    one = dataclasses.replace(prepared, y_train=np.zeros_like(prepared.y_train))
    with pytest.raises(
        DataError,
        match=r"the baselines' training rows hold a single class, 'Chrome'; a classifier "
        r"needs at least two classes in training",
    ):
        run_baselines(one)


def test_no_validation_rows(prepared) -> None:
    empty = dataclasses.replace(prepared, x_val=prepared.x_val[:0], y_val=prepared.y_val[:0])
    with pytest.raises(DataError, match="there are no validation rows to score"):
        run_baselines(empty)


def test_cli_on_a_tiny_file_names_the_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))
    raw = make_sherlock18(n_per_app=5, apps=("Chrome", "Gmail")).groupby("ApplicationName")
    path = tmp_path / "tiny2.csv"
    raw.head(1).to_csv(path)
    assert main(["baselines", "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "hold a single class, 'Gmail'" in err or "hold a single class, 'Chrome'" in err
    assert "at least two classes" in err and "if any" not in err


def test_run_baselines_names_a_table_passed_instead_of_prepared_data() -> None:
    from appsleuth.data.tables import embedded_data
    from appsleuth.errors import DataError

    with pytest.raises(DataError, match=r"needs the output of prepare_data\(table\); received Da"):
        run_baselines(embedded_data(500))


def test_one_baseline_named_as_text(prepared) -> None:
    assert list(run_baselines(prepared, which="decision_tree")) == ["decision_tree"]


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        (None, r"which must be a list of names or one comma-separated string; received which=N"),
        (["decision_tree", "decision_tree"], r"which names \['decision_tree'\] more than once"),
        ("svm", r"baselines must be among logistic_regression, decision_tree; received \['svm'\]"),
    ],
)
def test_bad_baseline_lists(prepared, which, expected) -> None:
    with pytest.raises(SpecError, match=expected):
        run_baselines(prepared, which=which)


def test_baselines_fit_with_class_weights(prepared) -> None:
    # A network trained with class weights was set beside unweighted baselines.
    moriarty = prepared.classes.index("Moriarty")
    weights = {i: float(i == moriarty) for i in range(len(prepared.classes))}
    tree = run_baselines(prepared, which="decision_tree", class_weight=weights)["decision_tree"]
    # All the weight on Moriarty: the tree calls every row Moriarty.
    assert tree["malware"]["detection_rate"] == 1.0
    assert tree["accuracy"] == pytest.approx(np.mean(prepared.y_val == moriarty))
    with pytest.raises(
        SpecError, match=r"class_weight keys must be class indices 0..2; received 7"
    ):
        run_baselines(prepared, class_weight={7: 1.0})
    with pytest.raises(SpecError, match=r"class_weight\[0\]='heavy'"):
        run_baselines(prepared, class_weight={0: "heavy"})


def test_baselines_choose_moriarty_operating_points_on_the_validation_rows(prepared) -> None:
    from appsleuth.evaluate import FALSE_ALARM_TARGETS

    # The network's metrics had detection at 10 %, 1 % and 0.1 % false alarms; the
    # baselines' had their argmax rates only, nothing to set beside them.
    results = run_baselines(prepared)
    benign = int((prepared.y_val != prepared.classes.index("Moriarty")).sum())
    for metrics in results.values():
        points = metrics["malware"]["operating_points"]
        assert [p["false_alarm_target"] for p in points] == list(FALSE_ALARM_TARGETS)
        assert points[0]["detection_rate"] == 1.0 and points[0]["false_alarms"] == 0
        # Too few benign validation rows for 1 %: a reason, not a number.
        assert points[1]["detection_rate"] is None
        assert points[1]["reason"].startswith(f"not measurable: {benign} benign sample(s)")
    assert results["decision_tree"]["malware"]["distinct_scores"] == 2


def test_a_trees_tied_scores_raise_their_alarms_together(prepared) -> None:
    # Without Chrome in training, the tree puts the Chrome validation rows in Moriarty's
    # leaf: they tie with every Moriarty row at P(Moriarty) = 1, and no threshold
    # between them exists, so nothing is caught within 10 % false alarms.
    chrome = prepared.classes.index("Chrome")
    keep = prepared.y_train != chrome
    part = dataclasses.replace(
        prepared, x_train=prepared.x_train[keep], y_train=prepared.y_train[keep]
    )
    results = run_baselines(part)
    tree = results["decision_tree"]["malware"]
    point = tree["operating_points"][0]
    assert point["detection_rate"] == 0.0 and point["threshold"] is None
    assert point["reason"].startswith("no threshold catches a Moriarty sample")
    assert tree["distinct_scores"] <= 3
    # predict_proba's columns are the classes trained on: Moriarty's is found by name.
    assert results["logistic_regression"]["malware"]["roc_auc"] == 1.0


def test_cli_baselines_show_the_operating_points(
    sherlock18_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))
    assert main(["baselines", "--data", str(sherlock18_csv), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results["decision_tree"]["malware"]["operating_points"]) == 3
    assert main(["baselines", "--data", str(sherlock18_csv)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "each threshold chosen on these validation rows, so its numbers flatter it" in out
    assert re.search(r"at most 10 % false alarms: detection \d+\.\d % \(\d+ of \d+\)", out)
    assert "at most 0.1 % false alarms: not measurable:" in out
    assert "P(Moriarty) takes only 2 distinct value(s) on these rows" in out
