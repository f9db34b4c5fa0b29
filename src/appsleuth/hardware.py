"""What the machine offers, and how much of it a process uses.

:func:`detect_devices` reports the CPU cores (total and available to this process), the
SLURM allocation and the devices JAX sees (with their memory); a run records the shorter
:func:`describe_hardware` in its metadata so that its timings can be read against the
machine that produced them. :func:`configure_backend` (threads and device, for the CLI)
and :func:`apply_thread_limits` (for sweep workers) must run before the Keras backend is
imported: thread pools and visible devices are fixed when it starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from appsleuth._keras import backend_name, backend_problem, backend_version, check_backend
from appsleuth.errors import SpecError

__all__ = [
    "DEVICES",
    "JAX_CUDA",
    "apply_device",
    "apply_thread_limits",
    "available_cores",
    "check_device",
    "configure_backend",
    "cpu_quota",
    "describe_hardware",
    "detect_devices",
    "slurm_environment",
]

# How to get JAX's CUDA build: appsleuth is installed from its checkout, so its extra is
# named by path (pip would look "appsleuth[cuda]" up on PyPI).
JAX_CUDA = "JAX's CUDA build: pip install -e '.[cuda]' in the appsleuth checkout"

DEVICES = ("auto", "cpu", "gpu")

_SLURM_KEYS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CPUS_PER_TASK",
               "SLURM_JOB_PARTITION", "SLURM_NODELIST")  # fmt: skip


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity mask, capped by the SLURM
    allocation and by its cgroup's CPU quota.

    The SLURM cap matters where SLURM's variables outlive their job's cgroup (a shell
    from ``salloc`` on the login node); the quota where a container limited to a few
    CPUs still has every core of its host in its mask.
    """
    caps = (len(_affinity()), _slurm_cpus(), cpu_quota())
    return min(c for c in caps if c is not None)


_PROC_CGROUP = "/proc/self/cgroup"


def cpu_quota(root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int | None:
    """This process's cgroup CPU quota in whole cores (rounded up); None when unlimited.

    The tightest quota of its cgroup and the cgroups above it, cgroup v2 (``cpu.max``)
    or v1 (``cpu.cfs_quota_us``); None where there is no cgroup file system.

    Args:
        root: Where the cgroup file system is mounted. Defaults to ``/sys/fs/cgroup``.
    """
    quotas = []
    for folder in _cgroup_cpu_folders(Path(root)):
        if (folder / "cpu.max").is_file():  # v2: "max 100000" or "200000 100000"
            quota, _, period = _read_text(folder / "cpu.max").partition(" ")
        else:  # v1: -1 for no quota
            quota = _read_text(folder / "cpu.cfs_quota_us")
            period = _read_text(folder / "cpu.cfs_period_us")
        if quota.isdecimal() and period.isdecimal() and int(quota) > 0 and int(period) > 0:
            quotas.append(max(1, math.ceil(int(quota) / int(period))))
    return min(quotas) if quotas else None


def _cgroup_cpu_folders(root: Path) -> list[Path]:
    """The folders of this process's CPU cgroup and its ancestors that exist under ``root``."""
    try:
        lines = Path(_PROC_CGROUP).read_text(encoding="utf-8").splitlines()
    except OSError:  # not Linux
        return []
    folders: list[Path] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one hierarchy at the root
            bases = [root]
        elif "cpu" in controllers.split(","):  # v1: mounted as "cpu,cpuacct" or "cpu"
            bases = [root / controllers, root / "cpu"]
        else:
            continue
        base = next((b for b in bases if b.is_dir()), None)
        if base is None:
            continue
        # Inside a container the path may name the host's cgroup, absent here: its
        # ancestors, down to the mount itself, are looked at too.
        relative = Path(path.strip().lstrip("/"))
        # ".." leads out of this cgroup namespace: only the mount itself is visible.
        folder = base if ".." in relative.parts else base / relative
        for candidate in (folder, *folder.parents):
            if candidate.is_dir() and candidate not in folders:
                folders.append(candidate)
            if candidate == base:
                break
    return folders


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _slurm_cpus() -> int | None:
    """SLURM_CPUS_PER_TASK as a positive count; None when unset, empty or not a count."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    return int(value) if value.isascii() and value.isdecimal() and int(value) > 0 else None


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
    backend = backend_name()
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
        # TensorFlow and PyTorch place the model on their first GPU when they see one.
        gpus = _gpu_names(backend)
        info["devices"] = [f"gpu:{i} {name}" for i, name in enumerate(gpus)]
        info["device"] = "gpu" if gpus else "cpu"
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

    Sets the OpenMP/BLAS/TensorFlow thread variables and XLA's CPU flags, limits the
    thread pools of native libraries already loaded (NumPy's BLAS reads its variable only
    when NumPy is imported), and pins every thread of the process to ``cores`` (default:
    the first ``threads`` cores it may use), so that several trials side by side never
    oversubscribe the machine.

    Args:
        threads: Threads (cores) for this process; at least 1.
        cores: The CPU ids to pin to. Defaults to the first ``threads`` allowed ones.
    """
    threads = max(1, int(threads))
    for var in _THREAD_VARIABLES:
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    # XLA has no thread-count flag: its CPU thread pool follows the affinity mask set
    # below. A bare ``intra_op_parallelism_threads=N`` (a TensorFlow session option) is
    # not an XLA flag and makes XLA abort, so any left by older versions is removed.
    flags = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism"))
    ]
    if threads == 1:
        flags.append("--xla_cpu_multi_thread_eigen=false")
    if flags:
        os.environ["XLA_FLAGS"] = " ".join(flags)
    else:
        os.environ.pop("XLA_FLAGS", None)
    try:
        allowed = sorted(os.sched_getaffinity(0))
        chosen = [c for c in (cores or allowed[:threads]) if c in allowed] or allowed[:threads]
        _pin_threads(chosen)
    except (AttributeError, OSError):
        pass  # no affinity control on this system: the variables still apply
    _limit_loaded_pools(threads)


