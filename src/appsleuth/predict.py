"""Classify new telemetry with a trained run: which app produced each row, and is it Moriarty?

``predict`` works on a DataFrame in memory; ``predict_file`` streams a CSV (plain or
gzip) or Parquet file of any size in chunks, reading only the columns the model needs,
and writes the predictions incrementally (to a temporary name, renamed at the end).
Rows with a missing feature value are never silently dropped: they are counted, and
their row ids are written to a side file. A run trained with ``missing="impute"`` fills
them instead, with the values its training rows gave (kept in ``preprocessor.json``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from appsleuth._atomic import (
    errors_name_target,
    flush_to_disk,
    remove_stale_temporaries,
    temporary_path,
)
from appsleuth._fields import is_integer, is_number
from appsleuth._files import not_regular, refuse_nul
from appsleuth._interrupt import raise_if_dropped
from appsleuth.data.layouts import MALWARE_APP
from appsleuth.data.load import (
    check_feature_dtypes,
    check_name_matches_content,
    check_text_content,
    check_unique_names,
    csv_line_numbers,
    infinite_mask,
    no_header_problem,
    not_a_data_file,
    numeric_columns_as_numbers,
    parse_numbers,
    separator_hint,
)
from appsleuth.data.preprocess import RETRAIN_HINT
from appsleuth.display import live_display_works
from appsleuth.errors import AppSleuthError, DataError, warn
from appsleuth.evaluate import malware_score, metrics_from_confusion, roc_auc
from appsleuth.run import (
    METRICS,
    RUN_MARKER,
    LoadedRun,
    RunResult,
    best_run_key,
    check_used_columns_unique,
    load_run,
    missing_run_message,
    predict_proba,
    read_metadata,
    recorded_operating_points,
    run_in_use,
    run_path,
    run_status,
    set_aside_note,
    set_aside_notes,
)

__all__ = ["PredictionSummary", "best_run_dir", "predict", "predict_file"]

_NULLS = ["NULL", "null", "", "NA", "N/A", "NaN", "nan", "None"]
_INDEX_NAMES = ("", "Unnamed: 0")
_WRITE = pa_csv.WriteOptions(quoting_style="needed")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PredictionSummary:
    """What :func:`predict_file` did.

    Attributes:
        run_dir: The run whose model was used.
        out: The predictions file.
        skipped_file: The side file listing skipped row ids (None when none was skipped).
        rows: Rows read.
        predicted: Rows predicted.
        skipped: Rows skipped for missing feature values.
        filled: Predicted rows whose missing (or infinite) feature values were filled
            with the run's fill values (a run trained with ``missing="impute"``).
            Defaults to 0.
        metrics: Accuracy and per-class metrics when the input had labels the model
            knows, else None.
        unknown_label_rows: Predicted rows whose label is an app the model was not
            trained on (left out of the metrics). Defaults to 0.
        unknown_labels: Up to 10 of those apps, sorted. Defaults to none.
        unlabelled_rows: Predicted rows whose label is missing, in a file with a label
            column (left out of the metrics). Defaults to 0.
        alarm: With an alarm threshold, ``threshold``, ``false_alarm_target`` (the
            recorded rate it was chosen for, or None), ``alarms`` (predicted rows flagged)
            and, when the file has labels, ``detection_rate`` and ``false_alarm_rate``
            at that threshold (None where 0/0) with ``detected``, ``moriarty_rows``,
            ``false_alarms`` and ``benign_rows`` over the rows the metrics cover; else
            None. Defaults to None.
    """

    run_dir: Path
    out: Path
    skipped_file: Path | None
    rows: int
    predicted: int
    skipped: int
    metrics: dict[str, Any] | None
    unknown_label_rows: int = 0
    unknown_labels: tuple[str, ...] = ()
    filled: int = 0
    unlabelled_rows: int = 0
    alarm: dict[str, Any] | None = None

    def __repr__(self) -> str:
        # The default repr printed every class's precision, recall and F1 in one line.
        shown = [
            f"run_dir={self.run_dir!r}",
            f"out={self.out!r}",
            f"rows={self.rows}",
            f"predicted={self.predicted}",
            f"skipped={self.skipped}",
            f"filled={self.filled}",
        ]
        if self.metrics is not None:
            shown.append(f"accuracy={self.metrics['accuracy']:.4f}")
        if self.unknown_label_rows:
            shown.append(f"unknown_label_rows={self.unknown_label_rows}")
        if self.unlabelled_rows:
            shown.append(f"unlabelled_rows={self.unlabelled_rows}")
        if self.alarm is not None:
            shown.append(f"alarms={self.alarm['alarms']}")
        return f"PredictionSummary({', '.join(shown)})"


def _failed_runs(sweep_dir: Path) -> list[tuple[str, str]]:
    """The (name, error) of each run directory in ``sweep_dir`` whose run failed."""
    failed = []
    for meta_file in sorted(sweep_dir.glob("*/model_metadata.json")):
        meta = read_metadata(meta_file.parent)
        if meta and meta.get("status") == "failed":
            failed.append((meta_file.parent.name, str(meta.get("error", "no error recorded"))))
    return failed


def best_run_dir(path: str | os.PathLike[str] | RunResult) -> Path:
    """A complete run directory: ``path`` itself, or the best run below it (a sweep).

    The best run has the highest validation accuracy of its saved model (its last epoch,
    or the earlier one early stopping restored); ties go to the lower validation loss,
    then to the earlier trial of a sweep's plan (as in the report).
    Only runs of one task, trained and validated on the same data and split, compare.

    Raises:
        DataError: Neither ``path`` nor any directory below it holds a complete run, or
            the runs below it are of different tasks, data sets or splits.
    """
    path = run_path(path)
    if run_status(path) == "complete":
        return path
    if not path.is_dir():
        note = set_aside_note(path)
        message = missing_run_message(path, "model directory")
        raise DataError(message + (f"; {note}" if note else ""))
    best: tuple[tuple[float, float, int], Path] | None = None
    tasks: dict[tuple[Any, ...], Path] = {}
    evaluated_on: dict[str, tuple[Path, dict[str, Any]]] = {}
    plan_order = _plan_order(path)
    for meta_file in sorted(path.glob("**/model_metadata.json")):
        run_dir = meta_file.parent
        if any(part.startswith(".") for part in run_dir.relative_to(path).parts):
            continue  # e.g. a complete run set aside while --force retrains it
        if run_status(run_dir) != "complete":
            continue  # also a damaged record: its numbers cannot be trusted
        meta = read_metadata(run_dir) or {}
        tasks.setdefault(_task_of(meta), run_dir)
        evaluated_on.setdefault(str(meta.get("data_fingerprint")), (run_dir, meta))
        name = run_dir.relative_to(path).as_posix()
        key = best_run_key(meta["last_results"], plan_order.get(name, len(plan_order)))
        if best is None or key < best[0]:
            best = (key, run_dir)
    if len(tasks) > 1:
        # Accuracies of different tasks do not compare: a 2-app run would "win" an 18-app
        # table and label every row with one of its two apps.
        examples = "; ".join(
            f"{run_dir} ({len(classes)} classes: {', '.join(classes[:4])}"
            f"{', ...' if len(classes) > 4 else ''})"
            for (classes, _), run_dir in list(tasks.items())[:3]
        )
        raise DataError(
            f"{path} holds runs of {len(tasks)} different tasks (other classes or "
            f"features), whose accuracies do not compare, e.g. {examples}; name one run "
            f"directory, or a directory that holds runs of one task"
        )
    if len(evaluated_on) > 1:
        # Validation accuracies on other rows do not compare either: a random split's
        # leaked neighbours would beat a blocked split's honest number.
        examples = "; ".join(
            f"{run_dir} ({_data_of(meta)})" for run_dir, meta in list(evaluated_on.values())[:3]
        )
        raise DataError(
            f"{path} holds runs trained and validated on {len(evaluated_on)} different data "
            f"sets or splits (data fingerprints), whose accuracies do not compare, e.g. "
            f"{examples}; name one run directory, or a directory that holds runs of one "
            f"data set and split"
        )
    set_aside = set_aside_notes(path)
    if best is None:
        if set_aside:
            raise DataError(
                f"{path} is not a complete run directory and holds none below it; "
                + "; ".join(set_aside)
            )
        own = path / "model_metadata.json"
        meta = read_metadata(path)
        if own.is_file() and meta is None:
            raise DataError(
                f"{own} is damaged (not a readable JSON object), so {path} is not a usable "
                f"run; train it again (appsleuth train ... --force) or restore the file"
            )
        if meta and meta.get("status") == "failed":
            raise DataError(
                f"{path} holds a failed run ({meta.get('error', 'no error recorded')}); "
                f"predict needs a complete one"
            )
        if (path / RUN_MARKER).is_file():
            # A run that started and never finished: say so, and how it gets finished.
            if run_in_use(path):
                raise DataError(
                    f"{path} holds no complete run yet: it is being trained right now; "
                    f"wait for its training to finish"
                )
            raise DataError(
                f"{path} holds no complete run: its training was stopped before it "
                f"finished (killed or interrupted); run the same train command again to "
                f"redo it"
            )
        if (path / "manifest.json").is_file():
            failed = _failed_runs(path)
            if failed:
                # Running 'sweep run' again skips failed trials: it would finish nothing.
                name, error = failed[0]
                raise DataError(
                    f"{path} is a sweep with no complete trial: {len(failed)} failed (e.g. "
                    f"{name}: {error}); 'appsleuth sweep status {path}' lists them, and "
                    f"'sweep run' with --retry-failed trains them again once the cause is "
                    f"fixed"
                )
            raise DataError(
                f"{path} is a sweep with no complete trial yet; 'appsleuth sweep status "
                f"{path}' shows where its trials stand, and running the same 'sweep run' "
                f"command again finishes them"
            )
        raise DataError(
            f"{path} is not a complete run directory and holds none below it "
            f"(a run is complete when its model_metadata.json says so)"
        )
    for note in set_aside:  # the set-aside run might be the best: the user should know
        warn(f"not considered: {note}")
    return best[1]


def _plan_order(path: Path) -> dict[str, int]:
    """Trial name -> plan index when ``path`` is a sweep directory, else empty."""
    from appsleuth.sweep.store import MANIFEST, read_plan

    if not (path / MANIFEST).is_file():
        return {}
    try:
        return {trial.name: trial.index for trial in read_plan(path)}
    except DataError:
        return {}  # A damaged manifest: the runs themselves still rank.


def _data_of(meta: dict[str, Any]) -> str:
    """``data synthetic-sherlock18(seed=0), random split, fingerprint 0123abcd...``."""
    split = meta.get("split") if isinstance(meta.get("split"), dict) else {}
    return (
        f"data {meta.get('dataset', '?')}, {split.get('kind', '?')} split, "
        f"fingerprint {meta.get('data_fingerprint')}"
    )


def _task_of(meta: dict[str, Any]) -> tuple[Any, ...]:
    """What a run predicts, from what: its classes and its input features."""
    data = (meta.get("spec") or {}).get("data") or {}
    features = data.get("features") if isinstance(data, dict) else None
    return (tuple(map(str, meta.get("classes") or ())), (meta.get("n_features"), str(features)))


def _top_k(proba: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest probabilities per row, largest first; of equal
    probabilities the lower index first (``argmax`` keeps the first), so ties in a
    saturated softmax's zeros list the same apps on every run."""
    # k passes of argmax beat a full sort of every row for the small k used here.
    remaining = proba.copy()
    rows = np.arange(len(proba))
    order = np.empty((len(proba), k), dtype=np.int64)
    for j in range(k):
        best = remaining.argmax(axis=1)
        order[:, j] = best
        remaining[rows, best] = -np.inf
    return order


