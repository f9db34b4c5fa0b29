"""The SLURM executor: job arrays whose task i runs trial i (plus the array's offset).

Inside the sweep directory::

    slurm/job.sbatch          the readable job-array script (no hyperparameter in it)
    slurm/submissions.jsonl   append-only journal: every sbatch (intent, then job id)
                              and scancel
    slurm/submit.lock         flock'ed while one process submits or cancels
    slurm/logs/%A_%a.out      one output file per array task

A submission is one job array, whose task i runs trial i, unless a trial still to run has
an index the cluster's job arrays cannot take (``MaxArraySize`` in ``scontrol show
config``): it is then several arrays, each with an offset k that sbatch passes to the
script (``--index-offset k``), so that task i of that array runs trial k + i. The journal
records each array's offset and trials, which map its tasks (in squeue, in the names of
the output files) back to trials.

A trial's state comes from its run directory first (complete or failed with metadata),
then from ``squeue`` for the job that last took it, then, once squeue forgot the job, from
what slurmstepd wrote at the end of its output file (cancelled, time limit, out of memory)
and the journal (cancelled, or ended without a complete run directory: failed, read its
output file). Neither ``sacct`` nor an accounting database is needed.

Before each ``sbatch`` the journal records an intent with a random token, which the job
carries as its ``--comment``. If the process dies after ``sbatch`` accepted the job but
before the job id reached the journal, the next status, run or cancel finds the job in
``squeue`` by that comment, so a rerun neither loses track of it nor submits its trials
twice. Every value that reaches a shell is validated
against a safe pattern or passed through :func:`shlex.quote`; subprocesses get argument
lists, never a shell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from appsleuth._atomic import atomic_write_text
from appsleuth._fields import is_number
from appsleuth._files import read_record_text
from appsleuth._keras import backend_name, check_backend
from appsleuth._version import __version__
from appsleuth.display import live_display_works
from appsleuth.errors import AppSleuthError, DataError, SpecError, warn
from appsleuth.hardware import check_device
from appsleuth.run import read_metadata, run_status
from appsleuth.sweep.space import SweepPlan
from appsleuth.sweep.store import read_plan, trial_result, trial_wall_time
from appsleuth.sweep.worker import not_this_trial

__all__ = [
    "ACTIVE",
    "COMMENT_PREFIX",
    "JOURNAL",
    "LOCK",
    "LOGS",
    "OPTION_NAMES",
    "OTHER_TASKS",
    "SCRIPT",
    "SLURM_DIR",
    "SlurmArray",
    "SlurmOptions",
    "SlurmSubmission",
    "SlurmTrialState",
    "cancel_slurm",
    "check_submission",
    "classify_trials",
    "compress_indices",
    "count_states",
    "is_slurm_sweep",
    "parse_comments",
    "parse_squeue",
    "query_squeue",
    "query_submissions",
    "read_journal",
    "recover_submissions",
    "render_script",
    "slurm_available",
    "slurm_states",
    "split_arrays",
    "submit_slurm",
    "wait_slurm",
]

SLURM_DIR = "slurm"
# The --comment of every job, followed by the intent's token (see the module docstring).
COMMENT_PREFIX = "appsleuth-submission:"
SCRIPT = "slurm/job.sbatch"
JOURNAL = "slurm/submissions.jsonl"
LOGS = "slurm/logs"
# Held (flock) by whoever reads the states, submits and journals the job id.
LOCK = "slurm/submit.lock"

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
# Paths #SBATCH lines can carry as is: sbatch splits directives on blanks and quotes and
# expands % patterns, so anything else goes on the sbatch command line instead.
_SAFE_PATH = re.compile(r"[A-Za-z0-9._/+-]+")
# The settings of an executor's ``options`` mapping (the fields of SlurmOptions).
OPTION_NAMES = (
    "partition",
    "account",
    "qos",
    "time_min",
    "cpus_per_task",
    "mem_gb",
    "gpus",
    "array_parallelism",
    "job_name",
    "extra_sbatch",
    "preamble",
)
# sbatch options appsleuth sets on the command line (which overrides #SBATCH lines), and
# why: an extra_sbatch line setting one would be ignored without a word.
_OWN_OPTIONS = {
    "--array": "array task i runs trial i, plus the array's offset (array_parallelism sets "
    "the %K throttle)",
    "--output": "each task's output goes to slurm/logs/%A_%a.out, the file status points to",
    "--error": "a task's errors go to slurm/logs/%A_%a.out, the file status points to",
    "--comment": "it carries the token that finds a submission again",
}
_SHORT_OPTIONS = {"-a": "--array", "-o": "--output", "-e": "--error"}
_PENDING = {
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
}
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
ACTIVE = ("pending", "running")
# A plain resume submits such a trial again with the same limits: say which to raise.
_STATE_HINTS = {
    "TIMEOUT": ": it needs more than time_min minutes; raise --time-min before resuming",
    "OUT_OF_MEMORY": ": it needs more than mem_gb; raise --mem-gb before resuming",
}
# parse_squeue's key for the state of an array's tasks squeue does not list one by one.
OTHER_TASKS = -1
# What slurmstepd writes into a task's output file when it ends the task, by the state
# squeue showed until it forgot the job (MinJobAge after its end, minutes by default).
_STEPD_END = re.compile(
    # "DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS": the reason ends at the comma.
    r"^slurmstepd\S*: error: \*\*\* JOB \d+ ON \S+ CANCELLED AT \S+"
    r"(?: DUE TO ([A-Z ]+?)(?:, [^*]*)?)? \*\*\*",
    re.M,
)
_STEPD_REASONS = {
    None: "CANCELLED",
    "TIME LIMIT": "TIMEOUT",
    "NODE FAILURE": "NODE_FAIL",
    "PREEMPTION": "PREEMPTED",
}
# Only slurmstepd's own lines: a trial's "out of memory" may be its GPU's.
_OOM = re.compile(
    r"^slurmstepd\S*: error: (?:Detected \d+ oom[-_]kill event|Exceeded (?:job|step) memory limit)",
    re.M,
)


def _positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a non-negative" if allow_zero else "a positive"
        raise SpecError(f"{name} must be {kind} integer; received {name}={value!r}")
    return value


def _safe_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value):
        raise SpecError(
            f"{name} must be letters, digits, '.', '_' or '-' only; received {name}={value!r}"
        )
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmOptions:
    """The ``sbatch`` settings of a sweep (the executor options of a slurm spec).

    Attributes:
        partition: Partition. Defaults to None (the cluster's default).
        account: Account to charge. Defaults to None.
        qos: Quality of service. Defaults to None.
        time_min: Time limit of each trial in minutes. Defaults to 60.
        cpus_per_task: Cores of each trial. Defaults to 1 (the spec's threads_per_trial).
        mem_gb: Memory of each trial in GB. Defaults to None (the cluster's default).
        gpus: GPUs of each trial. Defaults to None (none requested).
        array_parallelism: At most this many trials at once (``%K``). Defaults to None.
        job_name: Job name. Defaults to None (``appsleuth-<sweep name>``).
        extra_sbatch: Further ``#SBATCH ...`` lines, verbatim. Defaults to none.
        preamble: Shell lines run before the trial (``module load``, ``conda
            activate``), verbatim: it is the user's own shell. Defaults to none.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 60
    cpus_per_task: int = 1
    mem_gb: float | None = None
    gpus: int | None = None
    array_parallelism: int | None = None
    job_name: str | None = None
    extra_sbatch: tuple[str, ...] = ()
    preamble: str = ""

    def __post_init__(self) -> None:
        for name in ("partition", "account", "qos", "job_name"):
            value = getattr(self, name)
            if value is not None:
                _safe_name(name, value)
        _positive_int("time_min", self.time_min)
        _positive_int("cpus_per_task", self.cpus_per_task)
        if self.array_parallelism is not None:
            _positive_int("array_parallelism", self.array_parallelism)
        if self.gpus is not None:
            _positive_int("gpus", self.gpus, allow_zero=True)
        if self.mem_gb is not None and (
            isinstance(self.mem_gb, bool)
            or not isinstance(self.mem_gb, int | float)
            or not 0 < self.mem_gb < float("inf")
        ):
            raise SpecError(f"mem_gb must be a positive number; received mem_gb={self.mem_gb!r}")
        lines = self.extra_sbatch
        if isinstance(lines, str) or not isinstance(lines, Sequence):
            raise SpecError(
                "extra_sbatch must be a list of '#SBATCH ...' lines; received "
                f"extra_sbatch={lines!r}"
            )
        for line in lines:
            if (
                not isinstance(line, str)
                or not line.startswith("#SBATCH ")
                or "\n" in line
                or "\r" in line
            ):
                raise SpecError(
                    f"each extra_sbatch line must start with '#SBATCH ' and hold no newline; "
                    f"received extra_sbatch line {line!r}"
                )
            words = line[len("#SBATCH ") :].split()
            first = words[0] if words else ""
            name = first.split("=")[0] if first.startswith("--") else first[:2]
            name = _SHORT_OPTIONS.get(name, name)
            # sbatch takes any unambiguous start of a long option (--outp is --output).
            own = [o for o in _OWN_OPTIONS if len(name) > 2 and o.startswith(name)]
            if own:
                raise SpecError(
                    f"extra_sbatch cannot set {own[0]}, which appsleuth sets itself: "
                    f"{_OWN_OPTIONS[own[0]]}; received extra_sbatch line {line!r}"
                )
        object.__setattr__(self, "extra_sbatch", tuple(lines))
        if not isinstance(self.preamble, str) or "\0" in self.preamble:
            raise SpecError(
                f"preamble must be text (shell lines); received preamble={self.preamble!r}"
            )
        for line in self.preamble.splitlines():
            if line.lstrip().startswith("#SBATCH"):
                # sbatch reads #SBATCH lines only before the script's first command.
                raise SpecError(
                    f"the preamble's line {line.strip()!r} would be ignored by sbatch, which "
                    f"reads #SBATCH lines only before the first command; put it in "
                    f"extra_sbatch instead"
                )

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], *, threads_per_trial: int = 1
    ) -> SlurmOptions:
        """From an executor's options; ``cpus_per_task`` defaults to ``threads_per_trial``.

        Raises:
            SpecError: An unknown option, or an invalid value (naming the field).
        """
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise SpecError(
                f"unknown slurm executor option(s) {', '.join(map(repr, unknown))}; valid "
                f"options: {', '.join(OPTION_NAMES)}"
            )
        d = {k: v for k, v in options.items() if v is not None}
        cpus = d.get("cpus_per_task")
        if threads_per_trial != 1 and cpus is not None and cpus != threads_per_trial:
            # A task runs with the CPUs it is given, so the other number would be ignored.
            raise SpecError(
                f"threads_per_trial and cpus_per_task disagree: a SLURM trial uses the "
                f"cpus_per_task it is given; received threads_per_trial={threads_per_trial!r} "
                f"(executor.threads_per_trial or --threads-per-trial) and cpus_per_task={cpus!r}; "
                f"give one of them, or "
                f"both the same"
            )
        d.setdefault("cpus_per_task", threads_per_trial)
        if "extra_sbatch" in d and isinstance(d["extra_sbatch"], list):
            d["extra_sbatch"] = tuple(d["extra_sbatch"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for the journal)."""
        d = dataclasses.asdict(self)
        d["extra_sbatch"] = list(self.extra_sbatch)
        return d


def compress_indices(indices: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (a ``--array`` list)."""
    parts: list[str] = []
    values = sorted(set(indices))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)


def split_arrays(indices: Iterable[int], limit: int | None) -> list[tuple[int, tuple[int, ...]]]:
    """Trial indices as job arrays whose array indices stay below ``limit``.

    Task a of the array with offset k runs trial k + a. When every index is below the
    limit, or the limit is unknown (None), that is one array with offset 0, task i
    running trial i; otherwise each array's offset is its smallest trial, which gives the
    fewest arrays.

    Args:
        indices: The trials to submit.
        limit: The cluster's MaxArraySize (array indices 0..limit-1), or None.

    Returns:
        ``[(offset, trials), ...]``, the trials sorted, the arrays in trial order.

    Raises:
        AppSleuthError: ``limit`` is below 1 (the cluster takes no job array).
    """
    values = sorted(set(indices))
    if not values:
        return []
    if limit is None or values[-1] < limit:
        return [(0, tuple(values))]
    if limit < 1:
        raise AppSleuthError(
            f"this cluster takes no job arrays (MaxArraySize={limit} in 'scontrol show "
            f"config'), and the slurm executor submits each trial as an array task; use "
            f"executor: local"
        )
    arrays: list[tuple[int, tuple[int, ...]]] = []
    i = 0
    while i < len(values):
        offset = values[i]
        j = i
        while j < len(values) and values[j] - offset < limit:
            j += 1
        arrays.append((offset, tuple(values[i:j])))
        i = j
    return arrays


def _expand_indices(text: str) -> list[int]:
    """``"0-2,5%2"`` -> ``[0, 1, 2, 5]`` (the throttle is dropped)."""
    out: list[int] = []
    for part in text.split("%")[0].split(","):
        part = part.strip()
        if not part:
            continue
        step = 1
        if ":" in part:
            part, step_text = part.split(":", 1)
            step = int(step_text)
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1, step))
        else:
            out.append(int(part))
    return out


