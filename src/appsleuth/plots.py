"""Figures of a run: learning curves, the confusion matrix and a two-class task's ROC curves.

Every function takes ``ax=None`` and returns the matplotlib figure, for notebooks and
for the files a run directory holds. Nothing here calls ``plt.show()`` or changes your
matplotlib backend: a figure made for you is a pyplot figure on your backend (inline in
Jupyter, where it shows once, whether assigned or a cell's last value), and the figures
appsleuth saves itself (run directories, reports, bench) are drawn off screen, without
pyplot, so they never pop up in a notebook.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "close_figure",
    "flat_axes",
    "off_screen",
    "plot_confusion_matrix",
    "plot_loss_accuracy",
    "plot_roc_curves",
    "roc_points",
    "save_figure",
    "subplots",
]


_OFF_SCREEN: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "appsleuth_off_screen", default=False
)


@contextlib.contextmanager
def off_screen() -> Iterator[None]:
    """Within this block, new figures are plain ``Figure`` objects that pyplot never sees."""
    token = _OFF_SCREEN.set(True)
    try:
        yield
    finally:
        _OFF_SCREEN.reset(token)


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """A new figure and its axes, as ``plt.subplots`` makes them.

    Off screen (see :func:`off_screen`) the figure is detached from pyplot: saving it
    needs no backend, and a notebook's inline or widget backend never shows it.
    """
    if _OFF_SCREEN.get():
        from matplotlib.figure import Figure

        fig = Figure(figsize=kwargs.pop("figsize", None))
        return fig, fig.subplots(*args, **kwargs)
    import matplotlib.pyplot as plt

    from appsleuth._figure import NotebookFigure

    return plt.subplots(*args, FigureClass=NotebookFigure, **kwargs)


def flat_axes(ax: Any) -> list[Any]:
    """The axes a caller passed (one, a list, or a ``plt.subplots`` grid), in order."""
    return list(np.ravel(np.asarray(ax, dtype=object)))


def close_figure(fig: Any) -> None:
    """Release a figure: pyplot keeps the ones it made until they are closed."""
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)


def plot_loss_accuracy(
    history: pd.DataFrame,
    *,
    ax: Sequence[Any] | None = None,
    title: str | None = None,
    axes: Sequence[Any] | None = None,
) -> Any:
    """Loss and accuracy against epoch, training and validation, side by side.

    Args:
        history: Per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``
            (row i = epoch i + 1, as ``model_history.csv``).
        ax: Two matplotlib axes to draw on (loss, accuracy). Defaults to a new 1x2 figure.
        title: Figure title. Defaults to none.
        axes: The same as ``ax`` (its earlier name).

    Returns:
        The figure.

    Raises:
        SpecError: Not two axes, or both ``ax`` and ``axes`` given.
        DataError: ``history`` lacks ``loss`` or ``accuracy``.
    """
    from appsleuth.errors import DataError, SpecError

    absent = [c for c in ("loss", "accuracy") if c not in getattr(history, "columns", ())]
    if absent:
        # pandas' KeyError('loss') did not say that a history was expected.
        found = [str(c) for c in getattr(history, "columns", ())]
        raise DataError(
            f"history must be per-epoch logs (model_history.csv, RunResult.history); it "
            f"lacks column(s) {absent}; found {found[:12]}{' ...' if len(found) > 12 else ''}"
        )
    if ax is not None and axes is not None:
        raise SpecError("give the two axes as ax= (or axes=, its earlier name), not both")
    ax = ax if ax is not None else axes
    if ax is None:
        fig, axes = subplots(1, 2, figsize=(10, 4))
    else:
        axes = flat_axes(ax)
        if len(axes) != 2:
            raise SpecError(
                f"ax must be two matplotlib axes (loss, accuracy); received {len(axes)} axes"
            )
        fig = axes[0].figure
    epochs = np.arange(1, len(history) + 1)
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        ax.plot(epochs, history[metric], "--", marker="o", markersize=3, label="training")
        if f"val_{metric}" in history:
            ax.plot(
                epochs, history[f"val_{metric}"], "-", marker="o", markersize=3, label="validation"
            )
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("loss")
    axes[1].set_title("accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    counts: Sequence[Sequence[int]] | np.ndarray,
    classes: Sequence[str],
    *,
    ax: Any = None,
    normalize: bool = True,
    title: str | None = None,
) -> Any:
    """The confusion matrix with class names (rows: true app, columns: predicted app).

    Args:
        counts: Counts, rows = true class.
        classes: Class names, shown as they are (a ``$`` is no mathtext).
        ax: Axes to draw on. Defaults to a new figure sized for the number of classes.
        normalize: Colour and annotate by row share (recall per class). Defaults to True.
        title: Axes title. Defaults to "confusion matrix (share of each true app)", or
            "confusion matrix (counts)" when ``normalize`` is False.

    Returns:
        The figure.

    Raises:
        DataError: ``counts`` is not a square table with one row and column per class.
    """
    from appsleuth.errors import DataError

    counts = np.asarray(counts, dtype=np.float64)
    k = len(classes)
    if counts.shape != (k, k):
        raise DataError(
            f"counts must be {k} x {k}, one row and column per class ({k} classes given); "
            f"received shape {counts.shape}"
        )
    if ax is None:
        size = max(4.0, 0.5 * k + 2)
        fig, ax = subplots(figsize=(size + 1, size))
    else:
        fig = ax.figure
    rows = counts.sum(axis=1, keepdims=True)
    values = (
        np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalize else counts
    )
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    # A caller's title (the run's name) replaces the default one that said what the
    # numbers are, so the colour bar says it too.
    bar.set_label("share of the true app's rows" if normalize else "rows")
    # App names are data: a '$' in one would start matplotlib's mathtext, and one that
    # is no valid TeX stopped the plot (and with it the run that draws it).
    names = [str(c).replace("$", r"\$") for c in classes]
    ax.set_xticks(range(k), labels=names, rotation=60, ha="right")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted app")
    ax.set_ylabel("true app")
    ax.set_title(
        title
        or (
            "confusion matrix (share of each true app)"
            if normalize
            else "confusion matrix (counts)"
        ),
        fontsize=9,
        wrap=True,  # long run names would otherwise be clipped
    )
    if k <= 20:
        threshold = values.max() / 2 if values.size else 0
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                if counts[i, j] == 0:
                    continue
                # A few rows out of thousands read as "0.00", like no confusion at all.
                text = ("<0.01" if v < 0.005 else f"{v:.2f}") if normalize else f"{int(v)}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > threshold else "black",
                    # Inside the axes, so the layout need not measure each of them: the
                    # same image, ~15 % sooner (a sweep draws one per trial).
                    in_layout=False,
                )
    fig.tight_layout()
    return fig


# Okabe and Ito's colours with a line style each: curves told apart in any colour vision
# and on a grey printout.
_ROC_STYLES = (
    ("#0072B2", "-"), ("#D55E00", "--"), ("#009E73", "-."), ("#CC79A7", ":"),
    ("#E69F00", (0, (5, 1, 1, 1))), ("#56B4E9", (0, (1, 1))),
)  # fmt: skip


def plot_roc_curves(
    curves: Mapping[str, Mapping[str, Any]],
    *,
    positive: str | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """ROC curves of two-class models on the same rows, each with its AUC in the legend.

    Args:
        curves: Model name -> its metrics (``metrics.json``, or a baseline's), which hold
            ``roc_curve`` (``fpr`` and ``tpr`` lists) and ``roc_auc``.
        positive: The positive class (class 1), named on the axes. Defaults to none.
        ax: Axes to draw on. Defaults to a new square figure.
        title: Axes title. Defaults to "ROC curve" (with the positive class).

    Returns:
        The figure.

    Raises:
        DataError: No curve given, or one without a well-formed ``roc_curve``.
    """
    from appsleuth.errors import DataError

    if not isinstance(curves, Mapping):
        raise DataError(f"curves must map model names to metrics; received {type(curves).__name__}")
    if not curves:
        raise DataError("curves must name at least one model's metrics; received none")
    points = {}
    for name, metrics in curves.items():
        curve = roc_points(metrics)
        if curve is None:
            received = (
                f"keys {sorted(map(str, metrics))[:12]}"
                if isinstance(metrics, Mapping)
                else f"{metrics!r:.40}"
            )
            raise DataError(
                f"curves[{name!r}] holds no ROC curve: expected metrics of a two-class task "
                f"with roc_curve {{'fpr': [...], 'tpr': [...]}} (rates from 0 to 1, as "
                f"many of each); received {received}"
            )
        points[name] = curve
    if ax is None:
        fig, ax = subplots(figsize=(6, 5.2))
    else:
        fig = ax.figure
    for i, (name, (fpr, tpr)) in enumerate(points.items()):
        colour, style = _ROC_STYLES[i % len(_ROC_STYLES)]
        auc = curves[name].get("roc_auc")
        shown = f"AUC {auc:.4f}" if isinstance(auc, float | int) and np.isfinite(auc) else "AUC –"
        # Names are data: a '$' would start mathtext (see plot_confusion_matrix).
        escaped = str(name).replace("$", r"\$")
        label = f"{escaped} ({shown})"
        ax.plot(fpr, tpr, color=colour, linestyle=style, linewidth=1.8, label=label)
    ax.plot([0, 1], [0, 1], color="0.55", linestyle=":", linewidth=1, label="chance (AUC 0.5)")
    negative = f"share of the other class flagged as {positive}" if positive else ""
    ax.set_xlabel("false-positive rate" + (f"\n({negative})" if negative else ""))
    ax.set_ylabel("true-positive rate" + (f" (recall of {positive})" if positive else ""))
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(
        title or ("ROC curve" + (f" ({positive} as the positive class)" if positive else "")),
        fontsize=10,
        wrap=True,
    )
    fig.tight_layout()
    return fig


def roc_points(metrics: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The recorded ROC curve of ``metrics`` as (fpr, tpr) arrays, or None if it has none."""
    curve = metrics.get("roc_curve") if isinstance(metrics, Mapping) else None
    if not isinstance(curve, Mapping):
        return None
    try:
        fpr = np.asarray(curve.get("fpr"), dtype=np.float64)
        tpr = np.asarray(curve.get("tpr"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if fpr.ndim != 1 or fpr.shape != tpr.shape or len(fpr) < 2:
        return None
    both = np.r_[fpr, tpr]
    if not np.isfinite(both).all() or both.min() < 0 or both.max() > 1:
        return None
    return fpr, tpr


def save_figure(fig: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Save a figure atomically (temporary name, then rename) and close it.

    Args:
        fig: A matplotlib figure.
        path: The image file; its suffix chooses the format (``.png``, ``.svg``, ...).
        dpi: Resolution. Defaults to 110.

    Returns:
        ``path`` (as a Path).

    Raises:
        DataError: ``path`` holds a NUL character (the figure is closed all the same).
    """
    from appsleuth._atomic import atomic_output
    from appsleuth._files import refuse_nul

    path = Path(path)
    try:
        refuse_nul(path, "path")
        with atomic_output(path, keep_suffix=True) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        close_figure(fig)
    return path
