"""Shared fixtures: the real sample files, small hand-made tables, integration gating."""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from appsleuth.data.layouts import SHERLOCK18_FEATURES

REPO = Path(__file__).resolve().parents[1]
# One persistent cache of compiled programs for the whole test session, shared with
# every process a test starts (sweep workers, the CLI, notebooks): tests train the same
# few small architectures again and again, and most set their own APPSLEUTH_CACHE, under
# which each would otherwise start with an empty cache. New for each session, so that
# every run compiles as CI does. Set before anything imports JAX (the imports above do
# not).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _JAX_CACHE = tempfile.mkdtemp(prefix="appsleuth-tests-jax-")
    atexit.register(shutil.rmtree, _JAX_CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _JAX_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
SHARED_DATA = REPO.parent / "shared" / "data"
RAW_SAMPLE = SHARED_DATA / "sherlock_raw_sample.csv"
MYSTERY = SHARED_DATA / "sherlock_mystery.csv"


def require_component(name: str, available: bool) -> None:
    """Skip a test whose real component is missing, or fail when CI demands it.

    CI exports APPSLEUTH_REQUIRE_INTEGRATION=1, under which a missing component is a
    failure: an integration test must never pass CI by skipping.
    """
    if available:
        return
    if os.environ.get("APPSLEUTH_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{name} is required (APPSLEUTH_REQUIRE_INTEGRATION=1) but missing")
    pytest.skip(f"{name} is not available")


def _pools() -> dict[str, int]:
    """The thread pools of the native libraries loaded now, by library prefix."""
    from threadpoolctl import threadpool_info

    return {p["prefix"]: p["num_threads"] for p in threadpool_info()}


# As the session found them (NumPy's BLAS is loaded by now): what a test's thread limit
# is undone to. Read once, as reading them takes milliseconds.
_POOLS_AT_START = _pools()
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """Put back the process-wide state that the code a test runs in-process changes.

    Tests run in any order, any two files in one process (pytest-xdist --dist
    loadfile), so whatever one leaves behind changes the next. appsleuth writes
    environment variables for the processes it starts (KERAS_BACKEND, thread limits,
    JAX_PLATFORMS, CUDA_VISIBLE_DEVICES, ...), and ``monkeypatch.delenv(..., raising=False)``
    of an unset variable records nothing to undo: a KERAS_BACKEND=tensorflow left behind
    made every sweep worker started later in that process refuse to run. Thread limits
    pin the process to cores (every later test on one core) and cap the BLAS pools;
    ``device="cpu"`` sets JAX's platform; the CLI installs a SIGTERM handler; tests take
    modules out of ``sys.modules`` to stand for "before the first import"; a benchmark
    script imported in-process puts its checkout's src first on ``sys.path``.
    """
    env = dict(os.environ)
    cwd = os.getcwd()
    path = list(sys.path)
    modules = dict(sys.modules)
    affinity = os.sched_getaffinity(0)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    jax = sys.modules.get("jax")
    platforms = jax.config.jax_platforms if jax is not None else None
    matplotlib = sys.modules.get("matplotlib")
    rc = dict.copy(matplotlib.rcParams) if matplotlib is not None else None
    try:
        yield
    finally:
        threads_changed = any(os.environ.get(v) != env.get(v) for v in _THREAD_VARIABLES)
        if os.environ != env:
            for key in set(os.environ) - set(env):
                del os.environ[key]
            for key, value in env.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value
        os.chdir(cwd)
        sys.path[:] = path
        for name, module in modules.items():
            if sys.modules.get(name) is not module:
                sys.modules[name] = module
        if os.sched_getaffinity(0) != affinity:
            from appsleuth.hardware import _pin_threads

            _pin_threads(sorted(affinity))  # every thread, JAX's pool too
            threads_changed = True
        if threads_changed:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits={k: _POOLS_AT_START.get(k, len(affinity)) for k in _pools()})
        for signum, handler in handlers.items():
            if signal.getsignal(signum) is not handler and handler is not None:
                signal.signal(signum, handler)
        if jax is not None and jax.config.jax_platforms != platforms:
            jax.config.update("jax_platforms", platforms)
        if rc is not None:
            # The backend is left to the tests that switch it (matplotlib.use), which
            # put it back; use() also turns backend_fallback off.
            for key, value in rc.items():
                if key != "backend" and dict.__getitem__(matplotlib.rcParams, key) != value:
                    matplotlib.rcParams[key] = value


