"""The data stage: load, check, clean, split, preprocess (and the embedded generator)."""

from appsleuth.data.clean import CleaningReport, CleaningStep, clean_sherlock
from appsleuth.data.load import (
    FrameInfo,
    frame_info,
    from_dataframe,
    load_sherlock,
    nonfinite_values,
)
from appsleuth.data.prepare import (
    PreparedData,
    one_vs_rest,
    prepare_data,
    select_apps,
    select_features,
)
from appsleuth.data.preprocess import Preprocessor
from appsleuth.data.quality import Finding, QualityReport, check_data, leakage_rate
from appsleuth.data.split import DataSplit, SplitSpec, split_data

__all__ = [
    "CleaningReport",
    "CleaningStep",
    "DataSplit",
    "Finding",
    "FrameInfo",
    "PreparedData",
    "Preprocessor",
    "QualityReport",
    "SplitSpec",
    "check_data",
    "clean_sherlock",
    "frame_info",
    "from_dataframe",
    "leakage_rate",
    "load_sherlock",
    "nonfinite_values",
    "one_vs_rest",
    "prepare_data",
    "select_apps",
    "select_features",
    "split_data",
]
