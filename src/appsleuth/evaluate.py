"""Honest numbers: classification metrics, Moriarty on its own line, and a fit diagnosis.

Metrics are computed from the confusion matrix (counts), so every number in
``metrics.json`` can be traced back to it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from appsleuth._fields import is_integer, is_number, plain_fields, quoted_number_hint, repeated
from appsleuth.data.layouts import MALWARE_APP
from appsleuth.errors import DataError, SpecError

__all__ = [
    "FALSE_ALARM_TARGETS",
    "RESULT_KEYS",
    "FitRule",
    "alarm_point_columns",
    "classification_metrics",
    "diagnose_fit",
    "flagged_as_malware",
    "idle_classes",
    "malware_score",
    "malware_score_metrics",
    "metrics_from_confusion",
    "operating_point_at",
    "operating_points",
    "operating_points_of",
    "rates_at_thresholds",
    "roc_auc",
    "roc_curve",
    "same_threshold_as",
    "undefined_rates",
]

# One epoch's results, in the teaching layout's order (model_history.csv, results.csv).
RESULT_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

# The false-alarm rates a malware analyst picks an operating point at: 1 benign sample
# in 10, 100 and 1,000 flagged.
FALSE_ALARM_TARGETS = (0.1, 0.01, 0.001)
# The one of them whose operating point the sweep results tables carry, as columns of
# these names.
RESULTS_ALARM_TARGET = 0.01
ALARM_POINT_COLUMNS = (
    "moriarty_detection_rate_at_1pct_false_alarms",
    "moriarty_threshold_at_1pct_false_alarms",
)


def _class_names(classes: Any) -> list[Any]:
    """The class names as a list, refusing none or repeated ones (a class would vanish)."""
    # A pandas Index (a Categorical's categories, say) is a list of names too.
    if isinstance(classes, str) or not isinstance(classes, Sequence | np.ndarray | pd.Index):
        raise DataError(f"classes must be a list of class names; received classes={classes!r}")
    names = list(classes)
    if not names:
        raise DataError("classes must name at least one class; received classes=[]")
    twice = [str(c) for c in repeated(names)]
    if twice:
        raise DataError(
            f"classes must name each class once; received {twice} more than once in "
            f"classes={names!r}"
        )
    return names


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    *,
    y_score: np.ndarray | None = None,
    malware_score: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1, averages and the confusion matrix.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.
        classes: Class names; index i is class i.
        y_score: For two classes, the predicted probability of class 1 (adds ROC AUC and
            the ROC curve).
            Defaults to None (no ROC AUC).
        malware_score: When Moriarty is a class, its predicted probability for each
            sample: adds :func:`malware_score_metrics` (ROC AUC, average precision and
            the operating points at :data:`FALSE_ALARM_TARGETS`) to ``malware``.
            Defaults to None (argmax rates only).

    Returns:
        A JSON-ready dict: ``accuracy``, ``n``, ``per_class`` (name -> precision,
        recall, f1, support), ``macro_avg``, ``weighted_avg``, ``confusion_matrix``
        (``labels``, ``counts`` with rows = true class, ``normalized`` by row), ``roc_auc``
        and ``roc_curve`` (see :func:`roc_curve`) for two classes when ``y_score`` is
        given, and ``malware`` (Moriarty's detection
        rate = recall, precision and false-alarm rate) when Moriarty is a class; its
        detection rate is None when no sample is Moriarty, its false-alarm rate None
        when every sample is (no benign sample to raise an alarm on). A class with no prediction
        has precision 0, one with no sample has recall 0 (scikit-learn's
        zero_division=0). The macro average is over the classes that occur among the
        samples or the predictions (as scikit-learn's classification report), so classes
        absent from both do not count as zeros.
    """
    y_true, y_pred = _class_indices("y_true", y_true), _class_indices("y_pred", y_pred)
    classes = _class_names(classes)
    k = len(classes)
    if y_true.shape != y_pred.shape:
        raise DataError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    if len(y_true) == 0:
        raise DataError("cannot compute metrics on zero samples")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.min() < 0 or y.max() >= k:
            raise DataError(
                f"{name} holds class indices outside 0..{k - 1} (one per class name); "
                f"received indices {int(y.min())}..{int(y.max())} for {k} classes"
            )
    counts = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    result = metrics_from_confusion(counts, classes)
    if k == 2 and y_score is not None:
        try:
            score = np.asarray(y_score, dtype=np.float64)
        except (TypeError, ValueError):
            score = None
        # A missing score would take no rank and change the AUC without a word.
        if score is None or not np.isfinite(score).all():
            sample = np.asarray(y_score, dtype=object).ravel()[:3].tolist()
            raise DataError(
                f"y_score must hold finite probabilities of class 1; received values such "
                f"as {sample}" + (" (some missing or infinite)" if score is not None else "")
            )
        if score.shape != y_true.shape:
            raise DataError(
                f"y_score must hold one probability of class 1 per sample, shape "
                f"{y_true.shape}; received shape {score.shape}"
            )
        result["roc_auc"] = roc_auc(y_true, score)
        result["roc_curve"] = roc_curve(y_true, score)
    if malware_score is not None and "malware" in result:
        score = np.asarray(malware_score, dtype=np.float64)
        if score.shape != y_true.shape:
            raise DataError(
                f"malware_score must hold one probability of {MALWARE_APP} per sample, "
                f"shape {y_true.shape}; received shape {score.shape}"
            )
        is_malware = y_true == classes.index(MALWARE_APP)
        result["malware"].update(malware_score_metrics(is_malware, score))
    return result


