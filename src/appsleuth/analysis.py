"""Post-analysis of sweeps and runs: one results table and the figures that explain it.

Everything here works in a notebook as in the HTML report: :func:`load_results` gives
one row per trial (failed and unfinished trials included, with their state), and every
plot takes ``ax=None`` (or a sequence of axes, one per metric) and returns the matplotlib
figure. Nothing calls ``plt.show()`` or changes your matplotlib backend::

    results = load_results("runs/scan-hidden-neurons")
    plot_metric_vs_param(results, "hidden_neurons")
    plot_learning_curves("runs/scan-hidden-neurons")
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from appsleuth._files import read_record_table
from appsleuth.data.load import parse_numbers
from appsleuth.errors import DataError, SpecError
from appsleuth.evaluate import ALARM_POINT_COLUMNS, RESULT_KEYS, alarm_point_columns
from appsleuth.plots import flat_axes, subplots
from appsleuth.run import (
    HISTORY,
    METADATA,
    METRICS,
    finite_number,
    metadata_problem,
    read_json_object,
    run_status,
)

__all__ = [
    "METRIC_COLUMNS",
    "HistorySource",
    "check_one_setting_per_value",
    "comparison_table",
    "format_value",
    "lead_within_spread",
    "load_histories",
    "load_results",
    "plot_comparison",
    "plot_learning_curves",
    "plot_metric_vs_param",
    "plot_small_multiples",
    "read_published",
    "seeds_repeat",
    "summarize_seeds",
    "trial_label",
    "value_key",
]

METRIC_COLUMNS = RESULT_KEYS
# The teaching material writes the hidden layer widths as "hidden_neurons" (notebooks:
# "neurons"); a sweep spec may say "hidden". All three name one hyperparameter.
_HIDDEN_NAMES = ("hidden_neurons", "hidden", "neurons")
# Columns a published results file may use for its varied hyperparameter, by preference.
_KNOWN_PARAMS = ("hidden_neurons", "neurons", "hidden", "learning_rate", "batch_size", "epochs")
_LOG_RATIO = 100.0  # values spanning this factor or more get a logarithmic axis
_MAX_TICKS = 12
_LOG_RATIO_CROWDED = 10.0  # ... or this factor, where a linear axis crowds labels
_AXIS_CHARS = 50  # characters of tick labels a panel's x axis holds
_TICK_CHARS = 48  # characters of category labels a panel holds side by side
_MAX_LEGEND = 12
_LEGEND_INSIDE = 4  # legend entries a panel holds without hiding its lines
_PANEL_TITLE_WIDTH = 34  # characters of a small-multiples title line

# Okabe and Ito's palette, which readers with any common colour-vision deficiency tell
# apart (matplotlib's default tab10 puts green beside red and orange); yellow comes late,
# being faint on white. More lines than this take viridis, and markers mark each line.
_SAFE_COLOURS = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442",
)  # fmt: skip
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
# Training and validation of one setting differ in colour too, not in line style alone:
# in one colour, a reader who misses the dashes (a small or grey printout) could not
# tell which line is which. Alone they are Okabe-Ito blue and vermilion, as the learning
# curve panels (and Keras' blue and orange); each of a grid's colours gets a light tint
# for training. Training's markers are hollow.
_KIND_COLOURS = {"training": "#0072B2", "validation": "#D55E00"}
_KIND_LINES = {"training": "--", "validation": "-"}
_TRAINING_TINT = 0.5  # share of white mixed into a group's colour for its training line

HistorySource = (
    str | os.PathLike[str] | pd.DataFrame | Mapping[str, pd.DataFrame] | Sequence[pd.DataFrame]
)


# --- tables --------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return "hidden_neurons" if name in _HIDDEN_NAMES else name


# Columns load_results fills from a trial's results, not from its spec.
_RESULT_FIELDS = (
    "index", "name", "status", "seed", "epochs_run", "results_epoch", *METRIC_COLUMNS,
    "f1_macro", "moriarty_detection_rate", "moriarty_precision", "moriarty_false_alarm_rate",
    *ALARM_POINT_COLUMNS, "fit_diagnosis", "fit_reason", "wall_time_s", "seconds_per_epoch",
    "engine", "slurm_job_id", "error",
)  # fmt: skip


def _varied_column(name: str) -> str:
    """The results column of a varied hyperparameter.

    A sweep may vary a setting named like a result (``engine``: the one asked for, beside
    the one that trained; ``loss``: the loss function, beside the final loss). Such a
    setting gets the ``param_`` prefix ``results_full.csv`` uses, so that no two columns
    share a name.
    """
    column = _canonical(name)
    return f"param_{column}" if column in _RESULT_FIELDS else column


def _hidden_value(hidden: Sequence[int], single_layer_scan: bool) -> Any:
    """The teaching form: ``18`` in a neuron scan, ``"[18, 18]"`` when layers vary."""
    hidden = [int(h) for h in hidden]
    if single_layer_scan and len(hidden) == 1:
        return hidden[0]
    return str(hidden)


def _param_value(value: Any) -> Any:
    return str(list(value)) if isinstance(value, list | tuple) else value


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path) or {}


def _section(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _metric_fields(metadata: dict[str, Any] | None, metrics: dict[str, Any]) -> dict[str, Any]:
    meta = metadata or {}
    if meta.get("status") == "complete" and metadata_problem(meta) is not None:
        meta = {}  # a damaged record holds no result to show
    last = _section(meta, "last_results")
    malware = _section(metrics, "malware")
    fit = _section(metrics, "fit")
    return {
        "epochs_run": finite_number(meta.get("epochs_run")),
        "results_epoch": finite_number(meta.get("results_epoch")),
        **{k: finite_number(last.get(k)) for k in METRIC_COLUMNS},
        "f1_macro": finite_number(_section(metrics, "macro_avg").get("f1")),
        "moriarty_detection_rate": finite_number(malware.get("detection_rate")),
        "moriarty_precision": finite_number(malware.get("precision")),
        "moriarty_false_alarm_rate": finite_number(malware.get("false_alarm_rate")),
        **alarm_point_columns(metrics),
        "fit_diagnosis": _text(fit.get("diagnosis")) or _text(meta.get("fit_diagnosis")),
        "fit_reason": _text(fit.get("reason")),
        "wall_time_s": finite_number(meta.get("wall_time_s")),
        "seconds_per_epoch": finite_number(meta.get("seconds_per_epoch")),
        "engine": _text(meta.get("engine")),
        "slurm_job_id": meta.get("SLURM_JOB_ID"),
        "error": _text(meta.get("error")),
    }


def load_results(
    sweep_dir: str | os.PathLike[str],
    *,
    plan: Sequence[Any] | None = None,
    states: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """One row per trial of a sweep directory, in plan order, whatever its state.

    Columns: ``index, name, status`` (``complete``, ``failed``, ``incomplete`` or
    ``pending``), the varied hyperparameters (``hidden`` written as the teaching
    ``hidden_neurons``: a number in a neuron scan, ``"[18, 18]"`` when layers vary),
    ``hidden_neurons, learning_rate, batch_size, epochs, seed``, ``epochs_run``,
    ``results_epoch`` (the epoch whose numbers follow: the last, or the earlier one whose
    weights early stopping restored), that epoch's ``loss, accuracy, val_loss,
    val_accuracy``, ``f1_macro``, Moriarty's detection rate, precision and false-alarm
    rate, its detection rate at 1 % false alarms and the threshold that reaches it
    (``moriarty_detection_rate_at_1pct_false_alarms``,
    ``moriarty_threshold_at_1pct_false_alarms``: NaN for runs from before operating
    points, tasks without Moriarty and an unmeasurable 1 %), ``fit_diagnosis``,
    ``fit_reason``, ``wall_time_s``, ``seconds_per_epoch``, ``engine``, ``slurm_job_id``
    and ``error``. Metrics are NaN for trials without a result. ``attrs["varied"]``
    lists the varied columns; a varied setting named like one of these columns
    (``engine``, ``loss``) is ``param_<name>``.

    Args:
        sweep_dir: The sweep directory.
        plan: The sweep's plan (:func:`~appsleuth.sweep.store.read_plan`) where the
            caller has read it already (reading it checks every trial's spec, about a
            second per thousand trials). Defaults to None: read here.
        states: Its trial states (:func:`~appsleuth.sweep.store.trial_states`), likewise.
            Defaults to None: read here.

    Raises:
        DataError: The directory is not a sweep directory or its manifest is unreadable.
    """
    sweep_dir = Path(sweep_dir)
    from appsleuth.sweep.store import MANIFEST, read_plan, trial_states

    if plan is None:
        plan = read_plan(sweep_dir)  # validates the manifest, with a clear error
    manifest = _read_json(sweep_dir / MANIFEST)
    varied_names = list(manifest.get("varied") or [])
    varied = [_varied_column(v) for v in varied_names]
    if states is None:
        states = trial_states(sweep_dir, plan=plan)
    states = {s.index: s for s in states}
    single_layer = all(len(t.spec.model.hidden) == 1 for t in plan)
    rows = []
    for trial in plan:
        state = states[trial.index]
        spec = trial.spec
        row: dict[str, Any] = {"index": trial.index, "name": trial.name, "status": state.status}
        for name, column in zip(varied_names, varied, strict=True):
            if column == "hidden_neurons":
                row[column] = _hidden_value(spec.model.hidden, single_layer)
            else:
                row[column] = _param_value(trial.params.get(name))
        row.setdefault("hidden_neurons", _hidden_value(spec.model.hidden, single_layer))
        row.setdefault("learning_rate", spec.train.learning_rate)
        row.setdefault("batch_size", spec.train.batch_size)
        row.setdefault("epochs", spec.train.epochs)
        row["seed"] = spec.train.seed
        metrics = _read_json(sweep_dir / trial.name / METRICS) if state.status == "complete" else {}
        row.update(_metric_fields(state.metadata, metrics))
        rows.append(row)
    fixed = ("hidden_neurons", "learning_rate", "batch_size", "epochs")
    columns = [
        "index", "name", "status", *varied, *(c for c in fixed if c not in varied),
        "seed", "epochs_run", "results_epoch", *METRIC_COLUMNS, "f1_macro",
        "moriarty_detection_rate", "moriarty_precision", "moriarty_false_alarm_rate",
        *ALARM_POINT_COLUMNS,
        "fit_diagnosis", "fit_reason", "wall_time_s", "seconds_per_epoch", "engine",
        "slurm_job_id", "error",
    ]  # fmt: skip
    results = pd.DataFrame(rows, columns=columns)
    for col in (
        *METRIC_COLUMNS, "f1_macro", *ALARM_POINT_COLUMNS, "wall_time_s", "seconds_per_epoch"
    ):  # fmt: skip
        results[col] = pd.to_numeric(results[col], errors="coerce").astype(float)
    results.attrs["varied"] = varied
    results.attrs["sweep_dir"] = str(sweep_dir)
    results.attrs["repeats"] = bool(results.duplicated(varied).any()) if varied else False
    return results


def summarize_seeds(results: pd.DataFrame) -> pd.DataFrame:
    """One row per setting of the varied hyperparameters, its seeds aggregated.

    The best single trial of a sweep with repeated seeds is partly the luckiest seed;
    the mean and spread over a setting's seeds say how good the setting is.

    Args:
        results: From :func:`load_results`.

    Returns:
        The varied columns, then ``trials`` (planned), ``complete``, and the mean,
        sample standard deviation (NaN for a single seed), min and max of
        ``val_accuracy``, and the mean ``val_loss``, over the complete trials; sorted
        by mean validation accuracy, best first, then by mean validation loss, lowest
        first (settings without a complete trial last).

    Raises:
        DataError: ``results`` lacks the status or validation columns.
    """
    absent = [c for c in ("status", "val_accuracy", "val_loss") if c not in results.columns]
    if absent:
        raise DataError(f"results must be a table from load_results; it lacks column(s) {absent}")
    varied = [v for v in results.attrs.get("varied") or [] if v in results.columns]
    done = results["status"] == "complete"
    frame = results.assign(
        _setting=[
            tuple(value_key(v) for v in row) for row in results[varied].itertuples(index=False)
        ]
        if varied
        else [()] * len(results),
        _acc=results["val_accuracy"].where(done),
        _loss=results["val_loss"].where(done),
    )
    grouped = frame.groupby("_setting", sort=False)
    table = grouped[varied].first() if varied else pd.DataFrame(index=grouped.size().index)
    table["trials"] = grouped.size()
    table["complete"] = grouped["status"].agg(lambda s: int((s == "complete").sum()))
    accuracy = grouped["_acc"]
    table["val_accuracy_mean"] = accuracy.mean()
    table["val_accuracy_std"] = accuracy.std()  # ddof=1; NaN for one seed
    table["val_accuracy_min"] = accuracy.min()
    table["val_accuracy_max"] = accuracy.max()
    table["val_loss_mean"] = grouped["_loss"].mean()
    # Ties broken by the lower mean loss, as best_run_key breaks them between trials:
    # otherwise the report's note could name another setting than the best trial's as
    # the best, at the same mean accuracy.
    table = table.sort_values(
        ["val_accuracy_mean", "val_loss_mean"],
        ascending=[False, True],
        na_position="last",
        kind="stable",
    )
    return table.reset_index(drop=True)


def seeds_repeat(results: pd.DataFrame) -> bool:
    """Whether some setting of ``results`` ran over several seeds.

    ``attrs["repeats"]`` says so of the varied settings only; a sweep that varies
    nothing but repeats seeds (a study of seed-to-seed spread) repeats its one setting.
    """
    if results.attrs.get("varied"):
        return bool(results.attrs.get("repeats"))
    return "seed" in results and results["seed"].nunique() > 1


def lead_within_spread(seeds: pd.DataFrame) -> tuple[float, float] | None:
    """``(lead, spread)`` when the best setting's lead is within the seeds' spread, else None.

    ``seeds`` is :func:`summarize_seeds`' table. The lead is the best mean validation
    accuracy minus the runner-up's; the spread is the larger of the two settings' seed
    standard deviations. A lead no larger than that is what reseeding alone moves a
    setting by, so the sweep has not shown the first setting to be better.
    """
    ranked = seeds.loc[seeds["val_accuracy_mean"].notna()]
    if len(ranked) < 2:
        return None
    first, second = ranked.iloc[0], ranked.iloc[1]
    spreads = [s for s in (first["val_accuracy_std"], second["val_accuracy_std"]) if s == s]
    if not spreads:
        return None  # single seeds: no spread to compare with
    lead = float(first["val_accuracy_mean"] - second["val_accuracy_mean"])
    spread = float(max(spreads))
    return (lead, spread) if lead <= spread else None


def read_published(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Published results in the teaching ``results.csv`` layout.

    The file holds a hyperparameter column (``hidden_neurons``, ``neurons``,
    ``learning_rate``, ``batch_size``, ...) and ``loss, accuracy, val_loss,
    val_accuracy``. The hyperparameter column is renamed to its canonical name (hidden
    layer widths: ``hidden_neurons``) and recorded in ``attrs["param"]``.

    Raises:
        DataError: The file is missing, unreadable, lacks a metric column, or has no
            hyperparameter column.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"published results file {path} does not exist")
    try:
        df = read_record_table(path)  # a pipe or device is refused, not read for ever
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"published results file {path} cannot be read as CSV: {exc}") from exc
    missing = [c for c in METRIC_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"published results file {path} lacks column(s) {missing}; expected the "
            f"teaching results.csv layout (a hyperparameter column, then "
            f"{', '.join(METRIC_COLUMNS)}); found {list(df.columns)}"
        )
    candidates = [c for c in _KNOWN_PARAMS if c in df.columns]
    if not candidates:
        candidates = [c for c in df.columns if c not in METRIC_COLUMNS]
    if not candidates:
        raise DataError(
            f"published results file {path} has no hyperparameter column before "
            f"{', '.join(METRIC_COLUMNS)}; found {list(df.columns)}"
        )
    column = candidates[0]
    param = _canonical(column)
    df = df.rename(columns={column: param})
    for col in METRIC_COLUMNS:
        values, bad = parse_numbers(df[col])
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"published results file {path}: column {col!r} must hold numbers, but data "
                f"row {i} (line {i + 2}) holds {df[col].iloc[i]!r}"
            )
        infinite = np.flatnonzero(np.isinf(np.asarray(values, dtype=np.float64)))
        if len(infinite):
            i = int(infinite[0])
            raise DataError(
                f"published results file {path}: column {col!r} must hold finite numbers "
                f"(or be empty), but data row {i} (line {i + 2}) holds "
                f"{float(values.iloc[i])}"
            )
        df[col] = values
    df.attrs["param"] = param
    df.attrs["source"] = str(path)
    return df


# --- values on an axis ---------------------------------------------------------------------


def _is_real(v: Any) -> bool:
    """A Python or NumPy int or float (not a bool); it may be NaN or infinite."""
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _parsed(v: Any) -> Any:
    """A list written as text (``"[18, 18]"``) becomes a list; anything else is kept."""
    if isinstance(v, str) and v.strip().startswith("["):
        try:
            value = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            # Python's parser gives up on deep nesting with the last two.
            return v
        return list(value) if isinstance(value, list | tuple) else v
    return v


def value_key(v: Any) -> tuple[Any, ...]:
    """A matching key: 18, "[18]" and [18] are the same value; floats compare rounded."""
    v = _parsed(v)
    if isinstance(v, list | tuple):
        if all(_is_real(e) for e in v):
            return tuple(round(float(e), 12) for e in v)
        return ("s", str(v))
    if _is_real(v) and math.isfinite(float(v)):
        return (round(float(v), 12),)
    return ("s", str(v))


def format_value(v: Any) -> str:
    """A hyperparameter value as a label: ``18`` not ``18.0``, ``[18, 9]`` not ``"[18, 9]"``."""
    v = _parsed(v)
    if isinstance(v, list | tuple):
        return str([int(e) if _is_real(e) and float(e).is_integer() else e for e in v])
    if _is_real(v):
        f = float(v)
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else f"{f:g}"
    return str(v)


class _Axis:
    """Where the distinct values of a hyperparameter go on the x axis."""

    def __init__(self, values: Sequence[Any]) -> None:
        keys: dict[tuple[Any, ...], Any] = {}
        for v in values:
            keys.setdefault(value_key(v), v)
        self.numeric = all(
            len(k) == 1 and _is_real(k[0]) and not isinstance(_parsed(v), list | tuple)
            for k, v in keys.items()
        )
        if self.numeric:
            order = sorted(keys, key=lambda k: k[0])
            self.positions = {k: float(k[0]) for k in order}
        else:
            # Hidden-layer lists read best by depth, then width: [18], [18, 18], ...
            def sort_key(k: tuple[Any, ...]) -> tuple[Any, ...]:
                numeric = all(_is_real(e) for e in k)
                return (0, len(k), k) if numeric else (1, 0, str(k))

            order = sorted(keys, key=sort_key)
            self.positions = {k: float(i) for i, k in enumerate(order)}
        self.labels = {k: format_value(keys[k]) for k in order}
        xs = [p for p in self.positions.values()]
        labels = list(self.labels.values())
        positive = self.numeric and len(xs) > 1 and min(xs) > 0
        ratio = max(xs) / min(xs) if positive else 1.0
        # A factor of 10 is enough where a linear axis would crowd the labels: the
        # neuron scan's 1, 2, 4 and the batch-size scan's 16, 32, 64 ran into each other.
        self.log = positive and (
            ratio >= _LOG_RATIO or (ratio >= _LOG_RATIO_CROWDED and _crowded(xs, labels))
        )
        # Labels that crowd even so (a random search's 0.00105595, 0.00125657) give way
        # to matplotlib's own ticks.
        self.own_ticks = len(xs) <= _MAX_TICKS and not _crowded(
            [math.log10(x) for x in xs] if self.log else xs, labels
        )

    def x(self, value: Any) -> float:
        return self.positions[value_key(value)]

    def style(self, ax: Any, label: str) -> None:
        ticks = list(self.positions.values())
        labels = list(self.labels.values())
        if self.log:
            ax.set_xscale("log")
        if not self.numeric:
            # Side by side, the labels of a layer scan ("[18, 18, 18]", "[64, 64, 64, 64]")
            # ran into each other: crowded labels slant, each ending at its tick.
            crowded = len(ticks) > 4 or len(ticks) * max(map(len, labels)) > _TICK_CHARS
            if crowded:
                ax.set_xticks(ticks, labels=labels, rotation=30, ha="right", rotation_mode="anchor")
            else:
                ax.set_xticks(ticks, labels=labels)
            ax.set_xlim(-0.5, len(ticks) - 0.5)
        elif self.own_ticks:
            ax.set_xticks(ticks, labels=labels)
            ax.minorticks_off()
        elif self.log:
            from matplotlib.ticker import NullFormatter

            # Over less than two decades matplotlib labels the minor ticks too (2x10^-4,
            # 3x10^-4, ...), and they crowd as well: decades only.
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)


def _crowded(xs: Sequence[float], labels: Sequence[str]) -> bool:
    """Whether labels at positions ``xs`` (ascending) would touch on a panel's x axis."""
    span = xs[-1] - xs[0] if len(xs) > 1 else 0.0
    if span <= 0:
        return False
    return any(
        (b - a) / span * _AXIS_CHARS < (len(la) + len(lb)) / 2 + 1
        for a, b, la, lb in zip(xs, xs[1:], labels, labels[1:], strict=False)
    )


