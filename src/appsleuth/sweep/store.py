"""The sweep directory: its spec, its manifest of trials, its runs and its results.

State lives in files only (no database, no locks), so a sweep directory on a shared
cluster filesystem works as is::

    runs/scan-hidden-neurons/
        sweep.yaml              the spec, as planned
        manifest.json           the ordered trials (trial i = SLURM array task i)
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
from pathlib import Path
from typing import Any

import pandas as pd

from appsleuth.errors import DataError, SpecError
from appsleuth.run import _atomic_write_text, read_json_object, read_metadata, run_status
from appsleuth.sweep.space import SweepPlan, SweepSpec, Trial

__all__ = [
    "MANIFEST",
    "TrialState",
    "collect_results",
    "prepare_sweep_dir",
    "read_plan",
    "read_sweep_spec",
    "trial_states",
]

MANIFEST = "manifest.json"
SPEC_FILE = "sweep.yaml"
RESULTS = "results.csv"
RESULTS_FULL = "results_full.csv"
_MANIFEST_FORMAT = 1


def prepare_sweep_dir(spec: SweepSpec, out: str | os.PathLike[str]) -> Path:
    """Create (or reopen) ``out/<name>`` and write its spec and manifest.

    Re-opening a sweep directory with the same plan is how a sweep resumes.

    Raises:
        SpecError: The directory already holds a different sweep.
    """
    import yaml

    sweep_dir = Path(out) / spec.name
    plan = spec.plan()
    manifest = {
        "format_version": _MANIFEST_FORMAT,
        "name": spec.name,
        "varied": spec.varied(),
        "n_trials": len(plan),
        "trials": [t.to_dict() for t in plan],
    }
    existing = sweep_dir / MANIFEST
    if existing.exists():
        try:
            old = json.loads(existing.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(
                f"{existing} is damaged ({exc}); move the sweep directory away "
                f"or delete the manifest to plan again"
            ) from exc
        if old.get("trials") != json.loads(json.dumps(manifest["trials"])):
            old_names = [t.get("name") for t in old.get("trials", [])]
            raise SpecError(
                f"sweep directory {sweep_dir} already holds a different sweep "
                f"({len(old_names)} trials, first {old_names[:2]}); use another --out or "
                f"name, or move the old directory away"
            )
        return sweep_dir
    sweep_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(sweep_dir / SPEC_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    _atomic_write_text(existing, json.dumps(manifest, indent=1) + "\n")
    return sweep_dir


def _manifest(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(
            f"{sweep_dir} is not a sweep directory (no {MANIFEST}); run "
            f"'appsleuth sweep run SPEC' first"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} cannot be read: {exc}") from exc
    if data.get("format_version") != _MANIFEST_FORMAT:
        raise DataError(
            f"{path} has format_version {data.get('format_version')!r}; this "
            f"appsleuth reads version {_MANIFEST_FORMAT}"
        )
    return data


def read_plan(sweep_dir: str | os.PathLike[str]) -> SweepPlan:
    """The trials of a sweep directory, from its manifest."""
    return SweepPlan([Trial.from_dict(t) for t in _manifest(Path(sweep_dir))["trials"]])


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
    """

    index: int
    name: str
    params: dict[str, Any]
    status: str
    metadata: dict[str, Any] | None

    @property
    def error(self) -> str | None:
        """The error of a failed trial."""
        return (self.metadata or {}).get("error")

    @property
    def duration_s(self) -> float | None:
        """Wall time of a finished trial."""
        return (self.metadata or {}).get("wall_time_s")

    def last(self, key: str) -> float | None:
        """A final-epoch metric (``loss``, ``val_accuracy``, ...) of a complete trial."""
        return ((self.metadata or {}).get("last_results") or {}).get(key)


def trial_states(sweep_dir: str | os.PathLike[str]) -> list[TrialState]:
    """The state of every trial, from the run directories alone."""
    sweep_dir = Path(sweep_dir)
    states = []
    for trial in read_plan(sweep_dir):
        run_dir = sweep_dir / trial.name
        status = run_status(run_dir)
        status = "pending" if status == "missing" else status
        states.append(
            TrialState(
                index=trial.index,
                name=trial.name,
                params=trial.params,
                status=status,
                metadata=read_metadata(run_dir),
            )
        )
    return states


def _teaching_value(name: str, value: Any, all_values: list[Any]) -> Any:
    """Values as the teaching material's results.csv writes them."""
    if name in ("hidden", "hidden_neurons"):
        lists = [v if isinstance(v, list) else [v] for v in all_values]
        if all(len(v) == 1 for v in lists):
            return value[0] if isinstance(value, list) else value  # a neuron scan: 18
        return str(value if isinstance(value, list) else [value])  # a layer scan: "[18, 18]"
    return value


def collect_results(sweep_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``results.csv`` (teaching layout) and ``results_full.csv``.

    ``results.csv`` has the varied hyperparameters (``hidden`` written as the teaching
    ``hidden_neurons``), then ``loss, accuracy, val_loss, val_accuracy`` of the last
    epoch, one row per complete trial in plan order. ``results_full.csv`` has every trial
    with its status, all hyperparameters, seed, best epoch, macro F1, Moriarty's recall,
    wall time and error.

    Returns:
        The two paths.
    """
    sweep_dir = Path(sweep_dir)
    manifest = _manifest(sweep_dir)
    varied = list(manifest.get("varied") or [])
    states = trial_states(sweep_dir)
    metric_keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    teaching_rows, full_rows = [], []
    for st in states:
        meta = st.metadata or {}
        if st.status == "complete":
            row = {}
            for name in varied:
                col = "hidden_neurons" if name in ("hidden", "hidden_neurons") else name
                row[col] = _teaching_value(
                    name, st.params.get(name), [s.params.get(name) for s in states]
                )
            row.update({k: st.last(k) for k in metric_keys})
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
                **{k: st.last(k) for k in metric_keys},
                "best_epoch": _best_epoch(sweep_dir / st.name) if st.status == "complete" else None,
                "f1_macro": (metrics.get("macro_avg") or {}).get("f1"),
                "moriarty_recall": (metrics.get("malware") or {}).get("detection_rate"),
                "fit_diagnosis": (metrics.get("fit") or {}).get("diagnosis"),
                "wall_time_s": meta.get("wall_time_s"),
                "seconds_per_epoch": meta.get("seconds_per_epoch"),
                "error": meta.get("error"),
            }
        )
    teaching = pd.DataFrame(
        teaching_rows,
        columns=[
            *("hidden_neurons" if v in ("hidden", "hidden_neurons") else v for v in varied),
            *metric_keys,
        ],
    )
    results = sweep_dir / RESULTS
    full = sweep_dir / RESULTS_FULL
    _atomic_write_text(results, teaching.to_csv(index=False))
    _atomic_write_text(full, pd.DataFrame(full_rows).to_csv(index=False))
    return results, full


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    return read_json_object(run_dir / "metrics.json") or {}


def _best_epoch(run_dir: Path) -> int | None:
    try:
        history = pd.read_csv(run_dir / "model_history.csv")
    except (OSError, ValueError):
        return None
    if "val_loss" not in history or history.empty:
        return None
    return int(history["val_loss"].idxmin()) + 1
