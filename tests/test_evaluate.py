"""Metrics against scikit-learn's on known predictions; the fit diagnosis on made-up curves."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from appsleuth.errors import DataError, SpecError
from appsleuth.evaluate import (
    FALSE_ALARM_TARGETS,
    FitRule,
    classification_metrics,
    diagnose_fit,
    malware_score_metrics,
    operating_points,
    rates_at_thresholds,
)

CLASSES = ["Chrome", "Gmail", "Moriarty", "Waze"]


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, size=500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 4, size=500))
    y_pred[y_pred == 3] = 0  # Waze is never predicted: precision must be 0, not NaN
    return y_true, y_pred


def test_matches_scikit_learn(predictions) -> None:
    y_true, y_pred = predictions
    m = classification_metrics(y_true, y_pred, CLASSES)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(4), zero_division=0)
    for i, c in enumerate(CLASSES):
        assert m["per_class"][c]["precision"] == pytest.approx(p[i])
        assert m["per_class"][c]["recall"] == pytest.approx(r[i])
        assert m["per_class"][c]["f1"] == pytest.approx(f[i])
        assert m["per_class"][c]["support"] == s[i]
    assert m["macro_avg"].pop("classes") == 4
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        assert m[f"{avg}_avg"] == pytest.approx({"precision": p, "recall": r, "f1": f})
    assert m["confusion_matrix"]["counts"] == confusion_matrix(y_true, y_pred).tolist()
    rows = np.asarray(m["confusion_matrix"]["normalized"]).sum(axis=1)
    np.testing.assert_allclose(rows, 1.0, atol=1e-5)


def test_malware_line(predictions) -> None:
    y_true, y_pred = predictions
    m = classification_metrics(y_true, y_pred, CLASSES)["malware"]
    is_m, pred_m = y_true == 2, y_pred == 2
    assert m["detection_rate"] == pytest.approx((is_m & pred_m).sum() / is_m.sum())
    assert m["precision"] == pytest.approx((is_m & pred_m).sum() / pred_m.sum())
    assert m["false_alarm_rate"] == pytest.approx((~is_m & pred_m).sum() / (~is_m).sum())
    assert m["missed"] == (is_m & ~pred_m).sum()
    assert "malware" not in classification_metrics([0, 1], [0, 1], ["a", "b"])


def test_classes_absent_from_samples_and_predictions_are_not_averaged() -> None:
    # Two apps of a four-app model (the mystery-file workflow); Moriarty is absent.
    y_true = np.array([0, 0, 0, 3, 3, 3, 3])
    y_pred = np.array([0, 0, 1, 3, 3, 0, 3])  # Gmail predicted once, never true.
    m = classification_metrics(y_true, y_pred, CLASSES)
    assert m["macro_avg"].pop("classes") == 3  # Chrome, Gmail and Waze; not Moriarty.
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )  # scikit-learn averages over the labels present in either, too
    assert m["macro_avg"] == pytest.approx({"precision": p, "recall": r, "f1": f})
    assert m["malware"]["detection_rate"] is None and m["malware"]["support"] == 0
    assert m["malware"]["false_alarm_rate"] == 0.0


def test_false_alarm_rate_is_undefined_without_benign_samples() -> None:
    # Moriarty rows alone: 0 alarms of 0 benign rows is no rate, not a perfect one.
    m = classification_metrics([2, 2, 2], [2, 0, 2], CLASSES)["malware"]
    assert m["false_alarm_rate"] is None
    assert m["detection_rate"] == pytest.approx(2 / 3)


def test_binary_roc_auc() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=300)
    score = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    score[:10] = 0.5  # ties are averaged
    m = classification_metrics(y, (score > 0.5).astype(int), ["other", "Moriarty"], y_score=score)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score))


def test_binary_metrics_record_the_roc_curve() -> None:
    from sklearn.metrics import roc_curve as sklearn_roc_curve

    from appsleuth.evaluate import roc_curve

    # metrics.json held the area alone, so no report could draw the curve.
    y = np.array([0, 0, 1, 1, 0, 1])
    score = np.array([0.1, 0.5, 0.5, 0.9, 0.3, 0.7])
    m = classification_metrics(y, (score > 0.5).astype(int), ["other", "Moriarty"], y_score=score)
    fpr, tpr, _ = sklearn_roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(m["roc_curve"]["fpr"], fpr, atol=1e-6)  # ties: one point
    np.testing.assert_allclose(m["roc_curve"]["tpr"], tpr, atol=1e-6)
    assert "roc_curve" not in classification_metrics(y, y, ["other", "Moriarty"])
    assert roc_curve(np.zeros(4, int), score[:4]) is None  # one class: no curve
    # A long curve keeps its ends and at most max_points points, in order.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=5000)
    curve = roc_curve(y, y * 0.3 + rng.random(5000), max_points=50)
    assert 2 < len(curve["fpr"]) <= 51 and len(curve["fpr"]) == len(curve["tpr"])
    assert curve["fpr"][0] == curve["tpr"][0] == 0 and curve["fpr"][-1] == curve["tpr"][-1] == 1
    assert np.all(np.diff(curve["fpr"]) >= 0) and np.all(np.diff(curve["tpr"]) >= 0)
    # Labels and scores of other lengths drew a curve ending short of (1, 1).
    with pytest.raises(DataError, match=r"y_true and score must be 1-D and of one length"):
        roc_curve(np.array([1, 0, 1]), np.array([0.9, 0.1]))
    with pytest.raises(SpecError, match=r"max_points must be an integer of at least 2"):
        roc_curve(y, score[:1].repeat(len(y)), max_points=1)


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="differ in length"):
        classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(DataError, match=r"y_pred holds class indices outside 0..1"):
        classification_metrics([0, 1], [0, 2], ["a", "b"])
    with pytest.raises(DataError, match="zero samples"):
        classification_metrics([], [], ["a", "b"])


def _history(loss, acc, vloss, vacc) -> pd.DataFrame:
    return pd.DataFrame({"loss": loss, "accuracy": acc, "val_loss": vloss, "val_accuracy": vacc})


def test_overfitting_by_rising_validation_loss() -> None:
    h = _history(
        loss=[1.0, 0.6, 0.4, 0.3, 0.2, 0.1],
        acc=[0.7, 0.8, 0.9, 0.93, 0.96, 0.99],
        vloss=[1.0, 0.6, 0.5, 0.55, 0.65, 0.8],
        vacc=[0.7, 0.8, 0.88, 0.88, 0.87, 0.86],
    )
    d = diagnose_fit(h)
    assert d["diagnosis"] == "overfitting"
    assert "epoch 3" in d["reason"]
    assert d["rule"] == FitRule().describe()


def test_no_better_than_the_most_common_class_is_underfitting() -> None:
    # A one-vs-rest Moriarty model that never flags one: accuracy 0.987, the share of
    # "other", which the accuracy threshold alone called a good fit.
    h = _history(
        loss=[0.3, 0.1, 0.08], acc=[0.98, 0.987, 0.987], vloss=[0.2, 0.09, 0.08],
        vacc=[0.987, 0.987, 0.987],
    )  # fmt: skip
    assert diagnose_fit(h)["diagnosis"] == "good fit"
    d = diagnose_fit(h, majority=("other", 0.987))
    assert d["diagnosis"] == "underfitting"
    assert "no higher than always predicting 'other', the most common class (0.987" in d["reason"]
    assert diagnose_fit(h, majority=("other", 0.95))["diagnosis"] == "good fit"
    assert diagnose_fit(h, majority=("other", 1.0))["diagnosis"] == "good fit"  # one class
    with pytest.raises(SpecError, match=r"majority must be \(class name, share"):
        diagnose_fit(h, majority=0.5)


def test_overfitting_by_widening_gap() -> None:
    h = _history(
        loss=[0.5, 0.4, 0.3, 0.2, 0.1],
        acc=[0.90, 0.93, 0.95, 0.98, 0.99],
        vloss=[0.5, 0.45, 0.42, 0.41, 0.40],
        vacc=[0.90, 0.92, 0.93, 0.93, 0.93],
    )
    assert diagnose_fit(h)["diagnosis"] == "overfitting"


def test_an_accuracy_gap_of_two_validation_rows_is_no_overfitting() -> None:
    # The 2-app teaching file's 31 validation rows: one row is 0.032 of accuracy, and a
    # gap under two rows, with validation loss below training loss, read "overfitting".
    h = _history(
        loss=[0.695, 0.69, 0.685, 0.68, 0.675],
        acc=[0.60, 0.85, 0.88, 0.93, 0.959],
        vloss=[0.694, 0.689, 0.684, 0.679, 0.674],
        vacc=[0.60, 0.87, 0.903, 0.903, 0.903],
    )
    assert diagnose_fit(h)["diagnosis"] == "overfitting"
    assert diagnose_fit(h, n_val=31)["diagnosis"] == "good fit"
    assert diagnose_fit(h, n_val=10_000)["diagnosis"] == "overfitting"
    assert "more than two validation rows" in diagnose_fit(h)["rule"]
    with pytest.raises(SpecError, match=r"n_val must be a positive integer or None; received"):
        diagnose_fit(h, n_val=0)


def test_underfitting_still_improving_and_flat() -> None:
    rising = _history(
        loss=[2.0, 1.8, 1.6, 1.4],
        acc=[0.3, 0.4, 0.5, 0.6],
        vloss=[2.0, 1.8, 1.6, 1.4],
        vacc=[0.3, 0.4, 0.5, 0.6],
    )
    d = diagnose_fit(rising)
    assert d["diagnosis"] == "underfitting" and "still improving" in d["reason"]
    flat = _history(loss=[1.9] * 5, acc=[0.32] * 5, vloss=[1.9] * 5, vacc=[0.32] * 5)
    d = diagnose_fit(flat)
    assert d["diagnosis"] == "underfitting" and "flat" in d["reason"]


def test_good_fit() -> None:
    h = _history(
        loss=[0.5, 0.2, 0.1, 0.05],
        acc=[0.9, 0.95, 0.98, 0.99],
        vloss=[0.5, 0.2, 0.1, 0.05],
        vacc=[0.9, 0.95, 0.98, 0.99],
    )
    assert diagnose_fit(h)["diagnosis"] == "good fit"


def test_history_errors() -> None:
    with pytest.raises(DataError, match=r"history lacks column\(s\) \['val_loss'"):
        diagnose_fit({"loss": [1], "accuracy": [1]})
    with pytest.raises(DataError, match="no epochs"):
        diagnose_fit(_history([], [], [], []))


def test_diagnosis_of_non_finite_curves_is_unknown() -> None:
    nan = float("nan")
    h = {"loss": [nan, nan], "accuracy": [nan, nan], "val_loss": [nan, nan],
         "val_accuracy": [nan, nan]}  # fmt: skip
    d = diagnose_fit(h)
    assert d["diagnosis"] == "unknown" and "non-finite" in d["reason"]
    with pytest.raises(DataError, match=r"history values must be numbers"):
        diagnose_fit({**h, "loss": ["high", "low"]})


@pytest.mark.parametrize(
    ("y_true", "y_pred", "kwargs", "message"),
    [
        ([0, 1, 1], [0.2, 0.9, 1.7], {}, r"y_pred must hold class indices \(whole numbers\)"),
        (["a", "b", "b"], [0, 1, 1], {}, r"y_true must hold class indices .*for names"),
        ([0, 1], [[0.1, 0.9], [0.8, 0.2]], {}, r"y_pred must be a 1-D sequence .*shape \(2, 2\)"),
        ([0, 1], [0, 1], {"y_score": [[0.1, 0.9], [0.8, 0.2]]}, r"y_score must hold one prob"),
        ([0, 1], [0, 1], {"y_score": [0.3]}, r"shape \(2,\); received shape \(1,\)"),
    ],
)
def test_metrics_refuse_what_is_not_class_indices(y_true, y_pred, kwargs, message):
    with pytest.raises(DataError, match=message):
        classification_metrics(y_true, y_pred, ["a", "b"], **kwargs)


def test_metrics_accept_whole_floats_and_bools():
    result = classification_metrics(np.array([0.0, 1.0]), np.array([False, True]), ["a", "b"])
    assert result["accuracy"] == 1.0


def test_diagnose_fit_rule_must_be_a_fit_rule():
    from appsleuth.errors import SpecError

    history = pd.DataFrame(
        {"loss": [1.0], "accuracy": [0.5], "val_loss": [1.0], "val_accuracy": [0.5]}
    )
    with pytest.raises(SpecError, match=r"rule must be a FitRule"):
        diagnose_fit(history, rule={"poor": 0.5})


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        ([], r"classes must name at least one class; received classes=\[\]"),
        (["a", "a"], r"classes must name each class once; received \['a'\] more than once"),
        ("ab", r"classes must be a list of class names; received classes='ab'"),
    ],
)
def test_bad_class_lists(classes, expected) -> None:
    with pytest.raises(DataError, match=expected):
        classification_metrics([0, 1], [0, 1], classes)


def test_class_indices_beyond_the_class_list_are_named() -> None:
    with pytest.raises(DataError, match=r"y_true holds class indices outside 0..1 .* 0..2 for 2"):
        classification_metrics([0, 2], [0, 1], ["a", "b"])


@pytest.mark.parametrize(
    ("y_true", "y_pred", "idle"),
    [
        ([0, 0, 2], [0, 2, 2], {"B"}),  # B: no sample, no prediction
        ([0, 0, 2], [0, 1, 2], set()),  # B predicted once: its precision 0 is real
        ([0, 1, 2], [0, 1, 2], set()),
    ],
)
def test_idle_classes_are_those_neither_present_nor_predicted(y_true, y_pred, idle) -> None:
    from appsleuth.evaluate import idle_classes

    metrics = classification_metrics(np.array(y_true), np.array(y_pred), ["A", "B", "C"])
    assert idle_classes(metrics) == idle
    assert metrics["macro_avg"]["classes"] == 3 - len(idle)


@pytest.mark.parametrize(
    "damaged", [{}, {"confusion_matrix": None}, {"confusion_matrix": {"counts": [[1]]}}]
)
def test_idle_classes_of_a_damaged_metrics_file_are_none(damaged) -> None:
    from appsleuth.evaluate import idle_classes

    assert idle_classes(damaged) == set()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rise": "0.1"}, r"FitRule.rise must be a non-negative number; received rise='0.1'"),
        ({"gap": None}, r"FitRule.gap must be a number from 0 to 1; received gap=None"),
        ({"poor": float("nan")}, r"FitRule.poor must be a number from 0 to 1; received poor=nan"),
        ({"poor": 90}, r"FitRule.poor must be a number from 0 to 1; received poor=90"),
        ({"improving": -0.1}, r"FitRule.improving must be .*received improving=-0.1"),
    ],
)
def test_fit_rule_refuses_thresholds_that_are_no_numbers_in_range(fields, message) -> None:
    # They were taken, and failed later inside describe() with a format error (text,
    # None) or silently switched their test off (NaN).
    from appsleuth.errors import SpecError

    with pytest.raises(SpecError, match=message):
        FitRule(**fields)
    assert FitRule(rise=2, poor=np.float32(0.5)).poor == 0.5


def test_diagnose_fit_takes_a_keras_history_and_names_what_it_cannot_take() -> None:
    logs = _history([1.0, 0.9, 0.8], [0.5, 0.6, 0.7], [1.0, 0.9, 0.8], [0.5, 0.6, 0.7])
    logs = logs.to_dict("list")

    class History:  # what keras.Model.fit returns: the logs in .history
        history = logs

    assert diagnose_fit(History()) == diagnose_fit(logs)
    with pytest.raises(DataError, match=r"history must be a DataFrame, a mapping .*received list"):
        diagnose_fit([1.0, 0.9])
    with pytest.raises(DataError, match=r"one value per epoch in each column.*'loss': 3.*: 2"):
        diagnose_fit({**logs, "val_accuracy": [0.5, 0.6]})


@pytest.mark.parametrize("score", [[0.1, float("nan"), 0.3, 0.4], ["a", "b", "c", "d"]])
def test_roc_auc_refuses_scores_that_are_no_probabilities(score) -> None:
    # A missing score silently took no rank (an AUC of 0.25 for these), and text raised
    # a bare ValueError.
    with pytest.raises(DataError, match=r"y_score must hold finite probabilities of class 1"):
        classification_metrics([0, 1, 0, 1], [0, 1, 1, 1], ["A", "B"], y_score=score)


def test_class_names_may_come_as_a_pandas_index() -> None:
    # Categorical labels' categories are a pandas Index: it was refused as "not a list".
    labels = pd.Categorical(["Chrome", "Waze", "Waze"])
    result = classification_metrics(labels.codes, [0, 1, 0], labels.categories)
    assert list(result["per_class"]) == ["Chrome", "Waze"] and result["n"] == 3


# --- Moriarty at chosen false-alarm rates ---------------------------------------------------


def _points(is_malware, score, targets=(0.1,)):
    return operating_points(np.asarray(is_malware, bool), np.asarray(score, float), targets)


def test_the_threshold_reaches_the_most_detections_within_the_target() -> None:
    # 10 benign rows: 0.1 allows one false alarm. Moriarty scores 0.9, 0.7, 0.3.
    benign = [0.8, 0.6, 0.5, 0.4, 0.2, 0.2, 0.1, 0.1, 0.05, 0.0]
    score = [0.9, 0.7, 0.3, *benign]
    labels = [True] * 3 + [False] * 10
    (point,) = _points(labels, score)
    assert point == {
        "false_alarm_target": 0.1,
        "threshold": 0.7,  # flags 0.9, 0.8 (benign) and 0.7; 0.6 would be a second alarm
        "detection_rate": pytest.approx(2 / 3),
        "false_alarm_rate": 0.1,
        "detected": 2,
        "false_alarms": 1,
        "reason": None,
    }


def test_an_exact_hit_of_the_target_counts_and_the_highest_threshold_wins() -> None:
    # 100 benign rows, one above every Moriarty row: 0.01 is reached exactly.
    score = [0.95, 0.9, *([0.99] + [0.1] * 99)]
    labels = [True, True] + [False] * 100
    (point,) = _points(labels, score, (0.01,))
    assert (point["threshold"], point["false_alarms"], point["detected"]) == (0.9, 1, 2)
    # Detecting all Moriarty rows at 0.9 already: no lower threshold (0.1) is chosen.
    (loose,) = _points(labels, score, (0.5,))
    assert (loose["threshold"], loose["false_alarms"]) == (0.9, 1)


def test_tied_scores_are_flagged_together() -> None:
    # A Moriarty row ties with two benign rows: flagging it flags both (2 of 10 > 0.1).
    score = [0.9, 0.5, 0.5, 0.5, *[0.1] * 8]
    labels = [True, True, False, False, *[False] * 8]
    (point,) = _points(labels, score)
    assert (point["threshold"], point["detected"], point["false_alarms"]) == (0.9, 1, 0)
    (twenty,) = _points(labels, score, (0.2,))
    assert (twenty["threshold"], twenty["detected"], twenty["false_alarms"]) == (0.5, 2, 2)


def test_a_target_no_threshold_reaches_detects_nothing_and_names_no_threshold() -> None:
    # Two benign rows score above every Moriarty row; 10 benign rows allow one alarm.
    (point,) = _points([True, *[False] * 10], [0.5, 0.9, 0.8, *[0.1] * 8])
    assert point["detection_rate"] == 0.0 and point["false_alarms"] == 0
    assert point["threshold"] is None
    assert "no threshold catches a Moriarty sample" in point["reason"]


def test_a_target_the_benign_rows_cannot_resolve_is_not_a_number() -> None:
    # 999 benign rows cannot tell a false-alarm rate of 0.1 % (one in 1,000).
    labels = [True] * 5 + [False] * 999
    score = np.linspace(1, 0, len(labels))
    ten, one, tenth = _points(labels, score, FALSE_ALARM_TARGETS)
    assert ten["detection_rate"] == 1.0 and one["detection_rate"] == 1.0
    assert tenth["detection_rate"] is None and tenth["threshold"] is None
    assert tenth["reason"] == (
        "not measurable: 999 benign sample(s) cannot resolve a false-alarm rate of 0.001 "
        "(that needs at least 1,000)"
    )
    (measured,) = _points([True] * 5 + [False] * 1000, np.linspace(1, 0, 1005), (0.001,))
    assert measured["reason"] is None and measured["detected"] == 5


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ([False] * 20, "no Moriarty sample among these rows"),
        ([True] * 20, r"no benign sample among these rows \(every one is Moriarty\)"),
    ],
)
def test_rows_of_one_side_only_give_null_with_the_reason(labels, reason) -> None:
    m = malware_score_metrics(np.array(labels), np.linspace(0, 1, 20))
    assert m["roc_auc"] is None and m["average_precision"] is None
    assert re.fullmatch(reason, m["score_reason"])
    for point in m["operating_points"]:
        assert point["threshold"] is None and point["detection_rate"] is None
        assert re.fullmatch(reason, point["reason"])


def test_a_score_that_is_not_finite_gives_no_number() -> None:
    m = malware_score_metrics(np.array([True, False, False]), np.array([np.nan, 0.1, 0.2]))
    assert m["roc_auc"] is None and "missing or infinite" in m["score_reason"]
    assert all(p["detection_rate"] is None for p in m["operating_points"])


@pytest.mark.parametrize("target", [0, 1, -0.1, 1.5, "1%", None, np.nan])
def test_a_false_alarm_target_outside_zero_to_one_is_refused(target) -> None:
    with pytest.raises(DataError, match=r"a false-alarm target must be a number between 0 and 1"):
        _points([True, False], [0.5, 0.4], (target,))


@pytest.mark.parametrize(
    "measure",
    [
        malware_score_metrics,
        operating_points,
        lambda is_malware, score: rates_at_thresholds(is_malware, score, [{"threshold": 0.3}]),
    ],
    ids=["malware_score_metrics", "operating_points", "rates_at_thresholds"],
)
def test_samples_and_scores_of_other_lengths_are_refused(measure) -> None:
    # One score for two samples was broadcast (rates_at_thresholds counted it twice), and
    # scikit-learn raised a bare ValueError for malware_score_metrics.
    with pytest.raises(DataError, match=r"must be 1-D and of one length; received shapes \(2,\)"):
        measure(np.array([True, False]), np.array([0.5]))


def test_the_score_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    labels = rng.random(400) < 0.2
    score = np.round(np.where(labels, rng.random(400) * 0.6 + 0.4, rng.random(400)), 2)
    m = malware_score_metrics(labels, score)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, score))
    assert m["average_precision"] == pytest.approx(average_precision_score(labels, score))
    assert m["score_reason"] is None


def test_classification_metrics_adds_the_score_metrics_to_the_malware_section(
    predictions,
) -> None:
    y_true, y_pred = predictions
    score = np.where(y_true == CLASSES.index("Moriarty"), 0.8, 0.2)
    m = classification_metrics(y_true, y_pred, CLASSES, malware_score=score)
    plain = classification_metrics(y_true, y_pred, CLASSES)
    assert {k: m["malware"][k] for k in plain["malware"]} == plain["malware"]  # kept as is
    assert m["malware"]["roc_auc"] == 1.0
    assert [p["false_alarm_target"] for p in m["malware"]["operating_points"]] == [
        0.1,
        0.01,
        0.001,
    ]
    with pytest.raises(DataError, match=r"malware_score must hold one probability of Moriarty"):
        classification_metrics(y_true, y_pred, CLASSES, malware_score=score[:3])
    no_moriarty = classification_metrics([0, 1], [0, 1], ["Chrome", "Gmail"], malware_score=[0, 1])
    assert "malware" not in no_moriarty


def test_held_out_rows_are_measured_at_the_thresholds_chosen_elsewhere() -> None:
    chosen = [
        {"false_alarm_target": 0.1, "threshold": 0.5, "reason": None},
        {"false_alarm_target": 0.001, "threshold": None, "reason": "not measurable: ..."},
    ]
    labels = np.array([True, True, False, False, False])
    at_half, unchosen = rates_at_thresholds(labels, np.array([0.9, 0.4, 0.5, 0.1, 0.2]), chosen)
    assert at_half == {
        "false_alarm_target": 0.1,
        "threshold": 0.5,
        "detection_rate": 0.5,
        "false_alarm_rate": pytest.approx(1 / 3),  # 0.5 itself raises the alarm
        "detected": 1,
        "false_alarms": 1,
        "reason": None,
    }
    assert unchosen["detection_rate"] is None
    assert unchosen["reason"] == "no threshold was chosen: not measurable: ..."
    (benign_only,) = rates_at_thresholds(np.zeros(3, bool), np.array([0.9, 0.1, 0.2]), chosen[:1])
    assert benign_only["detection_rate"] is None and benign_only["false_alarm_rate"] == 1 / 3
    assert benign_only["reason"] == "no Moriarty sample among these rows"


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.booleans(), st.integers(0, 20).map(lambda i: i / 20)),
        min_size=1,
        max_size=60,
    ),
    target=st.sampled_from([0.5, 0.25, 0.1, 0.05, 0.01]),
)
def test_the_chosen_threshold_keeps_the_bound_and_no_lower_one_detects_more(rows, target):
    labels = np.array([r[0] for r in rows])
    score = np.array([r[1] for r in rows])
    (point,) = _points(labels, score, (target,))
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg or n_neg * target < 1:
        assert point["detection_rate"] is None and point["reason"]
        return
    if point["threshold"] is None:
        alarms = np.zeros(len(score), bool)
    else:
        alarms = score >= point["threshold"]
    assert point["false_alarms"] == int((alarms & ~labels).sum())
    assert point["detected"] == int((alarms & labels).sum())
    assert point["false_alarm_rate"] <= target
    for lower in np.unique(score):
        flagged = score >= lower
        if (flagged & ~labels).sum() / n_neg <= target:
            assert (flagged & labels).sum() <= point["detected"]


def test_the_operating_point_at_one_target_as_results_columns() -> None:
    from appsleuth.evaluate import alarm_point_columns, operating_point_at, same_threshold_as

    # A sweep's tables read one target's point from metrics.json, which may be older
    # (no points), of a task without Moriarty, or hand-edited (text, not numbers).
    points = [
        {"false_alarm_target": 0.1, "threshold": 0.2, "detection_rate": 0.9},
        {"false_alarm_target": 0.01, "threshold": 0.2, "detection_rate": 0.9},
        {"false_alarm_target": 0.001, "threshold": "0.5", "detection_rate": True},
    ]
    metrics = {"malware": {"operating_points": points}}
    assert operating_point_at(metrics, 0.1) == {"detection_rate": 0.9, "threshold": 0.2}
    assert operating_point_at(metrics, 0.001) == {"detection_rate": None, "threshold": None}
    assert operating_point_at(metrics, 0.05) == {"detection_rate": None, "threshold": None}
    assert alarm_point_columns({"accuracy": 0.9}) == {
        "moriarty_detection_rate_at_1pct_false_alarms": None,
        "moriarty_threshold_at_1pct_false_alarms": None,
    }
    assert alarm_point_columns(metrics)["moriarty_threshold_at_1pct_false_alarms"] == 0.2
    # 1 % is met with 10 %'s threshold; the text threshold shares nothing.
    assert same_threshold_as([*points, "damaged"]) == [None, 0, None, None]