def _summary(df: pd.DataFrame, param: str, column: str, axis: _Axis) -> pd.DataFrame:
    """Mean, standard deviation, min, max and count of ``column`` per value of ``param``."""
    frame = pd.DataFrame({"x": [axis.x(v) for v in df[param]], "y": df[column].to_numpy()})
    frame = frame.dropna()
    out = frame.groupby("x")["y"].agg(["mean", "std", "min", "max", "count"]).sort_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _axes_for(ax: Any, n: int, *, width: float = 5.0, height: float = 3.6) -> tuple[Any, list[Any]]:
    """A figure and ``n`` axes: new ones side by side, or those the caller passed."""
    if ax is None:
        fig, axes = subplots(1, n, figsize=(width * n, height), squeeze=False)
        return fig, list(axes[0])
    axes = flat_axes(ax)
    if len(axes) != n:
        raise SpecError(
            f"ax must be one matplotlib axes per metric ({n}); received {len(axes)} axes"
        )
    return axes[0].figure, axes


def _resolve_param(df: pd.DataFrame, param: str, what: str) -> str:
    if param in df.columns:
        return param
    if param in _HIDDEN_NAMES:
        for alias in _HIDDEN_NAMES:
            if alias in df.columns:
                return alias
    raise SpecError(
        f"param {param!r} is not a column of the {what}; columns: {', '.join(map(str, df.columns))}"
    )