def _frame_predictions(
    run: LoadedRun,
    df: pd.DataFrame,
    row_ids: pd.Index | np.ndarray,
    top_k: int,
    alarm_threshold: float | None = None,
) -> tuple[pd.DataFrame, np.ndarray, int, np.ndarray | None]:
    """Predictions for the complete rows of ``df``, the mask of skipped rows, how many
    predicted rows had a value filled (a run trained with ``missing="impute"``), and for a
    two-class model the probability of class 1 of each predicted row (else None).

    A model that knows Moriarty adds ``moriarty_score``, and with ``alarm_threshold``
    ``moriarty_alarm`` (the score at least the threshold)."""
    pre = run.preprocessor
    x, skip = pre.transform_complete(df)
    n_filled = int((pre.filled_rows(df) & ~skip).sum()) if pre.fill_values else 0
    classes = list(pre.classes)
    k = min(top_k, len(classes))
    proba = predict_proba(run.model, x, len(classes)) if len(x) else np.zeros((0, len(classes)))
    order = _top_k(proba, k)
    picked = np.take_along_axis(proba, order, axis=1)

    labels = None
    categories = classes
    if pre.label in df.columns:
        labels = df[pre.label]
        labels = pre.task_labels(labels[~skip] if skip.any() else labels)
        # One category list for predicted and true apps (labels the model does not know
        # appended), so that the two columns compare directly.
        extra = sorted(set(labels.dropna().unique()) - set(classes))
        categories = [*classes, *extra]

    def apps(codes: np.ndarray) -> pd.Categorical:
        # Categorical from codes: no million-element string array is ever built.
        return pd.Categorical.from_codes(codes, categories=categories)

    columns: dict[str, object] = {
        "row_id": np.asarray(row_ids)[~skip],
        "predicted_app": apps(order[:, 0]),
        "probability": picked[:, 0],
    }
    for j in range(k):
        columns[f"top{j + 1}_app"] = apps(order[:, j])
        columns[f"top{j + 1}_probability"] = picked[:, j]
    moriarty = malware_score(proba, classes)
    if moriarty is not None:
        # The top-k columns show it only when Moriarty is among a row's k likeliest apps.
        columns["moriarty_score"] = moriarty
        if alarm_threshold is not None:
            columns["moriarty_alarm"] = _alarms(moriarty, alarm_threshold)
    if labels is not None:
        truth = np.asarray(pd.Categorical(labels, categories=categories).codes)
        columns["true_app"] = pd.Categorical.from_codes(truth, categories=categories)
        correct = truth == order[:, 0]
        # Rows without a label, or labelled with an app the model was not trained on:
        # neither right nor wrong (predict_file's and evaluate_run's metrics leave them
        # out too, so that correct.mean() is the same accuracy).
        unscored = (truth < 0) | (truth >= len(classes))
        if unscored.any():
            correct = pd.array(correct, dtype="boolean")
            correct[unscored] = pd.NA
        columns["correct"] = correct
    score = proba[:, 1] if len(classes) == 2 else None
    return pd.DataFrame(columns), skip, n_filled, score