@pytest.fixture(autouse=True)
def _process_state_restored() -> Iterator[None]:
    """Every test leaves the process as it found it (see restored_process_state)."""
    with restored_process_state():
        yield


@pytest.fixture(autouse=True, scope="module")
def _process_state_restored_after_the_file() -> Iterator[None]:
    """So does every file's module-scoped fixtures (e.g. a model trained for a file's tests).

    Set up before them (autouse first), so put back after their teardown: the next file
    in this process starts as this one did.
    """
    with restored_process_state():
        yield


@pytest.fixture(autouse=True)
def _no_sweep_worker_exit_in_the_test_process():
    """Fail a test that set up the test process as a sweep worker, and undo it.

    A worker's exit handler ends its process with status 0 (``os._exit``): registered
    here by a test that ran ``_init_worker`` in-process, it made pytest exit 0 after
    failed tests (and skipped the removal of the session's JAX cache). Its ``_preload``
    freezes every object of the process out of the garbage collector.
    """
    frozen = gc.get_freeze_count()
    registered = []
    register = atexit.register

    def recording(func, *args, **kwargs):
        registered.append(func)
        return register(func, *args, **kwargs)

    atexit.register = recording
    try:
        yield
    finally:
        atexit.register = register
    problems = []
    local = sys.modules.get("appsleuth.sweep.local")
    if local is not None and local._skip_teardown in registered:
        atexit.unregister(local._skip_teardown)
        problems.append("registered a sweep worker's exit handler (os._exit(0))")
    if frozen == 0 and gc.get_freeze_count() > 0:
        gc.unfreeze()
        problems.append("froze the test process's objects (gc.freeze)")
    if problems:
        pytest.fail(f"this test changed the test process for later tests: {'; '.join(problems)}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder with the two real SherLock files (read-only)."""
    require_component("../shared/data (the real sample files)", RAW_SAMPLE.exists())
    return SHARED_DATA


def make_sherlock18(
    n_per_app: int = 60,
    apps: tuple[str, ...] = ("Gmail", "Chrome", "Moriarty"),
    seed: int = 0,
    with_ids: bool = False,
) -> pd.DataFrame:
    """A small table in the sherlock_18apps layout, with runs of repeated samples."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, app in enumerate(apps):
        n = n_per_app
        base = {
            f: rng.normal(100 * (k + 1), 10, size=-(-n // 5)).repeat(5)[:n]
            for f in SHERLOCK18_FEATURES
        }
        frame = pd.DataFrame(base)
        frame["state"] = np.where(rng.random(n // 5 + 1) < 0.75, "S", "R").repeat(5)[:n]
        frame["cminflt"] = np.nan
        frame["guest_time"] = 0.0
        frame["UidRxBytes"] = np.where(rng.random(n) < 0.1, rng.integers(-1, 50, size=n), 0)
        frame.insert(0, "ApplicationName", app)
        # Snapshot time in ms: samples 5 s apart, so the runs of repeats are time-ordered.
        frame["UUID"] = 1_461_000_000_000 + np.arange(n, dtype=np.int64) * 5000 + k
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True).sort_values("UUID")
    if not with_ids:
        df = df.drop(columns="UUID")
    df.index = np.sort(rng.choice(10 * len(df), size=len(df), replace=False))
    return df


@pytest.fixture
def sherlock18_csv(tmp_path: Path) -> Path:
    """A small sherlock_18apps-layout CSV file (index column first, like the real one)."""
    path = tmp_path / "small18.csv"
    make_sherlock18().to_csv(path)
    return path