def check_one_setting_per_value(results: pd.DataFrame, column: str) -> None:
    """Refuse a comparison whose rows at one value of ``column`` are different settings.

    Averaging them (as repeated seeds are) would give a number no trained setting has,
    set beside a published one as if it were this sweep's result for that value.
    """
    ours = _complete(results)
    others = [v for v in results.attrs.get("varied") or () if v != column and v in ours.columns]
    mixed = [v for v in others if ours[v].map(value_key).nunique() > 1]
    if mixed:
        raise DataError(
            f"these results also vary {', '.join(mixed)}, so their rows at one {column} "
            f"value are different settings, and averaging them would compare no trained "
            f"setting with the published results; select one value of "
            f"{', '.join(mixed)} first (e.g. results[results[{mixed[0]!r}] == value])"
        )


def _complete(df: pd.DataFrame) -> pd.DataFrame:
    """Only rows with a result (a teaching-layout table has no status column: all rows)."""
    return df.loc[df["status"] == "complete"] if "status" in df.columns else df


def _epoch_shown(df: pd.DataFrame) -> str | None:
    """Which epoch a results table's metrics are of: ``last``, ``restored`` or None.

    ``restored``: early stopping restored an earlier epoch's weights in some trial, whose
    numbers are that epoch's. None where the table does not say (a teaching
    ``results.csv``, runs recorded before ``results_epoch``): "final" would claim the
    last epoch there.
    """
    if not {"epochs_run", "results_epoch"} <= set(df.columns) or df.empty:
        return None
    run = pd.to_numeric(df["epochs_run"], errors="coerce")
    kept = pd.to_numeric(df["results_epoch"], errors="coerce")
    if (kept < run).any():
        return "restored"
    return "last" if (kept.notna() & (kept == run)).all() else None


