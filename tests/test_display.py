"""The metrics table printed by train, predict and baselines."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from appsleuth.display import print_metrics
from appsleuth.evaluate import classification_metrics

CLASSES = ["Chrome", "Moriarty", "Waze"]


def _printed(y_true: list[int], y_pred: list[int]) -> str:
    out = io.StringIO()
    metrics = classification_metrics(np.array(y_true), np.array(y_pred), CLASSES)
    print_metrics(metrics, title="validation", console=Console(file=out, width=200))
    return out.getvalue()


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        ([0, 1, 1, 2], [0, 1, 0, 2], "Moriarty (malware): detection rate 0.500, precision 1.000"),
        # No Moriarty row: no rate to report (not a rate of zero).
        ([0, 0, 2, 2], [0, 1, 2, 2], "no Moriarty samples, so no detection rate; false-alarm "
         "rate 0.2500"),
        # Moriarty rows alone (a malware-only file): no benign row to raise a false alarm on.
        ([1, 1, 1, 1], [1, 1, 0, 1], "detection rate 0.750, precision 1.000, no benign samples, "
         "so no false-alarm rate"),
    ],
    ids=["present", "absent", "no-benign"],
)  # fmt: skip
def test_moriarty_line(y_true, y_pred, expected) -> None:
    text = _printed(y_true, y_pred)
    assert expected in " ".join(text.split())
    assert "macro avg" in text


def _shown(metrics: dict) -> str:
    out = io.StringIO()
    print_metrics(metrics, title="validation", console=Console(file=out, width=200))
    return " ".join(out.getvalue().split())


def test_held_out_test_rows_are_printed_after_the_validation_table() -> None:
    metrics = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0]), CLASSES)
    metrics["test"] = classification_metrics(
        np.array([0, 0, 1, 2, 2]), np.array([0, 2, 1, 2, 2]), CLASSES
    )
    text = _shown(metrics)
    assert "accuracy 0.7500" in text  # validation
    assert (
        "held-out test rows (5, not used for training or selection): accuracy 0.8000, "
        "macro F1 0.822; Moriarty (malware): detection rate 1.000" in text
    )
    del metrics["test"]
    assert "held-out" not in _shown(metrics)


def test_apps_neither_present_nor_predicted_show_no_rates() -> None:
    # Chrome and Waze only: Moriarty has no sample and no prediction, so its 0.000s
    # would read as a model that fails on it; the macro average leaves it out.
    metrics = classification_metrics(np.array([0, 0, 2, 2]), np.array([0, 2, 2, 2]), CLASSES)
    text = _shown(metrics)
    assert "Moriarty │ – │ – │ – │ 0" in text
    assert "Chrome │ 1.000 │ 0.500 │ 0.667 │ 2" in text
    assert (
        "–: 1 app(s) neither in the data nor predicted; the macro average is over the other 2"
        in text
    )
    # An app predicted but absent keeps its precision of 0, which is real; its recall is
    # 0/0 (no sample), shown as undefined rather than as a model that misses it.
    metrics = classification_metrics(np.array([0, 0, 2, 2]), np.array([0, 1, 2, 2]), CLASSES)
    text = _shown(metrics)
    assert "Moriarty │ 0.000 │ – │ 0.000 │ 0" in text
    assert "–: recall of 1 app(s) without a sample: 0/0, undefined; the macro average" in text


def test_precision_of_an_app_never_predicted_is_undefined() -> None:
    # Waze has samples but is never predicted: precision 0/0 printed as 0.000 read as a
    # model whose every Waze alarm is wrong, while the recall of 0 is real.
    metrics = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 0, 0]), CLASSES)
    assert metrics["per_class"]["Waze"]["precision"] == 0.0  # metrics.json: scikit-learn's
    text = _shown(metrics)
    assert "Waze │ – │ 0.000 │ 0.000 │ 2" in text
    assert (
        "–: precision of 1 app(s) never predicted: 0/0, undefined; the macro average counts "
        "each as 0 (scikit-learn's zero_division=0)" in text
    )


def test_moriarty_precision_is_undefined_when_nothing_was_flagged() -> None:
    metrics = classification_metrics(np.array([0, 1, 2]), np.array([0, 0, 2]), CLASSES)
    assert metrics["malware"]["precision"] == 0.0  # metrics.json: scikit-learn's convention
    assert "detection rate 0.000, precision – (no sample flagged)" in _shown(metrics)


def test_names_with_square_brackets_are_shown_as_they_are() -> None:
    # rich would read them as markup: hide "[beta]", style "Evil", stop at "[/x]".
    names = ["[/x]", "[bold]Evil[/bold]", "App [beta]"]
    metrics = classification_metrics(np.array([0, 1, 2]), np.array([0, 1, 2]), names)
    out = io.StringIO()
    print_metrics(metrics, title="[/run]", console=Console(file=out, width=200))
    text = out.getvalue()
    assert all(name in text for name in [*names, "[/run]"])


def test_operating_points_of_a_coarse_score_are_not_shown_as_several() -> None:
    from appsleuth.display import operating_point_lines

    # A tree's P(Moriarty) of two values meets 10 % and 1 % false alarms with one
    # threshold: shown as two tuned points, it claimed a precision it lacks.
    def point(target: float, **measured: object) -> dict[str, object]:
        return {"false_alarm_target": target, "threshold": None, "reason": None, **measured}

    tuned = {"threshold": 1.0, "detection_rate": 0.8, "false_alarm_rate": 0.005}
    counts = {"detected": 8, "false_alarms": 1}
    unmeasurable = "not measurable: 200 benign sample(s) cannot resolve a false-alarm rate"
    metrics = {
        "n": 210,
        "malware": {
            "support": 10,
            "distinct_scores": 2,
            "operating_points": [
                point(0.1, **tuned, **counts),
                point(0.01, **tuned, **counts),
                point(0.001, detection_rate=None, reason=unmeasurable),
            ],
        },
    }
    text = "\n".join(operating_point_lines(metrics))
    assert (
        "at most 10 % false alarms: detection 80.0 % (8 of 10), false alarms 0.50 % (1 of 200), "
        "threshold 1\n  at most 1 % false alarms: detection 80.0 % (8 of 10), false alarms "
        "0.50 % (1 of 200), the same threshold as at 10 %\n  at most 0.1 % false alarms: not "
        "measurable: 200 benign sample(s)" in text
    )
    assert "P(Moriarty) takes only 2 distinct value(s)" in text
    assert operating_point_lines({"malware": {"detection_rate": 0.5}}) == []  # an older run
