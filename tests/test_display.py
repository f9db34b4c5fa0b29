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
    ],
    ids=["present", "absent"],
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