_SHOWN_WORDS = {"last": "last epoch", "restored": "last or restored epoch"}


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _metric_column(metric: str, kind: str) -> str:
    return metric if kind == "training" else f"val_{metric}"


def _legends(axes: Sequence[Any], *, beside: bool, **kwargs: Any) -> None:
    """A legend in each panel, or one beside the last panel of a figure made here.

    Beside is for legends with more entries than a panel holds (a grid's trials, with
    labels such as ``dropout=0.2, activation=tanh, optimizer=rmsprop``): inside, the
    legend hid the lines. Axes a caller passed keep their legends inside, so that their
    layout is theirs.
    """
    if beside:
        # Every panel's legend is the same: one, right of the last panel, outside it.
        # The figure widens by about the legend's width, so the panels keep theirs.
        legend = axes[-1].legend(
            loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs
        )
        longest = max((len(t.get_text()) for t in legend.get_texts()), default=0)
        fig = axes[-1].figure
        width, height = fig.get_size_inches()
        extra = 0.6 + longest * 0.55 * legend.get_texts()[0].get_fontsize() / 72
        fig.set_size_inches(width + extra, height)
        return
    for a in axes:
        a.legend(**kwargs)


# --- figures -------------------------------------------------------------------------------


def plot_metric_vs_param(
    results: pd.DataFrame,
    param: str,
    *,
    metrics: Sequence[str] = ("accuracy", "loss"),
    ax: Any = None,
) -> Any:
    """Training (dashed, hollow markers) and validation (solid) results by hyperparameter.

    Each trial's numbers are those of its results epoch: its last, or the earlier one
    whose weights early stopping restored. The labels say which where the table does
    (``results_epoch`` and ``epochs_run``, as from :func:`load_results`).

    Training is blue and validation vermilion; in a grid, each combination of the other
    settings has a colour, drawn solid for validation and as a light tint for training.

    Numbers spanning a factor of 100 or more (learning rate), or of 10 or more where a
    linear axis would crowd their labels (1, 2, 4, ... 80 neurons; batch sizes 16 to
    1024), get a logarithmic x axis; hidden-layer lists (``"[18, 18]"``) are categories. When seeds
    repeat a setting, the line is the mean, with standard-deviation error bars and a
    shaded min-max band. When the sweep varies other hyperparameters too (a grid), each
    combination of their values gets its own lines, so that no point averages different
    settings. Only complete trials are drawn.

    Args:
        results: From :func:`load_results`, or a teaching ``results.csv`` table.
        param: The hyperparameter column, e.g. ``hidden_neurons`` or ``learning_rate``.
        metrics: ``accuracy`` and/or ``loss`` (training and validation of each).
            Defaults to both, one panel each.
        ax: One axes per metric. Defaults to a new figure.

    Returns:
        The figure.

    Raises:
        SpecError: ``param`` is not a column, or ``ax`` does not match ``metrics``.
    """
    param = _resolve_param(results, param, "results")
    metrics = _metric_names(metrics)
    fig, axes = _axes_for(ax, len(metrics))
    df = _complete(results)
    df = df.loc[df[param].notna()]
    if df.empty:
        for a in axes:
            _no_data(a, "no complete trial yet")
        return fig
    axis = _Axis(list(df[param]))
    shown = _epoch_shown(df)
    others = [p for p in results.attrs.get("varied", ()) if p != param and p in df.columns]
    if others:
        labels = df.apply(lambda r: ", ".join(f"{p}={format_value(r[p])}" for p in others), axis=1)
        groups = [(str(k), g) for k, g in df.groupby(labels, sort=False)]
    else:
        groups = [("", df)]
    # More combinations than a legend can list (a random search draws new values for
    # every trial): a legend of them ran off the figure. Their colours go unnamed then.
    named = len(groups) <= _MAX_LEGEND // 2
    repeats = False
    for a, metric in zip(axes, metrics, strict=True):
        for g, (group, part) in enumerate(groups):
            # One colour (and marker) per combination of the others.
            group_colour, marker = _line_style(g, len(groups))
            for kind in ("training", "validation"):
                column = _metric_column(metric, kind)
                if column not in part.columns:
                    continue
                s = _summary(part, param, column, axis)
                if s.empty:
                    continue
                color = _kind_colour(kind, group_colour if len(groups) > 1 else None)
                label = (f"{group} ({kind})" if group else kind) if named else None
                a.plot(
                    s.index,
                    s["mean"],
                    _KIND_LINES[kind],
                    marker=marker or "o",
                    markersize=4 if kind == "validation" else 5,
                    markerfacecolor=color if kind == "validation" else "white",
                    label=label,
                    color=color,
                )
                if (s["count"] > 1).any():
                    repeats = True
                    a.fill_between(s.index, s["min"], s["max"], color=color, alpha=0.15, lw=0)
                    # Error bars as a line collection, so that ax.lines holds only the means.
                    a.vlines(
                        s.index, s["mean"] - s["std"], s["mean"] + s["std"], colors=color, lw=1.5
                    )
        axis.style(a, param)
        # "final" claimed the last epoch where early stopping had restored an earlier one.
        # The epoch goes on the y axis: in the title too, it ran into the next panel's.
        a.set_ylabel(f"{metric} at {_SHOWN_WORDS[shown]}" if shown else metric)
        a.set_title(f"{metric} vs {param}" + (" (mean of seeds)" if repeats else ""))
        a.grid(alpha=0.3)
    if named:
        entries = len(axes[-1].get_legend_handles_labels()[0])
        _legends(axes, beside=ax is None and entries > _LEGEND_INSIDE, fontsize="small")
    else:
        from matplotlib.lines import Line2D

        handles = [
            Line2D(
                [],
                [],
                color=_kind_colour(kind, "0.3"),
                ls=_KIND_LINES[kind],
                marker="o",
                markersize=4 if kind == "validation" else 5,
                markerfacecolor=_kind_colour(kind, "0.3") if kind == "validation" else "white",
                label=kind,
            )
            for kind in ("training", "validation")
        ]
        title = f"a colour per {', '.join(others)}"
        _legends(axes, beside=False, handles=handles, fontsize="small", title=title)
    fig.tight_layout()
    return fig


