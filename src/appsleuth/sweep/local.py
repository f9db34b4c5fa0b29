"""The local executor: trials in worker processes on this machine.

Each worker process is pinned to its own share of the cores (``threads_per_trial``
each, never more workers x threads than the cores this process may use) and runs trials
in plan order, loading the data once. Completed trials are skipped, so re-running the
same command resumes; Ctrl-C stops the workers and leaves unfinished trials without
metadata (they are redone next time); ``kill -9`` of the whole process tree does the same.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from appsleuth._keras import check_backend
from appsleuth.errors import AppSleuthError, SpecError
from appsleuth.hardware import apply_device, apply_thread_limits, available_cores
from appsleuth.sweep.space import ExecutorSpec
from appsleuth.sweep.store import check_data_files, read_plan, trial_states
from appsleuth.sweep.worker import TrialOutcome, check_complete, run_trial

__all__ = ["LocalSummary", "SweepInterrupted", "plan_workers", "run_local"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocalSummary:
    """How a local sweep run ended.

    Attributes:
        sweep_dir: The sweep directory.
        outcomes: One per trial handled in this call, in the order they finished.
        workers: Worker processes used.
        threads_per_trial: Threads each had.
        wall_s: Wall time of this call.
        interrupted: True when a lost worker (killed: out of memory, ``kill -9``)
            stopped it early. (Ctrl-C raises :class:`SweepInterrupted` instead.)
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


def _init_worker(core_sets: Any, threads: int, device: str, shared_gpu: bool) -> None:
    # Runs in the fresh (spawned) process before Keras or JAX are imported.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _exit_with_parent(os.getppid())
    cores = core_sets.get()
    apply_thread_limits(threads, cores)
    if shared_gpu:
        # JAX takes 75 % of a GPU's memory per process by default: workers sharing one
        # would run out. Small models need little; allocate as they go.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if device != "auto":
        apply_device(device)


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


def _interrupt_on_sigterm() -> Any:
    """Treat SIGTERM (``kill``, a scheduler's stop) like Ctrl-C: stop the workers, report.

    Returns the previous handler to restore, or None where none could be installed (not
    the main thread).
    """

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


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
    return run_trial(sweep_dir, index, retry_failed=retry_failed)


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
        progress: Show a progress bar. Defaults to True on a terminal.
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
        ctx = mp.get_context("spawn")  # fork is unsafe once JAX's threads exist
        core_sets = ctx.Queue()
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        for w in range(n_workers):
            core_sets.put(allowed[w * threads_per_trial : (w + 1) * threads_per_trial] or None)
        pool = ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(core_sets, threads_per_trial, device, device != "cpu" and n_workers > 1),
        )
        pending: dict[Future[TrialOutcome], int] = {}
        previous_term = _interrupt_on_sigterm()
        try:
            for index in todo:
                pending[pool.submit(_worker_call, str(sweep_dir), index, retry_failed)] = index
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
                    outcomes.append(outcome)
                    bar.finished(outcome)
                    if on_outcome is not None:
                        on_outcome(outcome)
                bar.refresh()
        except KeyboardInterrupt:
            interrupted = stopped = True
        except BrokenProcessPool:
            interrupted = True  # a worker was killed (out of memory, kill -9)
            # A worker takes its core set once it has started: if any did, the workers
            # could start and one was lost later, not a script without a main guard.
            started = len(outcomes) > len(already) or _any_taken(core_sets, n_workers)
            if started:
                print(
                    "appsleuth: a worker process was killed (out of memory, or by a signal "
                    "such as kill -9), so the sweep stopped; run the same command again: "
                    "complete trials are kept and the unfinished ones are redone",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
            if interrupted:
                for proc in list(getattr(pool, "_processes", {}).values()):
                    if proc.is_alive():
                        proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
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
        workers=n_workers,
        threads_per_trial=threads_per_trial,
        wall_s=time.time() - start,
        interrupted=interrupted,
    )
    if stopped:
        # Raised, not returned: the caller's next steps (a report, the notebook's next
        # cells) must not go on as if the sweep had finished.
        raise SweepInterrupted(summary)
    return summary


class _Progress:
    """One bar over trials: done, running, failed, remaining, elapsed, ETA."""

    def __init__(self, total: int, done: int, failed: int, workers: int, *, enabled: bool) -> None:
        self.total, self.done, self.failed, self.workers = total, done, failed, workers
        self.enabled = enabled
        self._progress: Any = None
        if enabled:
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
            acc = f" val_accuracy {outcome.val_accuracy:.4f}" if outcome.val_accuracy else ""
            err = f" ({outcome.error})" if outcome.error else ""
            print(
                f"[{self.done}/{self.total}] {outcome.name}: {outcome.status}{acc}"
                f" {outcome.seconds:.1f} s{err}",
                file=sys.stderr,
                flush=True,
            )

    def refresh(self) -> None:
        if self.enabled:
            self._progress.update(self._task, description=self._text())

    def stop(self) -> None:
        if self.enabled:
            self._progress.stop()