def _alarms(score: np.ndarray, threshold: float) -> np.ndarray:
    """Rows whose score is at least ``threshold``, compared exactly."""
    # NumPy compares a float32 array with a Python float in float32, rounding the
    # threshold: 0.02 became 0.0199999996, and a score of that value raised an alarm.
    return np.asarray(score, dtype=np.float64) >= threshold


def predict(
    run_dir: str | os.PathLike[str] | RunResult | LoadedRun,
    df: pd.DataFrame,
    *,
    top_k: int = 3,
    alarm_threshold: float | None = None,
    alarm_false_rate: float | None = None,
) -> pd.DataFrame:
    """Predict the app of every complete row of ``df``.

    Args:
        run_dir: A run directory, a sweep directory (its best run is used), the result
            of :func:`~appsleuth.run.train`, or a loaded run.
        df: A table carrying the model's feature columns (any supported layout; extra
            columns are ignored).
        top_k: How many most likely apps to list. Defaults to 3.
        alarm_threshold: Flag a row as Moriarty when its ``moriarty_score`` is at least
            this, a number between 0 and 1 (adds ``moriarty_alarm``). Defaults to None.
        alarm_false_rate: Instead, the threshold the run chose on its validation rows for
            this false-alarm rate (one of those its ``metrics.json`` records, e.g. 0.01).
            Defaults to None.

    Returns:
        One row per complete input row, in input order: ``row_id`` (the input's index),
        ``predicted_app`` (of apps of equal probability, the first in the run's
        ``classes``, as in every top-k column), ``probability``,
        ``top1_app``/``top1_probability`` ..., for a model that knows Moriarty
        ``moriarty_score`` (its probability) and, with an alarm threshold,
        ``moriarty_alarm``, and, when ``df`` has
        labels, ``true_app`` and ``correct`` (missing, neither right nor wrong, for a row
        without a label or with an app the model was not trained on, so that
        ``correct.mean()`` is ``evaluate_run``'s accuracy). ``attrs["skipped_row_ids"]``
        lists the rows left out for missing values, ``attrs["filled_rows"]`` counts the
        predicted rows whose missing values were filled (a run trained with
        ``missing="impute"``; 0 otherwise), ``attrs["run_dir"]`` is the run that predicted
        and ``attrs["alarm_threshold"]`` the alarm threshold (None without one).

    Raises:
        DataError: A feature column is missing or repeated, holds dates, durations or
            complex numbers, no row has a value in every feature column, or the run
            cannot be used.
        AppSleuthError: ``top_k`` is not a positive integer, or an alarm option is
            invalid, given for a model without Moriarty, or not recorded by the run.
    """
    top_k = _check_positive_int("top_k", top_k)
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"predict needs a DataFrame of telemetry; received {type(df).__name__} "
            f"(for a data file, use predict_file)"
        )
    _check_alarm_options(alarm_threshold, alarm_false_rate)
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(best_run_dir(run_dir))
    alarm = _alarm_setting(run, alarm_threshold, alarm_false_rate)
    threshold = alarm["threshold"] if alarm else None
    where = "the table given to predict"
    check_used_columns_unique(df, run.preprocessor, where)
    df = numeric_columns_as_numbers(df, run.preprocessor.numeric_features, where=where)
    check_feature_dtypes(df, run.preprocessor.numeric_features, where)
    out, skip, n_filled, _ = _frame_predictions(run, df, df.index.to_numpy(), top_k, threshold)
    if len(df) and skip.all():
        raise _nothing_predicted(where, len(df), _missing_counts(run, df), _empty_counts(df))
    out.attrs["skipped_row_ids"] = df.index[skip].tolist()
    out.attrs["filled_rows"] = n_filled
    out.attrs["run_dir"] = str(run.run_dir)
    out.attrs["alarm_threshold"] = threshold
    return out