def trial_label(row: Mapping[str, Any], varied: Sequence[str], repeats: bool) -> str:
    """A trial's legend label: its varied settings (``hidden_neurons=18, learning_rate=0.01``).

    Args:
        row: The trial's row of :func:`load_results`.
        varied: The hyperparameters the sweep varies; none: the trial's run name.
        repeats: Whether settings repeat over seeds, so that the seed is named too.
    """
    parts = [f"{p}={format_value(row[p])}" for p in varied if p in row]
    if repeats or not parts:
        parts.append(f"seed={row['seed']}")
    return ", ".join(parts) if varied else str(row["name"])


def load_histories(
    source: str | os.PathLike[str], *, include_incomplete: bool = False
) -> dict[str, pd.DataFrame]:
    """Per-epoch histories of a sweep's trials (or of one run), labelled by their settings.

    Args:
        source: A sweep directory or a run directory.
        include_incomplete: Also return the partial history of a trial still running
            (or interrupted). Defaults to False (complete trials only).

    Returns:
        Label (e.g. ``hidden_neurons=18``) -> ``model_history.csv`` as a DataFrame.

    Raises:
        DataError: ``source`` is neither a sweep nor a run directory.
    """
    from appsleuth.sweep.store import MANIFEST

    source = Path(source)
    wanted = ("complete", "incomplete") if include_incomplete else ("complete",)
    if (source / MANIFEST).exists():
        results = load_results(source)
        varied = results.attrs["varied"]
        out = {}
        for _, row in results.iterrows():
            if row["status"] not in wanted:
                continue
            history = _read_history(source / row["name"])
            if history is not None:
                out[trial_label(row, varied, results.attrs["repeats"])] = history
        return out
    if (source / METADATA).exists() or (source / HISTORY).exists():
        history = _read_history(source)
        if history is None or run_status(source) not in wanted:
            return {}
        return {source.name: history}
    raise DataError(
        f"{source} is neither a sweep directory (no manifest.json) nor a run directory "
        f"(no {METADATA})"
    )


