"""Hyperparameter sweeps: specs and plans, the sweep directory, and the executors."""

from appsleuth.sweep.local import LocalSummary, run_local
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
    "SweepPlan",
    "SweepSpec",
    "Trial",
    "TrialOutcome",
    "TrialState",
    "collect_results",
    "load_sweep_spec",
    "prepare_sweep_dir",
    "read_plan",
    "run_local",
    "run_trial",
    "trial_states",
]
