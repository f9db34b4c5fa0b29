"""Run one trial of a sweep directory: the unit both executors schedule.

``appsleuth sweep worker DIR --index I`` (what a SLURM array task runs) and the local
executor's worker processes both call :func:`run_trial`. The data a trial needs is loaded
once per process and reused by the next trials of the same process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from appsleuth.data.prepare import PreparedData
from appsleuth.errors import AppSleuthError
from appsleuth.run import (
    RunExistsError,
    RunInUseError,
    data_fingerprint,
    load_data,
    prepare_run_data,
    read_metadata,
    record_failed_run,
    run_conflict,
    run_status,
    train,
)
from appsleuth.spec import RunSpec
from appsleuth.sweep.space import Trial
from appsleuth.sweep.store import read_trial

__all__ = [
    "RUNNING_ELSEWHERE",
    "TrialOutcome",
    "check_complete",
    "exit_without_teardown",
    "not_this_trial",
    "outcome_dict",
    "run_trial",
]

# The outcome of a trial another process is training right now (another sweep run on
# the same directory, or a duplicated SLURM task): not a failure, that process finishes it.
RUNNING_ELSEWHERE = "running-elsewhere"

_DATA_CACHE: dict[str, PreparedData] = {}


def exit_without_teardown(code: int) -> NoReturn:
    """End this process now with ``code``, skipping the interpreter's teardown.

    For a process whose trials are done (a local sweep worker, a SLURM array task):
    everything a trial writes is renamed into place before its result is given, and
    freeing JAX, Keras and the data object by object took ~2 s of a core. Log handlers
    and the standard streams are flushed first, as a normal exit would.
    """
    logging.shutdown()  # exit handlers do this; os._exit skips them
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrialOutcome:
    """How a trial ended in this call.

    Attributes:
        index: Trial index.
        name: Run directory name.
        status: ``complete``, ``skipped`` (already complete), ``failed``,
            ``failed-before`` (failed earlier and not retried) or ``running-elsewhere``
            (another process is training it right now).
        seconds: Wall time of this call.
        val_accuracy: Final validation accuracy when complete.
        error: The error when failed.
    """

    index: int
    name: str
    status: str
    seconds: float
    val_accuracy: float | None = None
    error: str | None = None


def _cached_data(spec: RunSpec) -> PreparedData:
    # Every trial of a sweep shares its data section, so a worker loads, cleans, splits
    # and preprocesses once and reuses the arrays for its next trials.
    key = json.dumps(spec.data.to_dict(), sort_keys=True)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set per process at a time keeps memory flat
        _DATA_CACHE[key] = prepare_run_data(spec, load_data(spec), from_spec=True)
    return _DATA_CACHE[key]


def run_trial(
    sweep_dir: str | os.PathLike[str],
    index: int,
    *,
    retry_failed: bool = False,
    verbose: bool = False,
) -> TrialOutcome:
    """Train trial ``index`` of a sweep directory unless it is already complete.

    Args:
        sweep_dir: The sweep directory (holds ``manifest.json``).
        index: The trial's index in the plan.
        retry_failed: Redo a trial that failed before. Defaults to False.
        verbose: One line per epoch. Defaults to False.

    Returns:
        The :class:`TrialOutcome`; a trial that raises is recorded as failed (its run
        directory's metadata holds the error) rather than raising.

    Raises:
        AppSleuthError: The index is out of range or the manifest is unreadable.
    """
    start = time.time()
    sweep_dir = Path(sweep_dir)
    # This trial only: every trial of a large sweep runs this, each in its own process.
    # It refuses an index that is no integer, naming the plan's size.
    trial = read_trial(sweep_dir, index)
    index = trial.index
    run_dir = sweep_dir / trial.name
    status = run_status(run_dir)
    if status == "complete":
        return check_complete(sweep_dir, trial, started=start)
    if status == "failed" and not retry_failed:
        return TrialOutcome(
            index=index,
            name=trial.name,
            status="failed-before",
            seconds=time.time() - start,
            error=(read_metadata(run_dir) or {}).get("error"),
        )
    try:
        prepared = _cached_data(trial.spec)
    except Exception as exc:  # e.g. the data file: recorded, so status shows the failure
        error = f"{type(exc).__name__}: {exc}"
        _record_failure(run_dir, trial, error, start)
        return TrialOutcome(
            index=index, name=trial.name, status="failed", seconds=time.time() - start, error=error
        )
    if run_status(run_dir) == "complete":
        # Another sweep run on this directory finished the trial while the data loaded.
        return check_complete(sweep_dir, trial, started=start)
    try:
        result = train(
            trial.spec,
            prepared=prepared,
            out=sweep_dir,
            name=trial.name,
            verbose=verbose,
            log=_quiet,
        )
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:
        # Code in the trial called sys.exit: in a local pool the worker hands it back as
        # the trial's result, and it ended the sweep's own process (exit code and all,
        # no message); the same trial did so again on every re-run. It fails the trial.
        error = f"SystemExit: code in the trial called sys.exit({exc.code!r})"
        _record_failure(run_dir, trial, error, start)
        return TrialOutcome(
            index=index, name=trial.name, status="failed", seconds=time.time() - start, error=error
        )
    except RunInUseError as exc:
        return TrialOutcome(
            index=index,
            name=trial.name,
            status=RUNNING_ELSEWHERE,
            seconds=time.time() - start,
            error=str(exc),
        )
    except Exception as exc:  # recorded, and the sweep goes on with the other trials
        if isinstance(exc, RunExistsError) and run_status(run_dir) == "complete":
            # Another sweep run finished it since the check above (starting Keras takes
            # seconds): its result is kept, not set aside and trained again.
            return check_complete(sweep_dir, trial, started=start)
        error = (read_metadata(run_dir) or {}).get("error") or f"{type(exc).__name__}: {exc}"
        return TrialOutcome(
            index=index, name=trial.name, status="failed", seconds=time.time() - start, error=error
        )
    return TrialOutcome(
        index=index,
        name=trial.name,
        status="complete",
        seconds=time.time() - start,
        val_accuracy=result.metadata["last_results"]["val_accuracy"],
    )


def check_complete(
    sweep_dir: str | os.PathLike[str], trial: Trial, *, started: float | None = None
) -> TrialOutcome:
    """The outcome of a trial whose run directory is complete: kept only if it is this trial.

    A complete run counts as the trial (``skipped``, not trained again) only when its
    recorded spec is the trial's and its data fingerprint is that of the trial's data
    prepared now: the run directory name does not show every setting (activation, split,
    data path), and a data file can be replaced in place. Anything else is ``failed``
    with an error naming what differs; the run directory is left as it is.

    Args:
        sweep_dir: The sweep directory.
        trial: The trial.
        started: When this attempt began. Defaults to now.

    Returns:
        The :class:`TrialOutcome`.
    """
    start = time.time() if started is None else started
    run_dir = Path(sweep_dir) / trial.name
    try:
        fingerprint: str | None = data_fingerprint(_cached_data(trial.spec))
    except Exception:
        # The data cannot be loaded here (a finished sweep copied without it): the run is
        # then judged by its recorded spec alone.
        fingerprint = None
    error = not_this_trial(sweep_dir, trial, fingerprint)
    if error:
        return TrialOutcome(
            index=trial.index,
            name=trial.name,
            status="failed",
            seconds=time.time() - start,
            error=f"RunExistsError: {error}",
        )
    meta = read_metadata(run_dir) or {}
    return TrialOutcome(
        index=trial.index,
        name=trial.name,
        status="skipped",
        seconds=time.time() - start,
        val_accuracy=(meta.get("last_results") or {}).get("val_accuracy"),
    )


def not_this_trial(
    sweep_dir: str | os.PathLike[str], trial: Trial, fingerprint: str | None
) -> str | None:
    """Why the complete run in the trial's directory is not the trial, or None if it is.

    Args:
        sweep_dir: The sweep directory.
        trial: The trial.
        fingerprint: The data fingerprint of the trial's data prepared now; None
            compares the recorded spec only.

    Returns:
        The error text (what differs, and how to proceed), or None.
    """
    run_dir = Path(sweep_dir) / trial.name
    if fingerprint is None:
        fingerprint = (read_metadata(run_dir) or {}).get("data_fingerprint")
    conflict = run_conflict(run_dir, trial.spec, fingerprint)  # type: ignore[arg-type]
    if not conflict:
        return None
    return (
        f"run directory {run_dir} holds a complete run of {conflict}, not of trial "
        f"{trial.index} of this sweep; move that run directory away to train the trial, "
        f"or plan this sweep in another --out"
    )


def _record_failure(run_dir: Path, trial: Trial, error: str, started: float) -> None:
    # Not recorded (the outcome still reports it) when the directory cannot be written or
    # is not appsleuth's to replace.
    with contextlib.suppress(OSError, AppSleuthError):
        record_failed_run(run_dir, trial.spec, error, started=started)


def _quiet(message: str) -> None:
    del message


def outcome_dict(outcome: TrialOutcome) -> dict[str, Any]:
    """Plain-Python form (for JSON lines)."""
    return dataclasses.asdict(outcome)