def _read_history(run_dir: Path) -> pd.DataFrame | None:
    try:
        history = read_record_table(run_dir / HISTORY)
    except (OSError, ValueError):
        return None
    return history if not history.empty else None


def _metric_names(metrics: Sequence[str] | str) -> list[str]:
    """``metrics`` as a list: one name given as text is one metric, not its letters."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names or not all(isinstance(m, str) for m in names):
        raise SpecError(f"metrics must be one or more metric names; received metrics={metrics!r}")
    return names


def _is_one_history(source: Mapping[Any, Any]) -> bool:
    """A Keras ``History.history`` dict: metric name -> one number per epoch."""
    return bool(source) and all(
        isinstance(v, list | tuple | np.ndarray)
        and all(isinstance(x, int | float | np.number) for x in v)
        for v in source.values()
    )


def _histories(source: HistorySource) -> dict[str, pd.DataFrame]:
    if isinstance(source, str | os.PathLike):
        return load_histories(source)
    if isinstance(source, pd.DataFrame):
        if "sweep_dir" in source.attrs or {"name", "status"} <= set(source.columns):
            # One row per trial, its final numbers: drawn as one run's epochs, it made a
            # learning curve out of the trials without a word.
            where = source.attrs.get("sweep_dir")
            raise DataError(
                "source is a results table (one row per trial, from load_results), not a "
                "per-epoch history: pass the sweep directory"
                + (f" ({where})" if where else "")
                + " for every trial's curves"
            )
        return {"run": source}
    if isinstance(getattr(source, "history", None), Mapping):  # a keras History
        source = source.history
    if isinstance(source, Mapping) and _is_one_history(source):
        return {"run": pd.DataFrame(dict(source))}
    if isinstance(source, Mapping):
        return {str(k): pd.DataFrame(v) for k, v in source.items()}
    return {f"run {i + 1}": pd.DataFrame(h) for i, h in enumerate(source)}


def plot_learning_curves(
    source: HistorySource,
    *,
    metrics: Sequence[str] = ("accuracy", "loss"),
    ax: Any = None,
) -> Any:
    """Every trial's learning curves overlaid: training dashed, validation solid.

    Args:
        source: A sweep or run directory, a history DataFrame, a Keras ``History`` (or
            its ``history`` dict), a mapping label -> history, or a list of histories.
        metrics: ``accuracy`` and/or ``loss`` (one name or several). Defaults to both,
            one panel each.
        ax: One axes per metric. Defaults to a new figure.

    Returns:
        The figure (one colour per trial).

    Raises:
        DataError: ``source`` is a results table (pass the sweep directory instead).
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    metrics = _metric_names(metrics)
    histories = _histories(source)
    fig, axes = _axes_for(ax, len(metrics), width=5.5, height=4.0)
    if not histories:
        for a in axes:
            _no_data(a, "no learning curves yet")
        return fig
    n = len(histories)
    for a, metric in zip(axes, metrics, strict=True):
        for i, (label, h) in enumerate(histories.items()):
            color, marker = _line_style(i, n)
            epochs = np.arange(1, len(h) + 1)
            # A few markers per line, not one per epoch: a 100-epoch curve stays a line.
            marks = {"marker": marker, "markersize": 4, "markevery": max(1, len(h) // 6)}
            if metric in h:
                a.plot(
                    epochs, h[metric], "--", color=color, lw=1.2, label=f"{label} training", **marks
                )
            if f"val_{metric}" in h:
                a.plot(epochs, h[f"val_{metric}"], "-", color=color, lw=1.6, label=label, **marks)
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_ylabel(metric)
        a.set_title(f"{metric}: training dashed, validation solid")
        a.grid(alpha=0.3)
    handles = [
        Line2D([], [], color="0.3", ls="--", label="training"),
        Line2D([], [], color="0.3", ls="-", label="validation"),
    ]
    if n <= _MAX_LEGEND:
        handles += [
            Line2D([], [], color=c, marker=m, lw=3, label=lbl)
            for i, lbl in enumerate(histories)
            for c, m in [_line_style(i, n)]
        ]
    _legends(
        axes,
        beside=ax is None and len(handles) > _LEGEND_INSIDE,
        handles=handles,
        # x-small came out about 7 pixels high in the report (80 dpi): unreadable.
        fontsize="small",
    )
    fig.tight_layout()
    return fig


def _kind_colour(kind: str, group_colour: Any) -> Any:
    """The colour of a training or validation line: its own, or a tint of its group's."""
    if group_colour is None:
        return _KIND_COLOURS[kind]
    if kind == "validation":
        return group_colour
    from matplotlib.colors import to_rgb

    return tuple(c + (1 - c) * _TRAINING_TINT for c in to_rgb(group_colour))


def _line_style(i: int, n: int) -> tuple[Any, str | None]:
    """Colour and marker of line ``i`` of ``n``: told apart without telling red from green."""
    if n <= len(_SAFE_COLOURS):
        color: Any = _SAFE_COLOURS[i]
    else:
        import matplotlib

        color = matplotlib.colormaps["viridis"](i / max(n - 1, 1))
    # Beyond a legend's worth the lines go unnamed, so markers would tell nothing.
    return color, _MARKERS[i % len(_MARKERS)] if n <= _MAX_LEGEND else None


def _wrapped(label: str, width: int) -> str:
    """``label`` on lines of at most ``width`` characters where it can be broken.

    Lines break after the ``", "`` between settings (not inside a list value such as
    ``[18, 18]``); only a setting or run name longer than a line breaks inside, after an
    ``_`` or ``", "`` (``model_1H8N_lr0.003_bs64_e2_`` / ``dropout0.2_activationtanh``).
    """
    settings, depth, start = [], 0, 0
    for i, char in enumerate(label):
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(char, 0)
        if depth == 0 and label.startswith(", ", i):
            settings.append(label[start : i + 2])
            start = i + 2
    settings.append(label[start:])
    pieces: list[str] = []
    for setting in settings:
        if len(setting.rstrip()) <= width:
            pieces.append(setting)
        else:
            pieces += [w for w in re.split(r"(?<=_)|(?<=, )", setting) if w]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1] + piece.rstrip()) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def plot_small_multiples(
    source: HistorySource,
    *,
    metric: str = "accuracy",
    ncols: int = 4,
    highlight: str | None = None,
    ax: Any = None,
) -> Any:
    """One small panel per trial with its training (dashed) and validation (solid) curve.

    Args:
        source: As :func:`plot_learning_curves`.
        metric: ``accuracy`` or ``loss``. Defaults to ``accuracy``.
        ncols: Panels per row. Defaults to 4.
        highlight: Label of a trial whose panel is framed (e.g. the best). Defaults to none.
        ax: Axes to draw the panels on, one per trial at least (e.g. from
            ``plt.subplots(rows, cols)``); axes left over are hidden. Defaults to a new
            figure whose panels share their axes.

    Returns:
        The figure; panels share the y axis so trials compare at a glance.

    Raises:
        SpecError: Fewer axes than trials.
        DataError: ``source`` is a results table (pass the sweep directory instead).
    """
    from matplotlib.ticker import MaxNLocator

    histories = _histories(source)
    n = max(len(histories), 1)
    if ax is None:
        ncols = max(1, min(ncols, n))
        nrows = math.ceil(n / ncols)
        fig, axes = subplots(
            nrows, ncols, figsize=(3.0 * ncols, 2.4 * nrows), sharex=True, sharey=True,
            squeeze=False,
        )  # fmt: skip
        flat = list(axes.ravel())
    else:
        flat = flat_axes(ax)
        if len(flat) < n:
            raise SpecError(f"ax must hold one axes per trial ({n}); received {len(flat)} axes")
        fig = flat[0].figure
    if not histories:
        _no_data(flat[0], "no learning curves yet")
    for a, (label, h) in zip(flat, histories.items(), strict=False):
        epochs = np.arange(1, len(h) + 1)
        if metric in h:
            a.plot(
                epochs, h[metric], "--", color=_KIND_COLOURS["training"], lw=1.2, label="training"
            )
        if f"val_{metric}" in h:
            a.plot(
                epochs,
                h[f"val_{metric}"],
                "-",
                color=_KIND_COLOURS["validation"],
                lw=1.6,
                label="validation",
            )
        # A panel is about 34 characters wide at this size: longer labels (a grid of
        # several settings, a long run name) overlapped their neighbours' titles.
        a.set_title(_wrapped(label, _PANEL_TITLE_WIDTH), fontsize=8)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        if label == highlight:
            for spine in a.spines.values():
                spine.set_edgecolor("#d97706")
                spine.set_linewidth(2.5)
            a.set_title(
                _wrapped(f"{label} (best)", _PANEL_TITLE_WIDTH), fontsize=8, fontweight="bold"
            )
    for a in flat[len(histories) :]:
        if histories:
            a.set_visible(False)
    if histories:
        flat[0].legend(fontsize="small")
    fig.supxlabel("epoch", fontsize=9)
    fig.supylabel(metric, fontsize=9)
    fig.tight_layout()
    return fig


