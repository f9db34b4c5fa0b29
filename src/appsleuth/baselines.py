"""Classical baselines on the same split: logistic regression and a decision tree.

They answer "is the network worth it?" with the same metrics format as a run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from appsleuth._fields import is_integer, is_number
from appsleuth.data.load import as_name_list
from appsleuth.data.prepare import PreparedData
from appsleuth.errors import DataError, SpecError
from appsleuth.evaluate import classification_metrics, malware_score

__all__ = ["BASELINES", "run_baselines"]

BASELINES = ("logistic_regression", "decision_tree")


def _make(name: str, seed: int, class_weight: dict[int, float] | None) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    if name == "logistic_regression":
        return LogisticRegression(max_iter=500, class_weight=class_weight)
    return DecisionTreeClassifier(random_state=seed, class_weight=class_weight)


def run_baselines(
    prepared: PreparedData,
    *,
    which: Sequence[str] = BASELINES,
    seed: int = 0,
    class_weight: Mapping[int, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Fit each baseline on the training rows and score it on the validation rows.

    Args:
        prepared: The output of :func:`~appsleuth.data.prepare.prepare_data`.
        which: Baselines to run: names, or one comma-separated text. Defaults to both.
        seed: Seed of the decision tree. Defaults to 0.
        class_weight: Class index -> weight in the fitting, as a network trained with
            class weights had (a comparison on equal terms). Defaults to None (unweighted).

    Returns:
        Baseline name -> metrics (as in ``metrics.json``) plus ``fit_seconds``. Where
        Moriarty is a class, ``malware`` holds the operating points of its
        ``predict_proba`` (thresholds chosen on these validation rows, as a run's) and
        ``distinct_scores``, how many distinct values that probability takes there.

    Raises:
        SpecError: ``which`` names an unknown baseline.
        DataError: The training rows hold fewer than two classes, or there are no
            validation rows to score on.
    """
    if not isinstance(prepared, PreparedData):
        raise DataError(
            f"run_baselines needs the output of prepare_data(table); received "
            f"{type(prepared).__name__}"
        )
    try:
        which = as_name_list("which", which, unique=True)  # one name is one baseline
    except DataError as exc:
        raise SpecError(str(exc)) from None
    unknown = [w for w in which if w not in BASELINES]
    if unknown:
        raise SpecError(f"baselines must be among {', '.join(BASELINES)}; received {unknown}")
    _check_trainable(prepared)
    results: dict[str, dict[str, Any]] = {}
    for name in which:
        model = _make(name, seed, _class_weight_arg(class_weight, len(prepared.classes)))
        start = time.perf_counter()
        model.fit(prepared.x_train, prepared.y_train)
        seconds = time.perf_counter() - start
        pred = model.predict(prepared.x_val)
        proba = _class_proba(model, prepared.x_val, len(prepared.classes))
        classes = list(prepared.classes)
        moriarty = malware_score(proba, classes)
        metrics = classification_metrics(
            prepared.y_val,
            pred,
            classes,
            y_score=proba[:, 1] if len(classes) == 2 else None,
            malware_score=moriarty,
        )
        if moriarty is not None:
            # A tree's leaves give few distinct probabilities, so few thresholds exist:
            # the displays say so rather than show one point as three.
            metrics["malware"]["distinct_scores"] = int(np.unique(moriarty).size)
        results[name] = {
            **metrics,
            "fit_seconds": seconds,
            "split": prepared.split.describe(),
        }
    return results


def _class_proba(model: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per class index, 0 for classes not trained on.

    scikit-learn gives a column per class seen in training only: with a class missing
    from the training rows, column i would belong to another class than class i.
    """
    seen = model.predict_proba(x)
    proba = np.zeros((len(x), n_classes), dtype=np.float64)
    proba[:, np.asarray(model.classes_, dtype=np.int64)] = seen
    return proba


def _class_weight_arg(class_weight: Any, n_classes: int) -> dict[int, float] | None:
    """``class_weight`` checked: class indices 0..n-1 to finite weights >= 0."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, Mapping):
        raise SpecError(
            f"class_weight must map class indices to weights, e.g. {{0: 1.0, 1: 5.0}}; "
            f"received {type(class_weight).__name__}"
        )
    weights = {}
    for cls, weight in class_weight.items():
        if not is_integer(cls) or not 0 <= cls < n_classes:
            raise SpecError(
                f"class_weight keys must be class indices 0..{n_classes - 1}; received {cls!r}"
            )
        if not is_number(weight) or weight < 0:
            raise SpecError(
                f"class_weight values must be finite numbers >= 0; received "
                f"class_weight[{cls!r}]={weight!r}"
            )
        weights[int(cls)] = float(weight)
    return weights


def _check_trainable(prepared: PreparedData) -> None:
    """The checks scikit-learn would fail with a traceback, as messages for people."""
    dataset = prepared.info.dataset
    present = np.unique(prepared.y_train)
    if len(present) < 2:
        found = (
            f"a single class, {prepared.classes[int(present[0])]!r}"
            if len(present) == 1
            else "no rows"
        )
        raise DataError(
            f"{dataset}: the baselines' training rows hold {found}; a classifier needs "
            f"at least two classes in training"
        )
    if len(prepared.y_val) == 0:
        raise DataError(f"{dataset}: there are no validation rows to score the baselines on")
