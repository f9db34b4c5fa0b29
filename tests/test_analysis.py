"""Post-analysis: the results table and the figures, on hand-made sweep directories.

The run directories here are written by hand in the format ``train`` leaves (history,
metrics and metadata), so the figures can be checked against known numbers without
training anything.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest

from appsleuth.analysis import (
    comparison_table,
    load_histories,
    load_results,
    plot_comparison,
    plot_learning_curves,
    plot_metric_vs_param,
    plot_small_multiples,
    read_published,
)
from appsleuth.errors import DataError, SpecError
from appsleuth.evaluate import classification_metrics, diagnose_fit
from appsleuth.report import render_report
from appsleuth.run import metadata_problem, run_status
from appsleuth.sweep import SweepSpec, prepare_sweep_dir, read_plan

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "lesson_results"
CLASSES = ["Chrome", "Gmail", "Moriarty"]


def _history(final_acc: float, epochs: int = 3) -> pd.DataFrame:
    steps = np.linspace(0.5, 1.0, epochs)
    return pd.DataFrame(
        {
            "loss": 1.0 - 0.8 * steps * final_acc,
            "accuracy": steps * (final_acc + 0.01),
            "val_loss": 1.0 - 0.7 * steps * final_acc,
            "val_accuracy": steps * final_acc,
        }
    )


def write_fake_run(
    run_dir: Path,
    *,
    status: str = "complete",
    final_acc: float = 0.9,
    wall_time: float = 2.0,
    error: str | None = None,
    dataset: str = "synthetic-sherlock18(seed=0)",
    extra: dict[str, Any] | None = None,
) -> None:
    """A run directory in the format ``appsleuth.run.train`` writes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if status == "failed":
        meta = {"status": "failed", "format_version": 1, "error": error, "wall_time_s": wall_time}
        (run_dir / "model_metadata.json").write_text(json.dumps({**meta, **(extra or {})}))
        return
    history = _history(final_acc)
    history.to_csv(run_dir / "model_history.csv", index=False)
    if status == "incomplete":
        return
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    pred = np.where(rng.random(90) < final_acc, y, (y + 1) % 3)
    metrics = {**classification_metrics(y, pred, CLASSES), "fit": diagnose_fit(history)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    last = {k: float(history[k].iloc[-1]) for k in history}
    meta = {
        "status": "complete",
        "format_version": 1,
        "dataset": dataset,
        "synthetic": True,
        "last_results": last,
        "epochs_run": len(history),
        "wall_time_s": wall_time,
        "seconds_per_epoch": wall_time / 4,
        "engine": "fused",
        "SLURM_JOB_ID": None,
        "split": {"kind": "random", "val_fraction": 0.2, "seed": 34, "n_train": 72, "n_val": 18},
        "hardware": {"hostname": "laptop", "cpu_count": 2, "cores_available": 1, "device": "cpu"},
        **(extra or {}),
    }
    (run_dir / "model_metadata.json").write_text(json.dumps(meta))


def fake_sweep(
    out: Path,
    spec: dict[str, Any],
    outcome: Callable[[int, dict[str, Any]], dict[str, Any] | None],
) -> Path:
    """A planned sweep whose trial ``i`` gets ``write_fake_run(**outcome(i, params))``.

    ``outcome`` returning None leaves the trial pending.
    """
    base = {"name": "fake", "data": {"rows": 600}, "base": {"train": {"epochs": 3}}}
    # Unchecked data: a sweep whose data went away after it ran is one case reported on.
    sweep_dir = prepare_sweep_dir(SweepSpec.from_dict({**base, **spec}), out, check_data=False)
    for trial in read_plan(sweep_dir):
        kwargs = outcome(trial.index, trial.params)
        if kwargs is not None:
            write_fake_run(sweep_dir / trial.name, **kwargs)
    return sweep_dir


def add_operating_point(run_dir: Path, **at_1pct: Any) -> None:
    """Give a fake run's metrics.json operating points, ``at_1pct`` the one at 1 %."""
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    none = {"threshold": None, "detection_rate": None, "reason": None}
    metrics["malware"]["operating_points"] = [
        {**none, "false_alarm_target": 0.1, "threshold": 0.2, "detection_rate": 0.9},
        {**none, "false_alarm_target": 0.01, **at_1pct},
        {**none, "false_alarm_target": 0.001, "reason": "not measurable: 60 benign sample(s)"},
    ]
    path.write_text(json.dumps(metrics))


@pytest.fixture
def alarm_sweep(tmp_path: Path) -> Path:
    """Trials at 1 % false alarms: measured, not measurable, none caught, older run."""
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"hidden_neurons": [2, 4, 8, 16]}}, lambda i, p: {"final_acc": 0.9}
    )
    names = [trial.name for trial in read_plan(sweep_dir)]
    add_operating_point(sweep_dir / names[0], threshold=0.42, detection_rate=0.75)
    add_operating_point(sweep_dir / names[1], reason="not measurable: 60 benign sample(s)")
    add_operating_point(sweep_dir / names[2], detection_rate=0.0, reason="no threshold catches")
    return sweep_dir


def test_load_results_carry_moriarty_detection_at_1pct_false_alarms(alarm_sweep: Path) -> None:
    # metrics.json recorded the operating points, but a sweep's table had only the
    # argmax detection rate: trials could not be compared at a fixed false-alarm rate.
    results = load_results(alarm_sweep)
    detection = results["moriarty_detection_rate_at_1pct_false_alarms"]
    threshold = results["moriarty_threshold_at_1pct_false_alarms"]
    assert detection[0] == 0.75 and threshold[0] == 0.42
    assert np.isnan(detection[1]) and np.isnan(threshold[1])  # not measurable
    assert detection[2] == 0.0 and np.isnan(threshold[2])  # nothing caught: no threshold
    assert np.isnan(detection[3]) and np.isnan(threshold[3])  # from before operating points
    columns = list(results.columns)
    assert columns.index("moriarty_false_alarm_rate") + 1 == columns.index(detection.name)


