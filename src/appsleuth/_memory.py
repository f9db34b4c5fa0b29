"""Keep a long-lived process's memory flat over many trainings (sweep workers, notebooks).

JAX keeps every program it compiled, the small ones behind Keras' eager operations
included, for as long as the process lives; each model shape a process trains adds its
own (~15-25 MB per hidden-layer size on CPU), so a worker scanning fifty layer sizes grew
by about a gigabyte. Clearing the caches after every run would cost a trial of the same
shape its warm programs (1-4 s of recompiling), so they are cleared only once resident
memory has grown by more than a limit since the first run.
"""

from __future__ import annotations

import gc
import os
import sys

from appsleuth._keras import backend_name

__all__ = ["GROWTH_LIMIT_MB", "release_programs_if_grown", "resident_mb"]

# Growth of resident memory, since the first run of the process, that clears the caches.
GROWTH_LIMIT_MB = 160.0

# Resident memory after the first run, raised to what stays after each clearing: memory
# that clearing cannot give back must not make every later run clear (and recompile).
_baseline_mb: float | None = None
# Whether a run has started in this process: a check before the first run must not set
# the baseline, which would then count that run's own memory (its data on the device,
# its compiled programs: ~160 MB for the 273,129 default rows) as growth.
_run_started = False


def resident_mb() -> float | None:
    """This process's resident memory in MiB, or None where the system does not say (Linux
    tells through ``/proc``)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def release_programs_if_grown(
    limit_mb: float = GROWTH_LIMIT_MB, *, before_run: bool = False
) -> bool:
    """Forget JAX's compiled programs if memory has grown past ``limit_mb``.

    Args:
        limit_mb: Growth since the process's first run that triggers the clearing.
            Defaults to :data:`GROWTH_LIMIT_MB`.
        before_run: Called as a run starts (the fused engine, before it compiles) rather
            than after one ends (``appsleuth.train``): before the process's first run,
            nothing is measured.

    Returns:
        Whether the caches were cleared (never under another Keras backend, or where
        resident memory is unknown).
    """
    global _baseline_mb, _run_started
    if before_run and not _run_started:
        _run_started = True
        return False
    _run_started = True
    jax = sys.modules.get("jax")
    if jax is None or backend_name() != "jax":
        return False
    now = resident_mb()
    if now is None:
        return False
    if _baseline_mb is None:
        _baseline_mb = now
        return False
    if now - _baseline_mb <= limit_mb:
        return False
    from appsleuth.engines.fused import clear_fused_cache

    clear_fused_cache()
    jax.clear_caches()
    gc.collect()
    _return_freed_memory()
    after = resident_mb()
    _baseline_mb = max(_baseline_mb, after if after is not None else now)
    return True


def _return_freed_memory() -> None:
    # glibc keeps freed blocks for reuse, so resident memory would not show the clearing
    # and the baseline would creep up with every one.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc
