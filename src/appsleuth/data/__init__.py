"""The data stage: load, check, clean, split, preprocess (and the embedded generator)."""

from typing import TYPE_CHECKING

from appsleuth._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time each loads on first use
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

# Each export's module, imported when the name is first used (see appsleuth._lazy).
_EXPORTS = {
    "CleaningReport": "clean",
    "CleaningStep": "clean",
    "clean_sherlock": "clean",
    "FrameInfo": "load",
    "frame_info": "load",
    "from_dataframe": "load",
    "load_sherlock": "load",
    "nonfinite_values": "load",
    "PreparedData": "prepare",
    "one_vs_rest": "prepare",
    "prepare_data": "prepare",
    "select_apps": "prepare",
    "select_features": "prepare",
    "Preprocessor": "preprocess",
    "Finding": "quality",
    "QualityReport": "quality",
    "check_data": "quality",
    "leakage_rate": "quality",
    "DataSplit": "split",
    "SplitSpec": "split",
    "split_data": "split",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
del TYPE_CHECKING, lazy_exports  # dir() and tab completion: the package's own names

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
