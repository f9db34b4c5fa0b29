"""Hyperparameter sweeps: specs and plans, the sweep directory, and the executors
(local and SLURM)."""

from typing import TYPE_CHECKING

from appsleuth._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time each loads on first use
    from appsleuth.sweep.local import LocalSummary, SweepInterrupted, run_local
    from appsleuth.sweep.slurm import (
        SlurmOptions,
        SlurmSubmission,
        SlurmTrialState,
        cancel_slurm,
        slurm_states,
        submit_slurm,
        wait_slurm,
    )
    from appsleuth.sweep.space import ExecutorSpec, SweepPlan, SweepSpec, Trial, load_sweep_spec
    from appsleuth.sweep.store import (
        TrialState,
        collect_results,
        prepare_sweep_dir,
        read_plan,
        trial_states,
    )
    from appsleuth.sweep.worker import TrialOutcome, run_trial

# Each export's module, imported when the name is first used (see appsleuth._lazy).
_EXPORTS = {
    "LocalSummary": "local",
    "SweepInterrupted": "local",
    "run_local": "local",
    "SlurmOptions": "slurm",
    "SlurmSubmission": "slurm",
    "SlurmTrialState": "slurm",
    "cancel_slurm": "slurm",
    "slurm_states": "slurm",
    "submit_slurm": "slurm",
    "wait_slurm": "slurm",
    "ExecutorSpec": "space",
    "SweepPlan": "space",
    "SweepSpec": "space",
    "Trial": "space",
    "load_sweep_spec": "space",
    "TrialState": "store",
    "collect_results": "store",
    "prepare_sweep_dir": "store",
    "read_plan": "store",
    "trial_states": "store",
    "TrialOutcome": "worker",
    "run_trial": "worker",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
del TYPE_CHECKING, lazy_exports  # dir() and tab completion: the package's own names

__all__ = [
    "ExecutorSpec",
    "LocalSummary",
    "SlurmOptions",
    "SlurmSubmission",
    "SlurmTrialState",
    "SweepInterrupted",
    "SweepPlan",
    "SweepSpec",
    "Trial",
    "TrialOutcome",
    "TrialState",
    "cancel_slurm",
    "collect_results",
    "load_sweep_spec",
    "prepare_sweep_dir",
    "read_plan",
    "run_local",
    "run_trial",
    "slurm_states",
    "submit_slurm",
    "trial_states",
    "wait_slurm",
]
