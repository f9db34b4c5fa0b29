"""One training run and its directory.

A run directory (``<experiment>/model_1H18N_lr0.0003_bs32_e30/``) holds
``model_history.csv`` (one row per epoch), ``model.keras``, ``preprocessor.json``,
``metrics.json``, ``spec.yaml``, the plots, and ``model_metadata.json``, written last and
atomically: a run is complete exactly when that file says ``"status": "complete"``. A
killed run leaves no such file and is redone by running the same command again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from appsleuth._atomic import atomic_output, atomic_write_text, target_of_temporary
from appsleuth._epochs import steady_seconds_per_epoch
from appsleuth._fields import is_int, is_number, repeated
from appsleuth._files import read_record_table, read_record_text, refuse_nul
from appsleuth._interrupt import raise_if_dropped
from appsleuth._keras import backend_version, import_keras
from appsleuth._memory import release_programs_if_grown
from appsleuth._software import describe_software
from appsleuth._version import __version__
from appsleuth.data.layouts import MALWARE_APP
from appsleuth.data.load import check_feature_dtypes
from appsleuth.data.prepare import PreparedData, prepare_data
from appsleuth.data.preprocess import Preprocessor
from appsleuth.errors import AppSleuthError, DataError, SpecError, warn
from appsleuth.evaluate import (
    RESULT_KEYS,
    classification_metrics,
    diagnose_fit,
    malware_score,
    operating_points_of,
    rates_at_thresholds,
)
from appsleuth.hardware import describe_hardware, slurm_environment
from appsleuth.spec import RunSpec

__all__ = [
    "CONFUSION_PLOT",
    "HISTORY",
    "LOSS_ACC_PLOT",
    "METADATA",
    "METRICS",
    "MODEL",
    "PREPROCESSOR",
    "RUN_MARKER",
    "SPEC",
    "LoadedRun",
    "RunExistsError",
    "RunInUseError",
    "RunResult",
    "TrainingDivergedError",
    "best_run_key",
    "check_used_columns_unique",
    "class_weights",
    "data_fingerprint",
    "evaluate_run",
    "finite_number",
    "is_own_run_dir",
    "load_data",
    "load_run",
    "metadata_problem",
    "missing_run_message",
    "predict_proba",
    "prepare_run_data",
    "read_json_object",
    "read_metadata",
    "record_failed_run",
    "recorded_operating_points",
    "run_conflict",
    "run_in_use",
    "run_path",
    "run_status",
    "set_aside_note",
    "set_aside_notes",
    "train",
    "validate_name",
]

METADATA = "model_metadata.json"
# A file name may have 255 bytes on common file systems (names here are ASCII), and
# --force sets a complete run aside as .<name>.replaced (_backup_path) beside it.
_MAX_NAME = 255 - len("..replaced")
RUN_MARKER = ".appsleuth-run"  # written first into every run directory appsleuth makes
HISTORY = "model_history.csv"
MODEL = "model.keras"
PREPROCESSOR = "preprocessor.json"
METRICS = "metrics.json"
SPEC = "spec.yaml"
LOSS_ACC_PLOT = "loss_acc_plot.png"
CONFUSION_PLOT = "confusion_matrix.png"
_RUN_FORMAT = 1
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class RunExistsError(AppSleuthError):
    """The run directory already holds a complete run and overwriting was not asked for."""


class RunInUseError(RunExistsError):
    """Another process is training in the run directory right now."""


class TrainingDivergedError(AppSleuthError):
    """The loss became NaN or infinite: the run is recorded as failed."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunResult:
    """What :func:`train` produced.

    Attributes:
        run_dir: The run directory.
        metadata: The contents of ``model_metadata.json``.
        history: Per-epoch logs (``model_history.csv``).
        metrics: Validation metrics (``metrics.json``).
        skipped: True when the run was already complete and was not redone.
    """

    run_dir: Path
    metadata: dict[str, Any]
    history: pd.DataFrame
    metrics: dict[str, Any]
    skipped: bool = False

    def __repr__(self) -> str:
        # The default repr printed the whole metadata, history and metrics: a screenful
        # in a notebook for one run. The headline numbers are what a reader looks for.
        return (
            f"RunResult(run_dir={self.run_dir!r}, {_headline(self.metadata)}, "
            f"skipped={self.skipped})"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadedRun:
    """A trained model and everything needed to use it (what :func:`load_run` returns).

    Attributes:
        run_dir: The run directory.
        model: The Keras model, loaded in safe mode and not compiled (for prediction).
        preprocessor: The fitted :class:`~appsleuth.data.Preprocessor`: feature
            columns, scaling, fill values and class names.
        metadata: The contents of ``model_metadata.json``.
    """

    run_dir: Path
    model: Any
    preprocessor: Preprocessor
    metadata: dict[str, Any] = dataclasses.field(repr=False)


def _watched() -> bool:
    """Whether someone watches the output: a terminal or a notebook."""
    # A notebook's stdout is no terminal, yet minutes of training with no line there
    # looked stuck.
    from appsleuth.display import in_jupyter

    return sys.stdout.isatty() or in_jupyter()


def _headline(metadata: dict[str, Any]) -> str:
    """``val_accuracy=0.9767, val_loss=0.0712, epochs_run=30, engine='fused'`` from metadata."""
    results = metadata.get("last_results") or {}
    parts = [f"status={metadata.get('status')!r}"]
    for key in ("val_accuracy", "val_loss"):
        if is_number(results.get(key)):
            parts.append(f"{key}={results[key]:.4f}")
    for key in ("epochs_run", "engine", "fit_diagnosis"):
        if metadata.get(key) is not None:
            parts.append(f"{key}={metadata[key]!r}")
    return ", ".join(parts)


# --- status ------------------------------------------------------------------------------


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is absent, unreadable or not an object."""
    try:
        # Bounded: a link to /dev/zero would be read for ever.
        data = json.loads(read_record_text(path))
    except (OSError, ValueError, RecursionError):  # the last: nested past Python's limit
        return None
    return data if isinstance(data, dict) else None


def read_metadata(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's metadata, or None when the file is absent or unreadable (incomplete run)."""
    return read_json_object(Path(run_dir) / METADATA)


def run_status(run_dir: str | os.PathLike[str] | RunResult | LoadedRun) -> str:
    """``complete``, ``failed``, ``incomplete`` (started, no result) or ``missing``.

    Any existing directory without a complete or failed record is ``incomplete``, also one
    that is no run at all (an experiment directory that holds runs).

    A run whose metadata says complete but whose results are not well-formed numbers
    (a damaged or hand-edited file) counts as incomplete: it has no result to trust,
    and running the same command again redoes it.

    Raises:
        DataError: ``run_dir`` is not a path, the result of :func:`train` or a run from
            :func:`load_run`.
    """
    run_dir = run_path(run_dir)
    if not run_dir.is_dir():
        return "missing"
    meta = read_metadata(run_dir)
    if meta is None:
        return "incomplete"
    status = meta.get("status")
    if status == "complete" and metadata_problem(meta) is not None:
        return "incomplete"
    return status if status in ("complete", "failed") else "incomplete"


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (not a bool), else None.

    Files can be damaged or edited: only such a value is ever taken as a result.
    """
    return float(value) if is_number(value) else None


def best_run_key(results: Mapping[str, Any], order: int) -> tuple[float, float, int]:
    """Sort key that puts the best run first, the one rule predict and report share.

    Highest final ``val_accuracy``, then (ties are common on small validation sets)
    lowest ``val_loss``, then ``order`` (a sweep's plan order). Missing or non-finite
    values rank last.
    """
    accuracy = finite_number(results.get("val_accuracy"))
    loss = finite_number(results.get("val_loss"))
    return (
        -accuracy if accuracy is not None else float("inf"),
        loss if loss is not None else float("inf"),
        order,
    )


def metadata_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with a complete run's metadata, or None when it is well-formed."""

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    last = meta.get("last_results")
    if not isinstance(last, dict):
        return f"last_results must be a mapping; found {last!r}"
    for key in RESULT_KEYS:
        value = last.get(key)
        if finite_number(value) is None or value < 0:
            return f"last_results.{key} must be a non-negative number; found {value!r}"
        if key.endswith("accuracy") and value > 1:
            return f"last_results.{key} must be at most 1; found {value!r}"
    for key in ("wall_time_s", "seconds_per_epoch", "learning_rate"):
        if key in meta and meta[key] is not None and not number(meta[key]):
            return f"{key} must be a number; found {meta[key]!r}"
    for key in ("epochs", "epochs_run", "batch_size"):
        if key in meta and meta[key] is not None and not _is_count(meta[key]):
            return f"{key} must be a whole number; found {meta[key]!r}"
    return None


def _is_count(value: Any) -> bool:
    return is_int(value) and value >= 0


def validate_name(name: str, what: str = "run name") -> str:
    """Check a name that becomes a directory: letters, digits, ``._-``; no ``..``."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or ".." in name
        or not set(name) <= _NAME_CHARS
        or name.startswith("-")
    ):
        raise SpecError(
            f"{what} must use only letters, digits, '.', '_' and '-' (no path "
            f"separators or '..'); received {what}={name!r}"
        )
    if len(name) > _MAX_NAME:
        raise SpecError(
            f"{what} is {len(name)} characters long, more than the {_MAX_NAME} appsleuth "
            f"allows (a directory name may have 255, and --force sets a run aside as "
            f".<name>.replaced); received {what}={name[:40]}...{name[-20:]} (a run's default name "
            f"includes its learning rate: is it a sensible value?)"
        )
    return name


# --- data ---------------------------------------------------------------------------------


def load_data(spec: RunSpec) -> pd.DataFrame:
    """The table a run spec names: its file, or the embedded synthetic data."""
    from appsleuth.data.load import load_sherlock
    from appsleuth.data.tables import embedded_data

    data = spec.data
    if data.path is None:
        return embedded_data(data.rows, seed=data.synth_seed)
    return load_sherlock(data.path, label=data.label)


def _table_for(spec: RunSpec, data: Any) -> pd.DataFrame:
    """The table to train on: ``data`` checked against the spec's label, or the spec's."""
    if data is None:
        return load_data(spec)
    if not isinstance(data, pd.DataFrame):
        raise SpecError(
            f"data must be a pandas DataFrame (e.g. from load_sherlock); received "
            f"{type(data).__name__}; to train on a file, set the spec's data.path or pass "
            f"load_sherlock(path)"
        )
    from appsleuth.data.load import check_unique_names, from_dataframe

    # Two columns of one name reach pandas as a table where a column is expected, and
    # training ended in a pandas traceback that named neither.
    check_unique_names([str(c) for c in data.columns], "the table given to train")
    recorded = data.attrs.get("appsleuth")
    label = recorded.get("label") if isinstance(recorded, dict) else None
    if label is None:
        return from_dataframe(data, label=spec.data.label)
    if label != spec.data.label:
        raise SpecError(
            f"data.label is {spec.data.label!r} but the table given was loaded with the "
            f"label {label!r}; load it with label={spec.data.label!r}, or set data.label "
            f"to {label!r}"
        )
    return data


def prepare_run_data(spec: RunSpec, df: pd.DataFrame, *, from_spec: bool = False) -> PreparedData:
    """Clean, split and preprocess ``df`` as the run spec's data section says.

    Args:
        spec: The run spec.
        df: The table.
        from_spec: ``df`` is what ``load_data(spec)`` read (the spec names these rows), so
            the result records ``spec.data`` as its ``data_spec``. Defaults to False.
    """
    d = spec.data
    prepared = prepare_data(
        df, split=d.split, apps=d.apps, positive=d.positive, features=d.features, missing=d.missing
    )  # type: ignore[arg-type]
    if from_spec:
        prepared = dataclasses.replace(prepared, data_spec=d.to_dict())
    return prepared


def _data_line(prepared: PreparedData) -> str:
    """What training sees: rows kept by cleaning (and why some were dropped), split sizes."""
    # Cleaning drops rows with a gap in any feature without a word, and one mostly-empty
    # column (cminflt in the 2-app teaching file) cost a quarter of the rows unnoticed.
    c = prepared.cleaning
    why = []
    for step in c.steps:
        n = step.rows_before - step.rows_after
        if n <= 0:
            continue
        if step.action == "drop incomplete rows":
            cols = ", ".join(step.columns[:3]) + (", ..." if len(step.columns) > 3 else "")
            why.append(
                f"{n:,} dropped for a missing value in {cols} (data.missing='impute' keeps them)"
            )
        else:
            why.append(f"{n:,} dropped by '{step.action}'")
    kept = f"{c.rows_after:,} of {c.rows_before:,} rows kept"
    if why:
        kept += f", {'; '.join(why)}"
    sizes = f"{len(prepared.x_train):,} training / {len(prepared.x_val):,} validation"
    if len(prepared.x_test):
        sizes += f" / {len(prepared.x_test):,} test"
    return (
        f"appsleuth: data {prepared.info.dataset}: {kept}; {sizes} rows "
        f"({prepared.split.spec.kind} split)"
    )


def _data_source(spec: RunSpec, *, from_frame: bool, prepared: PreparedData) -> dict[str, Any]:
    """Where the run's rows came from, as ``model_metadata.json`` records it.

    ``spec.yaml`` alone cannot say: a data frame given in Python reads as ``path: null``
    there (the embedded data at its default size), and a relative ``path`` is read from
    the directory the command runs in.
    """
    # Rows without a data path that the spec did not load came from a frame, given as
    # data= or prepared in Python and given as prepared=: real rows, or generated ones of
    # another size (prepare_data(embedded_data(60000))), which spec.yaml cannot name.
    from_frame = from_frame or (
        spec.data.path is None and prepared.data_spec != spec.data.to_dict()
    )
    kind = "data frame" if from_frame else "embedded" if spec.data.path is None else "file"
    path = os.path.abspath(spec.data.path) if kind == "file" else None
    return {"kind": kind, "path": path, "rows": prepared.cleaning.rows_before}


def data_fingerprint(prepared: PreparedData) -> str:
    """A 16-hex-digit hash of the prepared table and the split's settings.

    Recorded as ``data_fingerprint`` in a run's metadata: a run is redone, not reused,
    where it differs.
    """
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(prepared.table, index=True).to_numpy().tobytes())
    h.update(json.dumps(prepared.split.describe(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def _split_fingerprint(prepared: PreparedData, data_fingerprint: str) -> str:
    """The rows on each side of the split: the data fingerprint hashes the table and the
    split's settings, which another version of a library drawing the split (scikit-learn,
    NumPy) or of appsleuth could turn into other rows; this hash changes with them."""
    split = prepared.split
    h = hashlib.sha256(data_fingerprint.encode())
    h.update(np.array([len(split.train), len(split.val), len(split.test)], np.int64).tobytes())
    for rows in (split.train, split.val, split.test):
        h.update(np.asarray(rows, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def class_weights(spec: RunSpec, prepared: PreparedData) -> dict[int, float] | None:
    """Keras' ``class_weight`` for ``spec.train.class_weight``, by class index.

    Returns:
        None for ``"none"``; otherwise a weight for every class (1.0 for a class a mapping
        leaves out).

    Raises:
        SpecError: The mapping names an app that is not a class of this task.
    """
    cw = spec.train.class_weight
    if cw == "none":
        return None
    classes = prepared.classes
    if cw == "balanced":
        counts = np.bincount(prepared.y_train, minlength=len(classes)).astype(float)
        return {
            i: float(len(prepared.y_train) / (len(classes) * c)) if c else 1.0
            for i, c in enumerate(counts)
        }
    unknown = sorted(set(cw) - set(classes))
    if unknown:
        raise SpecError(
            f"class_weight names app(s) {unknown} that are not classes of this "
            f"task; classes: {classes}"
        )
    return {i: float(cw.get(c, 1.0)) for i, c in enumerate(classes)}


# --- callbacks -----------------------------------------------------------------------------


def _callbacks(run_dir: Path, spec: RunSpec, verbose: bool) -> tuple[list[Any], dict[str, Any]]:
    keras = import_keras()
    timing: dict[str, Any] = {"epoch_seconds": []}

    class _HistoryWriter(keras.callbacks.Callback):
        """Rewrites model_history.csv after every epoch, so progress can be followed."""

        def on_train_begin(self, logs: Any = None) -> None:
            self.rows: list[dict[str, float]] = []

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.rows.append({k: float(v) for k, v in (logs or {}).items()})
            # Not waited onto the disk: a run cut short is redone, and waiting cost as
            # long as a short epoch (~6 ms a write here, more on cluster file systems).
            # The history written after training, part of the complete run, is.
            _write_history(run_dir / HISTORY, pd.DataFrame(self.rows), durable=False)

    class _EpochLine(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = logs or {}
            parts = "  ".join(f"{k} {float(v):.4f}" for k, v in logs.items())
            seconds = timing["epoch_seconds"][-1] if timing["epoch_seconds"] else 0.0
            print(
                f"epoch {epoch + 1:>3}/{spec.train.epochs}  {parts}  ({seconds:.2f} s)", flush=True
            )

    class _StopOnNaN(keras.callbacks.Callback):
        """Epoch-level: a diverged run stops at once instead of burning its epochs."""

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):
                self.model.stop_training = True

    class _DroppedInterrupt(keras.callbacks.Callback):
        """Stops at the epoch's edge where Python dropped a SIGTERM's interrupt."""

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            raise_if_dropped()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            raise_if_dropped()

    from appsleuth.engines import EpochTimer

    timer = EpochTimer(timing["epoch_seconds"])
    callbacks: list[Any] = [_DroppedInterrupt(), timer, _HistoryWriter(), _StopOnNaN()]
    es = spec.train.early_stopping
    if es is not None:
        mode = "min" if es.monitor.endswith("loss") else "max"
        stopper = keras.callbacks.EarlyStopping(
            monitor=es.monitor,
            patience=es.patience,
            min_delta=es.min_delta,
            restore_best_weights=es.restore_best,
            mode=mode,
        )
        callbacks.append(stopper)
        timing["early_stopping"] = stopper  # which epoch's weights the saved model holds
    if verbose:
        callbacks.append(_EpochLine())
    return callbacks, timing


# --- writing ------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _write_history(path: Path, history: pd.DataFrame, *, durable: bool = True) -> pd.DataFrame:
    """Write the history in the teaching column order, and return it in that order."""
    first = [c for c in RESULT_KEYS if c in history.columns]
    ordered = history[first + [c for c in history.columns if c not in first]]
    atomic_write_text(path, ordered.to_csv(index=False), durable=durable)
    return ordered


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_REPLACED = ".replaced"


def _backup_path(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}{_REPLACED}"


_RUN_FILES = frozenset(
    {METADATA, HISTORY, MODEL, PREPROCESSOR, METRICS, SPEC, LOSS_ACC_PLOT, CONFUSION_PLOT}
)


def is_own_run_dir(run_dir: Path) -> bool:
    """Whether appsleuth made ``run_dir``, so that it may delete it."""
    # Only a directory appsleuth made (its marker, or run metadata) may be deleted; an
    # empty one holds nothing to lose, and one holding only run files (with their
    # temporary names) is a partial run from before the marker existed.
    if (run_dir / RUN_MARKER).is_file() or (run_dir / METADATA).is_file():
        return True
    for entry in run_dir.iterdir():
        name = target_of_temporary(entry.name) or entry.name
        if not entry.is_file() or name not in _RUN_FILES:
            return False
    return True


def _prepare_run_dir(run_dir: Path, *, force: bool) -> tuple[Path | None, _RunLock]:
    """Make ``run_dir`` a fresh, marked and locked run directory.

    An incomplete or failed run of appsleuth is redone from scratch, so nothing of the old
    attempt can be mistaken for a result. A complete run replaced with ``force`` is moved
    aside, not deleted, until the new one is complete; a directory appsleuth did not make
    is never touched, nor one that another process is training right now.

    Returns:
        Where a forced-over complete run waits (None if none), and the lock this process
        holds on the directory until it releases it (or exits).
    """
    if run_dir.is_symlink():
        # Replacing it would delete or move what the link points to, somewhere else.
        raise RunExistsError(
            f"run directory {run_dir} is a symbolic link (to {os.readlink(run_dir)}); "
            f"appsleuth trains only into a directory of its own there: remove the link, or "
            f"train where it points (--out)"
        )
    backup = _backup_path(run_dir)
    if backup.is_dir() and run_status(run_dir) != "complete":
        # A forced retrain was interrupted: the run it was replacing comes back first.
        if run_dir.exists():
            if not is_own_run_dir(run_dir):
                raise RunExistsError(_foreign_dir_message(run_dir))
            _remove_unused(run_dir)
        backup.rename(run_dir)
    status = run_status(run_dir)
    if status == "complete" and not force:
        raise RunExistsError(
            f"run directory {run_dir} already holds a complete run; pass "
            f"--force (force=True) to train it again"
        )
    moved = None
    if status == "complete":
        if backup.exists():
            shutil.rmtree(backup)  # left by a replacement that completed
        run_dir.rename(backup)
        moved = backup
    elif status != "missing":
        if not run_dir.is_dir() or not is_own_run_dir(run_dir):
            raise RunExistsError(_foreign_dir_message(run_dir))
        _remove_unused(run_dir)
    try:
        # Another process may make it between the check above and here: the marker's
        # lock decides which of the two trains.
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _RunLock.create(run_dir / RUN_MARKER)
    except BaseException as exc:
        # e.g. a full disk: the complete run stays the result (unless another process
        # took the directory meanwhile: that one trains there now).
        if moved is not None and not isinstance(exc, RunInUseError):
            _restore_backup(run_dir, moved)
        raise
    return moved, lock


def _remove_unused(run_dir: Path) -> None:
    """Delete ``run_dir`` unless another process is training in it.

    Its marker is locked (made, if missing) while the directory is deleted: a process
    starting the same run meanwhile finds the lock taken, or no marker of its own left
    (:meth:`_RunLock.create` refuses both), so it never trains in a directory being
    deleted, nor this one in a directory it just made.

    Raises:
        RunInUseError: Another process holds the lock.
    """
    try:
        fd = os.open(run_dir / RUN_MARKER, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        return  # already deleted by another process starting this run
    lock = _RunLock(fd)
    try:
        if not lock._try():
            raise RunInUseError(_in_use_message(run_dir))
        shutil.rmtree(run_dir)
    finally:
        lock.release()


class _RunLock:
    """An exclusive lock on a run directory's marker, held while this process trains.

    ``flock`` locks go away with the process, also after ``kill -9``, so a stale lock
    never blocks a re-run.
    """

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def create(cls, marker: Path) -> _RunLock:
        """Lock ``marker`` (made if missing) in a run directory that holds nothing else.

        Raises:
            RunInUseError: Another process holds the lock, or deleted or filled the
                directory since this one made it (it is starting the same run).
        """
        run_dir = marker.parent
        try:
            fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise RunInUseError(_in_use_message(run_dir)) from None  # directory deleted
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(marker)) from exc
        lock = cls(fd)
        try:
            if not lock._try() or not lock._holds(marker) or _holds_more_than(marker):
                raise RunInUseError(_in_use_message(run_dir))
            try:
                os.ftruncate(fd, 0)
                os.write(fd, b"This directory is an appsleuth run; appsleuth may replace it.\n")
            except OSError as exc:
                # A write error (a full disk) carries no file name: name the marker.
                raise OSError(exc.errno, exc.strerror, str(marker)) from exc
        except BaseException:
            lock.release()
            raise
        return lock

    def _holds(self, marker: Path) -> bool:
        """Whether the locked file is still ``marker``, not one deleted since it was opened."""
        try:
            now = os.stat(marker)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._fd)  # type: ignore[arg-type]
        return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)

    def _try(self) -> bool:
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no locking
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            # Only "held by someone else" means in use. A file system without flock
            # (Lustre without -o flock, NFS mounted nolock) just has no lock to offer.
            return exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        return True

    def release(self) -> None:
        """Give the directory up (closing the descriptor drops the lock)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _holds_more_than(marker: Path) -> bool:
    """Whether the run directory of ``marker`` holds anything else (NFS's own files aside)."""
    return any(
        entry.name != marker.name and not entry.name.startswith(".nfs")
        for entry in os.scandir(marker.parent)
    )


def run_in_use(run_dir: Path) -> bool:
    """Whether another process holds ``run_dir``'s lock (is training it right now)."""
    try:
        # Opened for writing: NFS grants exclusive locks only on files open for writing.
        fd = os.open(run_dir / RUN_MARKER, os.O_RDWR)
    except OSError:
        return False  # no (writable) marker: no process of this version is training there
    lock = _RunLock(fd)
    try:
        return not lock._try()
    finally:
        lock.release()


def _in_use_message(run_dir: Path) -> str:
    return (
        f"run directory {run_dir} is being trained by another process right now; wait for "
        f"it to finish (or stop it), or choose another run name"
    )


def _foreign_dir_message(run_dir: Path) -> str:
    return (
        f"{run_dir} exists but is not an appsleuth run directory (it has no "
        f"{METADATA} and no {RUN_MARKER}), so appsleuth will not replace it; move it away or "
        f"choose another run name"
    )


def set_aside_note(run_dir: str | os.PathLike[str]) -> str | None:
    """Where the complete run of an incomplete ``run_dir`` waits, set aside by ``--force``.

    ``train --force`` moves the complete run it replaces to a hidden sibling until the
    new one is complete, and puts it back when the new one fails or is interrupted. A
    process killed outright (``kill -9``, out of memory) cannot: the next ``train`` of that
    run puts it back. Until then, readers that find no complete run say where it is.

    Returns:
        A sentence saying where the set-aside run is and how to get it back, or None when
        ``run_dir`` is complete or no complete run is set aside.
    """
    run_dir = Path(run_dir)
    backup = _backup_path(run_dir)
    if run_status(run_dir) == "complete" or run_status(backup) != "complete":
        return None
    if run_in_use(run_dir):
        return (
            f"it is being trained again right now (train --force); its previous complete "
            f"run waits in {backup} until then"
        )
    return (
        f"its complete run was set aside in {backup} by a 'train --force' that was "
        f"killed; run the same train command without --force to put it back"
    )


def set_aside_notes(directory: str | os.PathLike[str]) -> list[str]:
    """:func:`set_aside_note` for ``directory`` and every run directory below it.

    Returns:
        ``"<run_dir>: <note>"`` for each run whose complete run is set aside.
    """
    directory = Path(directory)
    notes = []
    candidates = [
        directory,
        *(
            b.with_name(b.name[1 : -len(_REPLACED)])
            for b in directory.glob(f"**/.*{_REPLACED}")
            if b.is_dir()
        ),
    ]
    for run_dir in candidates:
        note = set_aside_note(run_dir)
        if note:
            notes.append(f"{run_dir}: {note}")
    return notes


def _restore_backup(run_dir: Path, backup: Path) -> None:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    backup.rename(run_dir)


# --- training -------------------------------------------------------------------------------


def train(
    spec: RunSpec | None = None,
    *,
    data: pd.DataFrame | None = None,
    out: str | os.PathLike[str] = "runs",
    name: str | None = None,
    seed_suffix: bool = False,
    force: bool = False,
    skip_complete: bool = False,
    verbose: bool | None = None,
    callbacks: Sequence[Any] = (),
    dataset_name: str | None = None,
    log: Callable[[str], None] | None = None,
    prepared: PreparedData | None = None,
) -> RunResult:
    """Train one model and leave a complete, self-describing run directory.

    Args:
        spec: Data, model and training. Defaults to ``RunSpec()`` (the teaching baseline
            on the embedded synthetic data).
        data: Use this table instead of loading ``spec.data.path``. Defaults to None
            (the spec's file, or the embedded data when it names none).
        out: The experiment directory; the run directory is created inside. Defaults
            to ``runs``.
        name: Run directory name. Defaults to ``spec.run_name(seed_suffix=...)``.
        seed_suffix: Append the seed to the default name. Defaults to False.
        force: Retrain over a complete run. Defaults to False.
        skip_complete: Return a complete run as it is instead of raising. Defaults to False.
        verbose: One line per epoch. Defaults to True when stdout is a terminal or a
            notebook.
        callbacks: Extra Keras callbacks (epoch granularity). Defaults to none.
        dataset_name: Name recorded as ``dataset``. Defaults to the table's name.
        log: Where notes (engine fallback, summary) go. Defaults to print on stderr.
        prepared: The data already cleaned, split and preprocessed for ``spec.data``
            (sweeps reuse it across trials); its split must be ``spec.data.split``.
            Defaults to preparing it here.

    Returns:
        The :class:`RunResult`.

    Raises:
        RunExistsError: The run is complete and neither ``force`` nor ``skip_complete``,
            or the run directory holds a complete run of another spec or data.
        RunInUseError: Another process is training in the run directory right now.
        TrainingDivergedError: The loss became NaN or infinite (the run is recorded as
            failed).
        SpecError, DataError: Invalid spec, arguments (``out`` a file, say) or data.
    """
    spec = RunSpec() if spec is None else spec
    if not isinstance(spec, RunSpec):
        raise SpecError(
            f"spec must be a RunSpec (RunSpec.from_dict({{...}}) builds one from a mapping); "
            f"received {type(spec).__name__}"
        )
    if not isinstance(out, str | os.PathLike):
        raise SpecError(f"out must be a directory path; received out={out!r}")
    refuse_nul(out, "out", SpecError)
    if Path(out).exists() and not Path(out).is_dir():
        raise SpecError(
            f"out must be a directory (the run directory is made inside it); {out} is a "
            f"file; received out={str(out)!r}"
        )
    if dataset_name is not None and (not isinstance(dataset_name, str) or not dataset_name):
        # Recorded as the metadata's "dataset", which reports and results tables show.
        raise SpecError(
            f"dataset_name must be a non-empty text (or None for the table's own name); "
            f"received dataset_name={dataset_name!r}"
        )
    _check_callbacks(callbacks)
    if log is not None and not callable(log):
        raise SpecError(f"log must be a function taking one text; received log={log!r}")
    if prepared is not None:
        _check_prepared_for(spec, prepared)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if verbose is None:
        verbose = _watched()
    run_name = validate_name(name if name is not None else spec.run_name(seed_suffix=seed_suffix))
    run_dir = Path(out) / run_name
    complete = not force and run_status(run_dir) == "complete"
    if complete:
        # Prepared first, so a complete run of other data is never handed back as this one.
        if prepared is None:
            prepared = prepare_run_data(spec, _table_for(spec, data), from_spec=data is None)
        conflict = run_conflict(run_dir, spec, data_fingerprint(prepared))
        if conflict:
            raise RunExistsError(
                f"run directory {run_dir} holds a complete run of {conflict}; name the run "
                f"differently (--name, name=) or train into another --out; --force "
                f"(force=True) would replace that run"
            )
        if skip_complete:
            return _existing_result(run_dir)
        raise RunExistsError(
            f"run directory {run_dir} already holds a complete run of this spec and data; "
            f"pass --force (force=True) to train it again; from Python, skip_complete=True "
            f"returns it as it is"
        )

    started = time.time()
    # Seeding for the run resets Python's and NumPy's global generators; the caller's
    # notebook gets its own sequences back afterwards.
    global_rng = (random.getstate(), np.random.get_state())
    keras = import_keras()
    from appsleuth.engines import resolve_engine, run_engine
    from appsleuth.model import build_model, loss_name, targets_for

    if prepared is None:
        prepared = prepare_run_data(spec, _table_for(spec, data), from_spec=data is None)
    # Also for data prepared by the caller (train --config of a run's spec prepares it to
    # check it): what training sees is worth a line either way.
    log(_data_line(prepared))
    classes = prepared.classes
    replaced, lock = _prepare_run_dir(run_dir, force=force)
    try:
        keras.utils.set_random_seed(spec.train.seed)
        model = build_model(spec.model, prepared.preprocessor.n_outputs, classes, spec.train)
        requested = None if spec.train.engine == "auto" else spec.train.engine
        engine, note = resolve_engine(requested, model)
        if note:
            log(f"appsleuth: {note}")
        loss = loss_name(spec.train, len(classes))
        y_train = targets_for(prepared.y_train, loss, len(classes))
        y_val = targets_for(prepared.y_val, loss, len(classes))
        cbs, timing = _callbacks(run_dir, spec, verbose)
        history_cb = run_engine(
            engine,
            model,
            prepared.x_train,
            y_train,
            validation_data=(prepared.x_val, y_val),
            epochs=spec.train.epochs,
            batch_size=spec.train.batch_size,
            seed=spec.train.seed,
            callbacks=[*cbs, *callbacks],
            class_weight=class_weights(spec, prepared),
            verbose=0,
        )
        history = _write_history(run_dir / HISTORY, pd.DataFrame(history_cb.history))
        bad = ~np.isfinite(history["loss"].to_numpy(dtype=float))
        if bad.any():
            raise TrainingDivergedError(
                f"training diverged: loss is {history['loss'].iloc[int(bad.argmax())]} at "
                f"epoch {int(bad.argmax()) + 1}; lower the learning rate"
            )
        metrics = _evaluate_prepared(model, prepared, history)
        _write_json(run_dir / METRICS, metrics)
        # Keras writes the file in place, and its full-disk error names no file.
        with atomic_output(run_dir / MODEL, keep_suffix=True) as tmp:
            model.save(tmp)
        prepared.preprocessor.save(run_dir / PREPROCESSOR)
        import yaml

        atomic_write_text(run_dir / SPEC, yaml.safe_dump(spec.to_dict(), sort_keys=False))
        _save_plots(run_dir, history, metrics, run_name)
        metadata = _metadata(
            spec=spec,
            run_name=run_name,
            prepared=prepared,
            history=history,
            metrics=metrics,
            engine=engine,
            engine_note=note,
            timing=timing,
            started=started,
            run_dir=run_dir,
            dataset_name=dataset_name,
            source=_data_source(spec, from_frame=data is not None, prepared=prepared),
        )
        raise_if_dropped()  # a killed run is not recorded complete
        _write_json(run_dir / METADATA, metadata)  # last: the run is now complete
    except BaseException as exc:
        if replaced is not None:
            # The complete run that --force was replacing stays the result.
            _restore_backup(run_dir, replaced)
            raise
        if not isinstance(exc, Exception):
            raise  # interrupted, not failed: no metadata, so re-running redoes it
        error = f"{type(exc).__name__}: {exc}"
        # A full disk that failed the run fails its record too: the run then stays
        # incomplete (redone by the same command), and its own error is the one raised.
        with contextlib.suppress(OSError):
            _write_json(run_dir / METADATA, _failed_record(spec, run_name, error, started))
        raise
    finally:
        with contextlib.suppress(Exception):
            keras.backend.clear_session()
        with contextlib.suppress(Exception):
            release_programs_if_grown()  # a sweep worker trains shape after shape
        random.setstate(global_rng[0])
        np.random.set_state(global_rng[1])
        lock.release()
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    last = metadata["last_results"]
    # Early stopping may have restored an earlier epoch: say which one the numbers are.
    kept = metadata["results_epoch"]
    restored = (
        f" (epoch {kept}, whose weights early stopping restored)" if kept < len(history) else ""
    )
    epochs = f"{len(history)} epoch{'s' * (len(history) != 1)}"
    log(
        f"appsleuth: {run_name}: val_accuracy {last['val_accuracy']:.4f}, val_loss "
        f"{last['val_loss']:.4f}{restored} after {epochs} ({metadata['engine']} "
        f"engine, {metadata['wall_time_s']:.1f} s, {metrics['fit']['diagnosis']}) -> {run_dir}"
    )
    return RunResult(run_dir=run_dir, metadata=metadata, history=history, metrics=metrics)


def _check_prepared_for(spec: RunSpec, prepared: Any) -> None:
    """Refuse data prepared with another split than the spec's, which the run would record
    as the spec's while its numbers came from the other split."""
    if not isinstance(prepared, PreparedData):
        raise SpecError(
            f"prepared must be the PreparedData that prepare_data returns; received "
            f"{type(prepared).__name__}"
        )
    if prepared.split.spec != spec.data.split:
        raise SpecError(
            f"prepared was split with {prepared.split.spec.to_dict()}, but the spec's "
            f"data.split is {spec.data.split.to_dict()}; prepare the data with the spec's "
            f"split (prepare_data(df, split=spec.data.split, ...)) or leave prepared out"
        )


def _failed_record(spec: RunSpec, run_name: str, error: str, started: float) -> dict[str, Any]:
    return {
        "status": "failed",
        "format_version": _RUN_FORMAT,
        "error": error,
        "model_code": run_name,
        "timestamp": _now(),
        "appsleuth_version": __version__,
        "software": describe_software(),
        "hidden_neurons": list(spec.model.hidden),
        "learning_rate": spec.train.learning_rate,
        "batch_size": spec.train.batch_size,
        "epochs": spec.train.epochs,
        "seed": spec.train.seed,
        "wall_time_s": time.time() - started,
        "SLURM_JOB_ID": slurm_environment().get("SLURM_JOB_ID"),
        "spec": spec.to_dict(),
    }


def record_failed_run(
    run_dir: str | os.PathLike[str], spec: RunSpec, error: str, *, started: float
) -> bool:
    """Record a run that failed before :func:`train` could start it (e.g. its data).

    Writes the failed-run metadata ``train`` writes, so that status and result tables
    show the failure. A complete run is never replaced, nor a directory appsleuth did
    not make.

    Args:
        run_dir: The run directory.
        spec: The run's spec.
        error: ``"Type: message"`` of the failure.
        started: When the attempt began (``time.time()``).

    Returns:
        True when the record was written; False when a complete run is kept instead.

    Raises:
        RunExistsError: ``run_dir`` exists and is not appsleuth's.
    """
    run_dir = Path(run_dir)
    try:
        _, lock = _prepare_run_dir(run_dir, force=False)
    except RunExistsError:
        if run_status(run_dir) == "complete":  # also one an interrupted --force put back
            return False
        raise
    try:
        _write_json(run_dir / METADATA, _failed_record(spec, run_dir.name, error, started))
    finally:
        lock.release()
    return True


def _check_callbacks(callbacks: Any) -> None:
    """``callbacks`` is a sequence of Keras callbacks (an ordinary function is not one)."""
    keras = import_keras()
    if isinstance(callbacks, keras.callbacks.Callback | str) or not isinstance(callbacks, Sequence):
        raise SpecError(
            f"callbacks must be a list of keras.callbacks.Callback objects; received "
            f"callbacks={callbacks!r}"
        )
    wrong = [c for c in callbacks if not isinstance(c, keras.callbacks.Callback)]
    if wrong:
        raise SpecError(
            f"callbacks must be keras.callbacks.Callback objects (wrap a function in "
            f"keras.callbacks.LambdaCallback); received {wrong[0]!r}"
        )


def run_conflict(run_dir: Path, spec: RunSpec, fingerprint: str) -> str | None:
    """What makes the complete run in ``run_dir`` another experiment, or None if it is this one.

    Returns:
        E.g. ``another spec (differs in train.seed)`` or ``other data (data fingerprint
        ab12... there, cd34... here)``.
    """
    metadata = read_metadata(run_dir) or {}
    stored = metadata.get("spec")
    wanted = json.loads(json.dumps(spec.to_dict(), default=_json_default))
    if stored != wanted:
        differ = _differences(wanted, stored if isinstance(stored, dict) else {})
        return f"another spec (differs in {', '.join(differ) or 'its recorded spec'})"
    there = metadata.get("data_fingerprint")
    if there != fingerprint:
        return f"other data (data fingerprint {there} there, {fingerprint} here)"
    return None


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted names (``train.learning_rate``) of the fields where two spec dicts differ."""
    names = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            names += [f"{key}.{inner}" for inner in _differences(x, y)]
        elif x != y:
            names.append(key)
    return names


def _existing_result(run_dir: Path) -> RunResult:
    path = run_dir / HISTORY
    try:
        history = read_record_table(path)
        path = run_dir / METRICS
        metrics = json.loads(read_record_text(path))
    except (OSError, ValueError, RecursionError) as exc:
        # The bounded reader's reason ("it is a named pipe, ...") names no file by itself.
        raise DataError(
            f"{path} of the complete run in {run_dir} cannot be read: {exc}; train with "
            f"force=True (--force) to train that run again"
        ) from exc
    return RunResult(
        run_dir=run_dir,
        metadata=read_metadata(run_dir) or {},
        history=history,
        metrics=metrics,
        skipped=True,
    )


def predict_proba(
    model: Any, x: np.ndarray, n_classes: int, *, batch_size: int = 65536
) -> np.ndarray:
    """Class probabilities, shape (n, n_classes), for a binary or multi-class model.

    On the JAX backend the forward pass is one compiled function applied to fixed-size
    chunks (the last one padded), so any number of rows costs a single compilation. On
    TensorFlow the model is called eagerly, chunk by chunk: ``predict`` traces a new
    ``tf.function`` for every model, which costs more than the pass itself for these
    small networks, and from the fifth model in a process (a sweep worker's fifth
    trial, a notebook's fifth run) TensorFlow warns about "excessive retracing".
    """
    keras = import_keras()
    backend = keras.backend.backend()
    if backend == "jax" and len(x):
        p = _jax_forward(model, np.asarray(x, dtype=np.float32), batch_size)
    elif backend == "tensorflow" and len(x):
        x = np.asarray(x, dtype=np.float32)
        p = np.concatenate(
            [
                keras.ops.convert_to_numpy(model(x[start : start + batch_size], training=False))
                for start in range(0, len(x), batch_size)
            ]
        )
    else:
        p = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    if n_classes == 2 and p.ndim == 2 and p.shape[1] == 1:
        p = np.hstack([1.0 - p, p])
    return p


def _jax_forward(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    import jax

    fn = getattr(model, "_appsleuth_forward", None)
    if fn is None:

        def forward(trainable: Any, non_trainable: Any, xb: Any) -> Any:
            return model.stateless_call(trainable, non_trainable, xb, training=False)[0]

        fn = jax.jit(forward)
        model._appsleuth_forward = fn
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    chunk = min(batch_size, max(1024, 1 << int(np.ceil(np.log2(len(x))))))
    outputs = []
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        n = len(part)
        if n < chunk:  # pad so that the compiled shape is reused
            part = np.concatenate([part, np.zeros((chunk - n, x.shape[1]), np.float32)])
        outputs.append(np.asarray(fn(trainable, non_trainable, part))[:n])
    return np.concatenate(outputs)


def _evaluate_prepared(model: Any, prepared: PreparedData, history: pd.DataFrame) -> dict[str, Any]:
    n_classes = len(prepared.classes)
    proba = predict_proba(model, prepared.x_val, n_classes)
    metrics: dict[str, Any] = {
        "split": prepared.split.describe(),
        "evaluated_on": "validation",
        **classification_metrics(
            prepared.y_val,
            proba.argmax(axis=1),
            prepared.classes,
            y_score=proba[:, 1] if n_classes == 2 else None,
            malware_score=malware_score(proba, prepared.classes),
        ),
    }
    if len(prepared.x_test):
        tp = predict_proba(model, prepared.x_test, n_classes)
        test_score = malware_score(tp, prepared.classes)
        metrics["test"] = classification_metrics(
            prepared.y_test,
            tp.argmax(axis=1),
            prepared.classes,
            y_score=tp[:, 1] if n_classes == 2 else None,
            malware_score=test_score,
        )
        if test_score is not None:
            # Thresholds chosen on the test rows would flatter them as they flatter the
            # validation rows: the test rows measure the validation rows' choice.
            is_malware = prepared.y_test == list(prepared.classes).index(MALWARE_APP)
            metrics["test"]["malware"]["operating_points"] = rates_at_thresholds(
                is_malware, test_score, metrics["malware"]["operating_points"]
            )
            metrics["test"]["malware"]["thresholds_chosen_on"] = "validation"
    majority = None
    if len(prepared.y_val):
        counts = np.bincount(prepared.y_val, minlength=n_classes)
        top = int(counts.argmax())
        majority = (str(prepared.classes[top]), float(counts[top] / counts.sum()))
    metrics["fit"] = (
        diagnose_fit(history, majority=majority, n_val=len(prepared.y_val) or None)
        if {"val_loss", "val_accuracy"} <= set(history)
        else {"diagnosis": "unknown", "reason": "no validation history", "rule": ""}
    )
    return metrics


def _save_plots(run_dir: Path, history: pd.DataFrame, metrics: dict[str, Any], title: str) -> None:
    from appsleuth.plots import off_screen, plot_confusion_matrix, plot_loss_accuracy, save_figure

    with off_screen():  # saved, not shown: a notebook's backend never sees these figures
        save_figure(plot_loss_accuracy(history, title=title), run_dir / LOSS_ACC_PLOT)
        cm = metrics["confusion_matrix"]
        save_figure(
            plot_confusion_matrix(cm["counts"], cm["labels"], title=f"{title}: validation"),
            run_dir / CONFUSION_PLOT,
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _metadata(
    *,
    spec: RunSpec,
    run_name: str,
    prepared: PreparedData,
    history: pd.DataFrame,
    metrics: dict[str, Any],
    engine: str,
    engine_note: str | None,
    timing: dict[str, Any],
    started: float,
    run_dir: Path,
    dataset_name: str | None,
    source: dict[str, Any],
) -> dict[str, Any]:
    keras = import_keras()
    from appsleuth.model import loss_name

    # The saved model's epoch: the best one when early stopping restored its weights, so
    # that the reported results are those of the model that predicts.
    results_epoch = len(history)
    stopper = timing.get("early_stopping")
    if stopper is not None and stopper.restore_best_weights and stopper.best_weights is not None:
        results_epoch = int(stopper.best_epoch) + 1
    last = history.iloc[results_epoch - 1]
    seconds = timing["epoch_seconds"]
    slurm = slurm_environment()
    fingerprint = data_fingerprint(prepared)
    return {
        "status": "complete",
        "format_version": _RUN_FORMAT,
        "model_code": run_name,
        "dataset": dataset_name or prepared.info.dataset,
        "synthetic": prepared.info.synthetic,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        # Histories agree only on the same backend, and its version can change them too.
        "backend_version": backend_version(),
        "engine": engine,
        "engine_note": engine_note,
        "appsleuth_version": __version__,
        # Every version that can change the numbers, to reproduce them with.
        "software": describe_software(),
        "SLURM_JOB_ID": slurm.get("SLURM_JOB_ID"),
        "slurm": slurm,
        "timestamp": _now(),
        "started": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "optimizer": spec.train.optimizer,
        "loss": loss_name(spec.train, len(prepared.classes)),
        "hidden_neurons": list(spec.model.hidden),
        "learning_rate": spec.train.learning_rate,
        "batch_size": spec.train.batch_size,
        "epochs": spec.train.epochs,
        "epochs_run": len(history),
        "seed": spec.train.seed,
        "last_results": {k: float(last[k]) for k in RESULT_KEYS},
        "results_epoch": results_epoch,
        "fit_diagnosis": metrics["fit"]["diagnosis"],
        "task": prepared.preprocessor.task,
        "classes": prepared.classes,
        "n_features": prepared.preprocessor.n_outputs,
        "n_train": len(prepared.y_train),
        "n_val": len(prepared.y_val),
        "n_test": len(prepared.y_test),
        "split": prepared.split.describe(),
        "data_fingerprint": fingerprint,
        "split_fingerprint": _split_fingerprint(prepared, fingerprint),
        "data_source": source,
        "wall_time_s": time.time() - started,
        "seconds_per_epoch": steady_seconds_per_epoch(seconds),
        "first_epoch_s": seconds[0] if seconds else None,
        "hardware": describe_hardware(),
        "files": {n: _sha256(run_dir / n) for n in (MODEL, PREPROCESSOR)},
        "spec": spec.to_dict(),
    }


# --- loading ---------------------------------------------------------------------------------


def run_path(run: str | os.PathLike[str] | RunResult | LoadedRun) -> Path:
    """The directory of ``run``: a path, the result :func:`train` returned, or a run
    :func:`load_run` returned.

    Raises:
        DataError: ``run`` is none of these.
    """
    if isinstance(run, RunResult | LoadedRun):
        return Path(run.run_dir)
    if isinstance(run, str | os.PathLike):
        refuse_nul(run, "run_dir")
        return Path(run)
    raise DataError(
        f"a run must be given as a run (or sweep) directory path, the result of train() or "
        f"a run from load_run(); received {type(run).__name__}"
    )


def missing_run_message(path: Path, what: str) -> str:
    """Why ``path``, which is no directory, is no run: absent, or a file (``model.keras``)."""
    if path.exists():
        # A Keras user hands over the model file; its directory holds the rest.
        return (
            f"{what} {path} is a file, not a run directory; give the directory that holds "
            f"it ({path.parent}): prediction needs the preprocessing saved beside the model"
        )
    return f"{what} {path} does not exist"


def load_run(run_dir: str | os.PathLike[str] | RunResult | LoadedRun) -> LoadedRun:
    """Load a complete run's model (Keras safe mode) and preprocessing.

    A run from ``load_run`` is loaded again from its directory (e.g. after retraining it).

    Raises:
        DataError: The directory is not a complete appsleuth run (one that holds runs
            below it is named with them), comes from another format version, was
            tampered with, or its model holds arbitrary code.
    """
    keras = import_keras()
    run_dir = run_path(run_dir)
    status = run_status(run_dir)
    note = set_aside_note(run_dir)
    if status == "missing" and note is None:
        raise DataError(missing_run_message(run_dir, "run directory"))
    if status != "complete":
        below = _complete_runs_below(run_dir) if note is None else []
        if below:
            raise DataError(
                f"{run_dir} is not a run directory but holds {len(below)} complete run(s) "
                f"below it, e.g. {below[0]}; give one of them (predict and predict_file "
                f"also take this directory and use its best run)"
            )
        # A failed run recorded why: that is what the user needs to train it again.
        error = (read_metadata(run_dir) or {}).get("error") if status == "failed" else None
        failed = f"it failed with {error}; " if error else ""
        raise DataError(
            f"run directory {run_dir} is not a complete run (status {status}); {failed}"
            + (note or "train it again")
        )
    meta = read_metadata(run_dir) or {}
    if meta.get("format_version") != _RUN_FORMAT:
        raise DataError(
            f"run directory {run_dir} has format_version "
            f"{meta.get('format_version')!r}; this appsleuth ({__version__}) reads "
            f"version {_RUN_FORMAT}"
        )
    for fname in (MODEL, PREPROCESSOR):
        path = run_dir / fname
        if not path.exists():
            raise DataError(f"run directory {run_dir} lacks {fname}")
        if not path.is_file():
            # A link to /dev/zero or a pipe would keep the checksum reading for ever.
            raise DataError(f"{path} is not a regular file; refusing to use it")
        expected = (meta.get("files") or {}).get(fname)
        if expected is None or _sha256(path) != expected:
            raise DataError(
                f"{path} does not match the checksum recorded when the run "
                f"finished: the file was changed or replaced; refusing to use it"
            )
    preprocessor = Preprocessor.load(run_dir / PREPROCESSOR)
    try:
        model = keras.models.load_model(run_dir / MODEL, safe_mode=True, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise DataError(
                f"{run_dir / MODEL} contains arbitrary code (for example a Lambda "
                f"layer); appsleuth loads models in Keras safe mode and refuses "
                f"it"
            ) from exc
        raise DataError(f"{run_dir / MODEL} cannot be loaded: {exc}") from exc
    except Exception as exc:
        raise DataError(f"{run_dir / MODEL} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    _check_model_fits(model, preprocessor, run_dir)
    return LoadedRun(run_dir=run_dir, model=model, preprocessor=preprocessor, metadata=meta)


def _complete_runs_below(path: Path) -> list[Path]:
    """The complete runs below ``path`` when no training ever started in ``path`` itself
    (an experiment or sweep directory), else none."""
    if not path.is_dir() or (path / METADATA).exists() or (path / RUN_MARKER).exists():
        return []
    return sorted(
        meta.parent
        for meta in path.glob(f"*/**/{METADATA}")
        if not any(part.startswith(".") for part in meta.parent.relative_to(path).parts)
        and run_status(meta.parent) == "complete"
    )


def _check_model_fits(model: Any, pre: Preprocessor, run_dir: Path) -> None:
    """The model's input and output widths agree with the preprocessing's columns and classes.

    Checksums stop accidental damage; this stops a preprocessing file that was edited and
    re-checksummed, which would otherwise map outputs to the wrong class names.
    """
    n_classes = len(pre.classes)
    expected_out = 1 if n_classes == 2 else n_classes
    try:
        n_in = int(model.inputs[0].shape[-1])
        n_out = int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        raise DataError(f"{run_dir / MODEL} is not a model with one input and one output") from None
    if n_in != pre.n_outputs:
        raise DataError(
            f"{run_dir / MODEL} takes {n_in} input column(s) but {run_dir / PREPROCESSOR} "
            f"produces {pre.n_outputs}; the two files do not belong together"
        )
    if n_out != expected_out:
        raise DataError(
            f"{run_dir / MODEL} has {n_out} output(s) but {run_dir / PREPROCESSOR} names "
            f"{n_classes} classes (expected {expected_out} output(s)); the two files do not "
            f"belong together"
        )


def check_used_columns_unique(df: pd.DataFrame, pre: Preprocessor, where: str) -> None:
    """Raise DataError when a column the model reads (a feature or the label) is repeated.

    ``df[name]`` of a repeated name is a table, not a column: every later step would fail
    with a pandas error that names neither the column nor the remedy. Repeated names of
    columns the model does not read are harmless and pass.
    """
    used = {*pre.input_columns, pre.label}
    twice = [c for c in repeated(df.columns) if c in used]
    if twice:
        raise DataError(
            f"{where} has more than one column named {', '.join(map(repr, twice))}; the "
            f"model reads each of its feature columns (and the label) from one column: "
            f"drop or rename the copies (e.g. df.loc[:, ~df.columns.duplicated()])"
        )


def recorded_operating_points(run_dir: Path) -> list[dict[str, Any]] | None:
    """The Moriarty operating points the run's ``metrics.json`` records, or None (a run
    trained before they were recorded, a task without Moriarty, a damaged file)."""
    points = operating_points_of(read_json_object(run_dir / METRICS) or {})
    if points is None or not all(isinstance(p, dict) for p in points):
        return None
    return points


def _check_recorded_thresholds(path: Path, points: list[dict[str, Any]]) -> None:
    """Refuse recorded thresholds that are no score: a damaged ``metrics.json``.

    Raises:
        AppSleuthError: A threshold is neither None (none chosen) nor a number in [0, 1].
    """
    for point in points:
        threshold = point.get("threshold")
        # NaN flags no row: it would be reported as a measured detection rate of 0.
        if threshold is not None and not (is_number(threshold) and 0 <= threshold <= 1):
            raise AppSleuthError(
                f"{path} records threshold={threshold!r} for a false-alarm rate of "
                f"{point.get('false_alarm_target')!r}; expected a score in [0, 1] (or null "
                f"where none was chosen): the file is damaged; train the run again"
            )


def evaluate_run(
    run_dir: str | os.PathLike[str] | RunResult | LoadedRun, data: pd.DataFrame
) -> dict[str, Any]:
    """Score a trained run on labelled data with the preprocessing fitted at training time.

    Rows missing a feature value or their label are left out and counted (``rows_skipped``).
    A run trained with ``missing="impute"`` fills missing feature values instead, and
    counts the evaluated rows it filled (``rows_filled``; 0 for other runs).
    For a one-vs-rest run, apps other than the positive one count as its rest class.
    Rows labelled with an app the model was not trained on cannot be scored: as in
    :func:`~appsleuth.predict.predict_file`, they are left out of the metrics, counted
    (``rows_with_unknown_label``) and named (``unknown_labels``), with a warning.

    Args:
        run_dir: A run directory, the result of :func:`train`, or a run from :func:`load_run`.
        data: A labelled table carrying the model's feature columns.

    Returns:
        Metrics as in ``metrics.json`` plus ``rows_skipped``, ``rows_filled``,
        ``rows_with_unknown_label`` and ``unknown_labels`` (sorted). Moriarty's
        operating points measure the thresholds the run chose on its validation rows
        (``thresholds_chosen_on: "validation"``), as the held-out test rows do; for a
        run that recorded none, they are chosen on these rows (and flatter them).

    Raises:
        DataError: The table lacks a feature or the label column (or holds one twice),
            a feature column holds dates, durations or complex numbers, or no row with
            every feature value is labelled with an app the model knows.
        AppSleuthError: The run's ``metrics.json`` records a threshold that is no score.
    """
    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir)
    pre = run.preprocessor
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"evaluate_run needs a labelled DataFrame; received {type(data).__name__}")
    where = "the table given to evaluate_run"
    check_used_columns_unique(data, pre, where)
    # Dates or durations would be scaled as their integer nanoseconds, and scored.
    check_feature_dtypes(data, pre.numeric_features, where)
    if pre.label not in data.columns:
        raise DataError(f"the data has no label column {pre.label!r}; evaluation needs labels")
    labels = pre.task_labels(data[pre.label])
    skip = pre.missing_rows(data) | labels.isna().to_numpy()
    foreign = ~skip & ~labels.isin(pre.classes).to_numpy()
    unknown = sorted({str(v) for v in labels[foreign]})
    if foreign.any():
        # A raw SherLock table holds hundreds of apps: name ten, as predict does.
        named = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        if foreign.sum() == (~skip).sum():
            raise DataError(
                f"nothing to evaluate: every row with its feature values is labelled with an "
                f"app the model was not trained on ({named}); the model's classes are "
                f"{pre.classes}"
            )
        warn(
            f"evaluate_run: {int(foreign.sum()):,} row(s) are labelled with app(s) the model "
            f"was not trained on ({named}); they are left out of the metrics, "
            f"which cover the {int((~skip & ~foreign).sum()):,} row(s) of its classes"
        )
    # Only the model's input columns are copied: a wide table's other columns would
    # double the memory for nothing (a 2M x 300 table: gigabytes).
    rows = data.loc[~skip & ~foreign, pre.input_columns]
    if rows.empty:
        if data.empty:
            raise DataError(f"{where} has no rows; nothing to evaluate")
        raise DataError(
            f"{where}: nothing to evaluate: each of its {len(data):,} row(s) lacks its label "
            f"or a usable value in a feature column (missing, infinite, or too large for the "
            f"model's float32 inputs)"
        )
    y = pre.encode_labels(labels[~skip & ~foreign])
    proba = predict_proba(run.model, pre.transform(rows), len(pre.classes))
    score = malware_score(proba, pre.classes)
    metrics = classification_metrics(
        y,
        proba.argmax(axis=1),
        pre.classes,
        y_score=proba[:, 1] if len(pre.classes) == 2 else None,
        malware_score=score,
    )
    chosen = recorded_operating_points(run.run_dir)
    if score is not None and chosen is not None:
        _check_recorded_thresholds(run.run_dir / METRICS, chosen)
        # Thresholds chosen on the rows being scored would flatter them: new rows measure
        # the thresholds the run chose on its validation rows (those predict applies).
        is_malware = y == list(pre.classes).index(MALWARE_APP)
        metrics["malware"]["operating_points"] = rates_at_thresholds(is_malware, score, chosen)
        metrics["malware"]["thresholds_chosen_on"] = "validation"
    return {
        **metrics,
        "rows_skipped": int(skip.sum()),
        "rows_filled": (
            int((pre.filled_rows(data) & ~skip & ~foreign).sum()) if pre.fill_values else 0
        ),
        "rows_with_unknown_label": int(foreign.sum()),
        "unknown_labels": unknown,
    }
