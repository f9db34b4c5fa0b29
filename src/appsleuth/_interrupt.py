"""SIGTERM as an interrupt (as Ctrl-C) that Python cannot drop on the way.

``kill``, ``scancel`` and a SLURM time limit send SIGTERM, whose default ends the
process at once. Within :func:`sigterm_interrupts` it raises ``KeyboardInterrupt``
instead, so that the clean-up Ctrl-C gets runs first. Python runs a signal handler at
the next bytecode of the main thread; while JAX computes that is often a weakref or
garbage-collector callback, where an exception is printed ("Exception ignored in ...")
and dropped: a killed ``train`` then trained on to the end. The handler also records
the signal, and :func:`raise_if_dropped`, called where training can stop (between
epochs, before a run is recorded complete), raises it again. Ctrl-C (SIGINT) is
dropped the same way, so it is recorded too, where it has Python's own handler.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

_pending = False  # a SIGTERM or Ctrl-C arrived and its interrupt may not have stopped anything
_depth = 0  # blocks open (run_local's inside the CLI's): only the outermost forgets _pending


def _interrupt(signum: int, frame: Any) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM stops the command as Ctrl-C does (and both are recorded)."""
    global _pending, _depth
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return
    # Held until the block can restore what it set: one raised in between would leave
    # _interrupt in place for good. Delivered (to _interrupt) once the block is entered.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}
    # Ctrl-C only where Python's handler has it: not where it is ignored (a process
    # started in the background) or handled otherwise (an enclosing block, a kernel).
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    _depth += 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        yield
    finally:
        # Held until the handlers are back: a second Ctrl-C now (the first stopped the
        # work) would raise inside this loop and leave _interrupt and _pending behind for
        # a later, unrelated call. Delivered once unblocked, to the handler restored.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, previous)
        try:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            _depth -= 1
            if not _depth:
                # An inner block's end is not the command's: one dropped there (say after
                # a sweep's last poll) must still stop the enclosing command.
                _pending = False
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def raise_if_dropped() -> None:
    """Raise ``KeyboardInterrupt`` once if a SIGTERM (or Ctrl-C) arrived and the process goes on.

    Called only where the interrupt, had it been raised, would have ended the work
    already: reaching such a point means Python dropped it.
    """
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt
