"""Plot functions return figures, draw on given axes, and save atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from appsleuth.plots import plot_confusion_matrix, plot_loss_accuracy, save_figure


def _history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "loss": [1.0, 0.5, 0.3],
            "accuracy": [0.6, 0.8, 0.9],
            "val_loss": [1.1, 0.6, 0.4],
            "val_accuracy": [0.55, 0.75, 0.88],
        }
    )


def test_loss_accuracy_new_figure_and_given_axes(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = plot_loss_accuracy(_history(), title="run")
    assert len(fig.axes) == 2
    lines = fig.axes[0].get_lines()
    assert [ln.get_linestyle() for ln in lines] == ["--", "-"]  # training dashed
    np.testing.assert_allclose(lines[1].get_ydata(), [1.1, 0.6, 0.4])
    fig2, axes = plt.subplots(2, 2)
    assert plot_loss_accuracy(_history(), axes=axes[1]) is fig2
    assert len(axes[1][0].get_lines()) == 2 and not axes[0][0].get_lines()
    path = save_figure(fig, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
    plt.close("all")


def test_confusion_matrix_labels_and_values() -> None:
    import matplotlib.pyplot as plt

    counts = [[8, 2], [1, 9]]
    fig = plot_confusion_matrix(counts, ["Facebook", "WhatsApp"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Facebook", "WhatsApp"]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["0.10", "0.20", "0.80", "0.90"]
    fig, ax = plt.subplots()
    assert plot_confusion_matrix(counts, ["a", "b"], ax=ax, normalize=False) is fig
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "8", "9"]
    plt.close("all")
