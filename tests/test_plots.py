"""Plot functions return figures, draw on given axes, and save atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from appsleuth.errors import SpecError
from appsleuth.plots import off_screen, plot_confusion_matrix, plot_loss_accuracy, save_figure


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


def test_confusion_matrix_says_what_its_numbers_are() -> None:
    import matplotlib.pyplot as plt

    # The run's plot is titled with the run's name, which dropped "share of each true
    # app"; and 1 row in 1,000 showed as "0.00", the same as no confusion at all.
    fig = plot_confusion_matrix([[999, 1], [0, 10]], ["a", "b"], title="run: validation")
    assert fig.axes[1].get_ylabel() == "share of the true app's rows"
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["1.00", "1.00", "<0.01"]
    fig = plot_confusion_matrix([[9, 1], [0, 10]], ["a", "b"], normalize=False)
    assert fig.axes[1].get_ylabel() == "rows"
    plt.close("all")


def test_confusion_matrix_cell_values_are_not_measured_for_the_layout(tmp_path: Path) -> None:
    # The layout measured every cell's text (324 for 18 apps, one plot per trial of a
    # sweep); they lie inside the axes, so leaving them out gives the same image.
    counts = np.arange(36).reshape(6, 6) * 97 % 1000
    names = [f"app number {i}" for i in range(6)]
    with off_screen():
        fig = plot_confusion_matrix(counts, names, normalize=False)
        assert fig.axes[0].texts and not any(t.get_in_layout() for t in fig.axes[0].texts)
        fig.tight_layout()  # as below: a second layout pass moves things by a pixel
        save_figure(fig, tmp_path / "out.png")
        fig = plot_confusion_matrix(counts, names, normalize=False)
        for text in fig.axes[0].texts:
            text.set_in_layout(True)
        fig.tight_layout()
        save_figure(fig, tmp_path / "measured.png")
    assert (tmp_path / "out.png").read_bytes() == (tmp_path / "measured.png").read_bytes()


def test_save_figure_refuses_a_nul_path(tmp_path: Path) -> None:
    from appsleuth.errors import DataError

    with off_screen():
        fig = plot_loss_accuracy(_history())
        with pytest.raises(DataError, match=r"path must be a path without a NUL character"):
            save_figure(fig, str(tmp_path / "a\0b.png"))
    assert list(tmp_path.iterdir()) == []


def test_loss_accuracy_takes_ax_like_every_plot() -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2)
    assert plot_loss_accuracy(_history(), ax=axes) is fig
    assert [len(a.get_lines()) for a in axes] == [2, 2]
    with pytest.raises(SpecError, match=r"ax must be two matplotlib axes \(loss, accuracy\); rec"):
        plot_loss_accuracy(_history(), ax=[axes[0]])
    with pytest.raises(SpecError, match=r"give the two axes as ax= \(or axes="):
        plot_loss_accuracy(_history(), ax=axes, axes=axes)
    plt.close("all")


def _backend(name: str):
    """Switch matplotlib to the backend ``name`` until the generator is resumed."""
    before = matplotlib.get_backend()
    matplotlib.use(name)
    yield
    matplotlib.use(before)


@pytest.fixture
def svg_backend():
    """The user's own (non-Agg) backend, restored afterwards."""
    yield from _backend("svg")


def test_plots_keep_the_users_backend(svg_backend) -> None:
    import matplotlib.pyplot as plt

    fig = plot_confusion_matrix(np.eye(2), ["a", "b"])
    assert matplotlib.get_backend() == "svg"
    assert plt.fignum_exists(fig.number)  # a pyplot figure: shown inline in a notebook
    plt.close(fig)


