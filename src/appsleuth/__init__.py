"""appsleuth: identify smartphone apps, and the malware among them, from SherLock telemetry.

The workflow, as functions (Keras is imported only when a model is built or loaded)::

    df = load_sherlock("sherlock_18apps.csv")   # or embedded_data()
    check_data(df).render()
    result = train(RunSpec(train=TrainSpec(epochs=30)), data=df)
    predict(result.run_dir, new_df)
"""

from appsleuth._version import __version__
from appsleuth.baselines import run_baselines
from appsleuth.data import (
    CleaningReport,
    DataSplit,
    FrameInfo,
    PreparedData,
    Preprocessor,
    QualityReport,
    SplitSpec,
    check_data,
    clean_sherlock,
    frame_info,
    from_dataframe,
    leakage_rate,
    load_sherlock,
    one_vs_rest,
    prepare_data,
    select_apps,
    select_features,
    split_data,
)
from appsleuth.data.synth import generate_sherlock
from appsleuth.data.tables import embedded_data, write_table
from appsleuth.errors import AppSleuthError, AppSleuthWarning, DataError, SpecError
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
from appsleuth.sweep import (
    SweepInterrupted,
    SweepSpec,
    collect_results,
    load_sweep_spec,
    prepare_sweep_dir,
    run_local,
    trial_states,
)

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
