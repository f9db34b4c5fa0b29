"""SIGTERM as an interrupt: one that Python drops in a callback still stops the work."""

from __future__ import annotations

import contextlib
import signal
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from appsleuth._interrupt import _interrupt, raise_if_dropped, sigterm_interrupts


class _Target:
    pass


def sigterm_in_a_weakref_callback(
    monkeypatch: pytest.MonkeyPatch, signum: int = signal.SIGTERM
) -> list[Any]:
    """Deliver SIGTERM (or ``signum``) where Python drops the handler's exception; returns
    what it dropped.

    The handler runs inside the weakref callback (raise_signal runs it at once), as it
    ran inside JAX's garbage-collector callback or a WeakKeyDictionary's when a
    ``train`` was killed: Python prints such an exception and goes on.
    """
    dropped: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    target = _Target()
    ref = weakref.ref(target, lambda _: signal.raise_signal(signum))
    del target
    assert ref() is None
    return dropped


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_sigterm_python_dropped_is_raised_again(
    monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    # Ctrl-C too: one dropped in JAX's garbage-collector callback let predict run to its end.
    with _sigint_handled_by(signal.default_int_handler), sigterm_interrupts():
        assert sigterm_in_a_weakref_callback(monkeypatch, signum) == [KeyboardInterrupt]
        with pytest.raises(KeyboardInterrupt):
            raise_if_dropped()
        raise_if_dropped()  # once: the interrupt now raised is the one to handle


def test_nothing_is_raised_without_a_sigterm_or_after_its_block() -> None:
    with sigterm_interrupts():
        raise_if_dropped()
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        signal.raise_signal(signal.SIGTERM)
    raise_if_dropped()  # that interrupt was handled: the next command starts afresh


def test_an_interrupt_dropped_in_a_nested_block_still_stops_the_outer_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # run_local's block inside the CLI's (sweep run, the demo): a SIGTERM dropped after
    # the sweep's last poll was forgotten when run_local's block ended, and the demo went
    # on to predict its mystery sample and finish with exit code 0.
    with sigterm_interrupts():
        with sigterm_interrupts():
            assert sigterm_in_a_weakref_callback(monkeypatch) == [KeyboardInterrupt]
        with pytest.raises(KeyboardInterrupt):
            raise_if_dropped()
        with sigterm_interrupts():
            sigterm_in_a_weakref_callback(monkeypatch)
    raise_if_dropped()  # the outermost block's end forgets it: the next command starts afresh


def test_a_ctrl_c_as_the_block_ends_leaves_no_handler_or_flag_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second Ctrl-C while run_local's block restored the handlers (the first one just
    # stopped the sweep) raised inside the restoring loop: Ctrl-C kept appsleuth's
    # handler and the flag stayed set, so a later, unrelated predict in the notebook
    # raised KeyboardInterrupt at its first chunk.
    real = signal.signal

    def restore_then_ctrl_c(signum: int, handler: Any) -> Any:
        previous = real(signum, handler)
        if signum == signal.SIGTERM and previous is _interrupt:
            signal.raise_signal(signal.SIGINT)
        return previous

    with _sigint_handled_by(signal.default_int_handler):
        with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
            monkeypatch.setattr(signal, "signal", restore_then_ctrl_c)
        monkeypatch.undo()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        raise_if_dropped()  # the Ctrl-C was raised (as the block ended), not dropped


def test_a_ctrl_c_as_the_block_starts_leaves_no_handler_or_flag_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C between setting SIGTERM's handler and entering the block raised before the
    # block could restore anything: SIGTERM kept appsleuth's handler for good.
    real = signal.signal

    def set_then_ctrl_c(signum: int, handler: Any) -> Any:
        previous = real(signum, handler)
        if signum == signal.SIGTERM and handler is _interrupt:
            signal.raise_signal(signal.SIGINT)
        return previous

    before = signal.getsignal(signal.SIGTERM)
    with _sigint_handled_by(signal.default_int_handler):
        monkeypatch.setattr(signal, "signal", set_then_ctrl_c)
        entered: list[bool] = []
        with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
            entered.append(True)
        monkeypatch.undo()
        assert not entered  # the Ctrl-C came first
        assert signal.getsignal(signal.SIGTERM) is before
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        raise_if_dropped()


def test_ctrl_c_is_left_alone_where_python_does_not_handle_it() -> None:
    # Ignored (a process started in the background) or another's (a kernel): kept as is.
    with _sigint_handled_by(signal.SIG_IGN):
        with sigterm_interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    with _sigint_handled_by(signal.default_int_handler):
        with sigterm_interrupts():
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@contextlib.contextmanager
def _sigint_handled_by(handler: Any) -> Iterator[None]:
    # As Python starts a process in the foreground (or the background), whatever the
    # test runner set.
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_command_python_dropped_a_sigterm_in_ends_as_interrupted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Dropped after the command's last check (a local sweep's last poll): it finished its
    # work, but was asked to stop, so it exits as interrupted (130) rather than done (0).
    import appsleuth.cli as cli_module

    def command(**kwargs: Any) -> int:
        assert sigterm_in_a_weakref_callback(monkeypatch) == [KeyboardInterrupt]
        return 0

    monkeypatch.setattr(cli_module.cli, "main", command)
    assert cli_module.main(["info"]) == 130
    assert "appsleuth: interrupted" in capsys.readouterr().err
    monkeypatch.setattr(cli_module.cli, "main", lambda **kwargs: 0)
    assert cli_module.main(["info"]) == 0  # the next command starts afresh

    def stopped(**kwargs: Any) -> int:  # as sweep run --wait: caught, said, exit 130
        sigterm_in_a_weakref_callback(monkeypatch)
        return 130

    capsys.readouterr()
    monkeypatch.setattr(cli_module.cli, "main", stopped)
    assert cli_module.main(["info"]) == 130
    assert "appsleuth: interrupted" not in capsys.readouterr().err  # said once, by it