@pytest.fixture
def lr_sweep(tmp_path: Path) -> Path:
    """Learning rates over three decades, two seeds each; accuracy known per trial."""
    accs = {0.0001: (0.80, 0.84), 0.001: (0.90, 0.94), 0.1: (0.60, 0.50)}

    def outcome(i: int, params: dict[str, Any]) -> dict[str, Any]:
        return {"final_acc": accs[params["learning_rate"]][i % 2], "wall_time": 1.0 + i}

    spec = {"grid": {"learning_rate": [0.0001, 0.001, 0.1]}, "repeats": 2}
    return fake_sweep(tmp_path, spec, outcome)


def test_load_results_one_row_per_trial_in_every_state(tmp_path: Path) -> None:
    def outcome(i: int, params: dict[str, Any]) -> dict[str, Any] | None:
        return [
            {"final_acc": 0.9},
            {"status": "failed", "error": "TrainingDivergedError: loss is nan"},
            {"status": "incomplete"},
            None,
        ][i]

    sweep_dir = fake_sweep(tmp_path, {"grid": {"hidden_neurons": [2, 4, 8, 16]}}, outcome)
    results = load_results(sweep_dir)
    assert list(results["status"]) == ["complete", "failed", "incomplete", "pending"]
    assert list(results["hidden_neurons"]) == [2, 4, 8, 16]
    assert results.attrs["varied"] == ["hidden_neurons"]
    assert results.loc[0, "val_accuracy"] == pytest.approx(0.9)
    assert results.loc[0, "fit_diagnosis"] in ("good fit", "overfitting", "underfitting")
    assert results.loc[1, "error"] == "TrainingDivergedError: loss is nan"
    assert np.isnan(results.loc[1, "val_accuracy"]) and np.isnan(results.loc[3, "val_accuracy"])
    assert results.loc[0, "moriarty_detection_rate"] is not None
    assert list(results["learning_rate"].unique()) == [0.0003]


def test_a_varied_engine_keeps_apart_from_the_engine_that_trained(tmp_path: Path) -> None:
    # Varying the engine gave two "engine" columns: this plot, and so the report, died
    # on a traceback ("Cannot index with multidimensional key").
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"engine": ["fused", "fit"]}},
        lambda i, p: {"final_acc": [0.8, 0.9][i], "extra": {"engine": p["engine"]}},
    )
    results = load_results(sweep_dir)
    assert not results.columns.duplicated().any()
    assert results.attrs["varied"] == ["param_engine"]
    assert list(results["param_engine"]) == ["fused", "fit"]
    assert list(results["engine"]) == ["fused", "fit"]
    fig = plot_metric_vs_param(results, "param_engine", metrics=("accuracy",))
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [0.9, 0.8])  # fit, fused


def test_a_history_that_is_a_pipe_or_device_is_not_read(tmp_path: Path) -> None:
    import os

    from appsleuth.sweep.store import collect_results

    # The history CSVs were the records still read unbounded: a model_history.csv that
    # is a named pipe hung load_histories, `sweep collect` and the report (waiting for a
    # writer), and one linked to /dev/zero read until memory ran out.
    sweep_dir = fake_sweep(tmp_path, {"grid": {"batch_size": [16, 32]}}, lambda i, p: {})
    pipe, zero = (sweep_dir / t.name / "model_history.csv" for t in read_plan(sweep_dir))
    pipe.unlink()
    os.mkfifo(pipe)
    zero.unlink()
    zero.symlink_to("/dev/zero")
    assert load_histories(sweep_dir) == {}
    _, full = collect_results(sweep_dir)
    assert pd.read_csv(full)["status"].tolist() == ["complete", "complete"]


def test_load_results_rejects_a_directory_that_is_no_sweep(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a sweep directory"):
        load_results(tmp_path)


def test_metric_vs_param_log_scale_and_seed_means(lr_sweep: Path) -> None:
    results = load_results(lr_sweep)
    assert results.attrs["repeats"]
    fig = plot_metric_vs_param(results, "learning_rate")
    acc_ax, loss_ax = fig.axes[:2]
    assert matplotlib.get_backend().lower() == "agg"
    assert acc_ax.get_xscale() == "log" and loss_ax.get_xscale() == "log"
    training, validation = acc_ax.lines[:2]
    assert training.get_linestyle() == "--" and validation.get_linestyle() == "-"
    np.testing.assert_allclose(validation.get_xdata(), [0.0001, 0.001, 0.1])
    # The mean over the two seeds of each learning rate.
    np.testing.assert_allclose(validation.get_ydata(), [0.82, 0.92, 0.55])
    assert acc_ax.collections, "repeats need a spread (min-max band and error bars)"
    assert "mean of seeds" in acc_ax.get_title()
    assert [t.get_text() for t in acc_ax.get_xticklabels()] == ["0.0001", "0.001", "0.1"]


def test_metric_vs_param_linear_without_repeats(tmp_path: Path) -> None:
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32, 64]}},
        lambda i, p: {"final_acc": 0.7 + 0.1 * i},
    )
    fig = plot_metric_vs_param(load_results(sweep_dir), "batch_size", metrics=("accuracy",))
    (ax,) = fig.axes
    assert ax.get_xscale() == "linear"  # 64 / 16 < 100
    assert not ax.collections
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.7, 0.8, 0.9])