def _pin_threads(cores: list[int]) -> None:
    """Pin every thread of this process to ``cores``.

    ``sched_setaffinity(0)`` pins only the calling thread: the threads that NumPy's BLAS
    (or a watchdog) started before would keep running on every core.
    """
    os.sched_setaffinity(0, cores)
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: only the calling thread, and those it starts, are pinned
        return
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cores)


def _limit_loaded_pools(threads: int) -> None:
    """Limit the BLAS/OpenMP pools of libraries already loaded to ``threads``."""
    if "numpy" not in sys.modules:
        return  # nothing loaded yet: the variables set above apply when it is
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it only the variables apply
        return
    threadpool_limits(limits=threads)


# The environment variables that decide threads and devices, shown by ``detect_devices``.
_CONTROL_VARIABLES = (
    *_THREAD_VARIABLES,
    "TF_NUM_INTEROP_THREADS",
    "XLA_FLAGS",
    "JAX_PLATFORMS",
    "CUDA_VISIBLE_DEVICES",
    "KERAS_BACKEND",
)


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return list(range(os.cpu_count() or 1))


def check_device(device: str) -> str:
    """``device`` itself when it is ``auto``, ``cpu`` or ``gpu``.

    Raises:
        SpecError: Any other value.
    """
    if device not in DEVICES:
        raise SpecError(f"device must be 'auto', 'cpu' or 'gpu'; received device={device!r}")
    return device


def apply_device(device: str) -> None:
    """Hide the GPUs (``cpu``), require one (``gpu``) or leave the choice (``auto``).

    Call it before the backend starts; :func:`configure_backend` calls it.

    Raises:
        SpecError: ``device`` is invalid, or ``gpu`` and the backend sees no CUDA GPU.
    """
    check_device(device)
    backend = check_backend()
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # hides GPUs from TensorFlow and torch too
        if "jax" in sys.modules:
            import jax

            jax.config.update("jax_platforms", "cpu")
    elif device == "gpu":
        found = _gpu_names(backend)
        if not found:
            hint = ""
            if os.environ.get("JAX_PLATFORMS", "") == "cpu" and backend == "jax":
                hint = "; JAX_PLATFORMS=cpu hides it"
            elif os.environ.get("CUDA_VISIBLE_DEVICES") == "":
                hint = "; CUDA_VISIBLE_DEVICES is empty"
            extra = JAX_CUDA if backend == "jax" else f"a CUDA build of {backend}"
            raise SpecError(
                f"device 'gpu' requested but {_BACKEND_LABEL.get(backend, backend)} sees no "
                f"CUDA GPU (install {extra}{hint})"
            )


