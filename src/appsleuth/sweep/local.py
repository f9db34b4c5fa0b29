"""The local executor: trials in worker processes on this machine.

Each worker process is pinned to its own share of the cores (``threads_per_trial``
each, never more workers x threads than the cores this process may use) and runs trials
in plan order, loading the data once. Completed trials are skipped, so re-running the
same command resumes; Ctrl-C stops the workers and leaves unfinished trials without
metadata (they are redone next time); ``kill -9`` of the whole process tree does the same.
A worker that dies on its own (out of memory, ``kill -9`` of that worker, a crash in
native code) fails the trial it was training, recorded as any failed trial is, and the
sweep goes on with fresh workers: re-running the same command does not meet that trial
again unless asked to (``retry_failed``).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import gc
import importlib
import multiprocessing.context
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from appsleuth._interrupt import raise_if_dropped, sigterm_interrupts
from appsleuth._keras import check_backend, import_keras
from appsleuth.errors import AppSleuthError, SpecError
from appsleuth.hardware import apply_device, apply_thread_limits, available_cores
from appsleuth.run import RunInUseError, record_failed_run, run_status
from appsleuth.sweep.space import ExecutorSpec
from appsleuth.sweep.store import check_data_files, read_plan, trial_states
from appsleuth.sweep.worker import (
    RUNNING_ELSEWHERE,
    TrialOutcome,
    check_complete,
    exit_without_teardown,
    run_trial,
)

__all__ = ["LocalSummary", "SweepInterrupted", "plan_workers", "run_local"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocalSummary:
    """How a local sweep run ended.

    Attributes:
        sweep_dir: The sweep directory.
        outcomes: One per trial handled in this call, in the order they finished.
        workers: Worker processes used (0 when no trial was left to train).
        threads_per_trial: Threads each had.
        wall_s: Wall time of this call.
        interrupted: True when the sweep stopped early with trials left to run. A
            worker process that died (out of memory, ``kill -9``, a crash in native code)
            while training a trial does not stop it: that trial is an outcome ``failed``,
            its error saying how the worker ended, and the others go on in fresh workers.
            Only a worker lost without a trial to blame (stopped by SIGTERM, or dead
            between trials) stops the sweep here; Ctrl-C (or SIGTERM of this process)
            raises :class:`SweepInterrupted` instead.
    """

    sweep_dir: Path
    outcomes: tuple[TrialOutcome, ...]
    workers: int
    threads_per_trial: int
    wall_s: float
    interrupted: bool = False

    def count(self, status: str) -> int:
        """Number of outcomes with this status."""
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> int:
        """Trials that failed now or before (and were not retried)."""
        return self.count("failed") + self.count("failed-before")

    def __repr__(self) -> str:
        # The default repr listed every outcome; a sweep of hundreds filled the screen.
        counts = collections.Counter(o.status for o in self.outcomes)
        statuses = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        return (
            f"LocalSummary(sweep_dir={self.sweep_dir!r}, trials: {statuses or 'none'}, "
            f"workers={self.workers}, threads_per_trial={self.threads_per_trial}, "
            f"wall_s={self.wall_s:.1f}, interrupted={self.interrupted})"
        )


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped :func:`run_local`; its workers are stopped too.

    A ``KeyboardInterrupt``, so that a notebook or script stops where it was interrupted
    instead of going on with a partial sweep. Running the same call again resumes it.

    Attributes:
        summary: The :class:`LocalSummary` of the trials handled before the interrupt.
    """

    def __init__(self, summary: LocalSummary) -> None:
        finished = sum(1 for o in summary.outcomes if o.status in ("complete", "skipped"))
        super().__init__(
            f"sweep {summary.sweep_dir} interrupted with {finished} trial(s) complete; run "
            f"the same command again to finish the others (complete trials are kept, "
            f"unfinished ones are redone)"
        )
        self.summary = summary