def test_metric_vs_param_keeps_the_other_parameters_of_a_grid_apart(tmp_path: Path) -> None:
    accs = {(4, 0.001): 0.22, (4, 0.03): 0.58, (16, 0.001): 0.41, (16, 0.03): 0.93}
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"hidden_neurons": [4, 16], "learning_rate": [0.001, 0.03]}},
        lambda i, p: {"final_acc": accs[(p["hidden_neurons"], p["learning_rate"])]},
    )
    results = load_results(sweep_dir)
    assert not results.attrs["repeats"]
    fig = plot_metric_vs_param(results, "hidden_neurons", metrics=("accuracy",))
    (ax,) = fig.axes
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
    validation = {label: y for label, y in lines.items() if "validation" in label}
    # One line per learning rate, none averaging two of them.
    assert validation.keys() == {
        "learning_rate=0.001 (validation)",
        "learning_rate=0.03 (validation)",
    }
    np.testing.assert_allclose(validation["learning_rate=0.001 (validation)"], [0.22, 0.41])
    np.testing.assert_allclose(validation["learning_rate=0.03 (validation)"], [0.58, 0.93])
    assert "mean of seeds" not in ax.get_title() and not ax.collections


def test_metric_vs_param_hidden_layers_are_categories(tmp_path: Path) -> None:
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"hidden_neurons": [[18, 18], [18], [18, 18, 18]]}},
        lambda i, p: {"final_acc": [0.95, 0.9, 0.93][i]},
    )
    results = load_results(sweep_dir)
    assert list(results["hidden_neurons"]) == ["[18, 18]", "[18]", "[18, 18, 18]"]
    fig = plot_metric_vs_param(results, "hidden", metrics=("accuracy",))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["[18]", "[18, 18]", "[18, 18, 18]"]  # by depth
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.9, 0.95, 0.93])


def _tick_labels(ax: Any) -> list[Any]:
    """The x tick labels drawn (major and minor), after checking that none touch."""
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    labels = [
        t
        for t in [*ax.get_xticklabels(), *ax.get_xticklabels(minor=True)]
        if t.get_text() and t.get_visible()
    ]
    boxes = [t.get_window_extent(renderer) for t in labels]
    touching = [
        (labels[i].get_text(), labels[j].get_text())
        for i, j in itertools.combinations(range(len(boxes)), 2)
        if boxes[i].overlaps(boxes[j])
    ]
    assert not touching, f"tick labels run into each other: {touching}"
    return labels


@pytest.mark.parametrize(
    ("param", "values", "ticks"),
    [
        # The teaching neuron and batch-size scans: on a linear axis 1, 2, 4 (and 16, 32,
        # 64) ran into each other.
        ("hidden_neurons", [1, 2, 4, 8, 12, 18, 40, 80], ["1", "2", "4", "8", "12", "18",
                                                           "40", "80"]),
        ("batch_size", [16, 32, 64, 128, 512, 1024], ["16", "32", "64", "128", "512", "1024"]),
        # Values a random search drew: too close to label each; the axis's own ticks.
        ("learning_rate", [0.000194231, 0.0004204, 0.00105595, 0.00125657, 0.00452278], None),
    ],
)  # fmt: skip
def test_numeric_tick_labels_do_not_run_into_each_other(
    tmp_path: Path, param: str, values: list[float], ticks: list[str] | None
) -> None:
    import matplotlib.pyplot as plt

    sweep_dir = fake_sweep(tmp_path, {"grid": {param: values}}, lambda i, p: {})
    fig = plot_metric_vs_param(load_results(sweep_dir), param, metrics="accuracy")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in _tick_labels(ax)]
    if ticks is not None:
        assert labels == ticks
    else:
        assert labels and not set(labels) & {f"{v:g}" for v in values}
    plt.close(fig)


@pytest.mark.parametrize(
    ("values", "slanted"),
    [
        ([[64] * 4, [128] * 4, [256] * 4], True),  # side by side, these ran into each other
        ([[18], [18, 18], [18, 18, 18], [18, 18, 18, 18]], True),  # the teaching layer scan
        ([[18], [18, 18]], False),
    ],
)
def test_category_labels_slant_when_they_would_not_fit_side_by_side(
    tmp_path: Path, values: list[list[int]], slanted: bool
) -> None:
    import matplotlib.pyplot as plt

    sweep_dir = fake_sweep(tmp_path, {"grid": {"hidden_neurons": values}}, lambda i, p: {})
    fig = plot_metric_vs_param(load_results(sweep_dir), "hidden_neurons", metrics="accuracy")
    (ax,) = fig.axes
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in labels]
    ticks = ax.transData.transform([(x, 0) for x in ax.get_xticks()])[:, 0]
    if slanted:
        # Each slanted label ends at its own tick (its box passes it by at most a line's
        # height, the slant of its last letter), so none reaches under the next one.
        assert all(t.get_rotation() == 30 for t in labels)
        line = labels[0].get_fontsize() * fig.dpi / 72
        assert all(0 <= b.x1 - t <= line for b, t in zip(boxes, ticks, strict=True))
    else:
        assert all(t.get_rotation() == 0 for t in labels)
        assert not any(a.overlaps(b) for a, b in itertools.pairwise(boxes))
    plt.close(fig)