def comparison_table(
    results: pd.DataFrame, published: pd.DataFrame, param: str | None = None
) -> pd.DataFrame:
    """This sweep's metrics (each trial's results epoch) next to the published ones.

    Repeated settings (seeds) are averaged on each side.

    Args:
        results: From :func:`load_results` (complete trials are used).
        published: From :func:`read_published`.
        param: The hyperparameter. Defaults to the published file's.

    Returns:
        Columns ``param``, ``ours_<metric>`` and ``published_<metric>`` for each of
        ``loss, accuracy, val_loss, val_accuracy``, ``val_accuracy_difference`` (ours
        minus published), ``n_ours`` and ``n_published``; one row per value on either side.

    Raises:
        DataError: ``results`` also vary another hyperparameter (a grid): select one
            value of it first, e.g. ``results[results["learning_rate"] == 3e-4]``.
    """
    param = param or published.attrs.get("param") or published.columns[0]
    ours_col = _resolve_param(results, param, "results")
    pub_col = _resolve_param(published, param, "published results")
    check_one_setting_per_value(results, ours_col)
    ours = _complete(results)
    sides = {}
    for side, df, col in (("ours", ours, ours_col), ("published", published, pub_col)):
        frame = df[[col, *METRIC_COLUMNS]].copy()
        frame["_key"] = [value_key(v) for v in frame[col]]
        grouped = frame.groupby("_key", sort=False)
        agg = grouped[list(METRIC_COLUMNS)].mean().add_prefix(f"{side}_")
        agg[f"n_{side}"] = grouped.size()
        agg[f"_{side}_value"] = grouped[col].first()
        sides[side] = agg
    table = sides["ours"].join(sides["published"], how="outer")
    values = table["_ours_value"].where(table["_ours_value"].notna(), table["_published_value"])
    axis = _Axis(list(values))
    table.insert(0, param, [format_value(v) for v in values])
    table["_x"] = [axis.x(v) for v in values]
    table = table.sort_values("_x").reset_index(drop=True)
    table["val_accuracy_difference"] = table["ours_val_accuracy"] - table["published_val_accuracy"]
    for side in ("ours", "published"):
        table[f"n_{side}"] = table[f"n_{side}"].fillna(0).astype(int)
    columns = [param]
    for m in METRIC_COLUMNS:
        columns += [f"ours_{m}", f"published_{m}"]
    return table[[*columns, "val_accuracy_difference", "n_ours", "n_published"]]


