"""appsleuth: identify smartphone apps, and the malware among them, from SherLock telemetry.

The workflow, as functions (Keras is imported only when a model is built or loaded)::

    df = load_sherlock("sherlock_18apps.csv")   # or embedded_data()
    check_data(df).render()
    result = train(RunSpec(train=TrainSpec(epochs=30)), data=df)
    predict(result.run_dir, new_df)
"""

from typing import TYPE_CHECKING

from appsleuth._lazy import lazy_exports
from appsleuth._version import __version__
from appsleuth.errors import AppSleuthError, AppSleuthWarning, DataError, SpecError

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time each loads on first use
    from appsleuth.baselines import run_baselines
    from appsleuth.data.clean import CleaningReport, clean_sherlock
    from appsleuth.data.load import FrameInfo, frame_info, from_dataframe, load_sherlock
    from appsleuth.data.prepare import (
        PreparedData,
        one_vs_rest,
        prepare_data,
        select_apps,
        select_features,
    )
    from appsleuth.data.preprocess import Preprocessor
    from appsleuth.data.quality import QualityReport, check_data, leakage_rate
    from appsleuth.data.split import DataSplit, SplitSpec, split_data
    from appsleuth.data.synth import generate_sherlock
    from appsleuth.data.tables import embedded_data, write_table
    from appsleuth.evaluate import FitRule, classification_metrics, diagnose_fit
    from appsleuth.model import build_model
    from appsleuth.predict import PredictionSummary, predict, predict_file
    from appsleuth.run import (
        LoadedRun,
        RunExistsError,
        RunInUseError,
        RunResult,
        TrainingDivergedError,
        evaluate_run,
        load_run,
        run_status,
        train,
    )
    from appsleuth.spec import DataSpec, EarlyStoppingSpec, ModelSpec, RunSpec, TrainSpec
    from appsleuth.sweep.local import SweepInterrupted, run_local
    from appsleuth.sweep.space import SweepSpec, load_sweep_spec
    from appsleuth.sweep.store import collect_results, prepare_sweep_dir, trial_states

# Each export's module, imported when the name is first used (see appsleuth._lazy).
_EXPORTS = {
    "run_baselines": "baselines",
    "CleaningReport": "data.clean",
    "clean_sherlock": "data.clean",
    "FrameInfo": "data.load",
    "frame_info": "data.load",
    "from_dataframe": "data.load",
    "load_sherlock": "data.load",
    "PreparedData": "data.prepare",
    "one_vs_rest": "data.prepare",
    "prepare_data": "data.prepare",
    "select_apps": "data.prepare",
    "select_features": "data.prepare",
    "Preprocessor": "data.preprocess",
    "QualityReport": "data.quality",
    "check_data": "data.quality",
    "leakage_rate": "data.quality",
    "DataSplit": "data.split",
    "SplitSpec": "data.split",
    "split_data": "data.split",
    "generate_sherlock": "data.synth",
    "embedded_data": "data.tables",
    "write_table": "data.tables",
    "FitRule": "evaluate",
    "classification_metrics": "evaluate",
    "diagnose_fit": "evaluate",
    "build_model": "model",
    "PredictionSummary": "predict",
    "predict": "predict",
    "predict_file": "predict",
    "LoadedRun": "run",
    "RunExistsError": "run",
    "RunInUseError": "run",
    "RunResult": "run",
    "TrainingDivergedError": "run",
    "evaluate_run": "run",
    "load_run": "run",
    "run_status": "run",
    "train": "run",
    "DataSpec": "spec",
    "EarlyStoppingSpec": "spec",
    "ModelSpec": "spec",
    "RunSpec": "spec",
    "TrainSpec": "spec",
    "SweepInterrupted": "sweep.local",
    "run_local": "sweep.local",
    "SweepSpec": "sweep.space",
    "load_sweep_spec": "sweep.space",
    "collect_results": "sweep.store",
    "prepare_sweep_dir": "sweep.store",
    "trial_states": "sweep.store",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
del TYPE_CHECKING, lazy_exports  # dir() and tab completion: the package's own names

__all__ = [
    "AppSleuthError",
    "AppSleuthWarning",
    "CleaningReport",
    "DataError",
    "DataSpec",
    "DataSplit",
    "EarlyStoppingSpec",
    "FitRule",
    "FrameInfo",
    "LoadedRun",
    "ModelSpec",
    "PredictionSummary",
    "PreparedData",
    "Preprocessor",
    "QualityReport",
    "RunExistsError",
    "RunInUseError",
    "RunResult",
    "RunSpec",
    "SpecError",
    "SplitSpec",
    "SweepInterrupted",
    "SweepSpec",
    "TrainSpec",
    "TrainingDivergedError",
    "__version__",
    "build_model",
    "check_data",
    "classification_metrics",
    "clean_sherlock",
    "collect_results",
    "diagnose_fit",
    "embedded_data",
    "evaluate_run",
    "frame_info",
    "from_dataframe",
    "generate_sherlock",
    "leakage_rate",
    "load_run",
    "load_sherlock",
    "load_sweep_spec",
    "one_vs_rest",
    "predict",
    "predict_file",
    "prepare_data",
    "prepare_sweep_dir",
    "run_baselines",
    "run_local",
    "run_status",
    "select_apps",
    "select_features",
    "split_data",
    "train",
    "trial_states",
    "write_table",
]