def test_figures_saved_off_screen_never_reach_pyplot(svg_backend, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    plt.close("all")
    with off_screen():
        fig = plot_loss_accuracy(_history())
        other = plot_confusion_matrix(np.eye(2), ["a", "b"])
    assert plt.get_fignums() == [] and matplotlib.get_backend() == "svg"
    save_figure(fig, tmp_path / "curves.png")
    save_figure(other, tmp_path / "cm.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "cm.png").stat().st_size > 1000


@pytest.fixture
def inline_backend():
    """Jupyter's inline backend (outside a kernel it only records figures), restored after."""
    yield from _backend("module://matplotlib_inline.backend_inline")


def test_a_figure_shows_once_in_a_notebook_also_as_a_cells_value(inline_backend) -> None:
    # The inline backend shows every figure pyplot holds when a cell ends; one that was
    # also the cell's value (or given to display()) was drawn a second time.
    import matplotlib.pyplot as plt
    from IPython.core.formatters import DisplayFormatter

    fig = plot_loss_accuracy(_history())
    assert plt.fignum_exists(fig.number)  # assigned, it is the backend's to show
    shown, _ = DisplayFormatter().format(fig)  # what IPython does with a cell's value
    assert shown["text/plain"] == "<Figure size 1000x400 with 2 Axes>"
    assert not plt.fignum_exists(fig.number)  # shown: the backend leaves it alone


def test_other_backends_keep_showing_figures_as_matplotlib_does(svg_backend) -> None:
    import matplotlib.pyplot as plt
    from IPython.core.formatters import DisplayFormatter

    fig = plot_confusion_matrix(np.eye(2), ["a", "b"])
    assert "text/plain" in DisplayFormatter().format(fig)[0]
    assert plt.fignum_exists(fig.number)
    plt.close(fig)


def test_plots_name_what_they_were_given_instead_of_pandas_or_numpy_errors() -> None:
    import matplotlib.pyplot as plt

    from appsleuth.errors import DataError

    before = plt.get_fignums()
    telemetry = pd.DataFrame({"CPU_USAGE": [1.0], "ApplicationName": ["Gmail"]})
    with pytest.raises(DataError, match=r"history must be per-epoch logs .* lacks column\(s\) "):
        plot_loss_accuracy(telemetry)
    with pytest.raises(DataError, match=r"counts must be 3 x 3, .* received shape \(2, 2\)"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"])
    assert plt.get_fignums() == before  # refused before a figure was made


def test_confusion_matrix_shows_app_names_with_dollars_as_they_are() -> None:
    import io

    import matplotlib.pyplot as plt

    # To matplotlib "$...$" is TeX: these stopped the plot (and the run) with a ValueError.
    names = [r"$\undefinedcmd$", "$x^{2$", "a$b"]
    fig = plot_confusion_matrix(np.eye(3), names)
    fig.savefig(io.BytesIO(), format="png", dpi=20)  # mathtext is parsed when drawn
    ax = fig.axes[0]
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        # Escaped for mathtext, so drawn as plain text: the names exactly as given.
        assert [t.get_text().replace(r"\$", "$") for t in ticks] == names
        assert all(t.get_text().count("$") == t.get_text().count(r"\$") for t in ticks)
    plt.close("all")


def test_roc_curves_with_their_area_in_the_legend() -> None:
    from appsleuth.errors import DataError
    from appsleuth.plots import plot_roc_curves

    curve = {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.8, 1.0]}
    fig = plot_roc_curves(
        {"net$work": {"roc_curve": curve, "roc_auc": 0.85}, "tree": {"roc_curve": curve}},
        positive="Moriarty",
    )
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["net\\$work (AUC 0.8500)", "tree (AUC –)", "chance (AUC 0.5)"]
    net, tree = ax.lines[:2]
    assert net.get_color() != tree.get_color() and net.get_linestyle() != tree.get_linestyle()
    assert "recall of Moriarty" in ax.get_ylabel()
    with pytest.raises(DataError, match=r"curves\['forest'\] holds no ROC curve"):
        plot_roc_curves({"forest": {"roc_auc": 0.9, "roc_curve": {"fpr": [0, 2], "tpr": [0, 1]}}})
    # Not a mapping of metrics: a TypeError or AttributeError from inside, before.
    with pytest.raises(DataError, match=r"curves\['forest'\] holds no ROC curve: .*received None"):
        plot_roc_curves({"forest": None})
    with pytest.raises(DataError, match=r"curves must map model names to metrics; received list"):
        plot_roc_curves([{"roc_curve": curve}])