def _time_text(minutes: int) -> str:
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours}:{mins:02d}:00"


def _output_pattern(sweep_dir: Path) -> str:
    # sbatch expands %A/%a in the file name; a literal % of the path is written %%.
    return str(sweep_dir / LOGS).replace("%", "%%") + "/%A_%a.out"


def _plain_name(name: str) -> str:
    """``name`` with each character outside ``[A-Za-z0-9._-]`` made ``_`` (script text)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _job_name(sweep_dir: Path, options: SlurmOptions) -> str:
    if options.job_name:
        return options.job_name
    return "appsleuth-" + (_plain_name(sweep_dir.name) or "sweep")


def render_script(
    sweep_dir: str | os.PathLike[str],
    n_trials: int,
    options: SlurmOptions,
    *,
    python: str | None = None,
    device: str = "auto",
    max_array_size: int | None = None,
) -> str:
    """The job-array script: ``#SBATCH`` settings, the backend, the preamble, then trial i.

    ``KERAS_BACKEND`` is set to this process's Keras backend before the preamble.

    Args:
        sweep_dir: The sweep directory (made absolute).
        n_trials: Trials in the plan (the script's ``--array`` covers them all, or as
            many as ``max_array_size`` lets it).
        options: The :class:`SlurmOptions`.
        python: The Python that runs appsleuth. Defaults to this one (``sys.executable``).
        device: ``--device`` of each trial: ``auto`` (default), ``cpu`` or ``gpu``.
        max_array_size: The cluster's MaxArraySize. Defaults to None (unknown).

    Returns:
        The script text.
    """
    check_device(device)
    sweep_dir = Path(os.path.abspath(sweep_dir))
    # Not resolved: a virtual environment's python is a symlink whose target lacks the venv.
    python = os.path.abspath(python or sys.executable)
    throttle = f"%{options.array_parallelism}" if options.array_parallelism else ""
    lines = [
        "#!/bin/bash",
        # The directory's own name, which a newline would end the comment in.
        f"# appsleuth {__version__} sweep {_plain_name(sweep_dir.name)}: array task i runs "
        "trial i.",
        "# (Trial k + i where sbatch passes --index-offset k: a sweep larger than the",
        "# cluster's MaxArraySize is submitted as several arrays, each with its offset.)",
        "# The hyperparameters are in manifest.json, never in this script. Submitted by",
        "# 'appsleuth sweep run', which passes --array (the trials still to run) and",
        "# --output on the sbatch command line; both also work from here by hand.",
    ]
    last = max(n_trials - 1, 0)
    if max_array_size and last >= max_array_size:
        # sbatch refuses an --array past the limit: this line stays one it takes.
        last = max_array_size - 1
        lines += [
            f"# This plan's {n_trials} trials pass the cluster's MaxArraySize ({max_array_size}),",
            f"# so the --array line below covers trials 0..{last} only; by hand,",
            "# 'sbatch --array=0-N job.sbatch --index-offset K' runs trials K..K+N.",
        ]
    lines += [
        f"#SBATCH --job-name={_job_name(sweep_dir, options)}",
        f"#SBATCH --array=0-{last}{throttle}",
    ]
    output = _output_pattern(sweep_dir)
    if _SAFE_PATH.fullmatch(str(sweep_dir)):
        lines.append(f"#SBATCH --output={output}")
    else:
        lines += [
            "# --output is given on the sbatch command line only: the path of this sweep",
            "# directory has characters that #SBATCH lines cannot carry.",
        ]
    lines.append(f"#SBATCH --time={_time_text(options.time_min)}")
    lines.append(f"#SBATCH --cpus-per-task={options.cpus_per_task}")
    if options.mem_gb is not None:
        lines.append(f"#SBATCH --mem={max(1, round(options.mem_gb * 1024))}M")
    if options.gpus:
        lines.append(f"#SBATCH --gpus={options.gpus}")
    for name in ("partition", "account", "qos"):
        value = getattr(options, name)
        if value:
            lines.append(f"#SBATCH --{name}={value}")
    lines.extend(options.extra_sbatch)
    lines.append("")
    # Tasks would take it from sbatch's exported environment, which a cluster may not
    # export (--export=NONE): set here, before the preamble, which may still change it.
    lines += [
        "# The Keras backend of the process that submitted this sweep.",
        f"export KERAS_BACKEND={shlex.quote(backend_name())}",
        "",
        # Not an environment variable: --export=NONE (a cluster's or the user's) would drop
        # it, and --export=ALL to pass it would override that choice.
        "# Arguments after this script's name on the sbatch command line go to the worker",
        "# (--retry-failed redoes a trial that failed before, --index-offset k adds k to the",
        "# array task id); the preamble does not see them.",
        'appsleuth_args=("$@")',
        "set --",
        "",
    ]
    if options.preamble.strip():
        lines += ["# --- preamble (from the sweep spec, verbatim) ---", options.preamble.rstrip()]
        lines += ["# --- end of preamble ---", ""]
    lines += [
        "# Trial $SLURM_ARRAY_TASK_ID of the manifest (plus --index-offset, if given).",
        f"exec {shlex.quote(python)} -m appsleuth sweep worker {shlex.quote(str(sweep_dir))} "
        + ("" if device == "auto" else f"--device {device} ")
        + '--index "$SLURM_ARRAY_TASK_ID" "${appsleuth_args[@]}"',
        "",
    ]
    return "\n".join(lines)


# --- the journal ---------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _append_event(sweep_dir: Path, event: dict[str, Any]) -> None:
    path = sweep_dir / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        # A write torn by a crash leaves a line without its newline: end it first, so
        # that this event stays a line of its own.
        fh.seek(0, os.SEEK_END)
        prefix = b""
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = b"\n"
        fh.write(prefix + json.dumps(event, sort_keys=True).encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


_EVENTS = ("intent", "submit", "refused", "cancel")


def read_journal(sweep_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of a sweep's journal, oldest first (none for a local sweep).

    Events are ``intent`` (about to call sbatch), then ``submit`` (sbatch gave a job id)
    or ``refused`` (sbatch said no), and ``cancel``. An intent and its submit name the
    trials of one job array (``indices``) and its ``offset`` (task i runs trial offset +
    i; 0 where the event has none, as in a journal written before offsets existed). A
    line that is not valid JSON (a write torn by a crash) is skipped; so is an event whose
    fields are missing or of the wrong kind (an edited or damaged journal), with a warning
    naming the file and line.

    Raises:
        DataError: The journal cannot be read (no regular file, far too large, no access).
    """
    path = Path(sweep_dir) / JOURNAL
    try:
        text = read_record_text(path, errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        # The bounded reader's reason ("it is a named pipe, ...") names no file by itself.
        raise DataError(
            f"the sweep's SLURM journal {path} cannot be read: {exc}; it records the jobs "
            f"submitted, so restore it or move the sweep directory aside"
        ) from exc
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # torn by a crash, or nested past Python's limit
            continue
        if not isinstance(event, dict) or event.get("event") not in _EVENTS:
            continue
        fault = _event_fault(event)
        if fault:
            # An AppSleuthWarning: the CLI prints it as one line, and Python shows a
            # message once though the journal is read several times per command.
            warn(f"{path} line {number} is damaged ({fault}); that event is skipped")
            continue
        if "job_id" in event:
            event["job_id"] = str(event["job_id"])
        events.append(event)
    return events


def _event_fault(event: dict[str, Any]) -> str | None:
    """What a journal event lacks or holds wrongly, or None when it can be used."""

    def job_id_ok(value: Any) -> bool:
        return (isinstance(value, str) and value.isdigit()) or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 0
        )

    kind = event["event"]
    if kind in ("intent", "refused") and not (isinstance(event.get("token"), str)):
        return f"the {kind} event needs a token (text); received token={event.get('token')!r:.40}"
    if kind in ("intent", "submit"):
        indices = event.get("indices")
        if not isinstance(indices, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices
        ):
            return (
                f"the {kind} event needs indices, a list of trial numbers; received "
                f"indices={indices!r:.40}"
            )
        offset = event.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            return (
                f"the {kind} event's offset must be a non-negative integer; received "
                f"offset={offset!r:.40}"
            )
        if any(i < offset for i in indices):
            # Task i of the array runs trial offset + i: a smaller trial is no task of it.
            return (
                f"the {kind} event's indices must be at least its offset; received "
                f"offset={offset} and indices={indices!r:.40}"
            )
    if kind == "submit" and not job_id_ok(event.get("job_id")):
        received = f"{event.get('job_id')!r:.40}"
        return f"the submit event needs a job_id of digits; received job_id={received}"
    if kind == "cancel":
        job_ids = event.get("job_ids")
        if not isinstance(job_ids, list) or not all(job_id_ok(j) for j in job_ids):
            return (
                f"the cancel event needs job_ids, a list of job ids; received "
                f"job_ids={job_ids!r:.40}"
            )
    return None