def test_metric_vs_param_draws_into_given_axes_and_checks_them(lr_sweep: Path) -> None:
    import matplotlib.pyplot as plt

    results = load_results(lr_sweep)
    fig, ax = plt.subplots()
    assert plot_metric_vs_param(results, "learning_rate", metrics=("loss",), ax=ax) is fig
    assert len(ax.lines) == 2
    with pytest.raises(SpecError, match=r"one matplotlib axes per metric \(2\); received 1"):
        plot_metric_vs_param(results, "learning_rate", ax=ax)
    with pytest.raises(SpecError, match="param 'dropout' is not a column of the results"):
        plot_metric_vs_param(results, "dropout")
    plt.close("all")


def test_metric_vs_param_with_no_complete_trial(tmp_path: Path) -> None:
    sweep_dir = fake_sweep(tmp_path, {"grid": {"batch_size": [16, 32]}}, lambda i, p: None)
    fig = plot_metric_vs_param(load_results(sweep_dir), "batch_size")
    assert not fig.axes[0].lines
    assert "no complete trial" in fig.axes[0].texts[0].get_text()


def test_learning_curves_overlay_every_trial(lr_sweep: Path) -> None:
    histories = load_histories(lr_sweep)
    assert len(histories) == 6
    assert "learning_rate=0.001, seed=1" in histories
    fig = plot_learning_curves(lr_sweep, metrics=("accuracy",))
    ax = fig.axes[0]
    assert len(ax.lines) == 12  # a training and a validation curve per trial
    styles = [line.get_linestyle() for line in ax.lines]
    assert styles.count("--") == 6 and styles.count("-") == 6
    val = next(line for line in ax.lines if line.get_linestyle() == "-")
    np.testing.assert_allclose(val.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(val.get_ydata(), _history(0.80)["val_accuracy"])


def _legends_clear_of_the_lines(fig: Any) -> list[Any]:
    """The figure's legends, each checked to lie outside every panel's plotting area."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(ax.bbox) for ax in fig.axes), "a legend hides lines"
        assert box.x1 <= fig.bbox.x1, "a legend runs off the figure"
    return legends


def test_long_legends_go_beside_the_panels(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    grid = {"dropout": [0.0, 0.2], "activation": ["relu", "tanh", "sigmoid"]}
    sweep_dir = fake_sweep(tmp_path, {"grid": grid}, lambda i, p: {"final_acc": 0.5 + i / 20})
    results = load_results(sweep_dir)
    # Inside, these legends (6 trials; 3 activations a line each) hid lines.
    curves = plot_learning_curves(sweep_dir, metrics="accuracy")
    assert len(_legends_clear_of_the_lines(curves)) == 1
    by_dropout = plot_metric_vs_param(results, "dropout", metrics="accuracy")
    assert len(_legends_clear_of_the_lines(by_dropout)) == 1
    # Axes the caller passed keep a legend each, inside: their layout is the caller's.
    _, axes = plt.subplots(1, 2)
    plot_learning_curves(sweep_dir, ax=axes)
    assert all(a.get_legend() is not None for a in axes)
    short = plot_learning_curves([_history(0.9), _history(0.8)])  # 4 entries fit inside
    assert all(a.get_legend() is not None for a in short.axes)
    plt.close("all")


def test_too_many_combinations_of_the_other_settings_for_a_legend(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    # As a random search: every trial its own value of the other setting.
    grid = {"learning_rate": [0.001, 0.01], "dropout": [i / 20 for i in range(12)]}
    sweep_dir = fake_sweep(tmp_path, {"grid": grid}, lambda i, p: {})
    fig = plot_metric_vs_param(load_results(sweep_dir), "learning_rate", metrics="accuracy")
    (ax,) = fig.axes
    assert len(ax.lines) == 24  # still a line per combination and kind: none averaged
    fig.canvas.draw()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["training", "validation"]
    assert legend.get_title().get_text() == "a colour per dropout"
    box = legend.get_window_extent(fig.canvas.get_renderer())
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1  # 24 entries ran off the figure
    assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
    plt.close(fig)


def test_learning_curves_from_frames_and_a_run_directory(tmp_path: Path) -> None:
    fig = plot_learning_curves([_history(0.9), _history(0.8)])
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 4
    write_fake_run(tmp_path / "model_1H18N_lr0.0003_bs32_e3")
    fig = plot_learning_curves(tmp_path / "model_1H18N_lr0.0003_bs32_e3")
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(DataError, match="neither a sweep directory"):
        load_histories(tmp_path)


def test_one_metric_name_and_keras_histories(lr_sweep: Path) -> None:
    fig = plot_learning_curves(lr_sweep, metrics="loss")
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "loss"
    fig = plot_metric_vs_param(load_results(lr_sweep), "learning_rate", metrics="accuracy")
    assert len(fig.axes) == 1
    keras_dict = {k: list(v) for k, v in _history(0.9).to_dict("list").items()}
    fig = plot_learning_curves(keras_dict, metrics="accuracy")
    assert len(fig.axes[0].lines) == 2  # one run: training and validation

    class FakeHistory:  # what model.fit returns
        history = keras_dict

    assert len(plot_learning_curves(FakeHistory(), metrics="accuracy").axes[0].lines) == 2
    with pytest.raises(SpecError, match=r"metrics must be one or more metric names"):
        plot_learning_curves(lr_sweep, metrics=[1])


def test_small_multiples_one_panel_per_trial(lr_sweep: Path) -> None:
    fig = plot_small_multiples(lr_sweep, ncols=4, highlight="learning_rate=0.001, seed=0")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6 and len(fig.axes) == 8  # a 2 x 4 grid, two panels unused
    assert all(len(ax.lines) == 2 for ax in visible)
    titles = [ax.get_title() for ax in visible]
    assert "learning_rate=0.001, seed=0 (best)" in titles


@pytest.mark.parametrize(
    "grid",
    [
        # Labels of three settings: "dropout=0.2, activation=tanh, optimizer=rmsprop".
        {"dropout": [0.0, 0.2], "activation": ["relu", "tanh"], "optimizer": ["adam", "rmsprop"]},
        {"hidden_neurons": [[64, 64, 64, 64], [128, 128, 128, 128]], "learning_rate": [1e-4]},
    ],
)
def test_small_multiples_titles_do_not_overlap(tmp_path: Path, grid: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    sweep_dir = fake_sweep(tmp_path, {"grid": grid}, lambda i, p: {"final_acc": 0.5 + i / 20})
    histories = load_histories(sweep_dir)
    best = next(iter(histories))
    fig = plot_small_multiples(histories, highlight=best)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
    assert len(titles) == len(histories) >= 2
    for i, a in enumerate(titles):
        assert a.x0 >= 0 and a.x1 <= fig.bbox.x1, "a title runs off the figure"
        assert not any(a.overlaps(b) for b in titles[i + 1 :]), "two panel titles overlap"
    assert any("(best)" in ax.get_title() for ax in fig.axes)
    plt.close(fig)


def test_small_multiples_on_given_axes(lr_sweep: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3)
    assert plot_small_multiples(lr_sweep, ax=axes) is fig
    assert sum(ax.get_visible() for ax in fig.axes) == 6  # 6 trials, 3 axes left over
    with pytest.raises(SpecError, match=r"ax must hold one axes per trial \(6\); received 4"):
        plot_small_multiples(lr_sweep, ax=axes[:2, :2])
    plt.close("all")


def test_read_published_layouts() -> None:
    neurons = read_published(REFERENCE / "post_processing_hpc_neurons.csv")
    assert neurons.attrs["param"] == "hidden_neurons"
    layers = read_published(REFERENCE / "notebook_10epochs_layers.csv")  # says "neurons"
    assert layers.attrs["param"] == "hidden_neurons"
    assert list(layers["hidden_neurons"]) == ["[18]", "[18, 18]", "[18, 18, 18]"]


def test_read_published_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_published(tmp_path / "nope.csv")
    # A directory or a named pipe was said not to exist (and a device read for ever).
    with pytest.raises(DataError, match=r"cannot be read as CSV: it is a directory, not a"):
        read_published(tmp_path)
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(DataError, match=r"cannot be read as CSV: it is a named pipe, not a"):
        read_published(tmp_path / "pipe.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("batch_size,loss,accuracy\n16,0.1,0.9\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['val_loss', 'val_accuracy'\]"):
        read_published(bad)
    only = tmp_path / "only.csv"
    only.write_text("loss,accuracy,val_loss,val_accuracy\n0.1,0.9,0.1,0.9\n")
    with pytest.raises(DataError, match="has no hyperparameter column"):
        read_published(only)
    text = tmp_path / "text.csv"
    text.write_text(
        "neurons,loss,accuracy,val_loss,val_accuracy\n1,0.1,0.9,0.1,0.9\n2,0.1,abc,0.1,x\n"
    )
    with pytest.raises(
        DataError, match=r"'accuracy' must hold numbers, but data row 1 \(line 3\) holds 'abc'"
    ):
        read_published(text)
    infinite = tmp_path / "inf.csv"
    infinite.write_text(
        "neurons,loss,accuracy,val_loss,val_accuracy\n1,0.1,0.9,0.1,0.9\n2,0.1,0.9,0.1,-inf\n"
    )
    with pytest.raises(
        DataError,
        match=r"'val_accuracy' must hold finite numbers \(or be empty\), but data row 1 "
        r"\(line 3\) holds -?inf",
    ):
        read_published(infinite)


def test_comparison_matches_values_and_averages_repeats(tmp_path: Path) -> None:
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"hidden_neurons": [1, 4, 5]}},
        lambda i, p: {"final_acc": [0.3, 0.9, 0.91][i]},
    )
    results = load_results(sweep_dir)
    published = read_published(REFERENCE / "post_processing_hpc_neurons.csv")
    table = comparison_table(results, published)
    row = table.loc[table["hidden_neurons"] == "4"].iloc[0]
    assert row["ours_val_accuracy"] == pytest.approx(0.9)
    assert row["published_val_accuracy"] == pytest.approx(0.9103559255599976)
    assert row["val_accuracy_difference"] == pytest.approx(0.9 - 0.9103559255599976)
    five = table.loc[table["hidden_neurons"] == "5"].iloc[0]
    assert five["n_published"] == 0 and np.isnan(five["published_val_accuracy"])
    fig = plot_comparison(results, published)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"  # 1 .. 1024
    ours, theirs = ax.lines
    np.testing.assert_allclose(ours.get_xdata(), [1, 4, 5])
    assert theirs.get_linestyle() == "--" and len(theirs.get_xdata()) == len(published)

    repeated = read_published(REFERENCE / "post_processing_hpc_lr_higher_vals.csv")
    lr = comparison_table(repeated.assign(status="complete"), repeated)
    assert list(lr["learning_rate"])[:2] == ["0.0001", "0.0003"]  # sorted by value
    first = lr.loc[lr["learning_rate"] == "0.13"].iloc[0]
    assert first["n_ours"] == first["n_published"] == 30
    assert first["ours_val_accuracy"] == pytest.approx(
        repeated.loc[repeated["learning_rate"] == 0.13, "val_accuracy"].mean()
    )


def test_comparison_refuses_to_average_the_settings_of_a_grid(tmp_path: Path) -> None:
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"hidden_neurons": [1, 4], "learning_rate": [0.0003, 0.1]}},
        lambda i, p: {"final_acc": 0.9 if p["learning_rate"] == 0.0003 else 0.1},
    )
    results = load_results(sweep_dir)
    published = read_published(REFERENCE / "post_processing_hpc_neurons.csv")
    # Each hidden_neurons value read 0.5, the mean of a good and a diverged setting.
    for compare in (comparison_table, plot_comparison):
        with pytest.raises(DataError, match=r"these results also vary learning_rate, so .* "
                           r"select one value of learning_rate first"):  # fmt: skip
            compare(results, published)
    one = results[results["learning_rate"] == 0.0003]
    row = comparison_table(one, published).set_index("hidden_neurons").loc["4"]
    assert row["ours_val_accuracy"] == pytest.approx(0.9)


def _epochs(kept: int | None) -> dict[str, Any]:
    """A fake trial of 3 epochs whose results are of epoch ``kept`` (None: not recorded)."""
    return {"extra": {"epochs_run": 3, **({} if kept is None else {"results_epoch": kept})}}


@pytest.mark.parametrize(
    ("kept", "ylabel", "ours"),
    [
        # Early stopping restored epoch 2 of 3 in one trial: "final accuracy" was wrong.
        ([2, 3], "accuracy at last or restored epoch", "this sweep (last or restored epoch)"),
        ([3, 3], "accuracy at last epoch", "this sweep (last epoch)"),
        # Runs recorded before results_epoch: which epoch is not known, so none is claimed.
        ([None, 3], "accuracy", "this sweep"),
    ],
)  # fmt: skip
def test_result_plots_say_which_epoch_they_show(
    tmp_path: Path, kept: list[int | None], ylabel: str, ours: str
) -> None:
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"hidden_neurons": [1, 4]}}, lambda i, p: _epochs(kept[i])
    )
    results = load_results(sweep_dir)
    assert list(results["results_epoch"].fillna(0)) == [k or 0 for k in kept]
    (ax,) = plot_metric_vs_param(results, "hidden_neurons", metrics=("accuracy",)).axes
    assert (ax.get_ylabel(), ax.get_title()) == (ylabel, "accuracy vs hidden_neurons")
    published = read_published(REFERENCE / "post_processing_hpc_neurons.csv")
    ax = plot_comparison(results, published, metrics=("val_accuracy",)).axes[0]
    assert "final" not in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [ours, "published"]


def test_result_plots_of_a_teaching_table_claim_no_epoch(lr_sweep: Path) -> None:
    # A results.csv (teaching layout) has no epochs columns: its numbers could be either.
    table = load_results(lr_sweep).drop(columns=["epochs_run", "results_epoch"])
    acc_ax = plot_metric_vs_param(table, "learning_rate").axes[0]
    assert acc_ax.get_ylabel() == "accuracy"
    assert acc_ax.get_title() == "accuracy vs learning_rate (mean of seeds)"


@pytest.mark.parametrize(
    "damage",
    [
        {"last_results": 5},
        {"last_results": [1, 2]},
        {"last_results": {"loss": 0.1, "accuracy": 0.9, "val_loss": 0.1, "val_accuracy": 5.0}},
        {"last_results": {"loss": 0.1, "accuracy": 0.9, "val_loss": 0.1, "val_accuracy": "high"}},
        {"last_results": {"loss": 0.1, "accuracy": 0.9, "val_loss": 0.1, "val_accuracy": True}},
        {"wall_time_s": "x"},
        {"epochs_run": "x"},
    ],
)
def test_a_damaged_record_shows_no_result(tmp_path: Path, damage: dict[str, Any]) -> None:
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"hidden_neurons": [1, 4]}},
        lambda i, p: {"final_acc": 0.8, "extra": damage if i == 1 else None},
    )
    results = load_results(sweep_dir)
    assert list(results["status"]) == ["complete", "incomplete"]
    assert results["val_accuracy"].iloc[1] != results["val_accuracy"].iloc[1]  # NaN
    assert render_report(sweep_dir, log=lambda m: None).count("500.00") == 0
    damaged = sweep_dir / results["name"].iloc[1]
    assert run_status(damaged) == "incomplete"
    problem = metadata_problem(json.loads((damaged / "model_metadata.json").read_text()))
    assert problem is not None and next(iter(damage)) in problem


def test_a_damaged_metrics_file_is_not_shown_as_numbers(tmp_path: Path) -> None:
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"hidden_neurons": [1, 4]}}, lambda i, p: {"final_acc": 0.8 + 0.1 * i}
    )
    best = sweep_dir / load_results(sweep_dir)["name"].iloc[1]
    metrics = json.loads((best / "metrics.json").read_text())
    for bad in ({**metrics, "per_class": 5}, {**metrics, "accuracy": "zz-bogus"}, []):
        (best / "metrics.json").write_text(json.dumps(bad))
        page = render_report(sweep_dir, log=lambda m: None)
        assert page.startswith("<!DOCTYPE html>") and "zz-bogus" not in page


def test_results_csv_carries_the_seed_when_seeds_repeat(tmp_path: Path) -> None:
    from appsleuth.sweep import collect_results

    def seeded(i: int, params: dict[str, Any]) -> dict[str, Any]:
        return {"final_acc": 0.8, "extra": {"seed": 34 + i % 2}}

    repeated = fake_sweep(tmp_path / "r", {"grid": {"batch_size": [16]}, "repeats": 2}, seeded)
    results, _ = collect_results(repeated)
    table = pd.read_csv(results)
    assert list(table.columns) == [
        "batch_size",
        "seed",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
    ]
    assert sorted(table["seed"]) == [34, 35]
    once = fake_sweep(tmp_path / "o", {"grid": {"batch_size": [16, 32]}}, lambda i, p: {})
    assert "seed" not in pd.read_csv(collect_results(once)[0]).columns


def test_results_csv_keeps_a_varied_loss_function_apart_from_the_final_loss(
    tmp_path: Path,
) -> None:
    from appsleuth.sweep import collect_results

    losses = ["auto", "sparse_categorical_crossentropy"]
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"loss": losses}}, lambda i, p: {"final_acc": 0.5 + i / 10}
    )
    results, _ = collect_results(sweep_dir)
    header = results.read_text().splitlines()[0]
    assert header == "param_loss,loss,accuracy,val_loss,val_accuracy"
    table = pd.read_csv(results)
    assert list(table["param_loss"]) == losses
    np.testing.assert_allclose(table["loss"], load_results(sweep_dir)["loss"])


def test_status_says_when_results_csv_is_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from appsleuth.cli import main
    from appsleuth.sweep import collect_results
    from appsleuth.sweep.store import results_behind

    sweep_dir = fake_sweep(tmp_path, {"grid": {"batch_size": [16, 32]}}, lambda i, p: {})
    assert results_behind(sweep_dir) == 2  # never collected
    results, _ = collect_results(sweep_dir)
    assert results_behind(sweep_dir) == 0
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    assert "does not include" not in capsys.readouterr().err
    old = results.stat().st_mtime - 60
    os.utime(results, (old, old))  # a trial finished after the last collect
    assert results_behind(sweep_dir) == 2
    assert main(["sweep", "status", str(sweep_dir)]) == 0
    assert "results.csv does not include 2 complete trial(s) yet" in capsys.readouterr().err


def test_summarize_seeds_matches_pandas(lr_sweep: Path) -> None:
    from appsleuth.analysis import summarize_seeds

    results = load_results(lr_sweep)
    table = summarize_seeds(results)
    expected = results.groupby("learning_rate")["val_accuracy"].agg(["mean", "std", "min", "max"])
    expected = expected.sort_values("mean", ascending=False)
    assert list(table["learning_rate"]) == list(expected.index) == [0.001, 0.0001, 0.1]
    for column in ("mean", "std", "min", "max"):
        assert table[f"val_accuracy_{column}"].to_numpy() == pytest.approx(
            expected[column].to_numpy()
        )
    assert table["val_loss_mean"].to_numpy() == pytest.approx(
        results.groupby("learning_rate")["val_loss"].mean()[expected.index].to_numpy()
    )
    assert list(table["trials"]) == list(table["complete"]) == [2, 2, 2]


def test_summarize_seeds_breaks_a_tie_by_the_lower_mean_loss(tmp_path: Path) -> None:
    from appsleuth.analysis import summarize_seeds
    from appsleuth.run import best_run_key

    val_loss = {16: 0.5, 32: 0.3}  # the same accuracy, batch size 32 has the lower loss

    def outcome(i: int, params: dict[str, Any]) -> dict[str, Any]:
        last = {"loss": 0.4, "accuracy": 0.8, "val_loss": val_loss[params["batch_size"]],
                "val_accuracy": 0.75}  # fmt: skip
        return {"extra": {"last_results": last}}

    sweep_dir = fake_sweep(tmp_path, {"grid": {"batch_size": [16, 32]}, "repeats": 2}, outcome)
    results = load_results(sweep_dir)
    table = summarize_seeds(results)
    assert list(table["batch_size"]) == [32, 16]
    best = min(results.index, key=lambda i: best_run_key(results.loc[i], i))
    assert results.loc[best, "batch_size"] == table["batch_size"].iloc[0]


def test_summarize_seeds_leaves_out_trials_without_a_result(tmp_path: Path) -> None:
    from appsleuth.analysis import summarize_seeds

    outcomes = [{"final_acc": 0.9}, {"status": "failed", "error": "x"}, None, None]
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"batch_size": [16, 32]}, "repeats": 2}, lambda i, p: outcomes[i]
    )
    table = summarize_seeds(load_results(sweep_dir))
    assert list(table["batch_size"]) == [16, 32]  # the setting without a result goes last
    assert list(table["complete"]) == [1, 0] and list(table["trials"]) == [2, 2]
    assert table.loc[0, "val_accuracy_mean"] == pytest.approx(0.9)
    assert np.isnan(table.loc[0, "val_accuracy_std"])  # one seed: no spread
    assert np.isnan(table.loc[1, "val_accuracy_mean"])


def test_a_results_table_is_not_taken_for_a_history(lr_sweep: Path) -> None:
    # load_results' table has loss/accuracy columns, one row per trial: drawn as one
    # run's epochs it made a learning curve out of six trials without a word.
    from appsleuth.analysis import summarize_seeds

    results = load_results(lr_sweep)
    for plot in (plot_learning_curves, plot_small_multiples):
        with pytest.raises(DataError, match=rf"results table .* sweep directory \({lr_sweep}\)"):
            plot(results)
    with pytest.raises(DataError, match=r"from load_results; it lacks column\(s\) \['status'"):
        summarize_seeds(_history(0.8))


def test_list_text_python_cannot_parse_stays_text() -> None:
    from appsleuth.analysis import _parsed

    assert _parsed("[18, 18]") == [18, 18]
    deep = "[" + "-" * 100_000 + "1]"  # Python's parser runs out of memory on it
    assert _parsed(deep) == deep


def test_trials_lines_are_told_apart_without_colour_vision(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    # tab10 drew trial 3 green and trial 4 red, one colour to a red-green colour-blind
    # reader, with nothing else to tell the lines apart.
    okabe_ito = {"#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#000000"}
    fig = plot_learning_curves([_history(0.5 + i / 20) for i in range(6)], metrics="accuracy")
    (ax,) = fig.axes
    validation = [line for line in ax.lines if line.get_linestyle() == "-"]
    colours = [to_hex(line.get_color()) for line in validation]
    markers = [line.get_marker() for line in validation]
    assert set(colours) <= okabe_ito and len(set(colours)) == 6
    assert len(set(markers)) == 6 and "None" not in markers
    legend = ax.get_legend() or fig.legends[0]
    assert [h.get_marker() for h in legend.legend_handles[2:]] == markers
    # The lines of the other settings in a metric-vs-parameter plot likewise.
    grid = {"hidden_neurons": [4, 16], "learning_rate": [0.001, 0.01, 0.1]}
    sweep_dir = fake_sweep(tmp_path, {"grid": grid}, lambda i, p: {})
    fig = plot_metric_vs_param(load_results(sweep_dir), "hidden_neurons", metrics="accuracy")
    lines = [line for line in fig.axes[0].lines if line.get_linestyle() == "-"]
    assert len({to_hex(line.get_color()) for line in lines}) == 3
    assert {to_hex(line.get_color()) for line in lines} <= okabe_ito
    assert len({line.get_marker() for line in lines}) == 3
    plt.close("all")


def test_load_results_and_results_full_name_each_quantity_alike(tmp_path: Path) -> None:
    from appsleuth.sweep import collect_results

    def outcome(i: int, params: dict[str, Any]) -> dict[str, Any]:
        return {"final_acc": 0.9, "wall_time": 3.0 + i}

    spec = {"grid": {"learning_rate": [0.001, 0.01], "dropout": [0.0, 0.2]}}
    sweep_dir = fake_sweep(tmp_path, spec, outcome)
    results = load_results(sweep_dir)
    full = pd.read_csv(collect_results(sweep_dir)[1])
    # It read duration_s beside the file's wall_time_s, moriarty_detection_rate beside
    # moriarty_recall, and had three columns the file lacked.
    varied_only = {"dropout"}  # the file has it as param_dropout
    assert set(results.columns) - set(full.columns) == varied_only
    assert {"param_dropout", "param_learning_rate"} <= set(full.columns)
    for column in ("wall_time_s", "moriarty_detection_rate", "moriarty_false_alarm_rate"):
        assert full[column].tolist() == pytest.approx(results[column].tolist(), nan_ok=True)
    assert full["fit_reason"].tolist() == results["fit_reason"].tolist()


def test_metric_vs_param_tells_training_from_validation_by_colour_too(tmp_path: Path) -> None:
    from matplotlib.colors import to_rgba

    # Both were drawn in one colour, told apart by the dashes alone.
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"batch_size": [16, 32]}}, lambda i, p: {"final_acc": 0.8}
    )
    (ax,) = plot_metric_vs_param(load_results(sweep_dir), "batch_size", metrics="accuracy").axes
    training, validation = ax.lines
    assert to_rgba(training.get_color()) != to_rgba(validation.get_color())
    assert training.get_linestyle() != validation.get_linestyle()
    assert to_rgba(training.get_markerfacecolor()) == to_rgba("white")  # hollow
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training", "validation"]
    # In a grid, each combination's colour is validation's, a tint of it training's.
    grid = fake_sweep(
        tmp_path / "grid",
        {"grid": {"batch_size": [16, 32], "learning_rate": [0.001, 0.01]}},
        lambda i, p: {"final_acc": 0.8},
    )
    (ax,) = plot_metric_vs_param(load_results(grid), "batch_size", metrics="accuracy").axes
    colours = {line.get_label(): to_rgba(line.get_color()) for line in ax.lines}
    for rate in ("0.001", "0.01"):
        assert (
            colours[f"learning_rate={rate} (training)"]
            != colours[f"learning_rate={rate} (validation)"]
        )
    assert len(set(colours.values())) == 4


def test_training_and_validation_have_the_same_colours_in_every_figure_of_a_sweep(
    tmp_path: Path,
) -> None:
    from matplotlib.colors import to_rgba

    from appsleuth.analysis import plot_small_multiples

    # The learning-curve panels drew training blue and validation orange, the
    # metric-vs-hyperparameter figure the other way round, in one report.
    sweep_dir = fake_sweep(tmp_path, {"grid": {"batch_size": [16, 32]}}, lambda i, p: {})
    (ax,) = plot_metric_vs_param(load_results(sweep_dir), "batch_size", metrics="accuracy").axes
    panels = plot_small_multiples(load_histories(sweep_dir))
    for lines in (ax.lines, panels.axes[0].lines):
        colours = {line.get_label(): to_rgba(line.get_color()) for line in lines}
        assert colours == {"training": to_rgba("#0072B2"), "validation": to_rgba("#D55E00")}


def test_learning_curve_legends_are_large_enough_to_read(tmp_path: Path) -> None:
    from appsleuth.analysis import plot_small_multiples

    # At the report's 80 dpi, x-small legends (7 pt) were about 7 pixels high.
    sweep_dir = fake_sweep(tmp_path, {"grid": {"batch_size": [16, 32, 64]}}, lambda i, p: {})
    curves = plot_learning_curves(sweep_dir, metrics="accuracy")
    panels = plot_small_multiples(load_histories(sweep_dir))
    for fig in (curves, panels):
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert legends
        assert all(t.get_fontsize() >= 8 for legend in legends for t in legend.get_texts())
