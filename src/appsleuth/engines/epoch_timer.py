"""A Keras callback timing each epoch from the previous epoch's end to its own."""

from __future__ import annotations

import time
from typing import Any

import keras

__all__ = ["EpochTimer"]


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch, each from the previous epoch's end (the first from the start
    of training) to its own, for either engine.

    Timed from ``on_epoch_begin`` an epoch would leave out the work the fused engine
    starts early (its training, started while the previous epoch was validated); timed
    end to end nothing is left out, the Python between epochs (callbacks, files) included.

    Args:
        seconds: The list to append each epoch's seconds to. Defaults to a new one.
    """

    def __init__(self, seconds: list[float] | None = None) -> None:
        super().__init__()
        self.seconds: list[float] = [] if seconds is None else seconds
        self._last = 0.0

    def on_train_begin(self, logs: Any = None) -> None:
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now