def _class_indices(name: str, values: Any) -> np.ndarray:
    """``values`` as a 1-D int64 array of class indices; probabilities or names are refused."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(
            f"{name} must be a 1-D sequence of class indices; received shape {array.shape} "
            f"(for probabilities, pass their argmax)"
        )
    if array.dtype.kind in "iub":
        return array.astype(np.int64)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        return array.astype(np.int64)
    raise DataError(
        f"{name} must hold class indices (whole numbers); received {array.dtype} values such "
        f"as {array.ravel()[:3].tolist()} (for probabilities, pass their argmax; for names, "
        f"their index in classes)"
    )


def metrics_from_confusion(counts: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """The metrics of :func:`classification_metrics` from a confusion matrix of counts.

    Lets streaming prediction accumulate counts chunk by chunk instead of keeping every
    label in memory.
    """
    counts = np.asarray(counts, dtype=np.int64)
    k = len(classes)
    n = int(counts.sum())
    if n == 0:
        raise DataError("cannot compute metrics on zero samples")
    tp = np.diag(counts).astype(np.float64)
    predicted = counts.sum(axis=0).astype(np.float64)
    support = counts.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    weights = support / support.sum()
    # Classes neither present nor predicted (a file of two apps, scored by an 18-app
    # model) have no precision or recall to average.
    active = (support > 0) | (predicted > 0)
    normalized = np.divide(
        counts, support[:, None], out=np.zeros((k, k)), where=support[:, None] > 0
    )
    result: dict[str, Any] = {
        "accuracy": float(tp.sum() / n),
        "n": n,
        "per_class": {
            str(c): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "macro_avg": {
            "precision": float(precision[active].mean()),
            "recall": float(recall[active].mean()),
            "f1": float(f1[active].mean()),
            "classes": int(active.sum()),
        },
        "weighted_avg": {
            "precision": float(weights @ precision),
            "recall": float(weights @ recall),
            "f1": float(weights @ f1),
        },
        "confusion_matrix": {
            "labels": [str(c) for c in classes],
            "counts": counts.tolist(),
            "normalized": normalized.round(6).tolist(),
        },
    }
    if MALWARE_APP in classes:
        m = list(classes).index(MALWARE_APP)
        negatives = n - support[m]
        false_alarms = predicted[m] - tp[m]
        result["malware"] = {
            "app": MALWARE_APP,
            "detection_rate": float(recall[m]) if support[m] else None,
            "precision": float(precision[m]),
            # A file of Moriarty samples alone has no benign sample: 0/0, not "no alarm".
            "false_alarm_rate": float(false_alarms / negatives) if negatives else None,
            "support": int(support[m]),
            "missed": int(support[m] - tp[m]),
            "false_alarms": int(false_alarms),
        }
    return result


def idle_classes(metrics: Mapping[str, Any]) -> set[str]:
    """Classes neither among the samples nor among the predictions of ``metrics``.

    Their precision, recall and F1 are recorded as 0 (scikit-learn's zero_division=0)
    but mean nothing, and the macro average leaves them out: displays show them as
    missing, not as a model that fails on them (an 18-app model scoring a 2-app file).
    Read from the confusion matrix; empty when it is absent or malformed.
    """
    cm = metrics.get("confusion_matrix")
    if not isinstance(cm, Mapping):
        return set()
    try:
        counts = np.asarray(cm.get("counts"), dtype=np.float64)
        labels = [str(label) for label in cm.get("labels") or ()]
    except (TypeError, ValueError):
        return set()
    if counts.ndim != 2 or counts.shape != (len(labels), len(labels)):
        return set()
    idle = (counts.sum(axis=1) == 0) & (counts.sum(axis=0) == 0)
    return {label for label, is_idle in zip(labels, idle, strict=True) if is_idle}


def undefined_rates(metrics: Mapping[str, Any]) -> dict[str, set[str]]:
    """Classes whose precision or recall in ``metrics`` is 0/0, recorded as 0.

    ``precision``: classes never predicted; ``recall``: classes without a sample. Both
    are recorded as 0 (scikit-learn's zero_division=0) and count so in the macro average,
    but a 0 reads as a model that is always wrong about the class: displays show them as
    undefined. Their F1 is a true 0 (no hit among the samples or the predictions).
    Read from the confusion matrix; empty sets when it is absent or malformed.
    """
    found: dict[str, set[str]] = {"precision": set(), "recall": set()}
    cm = metrics.get("confusion_matrix")
    if not isinstance(cm, Mapping):
        return found
    try:
        counts = np.asarray(cm.get("counts"), dtype=np.float64)
        labels = [str(label) for label in cm.get("labels") or ()]
    except (TypeError, ValueError):
        return found
    if counts.ndim != 2 or counts.shape != (len(labels), len(labels)):
        return found
    for key, totals in (("precision", counts.sum(axis=0)), ("recall", counts.sum(axis=1))):
        found[key] = {label for label, n in zip(labels, totals, strict=True) if n == 0}
    return found


def flagged_as_malware(malware: Mapping[str, Any]) -> int | None:
    """How many samples a ``malware`` section's model flagged as Moriarty, or None if unknown.

    When none was, Moriarty's precision is recorded as 0 but is undefined: displays say
    so instead of claiming that no alarm was right.
    """
    parts = [malware.get(k) for k in ("support", "missed", "false_alarms")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in parts):
        return None
    support, missed, false_alarms = parts
    return support - missed + false_alarms


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank (Mann-Whitney) formula.

    Args:
        y_true: Class indices, 1 for the positive class.
        score: The probability of class 1 for each sample.

    Returns:
        The area, or None when the samples hold one class only or a score is not finite
        (a diverged model's NaN would take no rank and change the area without a word).
    """
    if not np.isfinite(score).all():
        return None
    pos = y_true == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return None
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


_ROC_POINTS = 201  # points kept of a ROC curve: a smooth figure, a few kB of metrics.json


def roc_curve(
    y_true: np.ndarray, score: np.ndarray, *, max_points: int = _ROC_POINTS
) -> dict[str, list[float]] | None:
    """The ROC curve: true-positive against false-positive rate as the threshold falls.

    One point per distinct score (from (0, 0) to (1, 1)); a curve of more points keeps
    ``max_points`` spread evenly along its length, which draws the same figure.

    Args:
        y_true: Class indices, 1 for the positive class.
        score: The probability of class 1 for each sample.
        max_points: Most points kept. Defaults to 201.

    Returns:
        ``{"fpr": [...], "tpr": [...]}`` (rounded to 6 decimals), or None when the
        samples hold one class only or a score is not finite, as :func:`roc_auc`.

    Raises:
        DataError: ``y_true`` and ``score`` are not 1-D and of one length.
        SpecError: ``max_points`` is not an integer of at least 2.
    """
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(y_true) == 1
    if positive.shape != score.shape or score.ndim != 1:
        # Indexing by the scores' order read the first len(score) labels only, and the
        # curve ended short of (1, 1) without a word.
        raise DataError(
            f"y_true and score must be 1-D and of one length; received shapes "
            f"{np.shape(y_true)} and {score.shape}"
        )
    if not is_integer(max_points) or max_points < 2:
        raise SpecError(
            f"max_points must be an integer of at least 2 (the curve's ends); received "
            f"max_points={max_points!r}"
        )
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg or not np.isfinite(score).all():
        return None
    order = np.argsort(-score, kind="stable")
    ranked, hits = score[order], positive[order]
    # A threshold between distinct scores only: tied samples are flagged together.
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_pos = np.cumsum(hits)[last_of_tie]
    false_pos = last_of_tie + 1 - true_pos
    fpr = np.r_[0.0, false_pos / n_neg]
    tpr = np.r_[0.0, true_pos / n_pos]
    if len(fpr) > max_points:
        along = np.r_[0.0, np.cumsum(np.hypot(np.diff(fpr), np.diff(tpr)))]
        keep = np.searchsorted(along, np.linspace(0.0, along[-1], max_points))
        keep = np.unique(np.r_[0, np.minimum(keep, len(fpr) - 1), len(fpr) - 1])
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": np.round(fpr, 6).tolist(), "tpr": np.round(tpr, 6).tolist()}


def malware_score(proba: np.ndarray, classes: Sequence[str]) -> np.ndarray | None:
    """Each row's probability of Moriarty (a column of ``proba``, one per class), or None
    when Moriarty is not one of ``classes``."""
    classes = list(classes)
    return proba[:, classes.index(MALWARE_APP)] if MALWARE_APP in classes else None


def malware_score_metrics(
    is_malware: np.ndarray,
    score: np.ndarray,
    targets: Sequence[float] = FALSE_ALARM_TARGETS,
) -> dict[str, Any]:
    """How well a Moriarty score ranks the samples, and its chosen operating points.

    Args:
        is_malware: True for each Moriarty sample.
        score: The model's probability of Moriarty for each sample.
        targets: False-alarm rates to choose thresholds at. Defaults to
            :data:`FALSE_ALARM_TARGETS`.

    Returns:
        ``roc_auc`` and ``average_precision`` (scikit-learn's) of the score,
        ``score_reason`` (why they are None, else None), and ``operating_points``
        (:func:`operating_points`).

    Raises:
        DataError: The arrays are not 1-D and of one length, or a target is not a
            number in (0, 1).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    is_malware, score = _scored(is_malware, score)
    reason = _unrankable(is_malware, score)
    return {
        "roc_auc": None if reason else float(roc_auc_score(is_malware, score)),
        "average_precision": (
            None if reason else float(average_precision_score(is_malware, score))
        ),
        "score_reason": reason,
        "operating_points": operating_points(is_malware, score, targets),
    }


def _unrankable(is_malware: np.ndarray, score: np.ndarray) -> str | None:
    """Why the score cannot be judged on these samples, or None when it can."""
    if not np.isfinite(score).all():
        # NaN takes no rank: every number drawn from it would be made up.
        return (
            f"the {MALWARE_APP} score is missing or infinite for some samples (the "
            f"training diverged)"
        )
    if not is_malware.any():
        return f"no {MALWARE_APP} sample among these rows"
    if is_malware.all():
        return f"no benign sample among these rows (every one is {MALWARE_APP})"
    return None


def _scored(is_malware: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    """``is_malware`` and ``score`` as arrays, refused unless 1-D and of one length.

    Raises:
        DataError: They are not; NumPy would pair them by broadcasting (one score for
            every sample), and scikit-learn raises a bare ValueError.
    """
    is_malware = np.asarray(is_malware, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    if is_malware.shape != score.shape or is_malware.ndim != 1:
        raise DataError(
            f"is_malware and score must be 1-D and of one length; received shapes "
            f"{is_malware.shape} and {score.shape}"
        )
    return is_malware, score


def operating_points(
    is_malware: np.ndarray,
    score: np.ndarray,
    targets: Sequence[float] = FALSE_ALARM_TARGETS,
) -> list[dict[str, Any]]:
    """The detection rate a score threshold reaches within each false-alarm rate.

    A sample raises an alarm when its score is at least the threshold. For each target,
    the threshold is the score with the largest detection rate whose false-alarm rate
    does not exceed the target, and of those the highest (the fewest false alarms).
    Samples of equal score are flagged together: a threshold between them does not
    exist. The threshold is chosen on these very samples, so its numbers are optimistic
    for new data.

    Args:
        is_malware: True for each Moriarty sample.
        score: The probability of Moriarty for each sample.
        targets: False-alarm rates, each in (0, 1). Defaults to
            :data:`FALSE_ALARM_TARGETS`.

    Returns:
        One dict per target: ``false_alarm_target``, ``threshold``, ``detection_rate``,
        ``false_alarm_rate``, ``detected``, ``false_alarms`` and ``reason``. Where no
        number can be given (no Moriarty or no benign sample, a score that is not
        finite, or fewer benign samples than 1/target, which cannot resolve that rate),
        the numbers are None and ``reason`` says why. Where every threshold that
        catches a Moriarty sample raises too many false alarms, the detection rate is 0,
        the threshold None and ``reason`` says so. Otherwise ``reason`` is None.

    Raises:
        DataError: A target is not a number in (0, 1), or the arrays differ in length.
    """
    from sklearn.metrics import roc_curve as sklearn_roc_curve

    is_malware, score = _scored(is_malware, score)
    for target in targets:
        if not (is_number(target) and 0 < target < 1):
            raise DataError(
                f"a false-alarm target must be a number between 0 and 1 (exclusive); "
                f"received {target!r}"
            )
    n_pos, n_neg = int(is_malware.sum()), int((~is_malware).sum())
    reason = _unrankable(is_malware, score)
    points = []
    if reason is None:
        fpr, tpr, thresholds = sklearn_roc_curve(is_malware, score, drop_intermediate=False)
        # Counts, not rates: a target compares with whole false alarms.
        false_alarms = np.rint(fpr * n_neg).astype(np.int64)
        detected = np.rint(tpr * n_pos).astype(np.int64)
    for target in targets:
        point: dict[str, Any] = {
            "false_alarm_target": float(target),
            "threshold": None,
            "detection_rate": None,
            "false_alarm_rate": None,
            "detected": None,
            "false_alarms": None,
            "reason": reason,
        }
        points.append(point)
        if reason is not None:
            continue
        # The tolerance keeps 0.57 * 100 (56.99999999999999) at 57 allowed alarms.
        allowed = math.floor(target * n_neg + 1e-9)
        if allowed < 1:
            point["reason"] = (
                f"not measurable: {n_neg:,} benign sample(s) cannot resolve a false-alarm "
                f"rate of {target:g} (that needs at least {math.ceil(1 / target - 1e-9):,})"
            )
            continue
        within = np.flatnonzero(false_alarms <= allowed)  # thresholds fall, alarms grow
        # The first of the most detections: the highest such threshold.
        best = int(within[np.argmax(detected[within])])
        point.update(
            detection_rate=float(detected[best] / n_pos),
            false_alarm_rate=float(false_alarms[best] / n_neg),
            detected=int(detected[best]),
            false_alarms=int(false_alarms[best]),
        )
        if detected[best] == 0:
            point["reason"] = (
                f"no threshold catches a {MALWARE_APP} sample within this false-alarm rate: "
                f"more than {allowed:,} benign sample(s) score as high as the best-scored "
                f"{MALWARE_APP} sample"
            )
        else:
            point["threshold"] = float(thresholds[best])
    return points


def operating_points_of(metrics: Mapping[str, Any]) -> list[Any] | None:
    """The ``malware.operating_points`` list of ``metrics`` (as in metrics.json), as found.

    Returns:
        The list, whose items the caller checks (a hand-edited file may hold anything);
        None where there is none (a run from before operating points, a task without
        Moriarty, a damaged file).
    """
    malware = metrics.get("malware")
    points = malware.get("operating_points") if isinstance(malware, Mapping) else None
    return points if isinstance(points, list) else None


def operating_point_at(metrics: Mapping[str, Any], target: float) -> dict[str, Any]:
    """Moriarty's operating point at one false-alarm target in ``metrics`` (as in metrics.json).

    Returns:
        ``detection_rate`` and ``threshold`` at that target, each a finite number or None:
        both None where the file has no such point (a run from before operating points,
        a task without Moriarty) or the target was not measurable; the threshold alone
        where no threshold caught a Moriarty sample (the detection rate is 0 then).
    """
    found: Mapping[str, Any] = {}
    for point in operating_points_of(metrics) or []:
        if isinstance(point, Mapping) and point.get("false_alarm_target") == target:
            found = point
            break
    # A hand-edited file's text is no number.
    return {
        key: float(found[key]) if is_number(found.get(key)) else None
        for key in ("detection_rate", "threshold")
    }


def alarm_point_columns(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """:data:`ALARM_POINT_COLUMNS` of a results table from a run's ``metrics``.

    Moriarty's detection rate at 1 % false alarms and its threshold, None where
    :func:`operating_point_at` gives none.
    """
    point = operating_point_at(metrics, RESULTS_ALARM_TARGET)
    values = (point["detection_rate"], point["threshold"])
    return dict(zip(ALARM_POINT_COLUMNS, values, strict=True))


def same_threshold_as(points: Sequence[Any]) -> list[int | None]:
    """For each operating point, the index of an earlier one at the same threshold, or None.

    A score of few distinct values (a decision tree's leaves) reaches several targets
    with one threshold: a display shows that as one point, not as several measured ones.
    Points without a threshold (none chosen, or a hand-edited entry) share nothing.
    """
    first: dict[float, int] = {}
    shared: list[int | None] = []
    for i, point in enumerate(points):
        threshold = point.get("threshold") if isinstance(point, Mapping) else None
        if not is_number(threshold):
            shared.append(None)
            continue
        shared.append(first.get(float(threshold)))
        first.setdefault(float(threshold), i)
    return shared


def rates_at_thresholds(
    is_malware: np.ndarray, score: np.ndarray, chosen: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The operating points ``chosen`` on other rows, measured on these rows.

    Nothing is chosen here, so these are the numbers to quote for held-out rows: the
    thresholds chosen on the validation rows, applied to the test rows.

    Args:
        is_malware: True for each Moriarty sample.
        score: The probability of Moriarty for each sample.
        chosen: :func:`operating_points` of other rows.

    Returns:
        One dict per chosen point, with its keys: the same ``false_alarm_target`` and
        ``threshold``, and the rates and counts of these rows at that threshold (None,
        with the ``reason``, where no threshold was chosen or a rate would be 0/0).

    Raises:
        DataError: The arrays are not 1-D and of one length.
    """
    is_malware, score = _scored(is_malware, score)
    n_pos, n_neg = int(is_malware.sum()), int((~is_malware).sum())
    finite = bool(np.isfinite(score).all())
    points = []
    for point in chosen:
        threshold = point.get("threshold")
        measured: dict[str, Any] = {
            "false_alarm_target": point.get("false_alarm_target"),
            "threshold": threshold,
            "detection_rate": None,
            "false_alarm_rate": None,
            "detected": None,
            "false_alarms": None,
            "reason": None,
        }
        points.append(measured)
        if threshold is None:
            measured["reason"] = f"no threshold was chosen: {point.get('reason')}"
            continue
        if not finite:
            measured["reason"] = _unrankable(is_malware, score)
            continue
        alarms = score >= threshold
        detected, false_alarms = int((alarms & is_malware).sum()), int((alarms & ~is_malware).sum())
        measured.update(
            detection_rate=detected / n_pos if n_pos else None,
            false_alarm_rate=false_alarms / n_neg if n_neg else None,
            detected=detected,
            false_alarms=false_alarms,
        )
        if not n_pos or not n_neg:
            measured["reason"] = _unrankable(is_malware, score)
    return points


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitRule:
    """Thresholds of :func:`diagnose_fit`, stated so that ``metrics.json`` can quote them.

    Attributes:
        rise: Relative rise of validation loss above its minimum that counts as rising
            (default 0.10 = 10 %).
        gap: Training minus validation accuracy that counts as a gap (default 0.03).
        widen: How much that gap must have grown since mid-training (default 0.01).
        poor: Accuracy below which a model is poor (default 0.90).
        improving: Gain in validation accuracy over the last third of the epochs that
            counts as still improving (default 0.005).

    Raises:
        SpecError: A threshold is not a number, is negative, or (all but ``rise``,
            which compare accuracies) is above 1.
    """

    rise: float = 0.10
    gap: float = 0.03
    widen: float = 0.01
    poor: float = 0.90
    improving: float = 0.005

    def __post_init__(self) -> None:
        # A threshold given as text or None only failed later, inside describe(), and a
        # NaN one silently switched its test off.
        plain_fields(self)  # NumPy scalars as Python numbers
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            accuracy = field.name != "rise"  # the others compare accuracies, in [0, 1]
            ok = is_number(value) and value >= 0 and (value <= 1 or not accuracy)
            if not ok:
                valid = "a number from 0 to 1" if accuracy else "a non-negative number"
                raise SpecError(
                    f"FitRule.{field.name} must be {valid}; received "
                    f"{field.name}={value!r}{quoted_number_hint(value)}"
                )
            object.__setattr__(self, field.name, float(value))

    def describe(self) -> str:
        """The rule in words."""
        return (
            f"overfitting: validation loss ended more than {self.rise:.0%} above its minimum "
            f"while training loss kept falling after that minimum, or training accuracy "
            f"exceeds validation accuracy by more than {self.gap:g} (and by more than two "
            f"validation rows, where their number is known) and that gap grew by "
            f"more than {self.widen:g} since mid-training; underfitting: training and "
            f"validation accuracy both below {self.poor:g} (still improving if validation "
            f"accuracy rose by more than {self.improving:g} over the last third of the "
            f"epochs, else flat), or (where the validation class shares are known, as in "
            f"a run) validation accuracy no higher than always predicting the most common "
            f"validation class would score; good fit otherwise"
        )


def diagnose_fit(
    history: pd.DataFrame | dict[str, Sequence[float]],
    rule: FitRule | None = None,
    *,
    majority: tuple[str, float] | None = None,
    n_val: int | None = None,
) -> dict[str, Any]:
    """Diagnose over- or underfitting from learning curves.

    The rule (thresholds in :class:`FitRule`, defaults in brackets):

    - ``overfitting``: validation loss ended more than [10 %] above its minimum while
      training loss kept falling after that minimum; or training accuracy exceeds
      validation accuracy by more than [0.03] (and, when ``n_val`` is given, by more
      than two validation rows) and that gap grew by more than [0.01] since
      mid-training.
    - ``underfitting``: training and validation accuracy both below [0.90]; ``still
      improving`` when validation accuracy rose by more than [0.005] over the last third
      of the epochs (train longer), else ``flat`` (the model is too small or the
      learning rate unsuitable); or, when ``majority`` is given, the final validation
      accuracy is no higher than its share: the model does no better than always
      predicting that class (a rare Moriarty against the rest scores 0.99 so).
    - ``good fit`` otherwise.

    Args:
        history: Per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``: a
            DataFrame (``RunResult.history``), a mapping of lists, or the Keras
            ``History`` that ``fit`` returns.
        rule: Thresholds. Defaults to ``FitRule()``.
        majority: The most common class of the validation rows and its share of them
            (the accuracy of always predicting it). Defaults to None (not checked).
        n_val: The number of validation rows. Defaults to None (not checked).

    Returns:
        ``{"diagnosis", "reason", "rule"}``; the diagnosis is ``unknown`` when a curve
        holds a non-finite value.

    Raises:
        DataError: A column is missing or not numeric, the columns differ in length, or
            there is no epoch.
        SpecError: ``rule`` is not a :class:`FitRule`, or ``majority`` is not a class
            name and a share from 0 to 1.
    """
    rule = rule or FitRule()
    if not isinstance(rule, FitRule):
        raise SpecError(f"rule must be a FitRule (FitRule(poor=..., ...)); received rule={rule!r}")
    if majority is not None and not (
        isinstance(majority, tuple)
        and len(majority) == 2
        and is_number(majority[1])
        and 0 <= majority[1] <= 1
    ):
        raise SpecError(
            f"majority must be (class name, share of the validation rows from 0 to 1); "
            f"received majority={majority!r}"
        )
    if n_val is not None and (not is_integer(n_val) or isinstance(n_val, bool) or n_val < 1):
        raise SpecError(f"n_val must be a positive integer or None; received n_val={n_val!r}")
    logs = getattr(history, "history", None)  # what Keras' fit returns
    if isinstance(logs, Mapping) and not isinstance(history, pd.DataFrame | Mapping):
        history = logs
    if not isinstance(history, pd.DataFrame | Mapping):
        raise DataError(
            f"history must be a DataFrame, a mapping of per-epoch lists or a Keras History; "
            f"received {type(history).__name__}"
        )
    try:
        h = pd.DataFrame(history)
    except ValueError as exc:  # e.g. lists of different lengths
        lengths = {k: len(v) for k, v in history.items() if hasattr(v, "__len__")}
        raise DataError(
            f"history must hold one value per epoch in each column; received {exc} "
            f"(lengths {lengths})"
        ) from exc
    missing = [c for c in RESULT_KEYS if c not in h.columns]
    if missing:
        raise DataError(f"history lacks column(s) {missing}; found {list(h.columns)}")
    if len(h) == 0:
        raise DataError("history has no epochs")
    try:
        loss, acc = h["loss"].to_numpy(float), h["accuracy"].to_numpy(float)
        vloss, vacc = h["val_loss"].to_numpy(float), h["val_accuracy"].to_numpy(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"history values must be numbers: {exc}") from exc
    n = len(h)

    def verdict(diagnosis: str, reason: str) -> dict[str, Any]:
        return {"diagnosis": diagnosis, "reason": reason, "rule": rule.describe()}

    if not all(np.isfinite(a).all() for a in (loss, acc, vloss, vacc)):
        return verdict(
            "unknown",
            "the learning curves hold non-finite values (the training diverged, or the "
            "history is damaged), so no diagnosis is possible",
        )
    best = int(np.argmin(vloss))
    if n >= 3 and best < n - 1:
        rise = (vloss[-1] - vloss[best]) / max(abs(vloss[best]), 1e-12)
        if rise > rule.rise and loss[-1] < loss[best]:
            return verdict(
                "overfitting",
                f"validation loss rose {rise:.0%} above its minimum "
                f"(epoch {best + 1}) while training loss kept falling",
            )
    gap_end = acc[-1] - vacc[-1]
    gap_mid = acc[n // 2] - vacc[n // 2]
    # On 31 validation rows one row is 0.032 of accuracy: a gap of two rows is noise,
    # and the 2-app teaching file was called overfitting with its val_loss below loss.
    noise = 2 / n_val if n_val else 0.0
    if n >= 3 and gap_end > max(rule.gap, noise) and gap_end - gap_mid > rule.widen:
        return verdict(
            "overfitting",
            f"training accuracy exceeds validation accuracy by "
            f"{gap_end:.3f}, up from {gap_mid:.3f} at mid-training",
        )
    # Accuracy alone reads 0.99 for a model that never flags a 1 % class. (Rows of one
    # class only say nothing of this: any model that gets them all right scores 1.)
    if majority is not None and majority[1] < 1 and vacc[-1] <= majority[1]:
        name, share = majority
        return verdict(
            "underfitting",
            f"validation accuracy {vacc[-1]:.3f} is no higher than always predicting "
            f"{name!r}, the most common class ({share:.3f} of the validation rows): the "
            f"model has learned nothing beyond the class shares; read the per-class recall, "
            f"and consider class_weight='balanced', a larger model or a longer training",
        )
    if acc[-1] < rule.poor and vacc[-1] < rule.poor:
        start = max(0, n - 1 - max(1, n // 3))
        gain = vacc[-1] - vacc[start]
        if n >= 2 and gain > rule.improving:
            return verdict(
                "underfitting",
                f"accuracy is low (train {acc[-1]:.3f}, validation "
                f"{vacc[-1]:.3f}) and still improving (+{gain:.3f} over the last "
                f"epochs): train longer or use a larger model",
            )
        return verdict(
            "underfitting",
            f"accuracy is low (train {acc[-1]:.3f}, validation "
            f"{vacc[-1]:.3f}) and flat: the model is too small or the learning "
            f"rate unsuitable",
        )
    return verdict(
        "good fit",
        f"validation accuracy {vacc[-1]:.3f}, close to training "
        f"accuracy {acc[-1]:.3f}, without a rising validation loss",
    )