def is_slurm_sweep(sweep_dir: str | os.PathLike[str]) -> bool:
    """True once a sweep directory has a SLURM journal."""
    return (Path(sweep_dir) / JOURNAL).exists()


# --- squeue and the trial states -----------------------------------------------------------


def parse_squeue(text: str) -> dict[str, dict[int, str]]:
    """Parse ``squeue --noheader --format=%i|%T`` output.

    Returns:
        ``{job_id: {array_index: STATE}}``; ``123_[4-6%2]|PENDING`` and
        ``123_[3-59:2]|PENDING`` (pending ranges) count for each index. A line with
        no index (``123|CANCELLED``) is the state of the job's tasks not listed one by
        one, under the key :data:`OTHER_TASKS`.
    """
    jobs: dict[str, dict[int, str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or "|" not in line:
            continue
        job, state = (p.strip() for p in line.split("|", 1))
        state = state.split()[0].upper() if state else ""
        if "_" not in job:
            if job.isdigit():
                # The array's own record, which squeue shows without an index once it
                # left the queue before its tasks started (scancel -s KILL of a queued
                # array: 123|CANCELLED).
                jobs.setdefault(job, {})[OTHER_TASKS] = state
            continue
        job_id, task = job.split("_", 1)
        try:
            indices = _expand_indices(task.strip("[]"))
        except ValueError:
            continue
        for index in indices:
            jobs.setdefault(job_id, {})[index] = state
    return jobs


def slurm_available() -> bool:
    """True when ``sbatch`` is on PATH and ``sinfo`` answers."""
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        done = subprocess.run(["sinfo", "--noheader"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class _NotStartedError(AppSleuthError):
    """A SLURM command could not even be started (not on PATH, not executable)."""


def _run(
    cmd: list[str], what: str, *, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env} if env else None
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, check=False, env=full_env
        )
    except FileNotFoundError as exc:
        raise _NotStartedError(
            f"{cmd[0]} is not on PATH: {what} needs SLURM; run on a SLURM login node, or "
            f"use executor: local"
        ) from exc
    except OSError as exc:
        raise _NotStartedError(f"{cmd[0]} could not be started ({what}): {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise AppSleuthError(f"{cmd[0]} did not answer within 120 s ({what})") from exc


def _max_array_size() -> int | None:
    """The cluster's MaxArraySize (``scontrol show config``); None when it cannot be read."""
    try:
        done = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None  # sbatch still says no, if the limit is exceeded
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", done.stdout, re.M)
    return int(match.group(1)) if done.returncode == 0 and match else None


def query_squeue(job_ids: Sequence[str]) -> dict[str, dict[int, str]]:
    """Ask ``squeue`` for the array tasks of these jobs (any state it still knows)."""
    if not job_ids:
        return {}
    # Not --array: SLURM 22.05 drops the last task when it expands a stepped pending
    # range (123_[3-59:2]), so the ranges are expanded here. SLURM_BITSTR_LEN=0 stops
    # squeue from cutting a long range text at 64 characters.
    done = _run(
        [
            "squeue",
            "--noheader",
            "--states=all",
            "--format=%i|%T",
            f"--jobs={','.join(job_ids)}",
        ],
        "reading the state of the sweep's SLURM jobs",
        env={"SLURM_BITSTR_LEN": "0"},
    )
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return {}  # every job ended long enough ago to be forgotten
        raise AppSleuthError(f"squeue failed (exit {done.returncode}): {done.stderr.strip()}")
    return parse_squeue(done.stdout)


def parse_comments(text: str) -> dict[str, str]:
    """Parse ``squeue --noheader --format=%F|%k`` output into ``{token: job_id}``.

    The job id is the array's base id (``%F``): once a task starts it gets a job id of
    its own (``%A``), which neither squeue's ``--jobs`` nor scancel of the array knows
    as the submission. An ``%i`` text (``123_4``) counts as its base id too. Only jobs
    whose comment is an appsleuth submission token count.
    """
    found: dict[str, str] = {}
    for line in text.splitlines():
        job, _, comment = line.strip().partition("|")
        job_id = job.strip().split("_", 1)[0]
        comment = comment.strip()
        if job_id.isdigit() and comment.startswith(COMMENT_PREFIX):
            found[comment[len(COMMENT_PREFIX) :]] = job_id
    return found


def query_submissions(tokens: Sequence[str]) -> dict[str, str]:
    """Find the jobs of unjournaled submissions in ``squeue`` by their comment token.

    Returns:
        ``{token: job_id}`` for the tokens whose job squeue still knows.
    """
    if not tokens:
        return {}
    done = _run(
        ["squeue", "--noheader", "--states=all", "--format=%F|%k", f"--user={_user()}"],
        "looking for a submission missing from the journal",
    )
    if done.returncode != 0:
        raise AppSleuthError(f"squeue failed (exit {done.returncode}): {done.stderr.strip()}")
    wanted = set(tokens)
    return {t: j for t, j in parse_comments(done.stdout).items() if t in wanted}


def _user() -> str:
    import getpass

    return getpass.getuser()


def recover_submissions(
    events: Sequence[dict[str, Any]], found: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Put the job ids found for unjournaled intents into the event list (a pure function).

    Args:
        events: The journal's events, oldest first.
        found: ``{token: job_id}`` from :func:`query_submissions`.

    Returns:
        ``(events, recovered)``: the events with each such intent replaced, in place, by
        the ``submit`` event it stands for, and those new ``submit`` events.
    """
    journaled = {e.get("token") for e in events if e.get("event") == "submit"}
    out, recovered = [], []
    for event in events:
        token = event.get("token")
        if event.get("event") == "intent" and token not in journaled and token in found:
            offset = {"offset": event["offset"]} if "offset" in event else {}
            event = {
                "event": "submit",
                "job_id": found[token],
                "indices": list(event.get("indices") or ()),
                **offset,
                "token": token,
                "recovered": True,
                "time": event.get("time"),
            }
            recovered.append(event)
        out.append(event)
    return out, recovered


def _orphan_tokens(events: Sequence[dict[str, Any]]) -> list[str]:
    journaled = {e.get("token") for e in events if e.get("event") in ("submit", "refused")}
    return [
        str(e["token"])
        for e in events
        if e.get("event") == "intent" and e.get("token") and e.get("token") not in journaled
    ]


def _journal_with_recovered(
    sweep_dir: Path, find: Callable[[Sequence[str]], Mapping[str, str]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = read_journal(sweep_dir)
    orphans = _orphan_tokens(events)
    if not orphans:
        return events, []
    return recover_submissions(events, (find or query_submissions)(orphans))


def _persist_recovered(sweep_dir: Path) -> None:
    # Before anything is appended after them, so that journal order stays event order.
    _, recovered = _journal_with_recovered(sweep_dir)
    for event in recovered:
        _append_event(sweep_dir, {**event, "time": _now(), "submitted": event["time"]})


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmTrialState:
    """Where one trial of a SLURM sweep stands.

    Attributes:
        index: Trial index.
        name: Run directory name.
        params: The varied hyperparameters.
        status: ``complete``, ``running``, ``pending`` (queued in SLURM), ``failed``,
            ``cancelled``, ``unsubmitted`` or ``unknown`` (squeue could not be asked).
        job_id: The array task that last took it (``123_4``: array index 4 of job 123,
            the trial's index less that array's offset), if any.
        log: That task's SLURM output file, if any.
        error: Why it failed.
        metadata: The run's metadata (None before it finished).
        ran: True when the run directory itself records the failure.
    """

    index: int
    name: str
    params: dict[str, Any]
    status: str
    job_id: str | None = None
    log: Path | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    ran: bool = False

    @property
    def duration_s(self) -> float | None:
        """Wall time of a finished trial."""
        return trial_wall_time(self.metadata)

    def last(self, key: str) -> float | None:
        """A final-epoch metric of a complete trial."""
        return trial_result(self.status, self.metadata, key)


def classify_trials(
    sweep_dir: Path,
    trials: Sequence[tuple[int, str, dict[str, Any], str, dict[str, Any] | None]],
    events: Sequence[dict[str, Any]],
    queue: Mapping[str, Mapping[int, str]],
) -> list[SlurmTrialState]:
    """Combine run-directory states, the journal and ``squeue`` (a pure function).

    Args:
        sweep_dir: The sweep directory (for log paths).
        trials: ``(index, name, params, run_status, metadata)`` per trial.
        events: The journal's events, oldest first.
        queue: :func:`parse_squeue` output.

    Returns:
        One :class:`SlurmTrialState` per trial.
    """
    # Trial -> (journal position, job id, array index) of the job that last took it.
    last_job: dict[int, tuple[int, str, int]] = {}
    cancels: dict[str, int] = {}
    for pos, event in enumerate(events):
        if event.get("event") == "submit":
            offset = int(event.get("offset") or 0)
            for index in event.get("indices") or ():
                last_job[int(index)] = (pos, str(event.get("job_id")), int(index) - offset)
        elif event.get("event") == "cancel":
            for job_id in event.get("job_ids") or ():
                cancels[str(job_id)] = pos
    out = []
    for index, name, params, run_state, meta in trials:
        common = {"index": index, "name": name, "params": params, "metadata": meta}
        if run_state == "complete":
            if index in last_job:
                _, job_id, task_index = last_job[index]
                common["job_id"] = f"{job_id}_{task_index}"
                common["log"] = sweep_dir / LOGS / f"{job_id}_{task_index}.out"
            out.append(SlurmTrialState(status="complete", **common))
            continue
        run_error = (meta or {}).get("error") if run_state == "failed" else None
        if index not in last_job:
            status = "failed" if run_state == "failed" else "unsubmitted"
            out.append(
                SlurmTrialState(status=status, error=run_error, ran=run_state == "failed", **common)
            )
            continue
        pos, job_id, task_index = last_job[index]
        task = f"{job_id}_{task_index}"
        log = sweep_dir / LOGS / f"{task}.out"
        tasks = queue.get(job_id, {})
        state = tasks.get(task_index, tasks.get(OTHER_TASKS))
        if state is None and run_state != "failed" and log.exists():
            state = _state_from_log(log)
        where = {"job_id": task, "log": log}
        if state in _PENDING:
            out.append(SlurmTrialState(status="pending", **where, **common))
        elif state in _RUNNING:
            out.append(SlurmTrialState(status="running", **where, **common))
        elif run_state == "failed":
            out.append(
                SlurmTrialState(status="failed", error=run_error, ran=True, **where, **common)
            )
        elif state == "CANCELLED" or (state is None and cancels.get(job_id, -1) > pos):
            out.append(SlurmTrialState(status="cancelled", **where, **common))
        elif state is None and run_state == "missing" and not log.exists():
            # squeue drops a queued task cancelled on its own (scancel 123_4) at once, and
            # a task that never started wrote no output file to point to.
            error = (
                f"SLURM job {task} left the queue without starting (it wrote no output file "
                f"{log}): cancelled while queued (scancel), or SLURM could not start it"
            )
            out.append(SlurmTrialState(status="failed", error=error, job_id=task, **common))
        else:
            how = f" (SLURM state {state}{_STATE_HINTS.get(state, '')})" if state else ""
            error = f"SLURM job {task} ended without a complete run directory{how}; read {log}"
            out.append(SlurmTrialState(status="failed", error=error, **where, **common))
    return out


def _state_from_log(log: Path) -> str | None:
    """The end state slurmstepd wrote into a task's output file, or None.

    squeue forgets a job minutes after it ends, and an accounting database (sacct) may
    not be there: the output file is then all that says whether the task was cancelled,
    stopped at its time limit or killed for memory.
    """
    try:
        with open(log, "rb") as fh:
            # slurmstepd's lines come last; a chatty trial's output can be long.
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 16384))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    if _OOM.search(tail):
        return "OUT_OF_MEMORY"
    ends = _STEPD_END.findall(tail)
    return _STEPD_REASONS.get(ends[-1] or None) if ends else None


def slurm_states(
    sweep_dir: str | os.PathLike[str],
    *,
    squeue: Callable[[Sequence[str]], Mapping[str, Mapping[int, str]]] | None = None,
    find_submissions: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
    on_error: Callable[[str], None] | None = None,
    plan: SweepPlan | None = None,
) -> list[SlurmTrialState]:
    """The state of every trial of a sweep directory, from its runs, journal and squeue.

    Reads only: a job found for an unjournaled intent counts here, and is written to the
    journal by the next submit or cancel.

    Args:
        sweep_dir: The sweep directory.
        squeue: Queries the queue for job ids. Defaults to the real ``squeue``.
        find_submissions: Finds jobs by intent token. Defaults to
            :func:`query_submissions`.
        on_error: When given, a squeue that cannot be asked (not on PATH, failing) is
            reported to it, and the states come from the run directories and the
            journal, with ``unknown`` for trials only squeue could place. Defaults to
            None (raise).
        plan: The sweep's plan, where the caller has just read it (reading checks every
            trial's spec, about a second per thousand trials). Defaults to reading it.

    Raises:
        AppSleuthError: squeue cannot be asked and ``on_error`` is None.
    """
    sweep_dir = Path(os.path.abspath(sweep_dir))
    if plan is None:
        plan = read_plan(sweep_dir)
    unreachable: str | None = None
    try:
        events, _ = _journal_with_recovered(sweep_dir, find_submissions)
    except AppSleuthError as exc:
        if on_error is None:
            raise
        events, unreachable = read_journal(sweep_dir), str(exc)
    job_ids = list(dict.fromkeys(str(e["job_id"]) for e in events if e["event"] == "submit"))
    trials = []
    for t in plan:
        run_dir = sweep_dir / t.name
        state, meta = run_status(run_dir), read_metadata(run_dir)
        if state == "complete" and meta and "spec" in meta:
            # A complete run of another spec (re-planned sweep) is not this trial. Its
            # data is compared when a worker prepares the data, not here on the login node.
            error = not_this_trial(sweep_dir, t, None)
            if error:
                state, meta = "failed", {**meta, "error": f"RunExistsError: {error}"}
        trials.append((t.index, t.name, t.params, state, meta))
    unfinished = any(state != "complete" for *_, state, _ in trials)
    queue: Mapping[str, Mapping[int, str]] = {}
    if job_ids and unfinished and unreachable is None:
        try:
            queue = (squeue or query_squeue)(job_ids)
        except AppSleuthError as exc:
            if on_error is None:
                raise
            unreachable = str(exc)
    states = classify_trials(sweep_dir, trials, events, queue)
    if unreachable is None:
        return states
    assert on_error is not None
    on_error(
        f"{unreachable}; showing what the run directories record (a trial whose job squeue "
        f"would know about shows as unknown)"
    )
    # Without squeue, a trial SLURM took but that has no finished run directory may still
    # be queued or running: unknown, rather than failed or free to submit again.
    asked = {int(i) for e in events if e["event"] in ("submit", "intent") for i in e["indices"]}
    return [
        dataclasses.replace(s, status="unknown", error=f"squeue could not be asked: {unreachable}")
        if s.index in asked and not s.ran and s.status not in ("complete", "cancelled")
        else s
        for s in states
    ]


# --- submit, cancel, wait ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmArray:
    """One job array of a submission: its task i runs trial ``offset + i``.

    Attributes:
        offset: What the array index adds up to the trial index with.
        indices: The trials it runs.
        command: Its sbatch command (run, or to run).
        job_id: Its job id; None when it was not submitted.
    """

    offset: int
    indices: tuple[int, ...]
    command: tuple[str, ...]
    job_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmSubmission:
    """What :func:`submit_slurm` did.

    Attributes:
        script: The job-array script's path.
        script_text: Its text.
        indices: The trials submitted (or that would be, on a dry run).
        job_id: The (first) array job's id; None when nothing was submitted.
        command: The (first) sbatch command (run, or to run); empty when no trial is
            left to submit.
        states: The trial states before submitting.
        arrays: Every job array, in trial order: one, unless a trial's index is past
            the cluster's MaxArraySize. Defaults to none (nothing to submit).
        max_array_size: The cluster's MaxArraySize; None when it could not be read.
            Defaults to None.
    """

    script: Path
    script_text: str
    indices: tuple[int, ...]
    job_id: str | None
    command: tuple[str, ...]
    states: tuple[SlurmTrialState, ...]
    arrays: tuple[SlurmArray, ...] = ()
    max_array_size: int | None = None

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The job ids of the arrays submitted, in trial order."""
        return tuple(a.job_id for a in self.arrays if a.job_id)


def check_submission(sweep_dir: str | os.PathLike[str], options: SlurmOptions, device: str) -> None:
    """Refuse a submission every task of which would fail, before anything is written.

    Args:
        sweep_dir: The sweep directory (it need not exist yet).
        options: The job's SLURM options.
        device: Where the trials train: ``"auto"``, ``"cpu"`` or ``"gpu"``.

    Raises:
        SpecError: A device other than those three, GPUs requested for trials on the
            CPU, GPU trials in a job that requests none, a backslash in the directory, or
            a Keras backend the tasks would refuse.
    """
    # First: the checks below compare it with "cpu" and "gpu", so "GPU" passed them all.
    check_device(device)
    sweep_dir = Path(os.path.abspath(sweep_dir))
    if options.gpus and device == "cpu":
        raise SpecError(
            f"gpus={options.gpus} requests GPUs for trials that train on the CPU "
            f"(device 'cpu'); drop one of the two"
        )
    if device == "gpu" and not options.gpus and not _requests_gpus(options.extra_sbatch):
        # Each task would start on a node, or a share of one, without a GPU and fail.
        raise SpecError(
            f"device 'gpu' trains every trial on a GPU, but the job requests none "
            f"(gpus={options.gpus!r}, and no GPU request in extra_sbatch): each array task "
            f"would fail at its start; set gpus: 1 in the spec's executor section (or "
            f"--gpus 1), or use device 'auto' or 'cpu'"
        )
    if "\\" in str(sweep_dir):
        # In an sbatch file name a backslash turns off the %A/%a replacements, and
        # slurmd then fails every task at launch without writing a log.
        raise SpecError(
            f"the sweep directory {sweep_dir} contains a backslash, which SLURM cannot "
            f"take in the job's output file name (--output); choose an --out without '\\'"
        )
    # The script exports this backend to every task, each of which would refuse it at
    # its start (a value the local executor refuses before any worker starts).
    check_backend()


def submit_slurm(
    sweep_dir: str | os.PathLike[str],
    options: SlurmOptions,
    *,
    retry_failed: bool = False,
    dry_run: bool = False,
    python: str | None = None,
    device: str = "auto",
) -> SlurmSubmission:
    """Write the job script and submit every trial not complete, queued or running.

    Trials whose run directory records a failure are submitted only with
    ``retry_failed`` (as the local executor does); trials whose job ended without a run
    directory (time limit, broken preamble), cancelled and never-submitted ones always.
    They go in one job array, or in several (see :func:`split_arrays`) where a trial's
    index is past the cluster's ``MaxArraySize``.

    Args:
        sweep_dir: A prepared sweep directory.
        options: The :class:`SlurmOptions`.
        retry_failed: Redo trials that failed before. Defaults to False.
        dry_run: Write the script, submit nothing. Defaults to False.
        python: The Python the jobs run. Defaults to ``sys.executable``.
        device: Where each trial trains: ``auto`` (default), ``cpu`` or ``gpu``.

    Raises:
        AppSleuthError: sbatch is missing, refuses a job array or does not answer (the
            message names the arrays of this submission that went in before, which stay
            queued).
    """
    sweep_dir = Path(os.path.abspath(sweep_dir))
    check_submission(sweep_dir, options, device)
    plan = read_plan(sweep_dir)
    if dry_run:
        return _submit(sweep_dir, plan, options, retry_failed, True, python, device)
    # Two submitters that both read the states before either journals its job would
    # both submit every trial: states, intent, sbatch and job id happen under one lock.
    with _submit_lock(sweep_dir):
        _persist_recovered(sweep_dir)
        return _submit(sweep_dir, plan, options, retry_failed, False, python, device)


# sbatch's ways to ask for GPUs: --gpus, --gpus-per-node/-task/-socket, -G, and GPU
# generic resources (--gres=gpu:1, --tres-per-task=gres/gpu:1).
_GPU_REQUEST = re.compile(r"\s(--gpus|-G(?![A-Za-z])|--(gres|tres-per-task)[= ]\S*gpu)")


def _requests_gpus(extra_sbatch: Sequence[str]) -> bool:
    """Whether any of the user's own ``#SBATCH`` lines requests GPUs."""
    return any(_GPU_REQUEST.search(line) for line in extra_sbatch)


@contextlib.contextmanager
def _submit_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep's exclusive submit lock (``slurm/submit.lock``, ``flock``).

    ``flock`` locks go away with their process, also after ``kill -9``. A file system
    without ``flock`` (NFS mounted nolock) has no lock to offer: then there is none.
    """
    path = sweep_dir / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _submit(
    sweep_dir: Path,
    plan: Sequence[Any],
    options: SlurmOptions,
    retry_failed: bool,
    dry_run: bool,
    python: str | None,
    device: str,
) -> SlurmSubmission:
    states = slurm_states(sweep_dir)  # read-only, so a dry run shows the real plan too
    todo = tuple(
        s.index
        for s in states
        if s.status in ("unsubmitted", "cancelled")
        or (s.status == "failed" and (retry_failed or not s.ran))
    )
    limit = _max_array_size()
    # Array indices stop below MaxArraySize (also on a dry run, which would otherwise show
    # a command sbatch refuses): past it, the trials go in several arrays with offsets.
    chunks = split_arrays(todo, limit)
    text = render_script(
        sweep_dir, len(plan), options, python=python, device=device, max_array_size=limit
    )
    script = sweep_dir / SCRIPT
    (sweep_dir / LOGS).mkdir(parents=True, exist_ok=True)
    atomic_write_text(script, text)
    throttle = f"%{options.array_parallelism}" if options.array_parallelism else ""
    planned = []
    for offset, trials in chunks:
        token = uuid.uuid4().hex
        cmd = [
            "sbatch",
            "--parsable",
            f"--array={compress_indices(i - offset for i in trials)}{throttle}",
            f"--output={_output_pattern(sweep_dir)}",
            f"--comment={COMMENT_PREFIX}{token}",
            str(script),
        ]
        # Arguments of the script, for its worker (an integer of ours, never user text).
        if offset:
            cmd += ["--index-offset", str(offset)]
        if retry_failed:
            cmd.append("--retry-failed")
        planned.append((token, SlurmArray(offset=offset, indices=trials, command=tuple(cmd))))
    result = {
        "script": script,
        "script_text": text,
        "indices": todo,
        "states": tuple(states),
        "max_array_size": limit,
    }
    if dry_run or not todo:
        arrays = tuple(a for _, a in planned)
        first = arrays[0].command if arrays else ()
        return SlurmSubmission(job_id=None, command=first, arrays=arrays, **result)
    done_arrays: list[SlurmArray] = []
    for token, array in planned:
        # Each array is its own intent, sbatch and submit: a process killed between two
        # arrays leaves the earlier ones journaled (or found by their token) and the later
        # ones' trials unsubmitted, so the same command again submits just those.
        job_id = _submit_array(sweep_dir, script, token, array, retry_failed, options, done_arrays)
        done_arrays.append(dataclasses.replace(array, job_id=job_id))
    arrays = tuple(done_arrays)
    return SlurmSubmission(
        job_id=arrays[0].job_id, command=arrays[0].command, arrays=arrays, **result
    )


def _submit_array(
    sweep_dir: Path,
    script: Path,
    token: str,
    array: SlurmArray,
    retry_failed: bool,
    options: SlurmOptions,
    before: Sequence[SlurmArray],
) -> str:
    """Journal the intent, run sbatch for one array and journal its job id (returned)."""
    _append_event(
        sweep_dir,
        {
            "event": "intent",
            "token": token,
            "indices": list(array.indices),
            "offset": array.offset,
            "time": _now(),
        },
    )
    # An error after earlier arrays of this submission went in says they stay queued.
    queued = (
        "; job(s) "
        + ", ".join(f"{a.job_id} (trials {compress_indices(a.indices)})" for a in before)
        + " of this submission were submitted and stay queued: run the same command again "
        "to submit the remaining trials"
        if before
        else ""
    )
    try:
        done = _run(list(array.command), "submitting a sweep")
    except _NotStartedError as exc:
        # Nothing reached SLURM: no job to look for by this token later.
        _append_event(sweep_dir, {"event": "refused", "token": token, "time": _now()})
        if before:
            raise _NotStartedError(f"{exc}{queued}") from exc
        raise
    except AppSleuthError as exc:
        # sbatch did not answer in time: it may have taken the job (its token finds it),
        # so no refusal is journaled; the arrays before it are queued all the same.
        if before:
            raise AppSleuthError(f"{exc}{queued}") from exc
        raise
    if done.returncode != 0:
        _append_event(sweep_dir, {"event": "refused", "token": token, "time": _now()})
        raise AppSleuthError(
            f"sbatch refused the job (exit {done.returncode}): {done.stderr.strip()}; "
            f"the script is {script}{queued}"
        )
    job_id = done.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise AppSleuthError(f"sbatch answered {done.stdout.strip()!r}, not a job id{queued}")
    _append_event(
        sweep_dir,
        {
            "event": "submit",
            "job_id": job_id,
            "indices": list(array.indices),
            "offset": array.offset,
            "token": token,
            "time": _now(),
            "retry_failed": retry_failed,
            "options": options.to_dict(),
        },
    )
    return job_id


def cancel_slurm(sweep_dir: str | os.PathLike[str]) -> list[str]:
    """Cancel this sweep's jobs that still have queued or running trials (``scancel``).

    Returns:
        The job ids cancelled (none when nothing was active).
    """
    sweep_dir = Path(os.path.abspath(sweep_dir))
    with _submit_lock(sweep_dir):
        return _cancel(sweep_dir)


def _cancel(sweep_dir: Path) -> list[str]:
    _persist_recovered(sweep_dir)
    active = [s for s in slurm_states(sweep_dir) if s.status in ACTIVE and s.job_id]
    job_ids = list(dict.fromkeys(s.job_id.split("_")[0] for s in active if s.job_id))
    if not job_ids:
        return []
    done = _run(["scancel", *job_ids], "cancelling a sweep")
    if done.returncode != 0:
        raise AppSleuthError(f"scancel failed (exit {done.returncode}): {done.stderr.strip()}")
    _append_event(sweep_dir, {"event": "cancel", "job_ids": job_ids, "time": _now()})
    return job_ids


def count_states(states: Iterable[SlurmTrialState]) -> dict[str, int]:
    """Trials per status."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s.status] = counts.get(s.status, 0) + 1
    return counts


def wait_slurm(
    sweep_dir: str | os.PathLike[str],
    *,
    poll_s: float = 5.0,
    progress: bool | None = None,
    timeout_s: float | None = None,
    tries: int = 3,
) -> list[SlurmTrialState]:
    """Follow the sweep's jobs until no trial is pending or running.

    Args:
        sweep_dir: The sweep directory.
        poll_s: Seconds between two ``squeue`` calls. Defaults to 5.
        progress: Show a progress bar (in Jupyter, it needs ipywidgets). Defaults to
            True on a terminal.
        timeout_s: Stop waiting after this long. Defaults to None (no limit).
        tries: squeue calls in a row that may fail before the wait gives up. Defaults
            to 3.

    Returns:
        The last trial states (jobs keep running in SLURM if the wait stops early).

    Raises:
        SpecError: ``poll_s`` is not a non-negative finite number.
        AppSleuthError: squeue failed ``tries`` times in a row; the message says that
            the jobs go on and how to follow them.
    """
    if not is_number(poll_s) or poll_s < 0:
        # time.sleep raises a bare ValueError on nan, and sleeps for ever on inf.
        raise SpecError(
            f"poll_s must be a non-negative number of seconds; received poll_s={poll_s!r}"
        )
    if progress is None:
        progress = sys.stderr.isatty()
    start = time.time()
    states = _states_retrying(sweep_dir, poll_s, tries)
    bar: Any = None
    task: Any = None
    if progress and live_display_works():  # Jupyter without ipywidgets: rich only warns
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(
            TextColumn("[bold]trials[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
        )
        task = bar.add_task("", total=len(states))
        bar.start()
    try:
        while True:
            counts = count_states(states)
            if bar is not None:
                finished = len(states) - sum(counts.get(k, 0) for k in ACTIVE)
                bar.update(
                    task,
                    completed=finished,
                    description=(
                        f"done {counts.get('complete', 0)} · running {counts.get('running', 0)}"
                        f" · pending {counts.get('pending', 0)} · failed "
                        f"{counts.get('failed', 0)} · cancelled {counts.get('cancelled', 0)}"
                    ),
                )
            if not any(counts.get(k) for k in ACTIVE):
                return states
            if timeout_s is not None and time.time() - start > timeout_s:
                return states
            time.sleep(poll_s)
            states = _states_retrying(sweep_dir, poll_s, tries)
    finally:
        if bar is not None:
            bar.stop()


def _states_retrying(
    sweep_dir: str | os.PathLike[str], poll_s: float, tries: int
) -> list[SlurmTrialState]:
    """:func:`slurm_states`, asking squeue up to ``tries`` times (it times out now and then)."""
    for attempt in range(1, tries + 1):
        try:
            return slurm_states(sweep_dir)
        except (DataError, SpecError):
            raise  # the sweep directory itself: asking again would not help
        except AppSleuthError as exc:
            if attempt == tries:
                where = shlex.quote(str(sweep_dir))
                raise AppSleuthError(
                    f"{exc}; stopped waiting after {attempt} failed attempt(s): the jobs go on "
                    f"in SLURM ('appsleuth sweep status {where}' follows them, "
                    f"'appsleuth sweep cancel {where}' stops them)"
                ) from exc
            time.sleep(poll_s)
    raise AssertionError("unreachable")
