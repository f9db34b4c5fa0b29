"""SIGTERM as an interrupt: one that Python drops in a callback still stops the work."""

from __future__ import annotations

import signal
import sys
import weakref
from typing import Any

import pytest

from appsleuth._interrupt import raise_if_dropped, sigterm_interrupts


class _Target:
    pass


def sigterm_in_a_weakref_callback(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Deliver SIGTERM where Python drops the handler's exception; returns what it dropped.

    The handler runs inside the weakref callback (raise_signal runs it at once), as it
    ran inside JAX's garbage-collector callback or a WeakKeyDictionary's when a
    ``train`` was killed: Python prints such an exception and goes on.
    """
    dropped: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    target = _Target()
    ref = weakref.ref(target, lambda _: signal.raise_signal(signal.SIGTERM))
    del target
    assert ref() is None
    return dropped


def test_a_sigterm_python_dropped_is_raised_again(monkeypatch: pytest.MonkeyPatch) -> None:
    with sigterm_interrupts():
        assert sigterm_in_a_weakref_callback(monkeypatch) == [KeyboardInterrupt]
        with pytest.raises(KeyboardInterrupt):
            raise_if_dropped()
        raise_if_dropped()  # once: the interrupt now raised is the one to handle


def test_nothing_is_raised_without_a_sigterm_or_after_its_block() -> None:
    with sigterm_interrupts():
        raise_if_dropped()
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        signal.raise_signal(signal.SIGTERM)
    raise_if_dropped()  # that interrupt was handled: the next command starts afresh
