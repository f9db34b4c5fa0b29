"""Work the fused engine starts ahead, on other cores, while the current epoch finishes.

An epoch of the fused engine is a chain: shuffle, train (one compiled program, a long
serial chain of small steps on one core), then validate and call the callbacks in
Python. Only the training programs depend on one another. So, with a second core:

- the next epoch's shuffle is computed while this epoch trains, keyed by the step count
  the next epoch will start at (assuming one optimizer step per batch);
- the next epoch's training starts as soon as this one's ends, from the state it ended
  with, while this epoch is validated and its callbacks run.

Both are speculative and checked before use: a shuffle is used only if the step count
really is the one it was keyed by, and an epoch started ahead only if, after the
callbacks, the model holds the very arrays it started from (a callback that assigns any
variable, such as a weight restore, replaces them), or, for a scalar such as the
learning rate, the very same value (``LearningRateScheduler`` assigns it every epoch,
changed or not), and training goes on. Otherwise that result is dropped and the work is
done again in order, so results are exactly those of running everything in turn. After
two epochs in a row dropped (a schedule changing the learning rate every epoch), no
more epochs are started ahead in that run (shuffles still are).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["WorkAhead"]

# Epochs started ahead and dropped in a row after which no more are started in a run.
_DROPS_TO_STOP = 2


class WorkAhead:
    """Shuffles and epochs started ahead on background threads, checked before use.

    Args:
        enabled: Whether to start anything ahead; False computes everything when asked.
    """

    def __init__(self, enabled: bool) -> None:
        # Two threads: the next epoch's training and the shuffle after it run at once.
        pool = ThreadPoolExecutor(2, thread_name_prefix="appsleuth-ahead") if enabled else None
        self._pool = pool
        self.epochs_ahead = enabled
        self._shuffle: tuple[int, Future[Any]] | None = None
        self._epoch: tuple[int, Sequence[Sequence[Any]], Future[Any]] | None = None
        self._dropped = 0  # Epochs started ahead and dropped since the last one used.

    def start_shuffle(self, count: int, compute: Callable[[], Any]) -> None:
        """Start computing the shuffle for the epoch that begins at step ``count``."""
        if self._pool is not None:
            self._shuffle = (count, self._pool.submit(_computed, compute))

    def shuffle(self, count: int, compute: Callable[[], Any]) -> Any:
        """The shuffle for step ``count``: the one started ahead if it was keyed by
        ``count``, else ``compute()`` now."""
        started, self._shuffle = self._shuffle, None
        if started is not None and started[0] == count:
            return started[1].result()
        return compute()

    def start_epoch(
        self, epoch: int, state: Sequence[Sequence[Any]], compute: Callable[[], Any]
    ) -> None:
        """Start training ``epoch`` from ``state`` (the model's state arrays) ahead."""
        if self._pool is not None and self.epochs_ahead:
            self._epoch = (epoch, state, self._pool.submit(_computed, compute))

    def epoch(self, epoch: int, state: Sequence[Sequence[Any]]) -> Any | None:
        """The result of ``epoch`` started ahead, if it started from exactly ``state``;
        else None (and after two in a row, no more epochs are started ahead)."""
        started, self._epoch = self._epoch, None
        if started is None:
            return None
        if started[0] == epoch and _same_arrays(started[1], state):
            self._dropped = 0
            return started[2].result()
        self._dropped += 1
        if self._dropped >= _DROPS_TO_STOP:
            self.epochs_ahead = False
        return None

    def close(self) -> None:
        """Drop whatever was started ahead; a program already running finishes on its
        own thread (XLA programs cannot be stopped) and its result is discarded."""
        self._shuffle = self._epoch = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _computed(compute: Callable[[], Any]) -> Any:
    import jax

    # Waited for on this thread: the work runs here, not when the caller reads it.
    return jax.block_until_ready(compute())


def _same_arrays(a: Sequence[Sequence[Any]], b: Sequence[Sequence[Any]]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


def _same(a: Any, b: Any) -> bool:
    # Identity, not equality: assigning a variable replaces its array, and comparing
    # values would cost a pass over every weight. Scalars (the learning rate, the step
    # count) are compared bit for bit: a schedule assigns the same rate again each epoch.
    if a is b:
        return True
    if getattr(a, "size", None) != 1 or getattr(b, "size", None) != 1:
        return False
    x, y = np.asarray(a), np.asarray(b)
    return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
