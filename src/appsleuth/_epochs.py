"""Seconds per epoch from epoch timings: the median after the warm-up epochs."""

from __future__ import annotations

import statistics

__all__ = ["WARM_UP_EPOCHS", "steady_seconds_per_epoch"]

# Epochs left out of seconds per epoch: the first compiles, and the fused engine trains
# the second ahead while the first still compiles its validation, so the second ends soon
# after the first (a third of the usual time or less) and would make the median too small.
WARM_UP_EPOCHS = 2


def steady_seconds_per_epoch(seconds: list[float]) -> float | None:
    """The median of epoch times after the warm-up.

    Args:
        seconds: Each epoch's seconds, in order (as ``EpochTimer`` records them).

    Returns:
        The median after the first ``WARM_UP_EPOCHS`` epochs; with no more epochs than
        that, after the first only (or of the one epoch); None without any.
    """
    steady = seconds[WARM_UP_EPOCHS:] or seconds[1:] or seconds
    return statistics.median(steady) if steady else None
