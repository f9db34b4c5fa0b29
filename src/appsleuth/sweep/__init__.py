"""Hyperparameter sweeps: specs and plans, the sweep directory, and the executors
(local and SLURM)."""

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
