"""What the machine offers: CPU cores, the cores this process may use, JAX devices, SLURM.

A run records :func:`describe_hardware` in its metadata so that its timings can be read
against the machine that produced them.
"""

from __future__ import annotations

import os
import platform
from typing import Any

__all__ = ["apply_thread_limits", "available_cores", "describe_hardware", "slurm_environment"]

_SLURM_KEYS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CPUS_PER_TASK",
               "SLURM_JOB_PARTITION", "SLURM_NODELIST")  # fmt: skip


def available_cores() -> int:
    """Cores this process may run on: the SLURM allocation, else the CPU affinity mask."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def slurm_environment() -> dict[str, str]:
    """The SLURM variables of the current job (empty outside SLURM)."""
    return {k: os.environ[k] for k in _SLURM_KEYS if k in os.environ}


def describe_hardware() -> dict[str, Any]:
    """Machine, cores and the accelerator devices the Keras backend sees."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cores_available": available_cores(),
        "processor": platform.processor() or None,
    }
    backend = os.environ.get("KERAS_BACKEND", "jax")
    info["backend"] = backend
    if backend == "jax":
        try:
            import jax

            devices = jax.devices()
            info["devices"] = [
                f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip() for d in devices
            ]
            info["device"] = devices[0].platform if devices else "cpu"
        except Exception as exc:  # a broken accelerator stack must not stop a CPU run
            info["devices"] = []
            info["device"] = f"unknown ({type(exc).__name__})"
    else:
        info["devices"] = []
        info["device"] = "cpu"
    return info


_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


def apply_thread_limits(threads: int, cores: list[int] | None = None) -> None:
    """Limit this process to ``threads`` threads; call before the backend is imported.

    Sets the OpenMP/BLAS/TensorFlow thread variables and XLA's CPU flags, and pins the
    process to ``cores`` (default: the first ``threads`` cores it may use), so that
    several trials side by side never oversubscribe the machine.

    Args:
        threads: Threads (cores) for this process; at least 1.
        cores: The CPU ids to pin to. Defaults to the first ``threads`` allowed ones.
    """
    threads = max(1, int(threads))
    for var in _THREAD_VARIABLES:
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    flags = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism"))
    ]
    if threads == 1:
        flags += ["--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"]
    else:
        flags += [f"intra_op_parallelism_threads={threads}"]
    os.environ["XLA_FLAGS"] = " ".join(flags)
    try:
        allowed = sorted(os.sched_getaffinity(0))
        chosen = [c for c in (cores or allowed[:threads]) if c in allowed] or allowed[:threads]
        os.sched_setaffinity(0, chosen)
    except (AttributeError, OSError):
        pass  # no affinity control on this system: the variables still apply