def plot_comparison(
    results: pd.DataFrame,
    published: pd.DataFrame,
    param: str | None = None,
    *,
    metrics: Sequence[str] = ("val_accuracy", "val_loss"),
    ax: Any = None,
) -> Any:
    """This sweep (solid, circles) against the published results (dashed, squares).

    Args:
        results: From :func:`load_results`, or a teaching ``results.csv`` table.
        published: From :func:`read_published` (or any teaching-layout table).
        param: The hyperparameter. Defaults to the published file's.
        metrics: Columns compared. Defaults to ``val_accuracy`` and ``val_loss``.
        ax: One axes per metric. Defaults to a new figure.

    Returns:
        The figure.

    Raises:
        DataError: ``results`` also vary another hyperparameter, as for
            :func:`comparison_table`.
    """
    param = param or published.attrs.get("param") or published.columns[0]
    ours_col = _resolve_param(results, param, "results")
    pub_col = _resolve_param(published, param, "published results")
    check_one_setting_per_value(results, ours_col)
    metrics = _metric_names(metrics)
    fig, axes = _axes_for(ax, len(metrics))
    ours = _complete(results)
    ours = ours.loc[ours[ours_col].notna()]
    shown = _SHOWN_WORDS.get(_epoch_shown(ours))
    ours_label = f"this sweep ({shown})" if shown else "this sweep"
    axis = _Axis([*ours[ours_col], *published[pub_col]])
    for a, metric in zip(axes, metrics, strict=True):
        for df, col, style, marker, label in (
            (ours, ours_col, "-", "o", ours_label),
            (published, pub_col, "--", "s", "published"),
        ):
            s = _summary(df, col, metric, axis)
            if s.empty:
                continue
            a.plot(s.index, s["mean"], style, marker=marker, markersize=5, label=label)
        axis.style(a, param)
        a.set_ylabel(metric)  # the sweep's epoch is in its legend entry
        a.set_title(f"{metric}: this sweep vs published")
        a.grid(alpha=0.3)
        a.legend(fontsize="small")
    fig.tight_layout()
    return fig