def configure_backend(*, threads: int | None = None, device: str = "auto") -> dict[str, Any]:
    """Apply thread limits and the device choice before the backend starts.

    Call it before Keras (or JAX, TensorFlow) is imported: thread pools and visible
    devices are fixed when the backend starts.

    Args:
        threads: Threads (cores) to use. Defaults to None: ``SLURM_CPUS_PER_TASK``
            inside a SLURM job, the CPU quota in a cgroup (container) limited to fewer
            cores than it sees, else every available core with no limit set.
        device: ``"auto"`` (default: whatever the backend finds), ``"cpu"`` (hide CUDA
            devices) or ``"gpu"`` (require a CUDA device).

    Returns:
        What was applied: threads, where the number came from, the cores this process
        may run on, the device, the backend and the environment variables set.

    Raises:
        SpecError: ``threads`` or ``device`` is invalid, ``threads`` exceeds the available
            cores, or ``device="gpu"`` and the backend sees no CUDA GPU.
    """
    # Everything is validated before anything is changed, so an error leaves no half state.
    check_device(device)
    cores = available_cores()
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise SpecError(f"threads must be a positive integer; received threads={threads!r}")
    if threads is not None and threads > cores:
        raise SpecError(
            f"threads must not exceed the {cores} core(s) available (more threads than "
            f"cores slows training down); received threads={threads}"
        )
    # appsleuth's default backend, fixed (and checked) here too as this may run before
    # import_keras.
    backend = check_backend()
    late = any(m in sys.modules for m in ("jax", "tensorflow", "torch"))

    if threads is not None:
        source = "argument"
    elif _slurm_cpus() is not None:
        threads, source = cores, "SLURM_CPUS_PER_TASK"
    elif cores < len(_affinity()):  # a container's quota: more threads would be throttled
        threads, source = cores, "cgroup CPU quota"
    else:
        threads, source = None, "all available cores"
    if threads is not None:
        apply_thread_limits(threads)
        if backend == "tensorflow":
            # TensorFlow reads these when it starts: intra-op = the cores, and a small
            # inter-op pool, as concurrent ops of a small network gain nothing from more.
            os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
            os.environ["TF_NUM_INTEROP_THREADS"] = str(min(2, threads))

    apply_device(device)

    cores_now = _affinity()
    return {
        "threads": threads if threads is not None else cores,
        "threads_source": source,
        "thread_limits": threads is not None,
        "cores": cores_now,
        "device": device,
        "backend": backend,
        "backend_already_imported": late,
        "env": {k: os.environ[k] for k in _CONTROL_VARIABLES if k in os.environ},
    }


_BACKEND_LABEL = {"jax": "JAX", "tensorflow": "TensorFlow", "torch": "PyTorch"}


def _gpu_names(backend: str) -> list[str]:
    """Names of the CUDA GPUs the backend sees (starting it if need be); [] when none."""
    try:
        if backend == "jax":
            import jax

            return [str(getattr(d, "device_kind", d)) for d in _jax_gpus(jax)]
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            details = [tf.config.experimental.get_device_details(d) for d in gpus]
            return [info.get("device_name", d.name) for info, d in zip(details, gpus, strict=True)]
        if backend == "torch":
            import torch

            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            return [torch.cuda.get_device_name(i) for i in range(n)]
    except ImportError:
        return []
    return []  # numpy and other backends never use a GPU


def _jax_gpus(jax: Any) -> list[Any]:
    try:
        return [d for d in jax.devices() if d.platform in ("gpu", "cuda")]
    except Exception:  # no backend could start: JAX_PLATFORMS=cuda without the CUDA
        return []  # plugin fails with a bare AssertionError, a missing one a RuntimeError


