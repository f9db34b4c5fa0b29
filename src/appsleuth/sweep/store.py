"""The sweep directory: its spec, its manifest of trials, its runs and its results.

State lives in files only (no database, no locks), so a sweep directory on a shared
cluster filesystem works as is::

    runs/scan-hidden-neurons/
        sweep.yaml              the spec, as planned
        manifest.json           the ordered trials (SLURM array task i: trial i + its offset)
        model_1H1N_lr0.0003_bs32_e30/   one run directory per trial
        ...
        results.csv             teaching layout: varied hyperparameters, final metrics
        results_full.csv        everything, every trial, with its status

A trial is complete exactly when its run directory's metadata says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from appsleuth._atomic import atomic_create, atomic_write_text
from appsleuth._fields import is_integer
from appsleuth._files import read_record_table, read_record_text, refuse_nul
from appsleuth.errors import AppSleuthError, DataError, SpecError
from appsleuth.evaluate import RESULT_KEYS, alarm_point_columns
from appsleuth.run import (
    METADATA,
    finite_number,
    is_own_run_dir,
    read_json_object,
    read_metadata,
    run_in_use,
    run_status,
    validate_name,
)
from appsleuth.sweep.space import (
    SweepPlan,
    SweepSpec,
    Trial,
    name_settings,
    normalise_hidden,
    param_field,
)

__all__ = [
    "MANIFEST",
    "RESULTS",
    "RESULTS_FULL",
    "SPEC_FILE",
    "TrialState",
    "check_data_files",
    "check_data_names",
    "collect_results",
    "plan_size",
    "prepare_sweep_dir",
    "read_plan",
    "read_sweep_spec",
    "read_trial",
    "results_behind",
    "trial_result",
    "trial_states",
    "trial_wall_time",
]

MANIFEST = "manifest.json"
SPEC_FILE = "sweep.yaml"
RESULTS = "results.csv"
RESULTS_FULL = "results_full.csv"
_MANIFEST_FORMAT = 1


def check_data_files(trials: Iterable[Trial]) -> None:
    """Check that every data file these trials name exists and is a file (relative paths
    from the current directory, as the trials read them).

    Raises:
        DataError: A data path is missing or is not a file, naming it.
    """
    paths = (t.spec.data.path for t in trials if t.spec.data.path is not None)
    for path in dict.fromkeys(paths):
        file = Path(path)
        if file.is_file():
            continue
        where = "" if file.is_absolute() else f" (from {Path.cwd()})"
        what = "is a directory" if file.is_dir() else "does not exist"
        raise DataError(
            f"data.path must name an existing data file (CSV or Parquet); received "
            f"path={path!r}, which {what}{where}"
        )


def check_data_names(trials: Iterable[Trial], *, files: bool = True) -> None:
    """Check that the label, features and apps each trial's data section names exist.

    Each distinct data section is checked once, with the messages its trials would
    fail with: against a stand-in of the embedded data (its columns and apps, nothing
    generated), or against the data file, read once per path and label.

    Args:
        trials: The planned trials.
        files: Also check the data sections that name a file (it must be readable
            here). Defaults to True.

    Raises:
        DataError: The label column, a feature or an app is not in the data, or the
            data file cannot be read, as the trials would say.
        SpecError: ``positive`` is not one of ``apps``.
    """
    from appsleuth.data.load import load_sherlock
    from appsleuth.data.prepare import check_task
    from appsleuth.data.tables import embedded_stand_in

    tables: dict[tuple[str | None, str, int], pd.DataFrame] = {}
    sections = {json.dumps(t.spec.data.to_dict(), sort_keys=True): t.spec.data for t in trials}
    for data in sections.values():
        if data.path is not None and not files:
            continue
        # The seed of the embedded data only names it in messages; a file's is unused.
        key = (data.path, data.label, data.synth_seed if data.path is None else 0)
        if key not in tables:
            tables[key] = (
                embedded_stand_in(seed=data.synth_seed)
                if data.path is None
                else load_sherlock(data.path, label=data.label)  # as the trials read it
            )
        check_task(tables[key], apps=data.apps, positive=data.positive, features=data.features)


def prepare_sweep_dir(
    spec: SweepSpec, out: str | os.PathLike[str], *, check_data: bool = True
) -> Path:
    """Create (or reopen) ``out/<name>`` and write its spec and manifest.

    Re-opening a sweep directory with the same plan is how a sweep resumes.

    Args:
        spec: The sweep spec.
        out: The parent of the sweep directory.
        check_data: When the directory is new, check first, before anything is written,
            that the data file the spec names exists here (:func:`check_data_files`)
            and holds the label, features and apps it names (:func:`check_data_names`;
            the embedded data's are checked either way). Defaults to True; pass False
            when the trials run where the file is but this machine cannot see it. (A
            resumed local sweep is checked by ``run_local``.)

    Raises:
        SpecError: The directory already holds a different sweep, or files of no sweep.
        DataError: The data file is missing, lacks the label, a feature or an app the
            spec names (so would every trial), or the existing manifest is damaged.
    """
    import yaml

    if not isinstance(spec, SweepSpec):
        raise SpecError(
            f"spec must be a SweepSpec (SweepSpec.from_dict({{...}}) builds one from a "
            f"mapping, load_sweep_spec(path) from a YAML file); received {type(spec).__name__}"
        )
    refuse_nul(out, "out")
    sweep_dir = Path(out) / spec.name
    existing = sweep_dir / MANIFEST
    plan = spec.plan()
    spec_text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    if not existing.exists():
        if check_data:
            check_data_files(plan)
        # A name the data lacks would fail every trial alike (on SLURM, a whole array).
        check_data_names(plan, files=check_data)
    manifest = {
        "format_version": _MANIFEST_FORMAT,
        "name": spec.name,
        "varied": spec.varied(),
        "n_trials": len(plan),
        "trials": [t.to_dict() for t in plan],
    }
    relative = spec.data.path is not None and not os.path.isabs(spec.data.path)
    if relative:
        # Trials keep the path as written (SLURM tasks and moved projects read it from
        # where they run); where it pointed when planned is recorded to catch a namesake.
        manifest["data_planned_at"] = os.path.abspath(spec.data.path)
    if not existing.exists():
        _check_not_foreign(sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # Created, not replaced: of two sweeps planned here at once, the second compares
        # its plan with the first's below, as when resuming.
        if atomic_create(existing, json.dumps(manifest, indent=1) + "\n"):
            atomic_write_text(sweep_dir / SPEC_FILE, spec_text)
            return sweep_dir
    old = _manifest(sweep_dir)
    _plan(old, existing)  # a damaged trial is named as such, not as another sweep
    new_trials = json.loads(json.dumps(manifest["trials"]))
    if old["trials"] != new_trials and not _same_but_names(old["trials"], new_trials):
        raise SpecError(
            f"sweep directory {sweep_dir} already holds a different sweep: "
            f"{_first_difference(old['trials'], new_trials)}; use another --out or "
            f"name, or move the old directory away"
        )
    planned = old.get("data_planned_at")
    here = os.path.abspath(spec.data.path) if relative else None
    if planned and here and here != planned and os.path.exists(planned):
        raise SpecError(
            f"sweep directory {sweep_dir} was planned on the data file {planned}; from "
            f"here its path {spec.data.path!r} is {here}, another file: run from "
            f"{os.path.dirname(planned)}, where the sweep was planned"
        )
    if not (sweep_dir / SPEC_FILE).exists():  # its planner was stopped before writing it
        atomic_write_text(sweep_dir / SPEC_FILE, spec_text)
    return sweep_dir


def _check_not_foreign(sweep_dir: Path) -> None:
    """Refuse an existing directory, without a manifest, that holds what appsleuth did not write.

    A sweep writes results.csv, results_full.csv and run directories there: a directory
    of the sweep's name holding the teaching material's results (or anything else) would
    have them overwritten. A sweep directory whose manifest was moved away (or not
    written yet) still has its spec; run directories appsleuth trained may become trials.
    """
    if not sweep_dir.is_dir() or (sweep_dir / SPEC_FILE).exists():
        return
    foreign = sorted(
        p.name
        for p in sweep_dir.iterdir()
        # The manifest: another process planning this sweep at this moment wrote it.
        if not p.name.startswith(".")
        and p.name != MANIFEST
        and not (p.is_dir() and is_own_run_dir(p))
    )
    if foreign:
        raise SpecError(
            f"{sweep_dir} exists and holds files of no appsleuth sweep (it has no "
            f"{MANIFEST}), e.g. {foreign[0]!r}; a sweep would write its results.csv and run "
            f"directories among them: use another --out or sweep name, or move it away"
        )


def _same_but_names(old: list[Any], new: list[Any]) -> bool:
    """Whether two manifests' trials differ in their run names only.

    An earlier appsleuth left some varied values out of the names (``leaky_relu``: it
    wrote no ``_``); its manifest, whose names were checked against their specs on
    reading, still describes this sweep, and its run directories are kept as named.
    """

    def unnamed(trials: list[Any]) -> list[Any]:
        return [{k: v for k, v in t.items() if k != "name"} for t in trials]

    return len(old) == len(new) and unnamed(old) == unnamed(new)


def _first_difference(old: list[Any], new: list[Any]) -> str:
    """Where a sweep directory's planned trials and a spec's first differ, in words.

    Trial names alone often agree (the data, activation or split is not in them), so the
    field is named with both values.
    """
    if len(old) != len(new):
        return f"it plans {len(old)} trial(s), this spec {len(new)}"
    for o, n in zip(old, new, strict=True):
        if o != n:
            # The settings first: a name differs only because a setting does.
            first = {k: o.get(k) for k in ("spec", "params", *o)}
            where, was, now = _leaf_difference(first, n, "")
            return (
                f"trial {o.get('index')} ({o.get('name')}) has {where}={was!r} there, "
                f"{now!r} in this spec"
            )
    return "the trials differ"  # not reached: the lists differ somewhere


def _leaf_difference(old: Any, new: Any, where: str) -> tuple[str, Any, Any]:
    """The first (dotted path, old value, new value) where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            if old.get(key) != new.get(key):
                return _leaf_difference(old.get(key), new.get(key), f"{where}.{key}".lstrip("."))
    return where or "the trial", old, new


def _damaged(path: Path, problem: str) -> DataError:
    sweep_dir = path.parent
    return DataError(
        f"{path} is damaged: {problem}; move it away and plan the sweep again from its "
        f"spec, e.g. 'appsleuth sweep run {sweep_dir / SPEC_FILE} --out {sweep_dir.parent}' "
        f"(complete trials are kept), or 'appsleuth sweep plan SPEC' to check the spec first"
    )


def _manifest(sweep_dir: Path) -> dict[str, Any]:
    """The manifest of a sweep directory, its layout checked.

    Raises:
        DataError: It is missing, unreadable or damaged, naming the file and the fault.
    """
    refuse_nul(sweep_dir, "sweep_dir")
    path = Path(sweep_dir) / MANIFEST
    try:
        data = json.loads(read_record_text(path))
    except FileNotFoundError as exc:
        raise DataError(
            f"{sweep_dir} is not a sweep directory (no {MANIFEST}); run "
            f"'appsleuth sweep run SPEC' first"
        ) from exc
    except (ValueError, RecursionError) as exc:  # the last: nested past Python's limit
        raise _damaged(path, f"it is not valid JSON ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise _damaged(path, f"it must hold a JSON object; received {type(data).__name__}")
    if data.get("format_version") != _MANIFEST_FORMAT:
        raise DataError(
            f"{path} has format_version {data.get('format_version')!r}; this "
            f"appsleuth reads version {_MANIFEST_FORMAT}"
        )
    trials = data.get("trials")
    if not isinstance(trials, list):
        raise _damaged(path, f"'trials' must be a list of trials; received trials={trials!r:.80}")
    if data.get("n_trials", len(trials)) != len(trials):
        raise _damaged(
            path, f"n_trials is {data['n_trials']!r} but 'trials' lists {len(trials)} trial(s)"
        )
    varied = data.get("varied", [])
    if not isinstance(varied, list) or not all(isinstance(v, str) for v in varied):
        raise _damaged(path, f"'varied' must be a list of names; received varied={varied!r:.80}")
    names: set[str] = set()
    for i, t in enumerate(trials):
        if not isinstance(t, dict):
            raise _damaged(path, f"trial {i} must be a JSON object; received {t!r:.80}")
        missing = [k for k in ("index", "name", "params", "spec") if k not in t]
        if missing:
            raise _damaged(path, f"trial {i} lacks the field(s) {', '.join(missing)}")
        if t["index"] != i or isinstance(t["index"], bool):
            raise _damaged(path, f"trial {i} has index {t['index']!r}; expected {i}")
        try:
            validate_name(t["name"], "trial name")
        except SpecError as exc:
            raise _damaged(path, f"trial {i}: {exc}") from exc
        if t["name"] in names:
            raise _damaged(path, f"trial {i} repeats the run directory name {t['name']!r}")
        names.add(t["name"])
        if not isinstance(t["params"], dict) or not isinstance(t["spec"], dict):
            raise _damaged(path, f"trial {i}: 'params' and 'spec' must be JSON objects")
    return data


def read_plan(sweep_dir: str | os.PathLike[str]) -> SweepPlan:
    """The trials of a sweep directory, from its manifest.

    Raises:
        DataError: The manifest is missing, unreadable or damaged.
    """
    return _plan(_manifest(Path(sweep_dir)), Path(sweep_dir) / MANIFEST)


def plan_size(sweep_dir: str | os.PathLike[str]) -> int:
    """The number of trials in a sweep directory's plan (no trial's spec is built).

    Raises:
        DataError: The manifest is missing, unreadable or damaged.
    """
    return len(_manifest(Path(sweep_dir))["trials"])


def read_trial(sweep_dir: str | os.PathLike[str], index: int) -> Trial:
    """Trial ``index`` of a sweep directory, from its manifest.

    Only this trial's spec is built and checked (the manifest's layout is checked whole):
    a worker runs one trial, and checking every trial's spec for each one took about a
    second per trial at 5,000 trials.

    Raises:
        DataError: The manifest is missing, unreadable or damaged (this trial, or its
            layout).
        AppSleuthError: ``index`` is not a trial of the plan (or not an integer).
    """
    path = Path(sweep_dir) / MANIFEST
    trials = _manifest(Path(sweep_dir))["trials"]
    if is_integer(index):
        index = int(index)  # NumPy's integers too (np.arange over a plan)
    if not is_integer(index) or not 0 <= index < len(trials):
        kind = "" if is_integer(index) else f" (a {type(index).__name__}, not an integer)"
        raise AppSleuthError(
            f"trial index must be in 0..{len(trials) - 1}; received index={index!r}{kind}"
        )
    return _checked_trial(trials[index], index, path)


def _plan(manifest: dict[str, Any], path: Path) -> SweepPlan:
    """The trials of a checked manifest (read from ``path``, named in errors)."""
    return SweepPlan([_checked_trial(t, i, path) for i, t in enumerate(manifest["trials"])])


def _checked_trial(t: dict[str, Any], i: int, path: Path) -> Trial:
    """Trial ``i`` of a checked manifest, its spec, name and params checked."""
    try:
        trial = Trial.from_dict(t)
    except (SpecError, TypeError, ValueError) as exc:
        raise _damaged(
            path,
            f"trial {i} holds a spec this appsleuth refuses ({exc}); it was edited, or "
            f"written by an appsleuth whose checks were looser",
        ) from exc
    fault = _trial_disagrees(trial)
    if fault:
        raise _damaged(path, f"trial {i}: {fault}")
    return trial


def _trial_disagrees(trial: Trial) -> str | None:
    """What makes a trial's name or params disagree with its own spec, or None.

    results.csv takes the params from the manifest and the metrics from the run named
    there, so an edited name or param would put one model's numbers next to another's
    settings.
    """
    spec = trial.spec
    try:
        settings = name_settings(spec, list(trial.params))
    except SpecError as exc:
        return f"params: {exc}"
    # The teaching name, or (when those repeat) one that shows the varied settings.
    names = {
        spec.run_name(seed_suffix=seed, settings=shown)
        for seed in (False, True)
        for shown in ([], settings)
    }
    if trial.name not in names:
        return f"name {trial.name!r} is not its spec's run name ({' or '.join(sorted(names))})"
    d = _plain(spec.to_dict())
    for name, value in trial.params.items():
        try:
            section, field = param_field(name)
        except SpecError as exc:
            return f"params: {exc}"
        wanted = _plain(normalise_hidden(value) if field == "hidden" else value)
        if d[section].get(field) != wanted and d[section].get(field) != _as_spec_holds(
            d, section, field, wanted
        ):
            return (
                f"params say {name}={value!r} but its spec has {section}.{field}="
                f"{d[section].get(field)!r}"
            )
    return None


def _as_spec_holds(d: dict[str, Any], section: str, field: str, value: Any) -> Any:
    """``value`` as a spec holds it in ``section.field``, given the rest of spec dict ``d``.

    A spec completes some values: ``early_stopping: {patience: 2}`` is held with the
    monitor and the other defaults filled in. None when the spec refuses the value.
    """
    from appsleuth.spec import RunSpec

    probe = {**d, section: {**d[section], field: value}}
    try:
        return _plain(RunSpec.from_dict(probe).to_dict()[section][field])
    except SpecError:
        return None


def _plain(value: Any) -> Any:
    # Manifest values went through JSON: compare in that form (lists, not tuples).
    return json.loads(json.dumps(value, default=str))


def read_sweep_spec(sweep_dir: str | os.PathLike[str]) -> SweepSpec:
    """The spec a sweep directory was planned from."""
    from appsleuth.sweep.space import load_sweep_spec

    return load_sweep_spec(Path(sweep_dir) / SPEC_FILE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrialState:
    """Where one trial stands.

    Attributes:
        index: Trial index.
        name: Run directory name.
        params: The varied hyperparameters.
        status: ``complete``, ``failed``, ``incomplete`` (started, not finished: running
            or interrupted) or ``pending`` (not started).
        metadata: The run's metadata (None before it finished).
        running: An ``incomplete`` trial that a process is training right now (its run
            directory's lock is held), rather than one that was interrupted.
    """

    index: int
    name: str
    params: dict[str, Any]
    status: str
    metadata: dict[str, Any] | None = dataclasses.field(repr=False)
    running: bool = False

    @property
    def error(self) -> str | None:
        """The error of a failed trial."""
        return (self.metadata or {}).get("error")

    @property
    def duration_s(self) -> float | None:
        """Wall time of a finished trial."""
        return trial_wall_time(self.metadata)

    def last(self, key: str) -> float | None:
        """A final-epoch metric (``loss``, ``val_accuracy``, ...) of a complete trial."""
        return trial_result(self.status, self.metadata, key)


def trial_wall_time(metadata: dict[str, Any] | None) -> float | None:
    """A trial's recorded wall time in seconds, when it is a finite number."""
    return finite_number((metadata or {}).get("wall_time_s"))


def trial_result(status: str, metadata: dict[str, Any] | None, key: str) -> float | None:
    """A final-epoch metric (``loss``, ``val_accuracy``, ...) of a complete trial.

    A damaged record makes the run incomplete (see :func:`~appsleuth.run.run_status`), so
    only the well-formed results of complete trials are ever returned.
    """
    if status != "complete":
        return None
    return finite_number((metadata or {}).get("last_results", {}).get(key))


def trial_states(
    sweep_dir: str | os.PathLike[str],
    *,
    compare_spec: bool = True,
    plan: SweepPlan | None = None,
) -> list[TrialState]:
    """The state of every trial, from the run directories alone.

    Args:
        sweep_dir: The sweep directory.
        compare_spec: A complete run whose recorded spec is not its trial's (a sweep
            re-planned over old runs: the directory name does not show every setting) is
            ``failed``, its error saying what differs, so that neither ``status`` nor
            ``results.csv`` shows another model's numbers as the trial's. Defaults to
            True. (The data is compared where a worker prepares it, not here.)
        plan: The sweep's plan, where the caller has just read it (:func:`read_plan`);
            None reads it. Reading checks every trial's spec (about a second per
            thousand trials).
    """
    from appsleuth.sweep.worker import not_this_trial  # it imports this module

    sweep_dir = Path(sweep_dir)
    states = []
    for trial in read_plan(sweep_dir) if plan is None else plan:
        run_dir = sweep_dir / trial.name
        status = run_status(run_dir)
        status = "pending" if status == "missing" else status
        meta = read_metadata(run_dir)
        if compare_spec and status == "complete" and meta and "spec" in meta:
            error = not_this_trial(sweep_dir, trial, None)
            if error:
                status, meta = "failed", {**meta, "error": f"RunExistsError: {error}"}
        states.append(
            TrialState(
                index=trial.index,
                name=trial.name,
                params=trial.params,
                status=status,
                metadata=meta,
                running=status == "incomplete" and run_in_use(run_dir),
            )
        )
    return states


def _teaching_column(name: str) -> str:
    """The results.csv column of a varied setting: ``hidden`` is ``hidden_neurons``.

    A setting named like a metric column (``loss``, the loss function) gets the
    ``param_`` prefix of ``results_full.csv``: under its own name it made a second
    ``loss`` column, which readers take for the final loss.
    """
    column = "hidden_neurons" if name in ("hidden", "hidden_neurons") else name
    return f"param_{column}" if column in RESULT_KEYS else column


def _one_layer_scan(all_values: list[Any]) -> bool:
    """Whether every trial's ``hidden`` is one layer (a neuron scan, written as ``18``)."""
    return all(not isinstance(v, list) or len(v) == 1 for v in all_values)


def _teaching_value(name: str, value: Any, one_layer: bool) -> Any:
    """Values as the teaching material's results.csv writes them.

    ``one_layer`` is :func:`_one_layer_scan` of the sweep's values of ``name``.
    """
    if name in ("hidden", "hidden_neurons"):
        if one_layer:
            return value[0] if isinstance(value, list) else value  # a neuron scan: 18
        return str(value if isinstance(value, list) else [value])  # a layer scan: "[18, 18]"
    return value


def results_behind(
    sweep_dir: str | os.PathLike[str], states: Sequence[TrialState] | None = None
) -> int:
    """Complete trials that ``results.csv`` does not reflect (finished after it, or it is missing).

    A SLURM sweep submitted without ``--wait`` finishes while nobody collects. ``states``
    are :func:`trial_states`' where the caller has them (None reads them).
    """
    sweep_dir = Path(sweep_dir)
    results = sweep_dir / RESULTS
    written = results.stat().st_mtime if results.exists() else None
    behind = 0
    for st in trial_states(sweep_dir) if states is None else states:
        if st.status != "complete":
            continue
        meta = sweep_dir / st.name / METADATA
        if written is None or (meta.exists() and meta.stat().st_mtime > written):
            behind += 1
    return behind


def collect_results(
    sweep_dir: str | os.PathLike[str], *, states: Sequence[TrialState] | None = None
) -> tuple[Path, Path]:
    """Write ``results.csv`` (teaching layout) and ``results_full.csv``.

    ``results.csv`` has the varied hyperparameters (``hidden`` written as the teaching
    ``hidden_neurons``, a varied loss function as ``param_loss``; ``seed`` too when seeds
    repeat), then ``loss, accuracy, val_loss,
    val_accuracy`` of the last epoch (of the restored one, with early stopping's best
    weights), one row per complete trial in plan order. ``results_full.csv`` has every trial
    with its status, all hyperparameters, seed, best epoch, macro F1, Moriarty's detection
    rate, precision and false-alarm rate, its detection rate at 1 % false alarms and that
    threshold (empty where metrics.json has none), wall time, the SLURM job that trained
    it (empty outside SLURM) and error. A quantity has the name it has in
    :func:`~appsleuth.analysis.load_results` (``wall_time_s``,
    ``moriarty_detection_rate``, ...), which has no column the file lacks but the varied
    settings under their own names (``dropout``): here each varied setting is
    ``param_<name>``, as the sweep spec gives it, beside the recorded values.

    Args:
        sweep_dir: The sweep directory.
        states: :func:`trial_states`' states of the sweep, where the caller has just read
            them (reading checks every trial's spec). Defaults to reading them.

    Returns:
        The two paths.
    """
    sweep_dir = Path(sweep_dir)
    manifest = _manifest(sweep_dir)
    varied = list(manifest.get("varied") or [])
    if states is None:
        states = trial_states(sweep_dir)
    # With repeated seeds, rows of one setting would be indistinguishable without them.
    points = {json.dumps(st.params, sort_keys=True, default=str) for st in states}
    seeded = len(points) < len(states)
    # Once per name, not per row: per row it took minutes with thousands of trials.
    one_layer = {name: _one_layer_scan([s.params.get(name) for s in states]) for name in varied}
    teaching_rows, full_rows = [], []
    for st in states:
        meta = st.metadata or {}
        if st.status == "complete":
            row = {}
            for name in varied:
                row[_teaching_column(name)] = _teaching_value(
                    name, st.params.get(name), one_layer[name]
                )
            if seeded:
                row["seed"] = meta.get("seed")
            row.update({k: st.last(k) for k in RESULT_KEYS})
            teaching_rows.append(row)
        metrics = _read_metrics(sweep_dir / st.name) if st.status == "complete" else {}
        full_rows.append(
            {
                "index": st.index,
                "name": st.name,
                "status": st.status,
                **{
                    f"param_{k}": (str(v) if isinstance(v, list) else v)
                    for k, v in st.params.items()
                },
                "hidden_neurons": str(meta.get("hidden_neurons"))
                if meta.get("hidden_neurons")
                else None,
                "learning_rate": meta.get("learning_rate"),
                "batch_size": meta.get("batch_size"),
                "epochs": meta.get("epochs"),
                "epochs_run": meta.get("epochs_run"),
                "seed": meta.get("seed"),
                "engine": meta.get("engine"),
                **{k: st.last(k) for k in RESULT_KEYS},
                # The epoch this row's numbers (and the saved model) come from: the last
                # one, or the one early stopping restored.
                "results_epoch": meta.get("results_epoch") if st.status == "complete" else None,
                "min_val_loss_epoch": (
                    _min_val_loss_epoch(sweep_dir / st.name) if st.status == "complete" else None
                ),
                "f1_macro": (metrics.get("macro_avg") or {}).get("f1"),
                "moriarty_detection_rate": (metrics.get("malware") or {}).get("detection_rate"),
                "moriarty_precision": (metrics.get("malware") or {}).get("precision"),
                "moriarty_false_alarm_rate": (metrics.get("malware") or {}).get("false_alarm_rate"),
                # Empty for older runs and tasks without Moriarty.
                **alarm_point_columns(metrics),
                "fit_diagnosis": (metrics.get("fit") or {}).get("diagnosis"),
                "fit_reason": (metrics.get("fit") or {}).get("reason"),
                "wall_time_s": meta.get("wall_time_s"),
                "seconds_per_epoch": meta.get("seconds_per_epoch"),
                # The job that trained it (the teaching material's Job_ID): its log.
                "slurm_job_id": meta.get("SLURM_JOB_ID"),
                "error": meta.get("error"),
            }
        )
    teaching = pd.DataFrame(
        teaching_rows,
        columns=[
            *(_teaching_column(v) for v in varied),
            *(["seed"] if seeded else []),
            *RESULT_KEYS,
        ],
    )
    results = sweep_dir / RESULTS
    full = sweep_dir / RESULTS_FULL
    atomic_write_text(results, _keep_integers(teaching, teaching_rows).to_csv(index=False))
    atomic_write_text(full, _keep_integers(pd.DataFrame(full_rows), full_rows).to_csv(index=False))
    return results, full


def _keep_integers(frame: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``frame`` (built from ``rows``) with its whole-number columns as nullable ``Int64``.

    A failed or pending trial leaves an empty cell; with NumPy dtypes that turns the
    column to float and ``results_epoch`` reads ``12.0``. The values are judged as the
    rows hold them (the frame has already made them floats): a column changes only
    when every present value is an integer (not a bool), so ``2.0`` seconds stays a
    float and the empty cell stays empty.
    """
    frame = frame.copy()
    for col in frame.columns:
        values = [row[col] for row in rows if row.get(col) is not None]
        if values and all(is_integer(v) for v in values):
            frame[col] = frame[col].astype("Int64")
    return frame


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    return read_json_object(run_dir / "metrics.json") or {}


def _min_val_loss_epoch(run_dir: Path) -> int | None:
    """The (1-based) epoch of lowest validation loss, whichever epoch was kept."""
    try:
        history = read_record_table(run_dir / "model_history.csv")
    except (OSError, ValueError):
        return None
    if "val_loss" not in history or history.empty:
        return None
    return int(history["val_loss"].idxmin()) + 1