def _check_alarm_options(alarm_threshold: Any, alarm_false_rate: Any) -> None:
    """Refuse an alarm option that is no number in (0, 1), or both at once."""
    options = (("alarm_threshold", alarm_threshold), ("alarm_false_rate", alarm_false_rate))
    for name, value in options:
        if value is None:
            continue
        # A NumPy float32 is a number too; a bool or NaN is not.
        number = is_number(value) or (isinstance(value, np.floating) and np.isfinite(value))
        if not (number and 0 < value < 1):
            raise AppSleuthError(
                f"{name} must be a number between 0 and 1 (exclusive); received {name}={value!r}"
            )
    if alarm_threshold is not None and alarm_false_rate is not None:
        raise AppSleuthError(
            f"give alarm_threshold or alarm_false_rate, not both; received "
            f"alarm_threshold={alarm_threshold!r} and alarm_false_rate={alarm_false_rate!r}"
        )


def _alarm_setting(
    run: LoadedRun, alarm_threshold: float | None, alarm_false_rate: float | None
) -> dict[str, Any] | None:
    """The Moriarty alarm a prediction raises: ``threshold`` and ``false_alarm_target``.

    Args:
        run: The run that predicts.
        alarm_threshold: A score threshold in (0, 1), or None.
        alarm_false_rate: A false-alarm rate whose threshold the run's ``metrics.json``
            records, or None.

    Returns:
        None when neither is given.

    Raises:
        AppSleuthError: An option is not a number in (0, 1), both are given, the model
            has no Moriarty class, or the run records no threshold for that rate.
    """
    _check_alarm_options(alarm_threshold, alarm_false_rate)
    if alarm_threshold is None and alarm_false_rate is None:
        return None
    name = "alarm_threshold" if alarm_threshold is not None else "alarm_false_rate"
    classes = list(run.preprocessor.classes)
    if MALWARE_APP not in classes:
        raise AppSleuthError(
            f"{name} flags rows as {MALWARE_APP}, but the model of {run.run_dir} does not "
            f"know {MALWARE_APP}: its classes are {classes}"
        )
    if alarm_threshold is not None:
        return {"threshold": float(alarm_threshold), "false_alarm_target": None}
    target = float(alarm_false_rate)  # type: ignore[arg-type]
    path = run.run_dir / METRICS
    points = recorded_operating_points(run.run_dir)
    if points is None:
        # A run trained before appsleuth chose operating points, or a damaged file.
        raise AppSleuthError(
            f"alarm_false_rate: {path} records no thresholds chosen for false-alarm rates "
            f"(the run was trained before appsleuth recorded them, or the file is damaged); "
            f"train the run again, or give a threshold with alarm_threshold"
        )
    recorded = [p.get("false_alarm_target") for p in points]
    for point in points:
        if is_number(point.get("false_alarm_target")) and np.isclose(
            point["false_alarm_target"], target, rtol=1e-9, atol=0
        ):
            threshold = point.get("threshold")
            if not (is_number(threshold) and 0 <= threshold <= 1):
                raise AppSleuthError(
                    f"alarm_false_rate={alarm_false_rate!r}: {path} records no threshold for "
                    f"that false-alarm rate ({point.get('reason') or 'none recorded'}); "
                    f"choose another rate, or give a threshold with alarm_threshold"
                )
            return {"threshold": float(threshold), "false_alarm_target": target}
    named = ", ".join(f"{r:g}" if is_number(r) else repr(r) for r in recorded)
    raise AppSleuthError(
        f"alarm_false_rate={alarm_false_rate!r} is not a false-alarm rate {path} records a "
        f"threshold for; it records {named}"
    )


def _missing_counts(run: LoadedRun, df: pd.DataFrame) -> dict[str, int]:
    """Rows without a usable value in each input column: missing, infinite, or too large
    for the model's float32 inputs once scaled."""
    pre = run.preprocessor
    # A column with a fill value (a model trained with missing='impute') lacks nothing
    # when empty: only values too large for the model leave its rows out.
    gaps = [c for c in pre.input_columns if c in df.columns and c not in pre.fill_values]
    counts = dict.fromkeys((c for c in pre.input_columns if c in df.columns), 0)
    for c in gaps:
        counts[c] = int(df[c].isna().sum())
        if c in pre.numeric_features:
            counts[c] += int(infinite_mask(df[c]).sum())
    for c, rows in pre.out_of_range_rows(df).items():
        counts[c] += int(rows.sum())
    return counts


def _empty_counts(df: pd.DataFrame) -> dict[str, int]:
    """Missing values in each column of ``df``."""
    return {str(c): int(n) for c, n in df.isna().sum().items()}