def _nvidia_smi() -> list[dict[str, Any]] | None:
    """GPUs the NVIDIA driver reports, independent of any Python package; None if no driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    gpus = []
    for line in done.stdout.splitlines():
        name, _, mem = line.rpartition(",")
        if name.strip():
            memory = int(mem.strip()) * 2**20 if mem.strip().isdigit() else None
            gpus.append({"name": name.strip(), "memory_bytes": memory})
    return gpus


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _start_error(exc: Exception) -> str:
    """Why JAX could not start, with the JAX_PLATFORMS that it was asked for."""
    text = type(exc).__name__ + (f": {exc}" if str(exc).strip() else "")
    platforms = os.environ.get("JAX_PLATFORMS")
    return text + (f" (JAX_PLATFORMS={platforms!r})" if platforms else "")


def detect_devices() -> dict[str, Any]:
    """CPU cores, the SLURM allocation, and the devices (with memory) JAX sees.

    Starts JAX when it is installed (without Keras); call :func:`configure_backend`
    first when limits are wanted. Never raises for a broken accelerator stack: the
    error is reported in the result instead.

    Returns:
        ``cpu`` (model, cores total and available, affinity, cgroup CPU quota in
        cores or None), ``slurm`` (the job's variables, empty outside SLURM),
        ``backend``, ``backend_problem`` (why training would refuse that backend, or
        None), ``jax`` (version, default platform, devices with memory where the
        device reports it), ``gpus`` (the CUDA devices of JAX), ``nvidia_smi`` (what
        the driver reports, None without one), ``device`` (``gpu`` or ``cpu``: where
        training runs, on JAX's devices, or with TensorFlow or PyTorch as the backend
        on theirs, listed as ``backend_gpus``, with ``backend_error`` when that backend
        failed to start), ``backend_version`` and ``env`` (the thread and device
        variables set).
    """
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": {
            "model": _cpu_model(),
            "cores_total": os.cpu_count(),
            "cores_available": available_cores(),
            "affinity": _affinity(),
            "quota": cpu_quota(),
        },
        "slurm": slurm_environment(),
        "backend": backend_name(),
        # A KERAS_BACKEND that training refuses: said here, as info must still run.
        "backend_problem": backend_problem(),
        "jax": None,
        "gpus": [],
        "nvidia_smi": _nvidia_smi(),
    }
    if importlib.util.find_spec("jax") is not None:
        try:
            import jax

            devices = jax.devices()
            listed = []
            for d in devices:
                entry: dict[str, Any] = {
                    "id": d.id,
                    "platform": d.platform,
                    "kind": str(getattr(d, "device_kind", "")),
                    "memory_bytes": None,
                    "memory_in_use_bytes": None,
                }
                try:
                    stats = d.memory_stats() or {}
                except Exception:  # CPU devices and some plugins do not implement it
                    stats = {}
                entry["memory_bytes"] = stats.get("bytes_limit")
                entry["memory_in_use_bytes"] = stats.get("bytes_in_use")
                listed.append(entry)
            info["jax"] = {
                "version": jax.__version__,
                "default_platform": jax.default_backend(),
                "devices": listed,
            }
            info["gpus"] = [e for e in listed if e["platform"] in ("gpu", "cuda")]
        except Exception as exc:  # a broken accelerator stack must not hide the CPU facts
            info["jax"] = {"error": _start_error(exc)}
    if info["backend"] in ("tensorflow", "torch") and info["backend_problem"] is None:
        # They train (with fit) on the GPUs they see themselves, whatever JAX sees.
        try:
            info["backend_gpus"] = _gpu_names(info["backend"])
        except Exception as exc:  # e.g. TensorFlow against an incompatible protobuf
            info["backend_gpus"] = []
            info["backend_error"] = f"{type(exc).__name__}: {exc}"
        info["device"] = "gpu" if info["backend_gpus"] else "cpu"
    else:
        info["device"] = "gpu" if info["gpus"] else "cpu"
    # Known once the lines above have started the backend (None if it could not start).
    info["backend_version"] = backend_version(info["backend"])
    info["env"] = {k: os.environ[k] for k in _CONTROL_VARIABLES if k in os.environ}
    return info