def plan_workers(workers: int | None, threads_per_trial: int, n_trials: int) -> int:
    """Worker count: by default one per ``threads_per_trial`` cores, at most one per trial
    still to run (so ``workers`` beyond them is no error).

    Raises:
        SpecError: ``workers`` x ``threads_per_trial`` exceeds the available cores.
    """
    cores = available_cores()
    if threads_per_trial > cores:
        raise SpecError(
            f"threads_per_trial must not exceed the {cores} core(s) available; "
            f"received threads_per_trial={threads_per_trial}"
        )
    if workers is None:
        return max(1, min(cores // threads_per_trial, n_trials))
    # Workers beyond the trials to run would never start one: only those that run count
    # against the cores (a spec written for a bigger machine still runs a small sweep).
    used = max(1, min(workers, n_trials))
    if used * threads_per_trial > cores:
        raise SpecError(
            f"workers x threads_per_trial must not exceed the {cores} core(s) available "
            f"(oversubscribing slows every trial); received workers={workers}, "
            f"threads_per_trial={threads_per_trial} for {n_trials} trial(s) to run"
        )
    return used


@dataclasses.dataclass(frozen=True)
class _Slots:
    """Which trial each worker of one pool is training, in memory shared with the workers.

    A process pool does not say which of its processes ran which task, and a worker
    killed outright cannot report: so each worker writes its pid into its slot when it
    starts, and the trial it trains while it trains one. Plain shared memory: a write is
    seen at once, with no message left unsent by a ``kill -9``.

    Attributes:
        pids: The pid of each slot's worker (0 before it started).
        trials: The index of the trial each worker is training, -1 for none.
        started: When each worker began that trial (``time.time()``).
    """

    pids: Any
    trials: Any
    started: Any

    @classmethod
    def create(cls, ctx: Any, n_workers: int) -> _Slots:
        """Slots for ``n_workers`` workers, in shared memory of the context ``ctx``."""
        return cls(
            pids=ctx.RawArray("q", [0] * n_workers),
            trials=ctx.RawArray("q", [-1] * n_workers),
            started=ctx.RawArray("d", [0.0] * n_workers),
        )


# In a worker process: its pool's slots and its own slot number (set by _init_worker).
_MY_SLOT: tuple[_Slots, int] | None = None


def _init_worker(
    parent: int, core_sets: Any, threads: int, device: str, shared_gpu: bool, slots: _Slots
) -> None:
    # Runs in the fresh (spawned) process before Keras or JAX are imported.
    global _MY_SLOT
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    # First, so that it runs after the handlers Keras and JAX register once imported.
    atexit.register(_skip_teardown)
    # The parent's pid comes from the parent: a worker still starting up when the
    # parent was killed has already been re-parented, and os.getppid() would name the
    # new parent, which never goes away.
    _exit_with_parent(parent)
    slot, cores = core_sets.get()
    slots.pids[slot] = os.getpid()
    _MY_SLOT = (slots, slot)
    apply_thread_limits(threads, cores)
    if shared_gpu:
        # JAX takes 75 % of a GPU's memory per process by default, and TensorFlow all of
        # it: workers sharing one would run out. Small models need little; allocate as
        # they go (PyTorch's allocator does so anyway).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if device != "auto":
        apply_device(device)
    _preload()


# What a trial imports besides Keras: the engines and the run directory's plots.
_PRELOAD = ("appsleuth.engines", "appsleuth.plots", "matplotlib.figure")


def _preload() -> None:
    """Import what every trial uses, then keep it out of the garbage collector's scans.

    Each trial ends with a full collection (Keras' ``clear_session``), so that memory
    stays flat over many trials; it went through the ~270,000 objects of Keras, JAX and
    the other imported modules every time (~0.25 s a trial). They live as long as the
    process, so freezing them frees nothing less; what trials create is still collected.
    """
    try:
        import_keras()
        for module in _PRELOAD:
            importlib.import_module(module)
    except Exception:
        return  # the first trial meets the same error, and records it
    gc.collect()
    gc.freeze()


# The status a worker process ends with, as multiprocessing would give it: set by
# _WorkerProcess.run, read by _skip_teardown (an exit handler cannot see the exit code).
_EXIT_STATUS = 0


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned sweep worker process that notes how its work ended.

    Its exit handler (``_skip_teardown``) ends the process with ``os._exit``, which
    would otherwise report every end as status 0: a worker that died of an uncaught
    exception or ``sys.exit(3)`` looked like one the pool shut down.
    """

    def run(self) -> None:
        """Run the worker as a process does, noting the status it ends with."""
        global _EXIT_STATUS
        _EXIT_STATUS = 1  # an exception escaping run(), as multiprocessing counts it
        try:
            super().run()
        except SystemExit as exc:
            # multiprocessing's rule: None is 0, an integer itself, anything else 1.
            code = exc.code
            _EXIT_STATUS = 0 if code is None else code if isinstance(code, int) else 1
            raise
        _EXIT_STATUS = 0


class _WorkerContext(multiprocessing.context.SpawnContext):
    """The 'spawn' start method (fork is unsafe once JAX's threads exist), with
    :class:`_WorkerProcess` processes."""

    Process = _WorkerProcess


def _skip_teardown() -> None:
    """End this worker at once, without the interpreter's teardown of its modules.

    Registered as a worker's first exit handler, so it runs last, after Keras' and JAX's
    own, when the worker's Python ends on its own (the pool shut it down, or an error
    ended it; a killed worker never gets here); the sweep waited ~2 s for each worker's
    teardown before returning. The status is the one the worker ended with.
    """
    exit_without_teardown(_EXIT_STATUS)


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """End this worker soon after its parent is gone (killed, even with kill -9).

    An orphaned worker would go on training queued trials unseen, hold memory and race a
    re-run of the same sweep. Its trial in progress stays incomplete; re-running the
    sweep redoes it.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="appsleuth-parent-watch", daemon=True).start()


_GPU_PROBE = """
import sys
from appsleuth.errors import AppSleuthError
from appsleuth.hardware import apply_device
try:
    apply_device("gpu")
except AppSleuthError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def _check_gpu() -> None:
    # In a short-lived process: starting the backend here would hold GPU memory in the
    # parent for the whole sweep, and no worker should start only to fail.
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    done = subprocess.run(
        [sys.executable, "-c", _GPU_PROBE], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise SpecError(lines[-1] if lines else "device 'gpu' requested but no GPU was found")


def _any_taken(core_sets: Any, n_workers: int) -> bool:
    """Whether any worker took its core set from the queue (so it got as far as starting)."""
    try:
        return bool(core_sets.qsize() < n_workers)
    except NotImplementedError:  # macOS has no qsize: an empty queue still tells
        return bool(core_sets.empty())


def _note_engine_fallback(trials: list[Any]) -> None:
    """Check the backend the workers will inherit, and say once when ``fused`` cannot run.

    Workers record the fallback in each run's metadata but print nothing, so without this
    a sweep asking for ``engine: fused`` on another backend would train with ``fit``
    silently. ``check_backend`` also fixes ``KERAS_BACKEND`` for the workers to the
    backend this process uses (a notebook's Keras may have read ``keras.json``).
    """
    backend = check_backend()
    asking = sum(1 for t in trials if t.spec.train.engine == "fused")
    if backend != "jax" and asking:
        print(
            f"appsleuth: engine 'fused' needs the JAX backend (KERAS_BACKEND={backend}); "
            f"{asking} trial(s) that ask for it train with 'fit' (recorded as engine_note "
            f"in their model_metadata.json)",
            file=sys.stderr,
            flush=True,
        )


def _worker_call(sweep_dir: str, index: int, retry_failed: bool) -> TrialOutcome:
    mine = _MY_SLOT
    if mine is not None:
        slots, slot = mine
        slots.started[slot] = time.time()
        slots.trials[slot] = index  # last: the index is what says a trial is in progress
    try:
        return run_trial(sweep_dir, index, retry_failed=retry_failed)
    finally:
        if mine is not None:
            slots.trials[slot] = -1


# How a worker ends when it was stopped rather than killed by its trial: the pool ends
# its other workers with SIGTERM once one died, and SIGTERM, Ctrl-C or a closed terminal
# (SIGHUP) is how a person or a scheduler stops processes on purpose. None of them
# blames the trial being trained.
_STOPPED = (-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP)

_SIGNAL_HINTS = {
    signal.SIGKILL: "e.g. out of memory, or kill -9",
    signal.SIGSEGV: "a crash in native code",
    signal.SIGBUS: "a crash in native code",
    signal.SIGABRT: "aborted by native code",
    signal.SIGILL: "a crash in native code",
    signal.SIGFPE: "a crash in native code",
}


def _how_it_died(exitcode: int) -> str:
    """A dead worker's exit code in words, e.g. ``exit code -9 / SIGKILL, e.g. out of memory``."""
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        sig = signal.Signals(-exitcode)
    except ValueError:
        return f"exit code {exitcode} / signal {-exitcode}"
    hint = _SIGNAL_HINTS.get(sig, "killed by a signal")
    return f"exit code {exitcode} / {sig.name}, {hint}"


@dataclasses.dataclass(frozen=True)
class _Lost:
    """A trial whose worker process died while training it."""

    index: int
    started: float
    exitcode: int


def _lost_trials(slots: _Slots, processes: dict[int, Any]) -> list[_Lost]:
    """The trials whose worker died while training them, after a pool broke.

    Args:
        slots: The pool's slots.
        processes: The pool's worker processes by pid, all ended (joined).

    Returns:
        One per worker that was training a trial and died on its own (not stopped with
        SIGTERM, Ctrl-C or SIGHUP: see ``_STOPPED``).
    """
    return [
        _Lost(index=index, started=slots.started[slot], exitcode=process.exitcode)
        for slot, index, process in _busy_workers(slots, processes)
        if process.exitcode is not None and process.exitcode not in _STOPPED
    ]


def _stopped_trials(slots: _Slots, processes: dict[int, Any]) -> tuple[int, ...]:
    """The trials whose worker was stopped with a signal (``_STOPPED``) while training them.

    SIGTERM is not blamed on the trial (see ``_STOPPED``): the pool stops every other
    worker with it once one ended, so in a pool of several the one that another process
    stopped cannot be told from the rest (and Python learns no signal's sender). These
    are named when the sweep stops, so that a trial that meets this again can be found.
    """
    return tuple(
        sorted(
            index
            for _, index, process in _busy_workers(slots, processes)
            if process.exitcode in _STOPPED
        )
    )


def _busy_workers(slots: _Slots, processes: dict[int, Any]) -> Iterator[tuple[int, int, Any]]:
    """``(slot, trial index, process)`` of each worker that was training a trial."""
    for slot in range(len(slots.trials)):
        index = slots.trials[slot]
        process = processes.get(slots.pids[slot])
        if index >= 0 and process is not None:
            yield slot, index, process


def _record_lost(sweep_dir: Path, trial: Any, lost: _Lost) -> TrialOutcome | None:
    """Record a trial whose worker died as failed, as a trial that raised is recorded.

    Returns:
        Its ``failed`` outcome (``running-elsewhere`` when another process took the run
        directory since), or None when the trial is complete after all (its worker died
        after writing its result): it is then run again to be reported as ``skipped``.
    """
    run_dir = sweep_dir / trial.name
    if run_status(run_dir) == "complete":
        return None
    error = (
        f"WorkerDied: the worker process training this trial died "
        f"({_how_it_died(lost.exitcode)}); it is recorded as failed so that the sweep goes "
        f"on without it; add --retry-failed (retry_failed=True) to train it again (if it "
        f"ran out of memory: with fewer workers, or a smaller model or batch)"
    )
    seconds = time.time() - lost.started
    try:
        if not record_failed_run(run_dir, trial.spec, error, started=lost.started):
            return None
    except RunInUseError as exc:
        return TrialOutcome(
            index=trial.index,
            name=trial.name,
            status=RUNNING_ELSEWHERE,
            seconds=seconds,
            error=str(exc),
        )
    except (OSError, AppSleuthError):
        pass  # not recorded (the outcome still reports it), as run_trial does
    return TrialOutcome(
        index=trial.index, name=trial.name, status="failed", seconds=seconds, error=error
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class _PoolEnd:
    """How one process pool ended.

    Attributes:
        broken: A worker process died, which ends the whole pool.
        lost: The trials whose worker died while training them.
        taken: Whether any worker took its core set (got as far as starting).
        stopped: The trials whose worker was stopped with a signal while training them.
    """

    broken: bool
    lost: list[_Lost]
    taken: bool
    stopped: tuple[int, ...] = ()


def _run_pool(
    ctx: Any,
    sweep_dir: Path,
    plan: Any,
    indices: list[int],
    *,
    n_workers: int,
    threads_per_trial: int,
    device: str,
    retry_failed: bool,
    report: Callable[[int, TrialOutcome], None],
    tick: Callable[[], None],
) -> _PoolEnd:
    """Run trials ``indices`` of ``plan`` in one process pool until all are reported (to
    ``report``, with ``tick`` called between polls) or a worker dies.

    Raises:
        KeyboardInterrupt: Ctrl-C (or SIGTERM); the workers are stopped first.
    """
    core_sets = ctx.Queue()
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    for w in range(n_workers):
        cores = allowed[w * threads_per_trial : (w + 1) * threads_per_trial] or None
        core_sets.put((w, cores))
    slots = _Slots.create(ctx, n_workers)
    pool = ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(
            os.getpid(),
            core_sets,
            threads_per_trial,
            device,
            device != "cpu" and n_workers > 1,
            slots,
        ),
    )
    pending: dict[Future[TrialOutcome], int] = {}
    processes: dict[int, Any] = {}
    clean = False
    try:
        for index in indices:
            pending[pool.submit(_worker_call, str(sweep_dir), index, retry_failed)] = index
        # Kept now: the pool forgets its processes on shutdown, and their exit codes are
        # what tells a worker that died from one the pool stopped.
        processes = dict(getattr(pool, "_processes", None) or {})
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    raise
                except Exception as exc:  # a worker-side error outside train()
                    outcome = TrialOutcome(
                        index=index,
                        name=plan[index].name,
                        status="failed",
                        seconds=0.0,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                report(index, outcome)
            tick()
            # A SIGTERM whose interrupt Python dropped (in a weakref or garbage-collector
            # callback) would let the sweep train on to its end.
            raise_if_dropped()
        clean = True
    except BrokenProcessPool:
        pass
    finally:
        if not clean:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                if proc.is_alive():
                    proc.terminate()
        processes.update(getattr(pool, "_processes", None) or {})  # broken while submitting
        # Waits for the workers to end, so that their exit codes are final below.
        pool.shutdown(wait=True, cancel_futures=True)
    if clean:
        return _PoolEnd(broken=False, lost=[], taken=True)
    for proc in processes.values():
        proc.join(timeout=5)
    return _PoolEnd(
        broken=True,
        lost=_lost_trials(slots, processes),
        taken=_any_taken(core_sets, n_workers),
        stopped=_stopped_trials(slots, processes),
    )


def run_local(
    sweep_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    threads_per_trial: int = 1,
    retry_failed: bool = False,
    progress: bool | None = None,
    on_outcome: Callable[[TrialOutcome], None] | None = None,
    device: str = "auto",
) -> LocalSummary:
    """Run every trial of a sweep directory that is not complete.

    Args:
        sweep_dir: A sweep directory prepared by
            :func:`~appsleuth.sweep.store.prepare_sweep_dir`.
        workers: Worker processes. Defaults to one per ``threads_per_trial`` cores.
        threads_per_trial: Cores per trial. Defaults to 1.
        retry_failed: Redo trials that failed before. Defaults to False.
        progress: Show a progress bar (in Jupyter, it needs ipywidgets); otherwise each
            finished trial is one line on stderr. Defaults to True on a terminal.
        on_outcome: Called with each finished trial's outcome.
        device: Where trials train: ``auto`` (default), ``cpu`` or ``gpu``. Workers that
            may share a GPU allocate its memory as they go instead of up front.

    Returns:
        The :class:`LocalSummary`.

    Raises:
        SweepInterrupted: Ctrl-C (or SIGTERM) stopped the sweep; its workers were
            stopped, and running the same call again resumes it.
        DataError: The manifest is damaged, or a trial still to run names a data file
            that does not exist (checked before any worker starts).
        SpecError: ``workers`` or ``threads_per_trial`` is not a positive integer, or
            their product exceeds the available cores, ``device`` is not one of auto,
            cpu, gpu, or ``KERAS_BACKEND`` names a backend that is unsupported or not
            installed.
    """
    # Checked as a spec's executor section is (a notebook passes them straight here).
    ExecutorSpec(workers=workers, threads_per_trial=threads_per_trial, device=device)
    if device == "gpu":
        _check_gpu()
    start = time.time()
    sweep_dir = Path(sweep_dir)
    plan = read_plan(sweep_dir)
    # Complete runs are compared with their trials below (spec and data: check_complete).
    states = {s.index: s.status for s in trial_states(sweep_dir, compare_spec=False)}
    todo = [
        t.index
        for t in plan
        if states[t.index] != "complete" and (retry_failed or states[t.index] != "failed")
    ]
    # A complete run is only kept when it holds this trial's spec and data.
    already = [
        check_complete(sweep_dir, t)
        if states[t.index] == "complete"
        else TrialOutcome(index=t.index, name=t.name, status="failed-before", seconds=0.0)
        for t in plan
        if t.index not in todo
    ]
    for o in already:
        if o.status == "failed":  # a complete run of another spec or data: no bar line says so
            print(f"{o.name}: failed ({o.error})", file=sys.stderr, flush=True)
    # A missing data file fails every trial: say so once, before any worker starts.
    check_data_files(plan[i] for i in todo)
    if todo:
        _note_engine_fallback([plan[i] for i in todo])
    n_workers = plan_workers(workers, threads_per_trial, len(todo))
    outcomes: list[TrialOutcome] = list(already)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = _Progress(
        len(plan),
        len(already),
        sum(1 for o in already if o.status != "skipped"),
        n_workers,
        enabled=progress,
    )
    interrupted = stopped = False
    started = True  # becomes False when the pool breaks before any trial finishes
    if todo:
        ctx = _WorkerContext()
        remaining = list(todo)

        def report(index: int, outcome: TrialOutcome) -> None:
            remaining.remove(index)
            outcomes.append(outcome)
            bar.finished(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

        # SIGTERM (kill, a scheduler's stop) as Ctrl-C: the workers are stopped, and an
        # interrupt Python dropped is raised again at the next poll.
        interrupts = contextlib.ExitStack()
        interrupts.enter_context(sigterm_interrupts())
        try:
            # One pool per round: a worker that dies ends its pool (the others are stopped
            # and their trials redone), its trial is recorded as failed, and a fresh pool
            # runs the rest. Each round that ends so fails a trial, so rounds are finite.
            while remaining:
                before = len(remaining)
                end = _run_pool(
                    ctx,
                    sweep_dir,
                    plan,
                    list(remaining),
                    n_workers=min(n_workers, len(remaining)),
                    threads_per_trial=threads_per_trial,
                    device=device,
                    retry_failed=retry_failed,
                    report=report,
                    tick=bar.refresh,
                )
                if not end.broken:
                    break
                failed: list[str] = []
                for lost in end.lost:
                    outcome = _record_lost(sweep_dir, plan[lost.index], lost)
                    if outcome is not None:  # None: complete after all, skipped next round
                        failed.append(f"{outcome.name} ({_how_it_died(lost.exitcode)})")
                        report(lost.index, outcome)
                if not end.lost or len(remaining) == before:
                    # No trial to blame (a worker stopped with SIGTERM, or dead between
                    # trials or while starting), or a round that did nothing: stop, as
                    # another round could meet the same end again.
                    interrupted = True
                    # A worker takes its core set once it has started: if any did, the
                    # workers could start and one was lost later, not a script without
                    # a main guard.
                    started = len(outcomes) > len(already) or end.taken
                    if started:
                        print(_stopped_message(end, plan), file=sys.stderr, flush=True)
                    break
                if remaining and failed:
                    print(
                        f"appsleuth: the worker process training {', '.join(failed)} died, so "
                        f"that trial is recorded as failed; the {len(remaining)} other "
                        f"unfinished trial(s) go on in fresh worker processes",
                        file=sys.stderr,
                        flush=True,
                    )
        except KeyboardInterrupt:
            interrupted = stopped = True
        finally:
            interrupts.close()
            bar.stop()
        if interrupted and not started:
            raise AppSleuthError(
                "the sweep's worker processes died before finishing any trial. Workers "
                "are started with 'spawn', which imports the calling script again: in a "
                'script, call run_local under `if __name__ == "__main__":`. Otherwise a '
                "worker ran out of memory or was killed; its error is printed above"
            )
    else:
        bar.stop()
    summary = LocalSummary(
        sweep_dir=sweep_dir,
        outcomes=tuple(outcomes),
        workers=n_workers if todo else 0,
        threads_per_trial=threads_per_trial,
        wall_s=time.time() - start,
        interrupted=interrupted,
    )
    if stopped:
        # Raised, not returned: the caller's next steps (a report, the notebook's next
        # cells) must not go on as if the sweep had finished.
        raise SweepInterrupted(summary)
    return summary


def _stopped_message(end: _PoolEnd, plan: Any) -> str:
    """What stopped the sweep when no trial was to blame, and what to do."""
    again = (
        "run the same command again: complete trials are kept and the unfinished ones are redone"
    )
    if not end.stopped:
        return (
            f"appsleuth: a worker process was stopped (by a signal such as SIGTERM) or died "
            f"between trials, so the sweep stopped; {again}"
        )
    names = ", ".join(plan[i].name for i in end.stopped)
    return (
        f"appsleuth: the worker process(es) training {names} were stopped by a signal "
        f"(SIGTERM: e.g. kill, or a user-space out-of-memory killer such as earlyoom), so the "
        f"sweep stopped without failing those trials; {again}. If it stops at the same "
        f"trial again, give it more memory: fewer workers, or a smaller model or batch"
    )


class _Progress:
    """One bar over trials: done, running, failed, remaining, elapsed, ETA."""

    def __init__(self, total: int, done: int, failed: int, workers: int, *, enabled: bool) -> None:
        from appsleuth.display import live_display_works

        self.total, self.done, self.failed, self.workers = total, done, failed, workers
        # A bar that cannot show (Jupyter without ipywidgets) gives way to the lines.
        self.enabled = enabled and live_display_works()
        self._progress: Any = None
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]trials[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._progress.add_task(self._text(), total=total, completed=done)
            self._progress.start()

    def _text(self) -> str:
        remaining = self.total - self.done
        running = min(self.workers, remaining)
        return (
            f"done {self.done - self.failed} · running {running} · failed {self.failed} · "
            f"remaining {remaining}"
        )

    def finished(self, outcome: TrialOutcome) -> None:
        self.done += 1
        if outcome.status in ("failed", "failed-before"):
            self.failed += 1
        if self.enabled:
            self._progress.update(self._task, completed=self.done, description=self._text())
        else:
            # 0.0 is a result too (tiny data, many classes): only None has none to show.
            acc = (
                f" val_accuracy {outcome.val_accuracy:.4f}"
                if outcome.val_accuracy is not None
                else ""
            )
            err = f" ({outcome.error})" if outcome.error else ""
            # The worker's time for the trial: loading the data (a worker's first trial),
            # building and compiling too, so more than the training time that `sweep
            # status` shows. A trial not trained now took only the check.
            took = (
                ""
                if outcome.status in ("skipped", "failed-before")
                else f" {outcome.seconds:.1f} s incl. start-up"
            )
            print(
                f"[{self.done}/{self.total}] {outcome.name}: {outcome.status}{acc}{took}{err}",
                file=sys.stderr,
                flush=True,
            )

    def refresh(self) -> None:
        if self.enabled:
            self._progress.update(self._task, description=self._text())

    def stop(self) -> None:
        if self.enabled:
            self._progress.stop()