def _nothing_predicted(
    where: str, n_rows: int, missing: dict[str, int], empty: dict[str, int]
) -> DataError:
    """The error for a table none of whose rows has a value in every feature column.

    Args:
        where: How the message names the table.
        n_rows: Rows in the table.
        missing: Per feature column, the rows without a usable value.
        empty: Per column, the rows whose value is missing (a subset of those).
    """
    everywhere = [c for c, n in missing.items() if n >= n_rows]
    if everywhere:
        # Only columns that are empty throughout are called empty: infinite values, or
        # values too large for the model, are there to be seen in the file.
        blank = [c for c in everywhere if empty.get(c, 0) >= n_rows]
        unusable = [c for c in everywhere if c not in blank]
        said = []
        if blank:
            said.append(
                f"the feature column(s) {blank} are missing (empty) in every one of the "
                f"{n_rows} row(s)"
            )
        if unusable:
            said.append(
                f"the feature column(s) {unusable} hold no usable value (missing, infinite, "
                f"or too large for the model's float32 inputs) in any of the {n_rows} row(s)"
            )
        return DataError(
            f"{where}: no row could be predicted: {'; '.join(said)}; the model needs a "
            f"value in each of its feature columns"
        )
    counts = ", ".join(f"{c!r} in {n} row(s)" for c, n in missing.items() if n)
    return DataError(
        f"{where}: no row could be predicted: each of the {n_rows} row(s) lacks a usable "
        f"value in at least one feature column (missing, infinite, or too large for the "
        f"model's float32 inputs: {counts}); the model needs a value in each of its "
        f"feature columns"
    )


def _check_positive_int(name: str, value: Any) -> int:
    # NumPy integers count (a k computed with NumPy is np.int64); bools do not.
    if not is_integer(value) or value < 1:
        raise AppSleuthError(f"{name} must be a positive integer; received {name}={value!r}")
    return int(value)


# --- streaming ------------------------------------------------------------------------------


def _open_stream(path: Path) -> Any:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        return pa.CompressedInputStream(pa.OSFile(str(path)), "gzip")
    return pa.OSFile(str(path))


def _csv_header(path: Path, encoding: str) -> list[str]:
    try:
        reader = pa_csv.open_csv(
            _open_stream(path),
            read_options=pa_csv.ReadOptions(block_size=1 << 16, encoding=encoding),
        )
        return [str(n) for n in reader.schema.names]
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise _read_error(path, exc, encoding) from exc


def _read_error(path: Path, exc: Exception, encoding: str) -> DataError:
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text or isinstance(exc, UnicodeDecodeError):
        return DataError(
            f"data file {path} is not valid {encoding} text ({text.strip()}); pass its "
            f"encoding, e.g. --encoding latin-1"
        )
    if isinstance(exc, OSError | EOFError) and "compressed" in text.lower():
        return _damaged(path, exc)
    if "Empty CSV file" in text:
        with _open_stream(path) as stream:  # decompressed, as the reader saw it
            return DataError(no_header_problem(path, stream.read(256)))
    # Arrow quotes the offending row: of a binary file, raw bytes and control characters
    # that would garble the terminal.
    shown = "".join(c if c.isprintable() else "?" for c in text)
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    return DataError(f"data file {path} cannot be read as CSV: {shown}")


def _damaged(path: Path, exc: BaseException, rows: int | None = None) -> DataError:
    """The error for a data file whose bytes cannot be read (truncated, corrupt)."""
    text = str(exc).strip() or type(exc).__name__
    text = text[0].lower() + text[1:]
    after = f" after {rows} row(s)" if rows else ""
    return DataError(
        f"data file {path} cannot be read: {text}{after}; the file is damaged or "
        f"incomplete (an interrupted download or copy?): fetch or compress it again"
    )


def _check_encoding(encoding: str) -> str:
    import codecs

    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise DataError(
            f"encoding must be a text encoding Python knows, e.g. utf-8 or latin-1; "
            f"received encoding={encoding!r}"
        ) from None


def _numeric_parquet_columns(
    path: Path, frame: pd.DataFrame, types: dict[str, pa.DataType], offset: int
) -> pd.DataFrame:
    # CSV columns get their types while parsed; Parquet keeps what was stored, so a
    # feature stored as text is converted here, and a value that is no number named.
    numeric = [c for c, kind in types.items() if kind == pa.float64()]
    check_feature_dtypes(frame, numeric, f"data file {path}")
    for col, kind in types.items():
        if kind != pa.float64() or col not in frame or pd.api.types.is_numeric_dtype(frame[col]):
            continue
        values = frame[col]
        converted, bad = parse_numbers(values, booleans=True)
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"data file {path}: feature column {col!r} must be numeric, but data row "
                f"{offset + i} holds {values.iloc[i]!r}"
            )
        frame[col] = converted.astype("float64")
    return frame


