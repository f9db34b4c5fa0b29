"""Seconds per epoch after the warm-up (appsleuth._epochs), for runs, bench and sweeps."""

from __future__ import annotations

import pytest

from appsleuth._epochs import WARM_UP_EPOCHS, steady_seconds_per_epoch


@pytest.mark.parametrize(
    ("seconds", "median"),
    [
        # The fused engine's second epoch ends soon after the first, which compiled while
        # it trained: counted, it pulled the median down.
        ([5.0, 0.1, 1.0, 1.2], 1.1),
        ([5.0, 0.1, 1.0], 1.0),
        ([5.0, 1.0], 1.0),
        ([5.0], 5.0),
        ([], None),
    ],
)
def test_seconds_per_epoch_leave_out_the_warm_up_epochs(seconds, median):
    assert WARM_UP_EPOCHS == 2
    got = steady_seconds_per_epoch(seconds)
    assert got == (median if median is None else pytest.approx(median))
