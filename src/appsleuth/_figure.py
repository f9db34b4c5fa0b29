"""The class of the pyplot figures appsleuth makes for the user: shown once in a notebook."""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure

__all__ = ["NotebookFigure"]


class NotebookFigure(Figure):
    """A matplotlib ``Figure`` that Jupyter shows once, also as a cell's last value.

    Jupyter's inline backend shows every figure pyplot holds when a cell ends, and
    IPython shows a cell's value as well: ``plot_loss_accuracy(history)`` as the last
    line of a cell drew the same figure twice. Under that backend a figure displayed
    before the cell ends is let go by pyplot, so the backend does not show it again.
    """

    def __repr__(self) -> str:
        # What matplotlib prints for any figure: the class is an implementation detail.
        return super().__repr__().replace(type(self).__name__, "Figure", 1)

    def _ipython_display_(self) -> None:
        if _inline_backend():
            import matplotlib.pyplot as plt

            plt.close(self)  # shown now: the backend must not show it again
        raise NotImplementedError  # IPython then shows it as any figure


def _inline_backend() -> bool:
    backend = str(matplotlib.get_backend())
    return backend == "inline" or backend.endswith("matplotlib_inline.backend_inline")