def _chunks(
    path: Path,
    columns: list[str],
    types: dict[str, pa.DataType],
    chunk_rows: int,
    encoding: str = "utf-8",
) -> Iterator[pd.DataFrame]:
    """Batches of the needed columns, as DataFrames."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        offset = 0
        try:
            pf = pa_parquet.ParquetFile(path)
            for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
                frame = batch.to_pandas(ignore_metadata=True)
                yield _numeric_parquet_columns(path, frame, types, offset)
                offset += len(frame)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"data file {path} cannot be read as Parquet: {exc}") from exc
        return
    block_size = max(1 << 20, chunk_rows * 200)
    numeric = [c for c, kind in types.items() if kind == pa.float64()]
    as_text = False

    def open_reader() -> pa_csv.CSVStreamingReader:
        read = pa_csv.ReadOptions(block_size=block_size, encoding=encoding)
        kinds = {**types, **dict.fromkeys(numeric, pa.string())} if as_text else types
        convert = pa_csv.ConvertOptions(
            null_values=_NULLS,
            strings_can_be_null=True,
            include_columns=columns,
            column_types=kinds,
        )
        return pa_csv.open_csv(_open_stream(path), read_options=read, convert_options=convert)

    # Only reading is guarded: what the consumer does with a chunk (writing the output)
    # raises its own errors, which must not be reported as a problem of the data file.
    rows = 0
    given = 0  # rows of the text reader to pass over: the number reader gave them
    reader = None
    while True:
        try:
            if reader is None:
                reader = open_reader()
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            if as_text or "conversion error" not in str(exc) or "UTF8" in str(exc):
                raise
            # A feature value Arrow's numbers refuse, such as "True" (loading reads a
            # column of true/false words as 1 and 0): the file is read again as text and
            # converted as loading converts it, from the first row not yet given. Not
            # with skip_rows_after_names, which counts blank lines as rows (the rows
            # given are not): it repeated a row per blank line.
            as_text, reader, given = True, None, rows
            continue
        except (OSError, EOFError, zlib.error) as exc:
            raise _damaged(path, exc, rows) from exc
        if given:
            skipped = min(given, batch.num_rows)
            batch, given = batch.slice(skipped), given - skipped
            if not batch.num_rows:
                continue
        frame = batch.to_pandas()
        if as_text:
            _numbers_from_text(path, frame, numeric, rows, encoding)
        rows += batch.num_rows
        yield frame


def _numbers_from_text(
    path: Path, frame: pd.DataFrame, numeric: list[str], offset: int, encoding: str
) -> None:
    """Convert ``frame``'s numeric features, read as text, to numbers in place.

    Raises:
        DataError: A value is no number; names the column, the data row and its line.
    """
    for col in numeric:
        values = frame[col]
        converted, bad = parse_numbers(values, booleans=True)
        if len(bad):
            row = offset + int(bad[0])
            # Blank lines and quoted line breaks move rows off "row + 2".
            line = csv_line_numbers(path, [row], encoding=encoding).get(row)
            where = f"data row {row}" + (f" (line {line})" if line else "")
            raise DataError(
                f"data file {path}: feature column {col!r} must be numeric, "
                f"but {where} holds {values.iloc[int(bad[0])]!r}"
            )
        frame[col] = converted.astype("float64")


def _parquet_columns(path: Path) -> list[str]:
    try:
        return [str(n) for n in pa_parquet.ParquetFile(path).schema_arrow.names]
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"data file {path} cannot be read as Parquet: {exc}") from exc


def _parquet_index_column(path: Path) -> str | None:
    """The column holding the index pandas stored with a Parquet file, if it is one column.

    A RangeIndex is stored as metadata only (no column), and a MultiIndex has no single
    column to name rows by: None for both, as for files not written by pandas.
    """
    try:
        meta = pa_parquet.ParquetFile(path).schema_arrow.pandas_metadata or {}
    except (pa.ArrowException, OSError, ValueError):
        return None  # unreadable metadata: the file's columns still say what they can
    index = meta.get("index_columns") if isinstance(meta, dict) else None
    if isinstance(index, list) and len(index) == 1 and isinstance(index[0], str):
        return index[0]
    return None


# The CSV files a run or sweep directory keeps, and the file that marks such a directory.
_OWN_CSV_FILES = {
    "model_history.csv": ("run directory", (RUN_MARKER, "model_metadata.json")),
    "results.csv": ("sweep directory", ("manifest.json",)),
    "results_full.csv": ("sweep directory", ("manifest.json",)),
}


def _owning_directory(path: Path) -> str | None:
    """The kind of directory (run or sweep) whose own CSV file ``path`` is, or None."""
    kind, markers = _OWN_CSV_FILES.get(path.name, (None, ()))
    if path.exists() and any((path.parent / m).is_file() for m in markers):
        return kind
    return None


def predict_file(
    run_dir: str | os.PathLike[str] | RunResult | LoadedRun,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    top_k: int = 3,
    chunk_rows: int = 200_000,
    force: bool = False,
    progress: bool = False,
    encoding: str = "utf-8",
    alarm_threshold: float | None = None,
    alarm_false_rate: float | None = None,
) -> PredictionSummary:
    """Stream a data file through a trained model into a predictions CSV.

    Args:
        run_dir: A run directory, a sweep directory (its best run is used), the result
            of ``train`` or a run from ``load_run``.
        data: CSV (plain or gzip) or Parquet in any supported layout. Rows are named
            (``row_id``) by a CSV's unnamed first column or the index pandas stored with
            a Parquet file, else by their position.
        out: The predictions CSV. Skipped row ids go to ``<out stem>.skipped.csv``.
        top_k: How many most likely apps to list. Defaults to 3.
        chunk_rows: Rows per chunk. Defaults to 200,000.
        force: Overwrite an existing output file (and its side file). Defaults to False.
        progress: Show a progress bar (in Jupyter, it needs ipywidgets). Defaults to
            False.
        encoding: Text encoding of a CSV file. Defaults to ``utf-8``.
        alarm_threshold: Flag a row as Moriarty when its ``moriarty_score`` is at least
            this, a number between 0 and 1 (adds ``moriarty_alarm``). Defaults to None.
        alarm_false_rate: Instead, the threshold the run chose on its validation rows for
            this false-alarm rate (one of those its ``metrics.json`` records, e.g. 0.01).
            Defaults to None.

    Returns:
        The :class:`PredictionSummary`.

    Raises:
        DataError: The file is missing (or a directory), empty or damaged, lacks a
            feature column or repeats one, holds a non-numeric feature value (named with
            its row), or no row has a value in every feature column; or the run cannot
            be used.
        AppSleuthError: The output exists and ``force`` is False, is a directory, does
            not end in ``.csv`` or is a run's or sweep's own CSV file; ``top_k`` or
            ``chunk_rows`` is not a positive integer; an alarm option is invalid, given
            for a model without Moriarty, or not recorded by the run.
    """
    top_k = _check_positive_int("top_k", top_k)
    chunk_rows = _check_positive_int("chunk_rows", chunk_rows)
    _check_alarm_options(alarm_threshold, alarm_false_rate)
    refuse_nul(data, "data")
    refuse_nul(out, "out")
    data, out = Path(data), Path(out)
    if out.is_dir():
        raise AppSleuthError(f"output file {out} is a directory; name a .csv file in it")
    if not out.name.lower().endswith(".csv"):
        raise AppSleuthError(
            f"predictions are written as CSV: the output file must end in .csv; received "
            f"{out.name!r}"
        )
    if data.is_dir():
        # e.g. a partitioned Parquet data set, written by Spark or partition_cols
        raise DataError(
            f"data file {data} is a directory; predict_file reads one CSV or Parquet file: "
            f"give each file in it, or read it with pandas and use predict"
        )
    kind = not_regular(data)
    if kind is not None:
        raise DataError(not_a_data_file(data, kind))
    if not data.is_file():
        raise DataError(f"data file {data} does not exist")
    if data.stat().st_size == 0:
        raise DataError(f"data file {data} is empty")
    encoding = _check_encoding(encoding)
    skipped_path = out.with_name(f"{out.stem}.skipped.csv")
    for path in (out, skipped_path):
        if path.exists() and path.resolve() == data.resolve():
            raise AppSleuthError(
                f"output file {path} is the data file itself; choose another --out"
            )
    for path in (out, skipped_path):
        owner = _owning_directory(path)
        if owner:
            raise AppSleuthError(
                f"output file {path} is the {owner}'s own {path.name}; predictions never "
                f"replace a file appsleuth keeps there: choose another --out"
            )
    for path in (out, skipped_path):
        if path.exists() and not force:
            raise AppSleuthError(f"output file {path} already exists; pass --force to overwrite it")
    if isinstance(run_dir, LoadedRun):
        run, run_path = run_dir, run_dir.run_dir
    else:
        run_path = best_run_dir(run_dir)
        run = load_run(run_path)
    pre = run.preprocessor
    alarm = _alarm_setting(run, alarm_threshold, alarm_false_rate)
    threshold = alarm["threshold"] if alarm else None
    # Alarms raised, and (labelled rows of the model's classes) Moriarty rows caught,
    # Moriarty rows, false alarms and benign rows.
    alarm_counts = np.zeros(5, dtype=np.int64)
    malware_index = pre.classes.index(MALWARE_APP) if MALWARE_APP in pre.classes else -1

    with open(data, "rb") as fh:
        head = fh.read(256)
    check_name_matches_content(data, head)
    is_parquet = head[:4] == b"PAR1"
    if not is_parquet:
        # As load_sherlock says: a zip (a model.keras given as DATA) or UTF-16 text read
        # as CSV ended in a parse error that printed its raw bytes.
        check_text_content(data, head, encoding, inside="")
    names = _parquet_columns(data) if is_parquet else _csv_header(data, encoding)
    check_unique_names([str(n) for n in names], f"data file {data}")
    missing = [c for c in pre.input_columns if c not in names]
    if missing:
        # A ';'- or tab-separated file reads as one column: say so, as load_sherlock does.
        hint = ("" if is_parquet else separator_hint(names)) or RETRAIN_HINT
        raise DataError(
            f"data file {data} lacks the feature column(s) {missing} the model was "
            f"trained on; columns found: {names[:30]}. {hint}"
        )
    # The row id: a CSV's unnamed first column, or the index pandas stored in Parquet
    # (named as it was, so that predict_file's row ids are predict's on that DataFrame).
    stored_index = _parquet_index_column(data) if is_parquet else None
    if stored_index is not None and stored_index not in (*pre.input_columns, pre.label):
        index_col: str | None = stored_index
    elif "__index_level_0__" in names:
        index_col = "__index_level_0__"
    else:
        index_col = names[0] if names and names[0] in _INDEX_NAMES else None
    has_label = pre.label in names
    columns = [c for c in (index_col, pre.label if has_label else None) if c is not None]
    columns += pre.input_columns
    types: dict[str, pa.DataType] = {c: pa.float64() for c in pre.numeric_features}
    types.update({c: pa.string() for c in pre.categories})
    if has_label:
        types[pre.label] = pa.string()

    out.parent.mkdir(parents=True, exist_ok=True)
    for path in (out, skipped_path):
        remove_stale_temporaries(path)  # Left by a killed earlier run of this command.
    tmp, skipped_tmp = temporary_path(out), temporary_path(skipped_path)
    n_rows = n_pred = n_skip = n_unknown = n_filled = n_unlabelled = 0
    unknown_names: set[str] = set()
    missing_counts: dict[str, int] = dict.fromkeys(pre.input_columns, 0)
    empty_counts: dict[str, int] = dict.fromkeys(pre.input_columns, 0)
    k = len(pre.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    # A two-class model's scores of the labelled rows, for the ROC AUC (as metrics.json
    # and the report give it): 5 bytes a row, where the confusion counts need none.
    auc_truth: list[np.ndarray] = []
    auc_score: list[np.ndarray] = []
    # Jupyter without ipywidgets cannot show the bar: rich would only warn.
    bar = _progress(data, is_parquet) if progress and live_display_works() else None
    writer: pa_csv.CSVWriter | None = None
    try:
        with (
            errors_name_target(tmp, out, unnamed_full=True),
            errors_name_target(skipped_tmp, skipped_path),
            open(tmp, "wb") as fh,
            open(skipped_tmp, "w", encoding="utf-8", newline="") as skipped_fh,
        ):
            skipped_fh.write("row_id\n")
            try:
                for chunk in _chunks(data, columns, types, chunk_rows, encoding):
                    # A kill whose interrupt Python dropped in one of JAX's garbage
                    # collector callbacks stops here, not after the whole file.
                    raise_if_dropped()
                    row_ids = (
                        chunk.pop(index_col).to_numpy()
                        if index_col is not None
                        else np.arange(n_rows, n_rows + len(chunk))
                    )
                    frame, skip, chunk_filled, score = _frame_predictions(
                        run, chunk, row_ids, top_k, threshold
                    )
                    table = _arrow_table(frame)
                    if writer is None:
                        writer = pa_csv.CSVWriter(fh, table.schema, write_options=_WRITE)
                    writer.write_table(table)
                    if skip.any():
                        pd.Series(np.asarray(row_ids)[skip]).to_csv(
                            skipped_fh, index=False, header=False
                        )
                        for c, n in _missing_counts(run, chunk).items():
                            missing_counts[c] += n
                        for c, n in _empty_counts(chunk).items():
                            if c in empty_counts:
                                empty_counts[c] += n
                    if has_label and len(frame):
                        truth = frame["true_app"].cat.codes.to_numpy().astype(np.int64)
                        pred = frame["predicted_app"].cat.codes.to_numpy().astype(np.int64)
                        # Codes from k on are labels the model lacks; -1 is no label.
                        unknown = truth >= k
                        known = (truth >= 0) & ~unknown
                        n_unknown += int(unknown.sum())
                        n_unlabelled += int((truth < 0).sum())
                        if len(unknown_names) < 10 and unknown.any():
                            cats = frame["true_app"].cat.categories
                            unknown_names.update(str(cats[c]) for c in np.unique(truth[unknown]))
                        confusion += np.bincount(
                            truth[known] * k + pred[known], minlength=k * k
                        ).reshape(k, k)
                        if score is not None:
                            auc_truth.append(truth[known].astype(np.int8))
                            auc_score.append(score[known])
                        if threshold is not None:
                            flagged = frame["moriarty_alarm"].to_numpy()[known]
                            is_malware = truth[known] == malware_index
                            alarm_counts[1:] += (
                                int((flagged & is_malware).sum()),
                                int(is_malware.sum()),
                                int((flagged & ~is_malware).sum()),
                                int((~is_malware).sum()),
                            )
                    if threshold is not None:
                        alarm_counts[0] += int(frame["moriarty_alarm"].sum())
                    n_rows += len(chunk)
                    n_pred += len(frame)
                    n_skip += int(skip.sum())
                    n_filled += chunk_filled
                    if bar is not None:
                        bar.advance(len(chunk))
                if writer is not None:
                    writer.close()
            except pa.ArrowInvalid as exc:
                raise _read_error(data, exc, encoding) from exc
        if n_rows == 0:
            raise DataError(f"data file {data} has a header but no rows")
        if n_pred == 0:
            raise _nothing_predicted(f"data file {data}", n_rows, missing_counts, empty_counts)
        raise_if_dropped()  # a killed predict leaves no predictions
        with errors_name_target(tmp, out, unnamed_full=True):
            flush_to_disk(tmp)
        if n_skip:
            with errors_name_target(skipped_tmp, skipped_path, unnamed_full=True):
                flush_to_disk(skipped_tmp)
        # The predictions take their name last, after the side file is theirs: stopped in
        # between, this leaves no predictions (the same command makes them again), never
        # new predictions beside an earlier run's side file, which names other rows.
        if force:
            out.unlink(missing_ok=True)
        if n_skip:
            os.replace(skipped_tmp, skipped_path)
        else:
            skipped_path.unlink(missing_ok=True)  # only there with force: an earlier run's
        os.replace(tmp, out)
    finally:
        if bar is not None:
            bar.stop()
        # Suppressed: on a read-only file system even removing a file that was never
        # made fails, and that error would hide the one that says what went wrong.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            skipped_tmp.unlink(missing_ok=True)

    metrics = None
    if has_label and confusion.sum():
        metrics = metrics_from_confusion(confusion, pre.classes)
        metrics["rows_with_unknown_label"] = n_unknown
        metrics["rows_without_label"] = n_unlabelled
        if auc_score:
            metrics["roc_auc"] = roc_auc(np.concatenate(auc_truth), np.concatenate(auc_score))
    if alarm is not None:
        alarm["alarms"] = int(alarm_counts[0])
        if metrics is not None:
            detected, moriarty_rows, false_alarms, benign_rows = map(int, alarm_counts[1:])
            alarm.update(
                # 0/0 is no rate: a file without Moriarty rows detects nothing to detect.
                detection_rate=detected / moriarty_rows if moriarty_rows else None,
                false_alarm_rate=false_alarms / benign_rows if benign_rows else None,
                detected=detected,
                moriarty_rows=moriarty_rows,
                false_alarms=false_alarms,
                benign_rows=benign_rows,
            )
    return PredictionSummary(
        run_dir=run_path,
        out=out,
        skipped_file=skipped_path if n_skip else None,
        rows=n_rows,
        predicted=n_pred,
        skipped=n_skip,
        metrics=metrics,
        unknown_label_rows=n_unknown,
        unknown_labels=tuple(sorted(unknown_names)[:10]),
        filled=n_filled,
        unlabelled_rows=n_unlabelled,
        alarm=alarm,
    )


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as Arrow, app columns decoded to text (the CSV writer wants plain types)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    columns = [c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(columns, names=table.column_names)


class _Bar:
    def __init__(self, total: int | None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), transient=True
        )
        self._task = self._progress.add_task("rows", total=total)
        self._progress.start()

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def stop(self) -> None:
        self._progress.stop()


def _progress(path: Path, is_parquet: bool) -> _Bar:
    total = pa_parquet.ParquetFile(path).metadata.num_rows if is_parquet else None
    return _Bar(total)
