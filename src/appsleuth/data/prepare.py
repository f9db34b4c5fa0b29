"""From a loaded table to model-ready arrays: choose the task, clean, split, preprocess.

The task is multi-class over all apps by default; :func:`select_apps` restricts it to
some apps (two apps make a binary task, e.g. Facebook vs WhatsApp) and
:func:`one_vs_rest` makes a binary task of one app against all others (e.g. Moriarty,
the malware, vs everything else).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from appsleuth.data.clean import CleaningReport, MissingPolicy, clean_table, fill_values
from appsleuth.data.load import (
    FrameInfo,
    as_name_list,
    check_label_spellings,
    frame_info,
    from_dataframe,
)
from appsleuth.data.preprocess import Preprocessor, Scaling
from appsleuth.data.split import DataSplit, SplitSpec, split_data
from appsleuth.errors import DataError, SpecError, warn

__all__ = [
    "PreparedData",
    "check_task",
    "one_vs_rest",
    "prepare_data",
    "select_apps",
    "select_features",
]


def select_apps(df: pd.DataFrame, apps: Sequence[str] | str) -> pd.DataFrame:
    """Keep only the rows of the given apps.

    Args:
        df: A loaded table.
        apps: The apps, as a list or one comma-separated string (``"Facebook,WhatsApp"``).

    Raises:
        DataError: An app is not in the table, or fewer than two apps are given.
    """
    info = frame_info(df)
    apps = list(as_name_list("apps", apps, allow_empty=True))
    if len(set(apps)) < 2:
        raise DataError(f"apps must name at least two different apps; received apps={apps}")
    present = set(df[info.label].unique()) if info.label else set()
    unknown = [a for a in apps if a not in present]
    if unknown:
        raise DataError(
            f"{info.dataset}: app(s) {unknown} are not in the label column "
            f"{info.label!r}; apps found: {sorted(present)}"
        )
    out = df.loc[df[info.label].isin(apps)].copy()
    out.attrs = {**df.attrs}
    return out


_REST = "other"


def one_vs_rest(df: pd.DataFrame, positive: str, *, rest_name: str = _REST) -> pd.DataFrame:
    """Relabel as a binary task: ``positive`` against every other app (``rest_name``).

    Args:
        df: A loaded table.
        positive: The app that becomes class 1.
        rest_name: The label of every other app. Defaults to ``other``.

    Returns:
        A copy of ``df`` with two labels.

    Raises:
        DataError: ``positive`` is not in the table, or it is the only app.
    """
    info = frame_info(df)
    for name, value in (("positive", positive), ("rest_name", rest_name)):
        if not isinstance(value, str) or not value:
            raise SpecError(f"{name} must be one app name (text); received {name}={value!r}")
    labels = df[info.label]
    if positive not in set(labels.unique()):
        raise DataError(
            f"{info.dataset}: app {positive!r} is not in the label column "
            f"{info.label!r}; apps found: {sorted(labels.unique())}"
        )
    if rest_name == positive:
        raise DataError(f"rest_name must differ from the positive app {positive!r}")
    if rest_name in set(labels.unique()):
        raise DataError(
            f"{info.dataset}: rest_name {rest_name!r} is an app in the label column; "
            f"the other apps would merge into it: choose another rest_name"
        )
    out = df.copy()
    out[info.label] = np.where(labels == positive, positive, rest_name)
    if out[info.label].nunique() < 2:
        raise DataError(f"{info.dataset}: every row is {positive!r}; nothing to tell apart")
    out.attrs = {**df.attrs}
    return out


def select_features(df: pd.DataFrame, features: Sequence[str] | str) -> pd.DataFrame:
    """Restrict the features to ``features`` (e.g. those a 2-app teaching file carries).

    Args:
        df: A loaded table.
        features: The feature columns, as a list or one comma-separated string.

    Raises:
        DataError: A named feature is not in the table, or is named twice.
    """
    info = frame_info(df)
    names = as_name_list("features", features, unique=True)
    roles = {c: "identifies samples (an id column)" for c in info.id_columns}
    if info.time_column:
        roles[info.time_column] = "gives the time order"
    if info.label:
        roles[info.label] = "is the label"
    misplaced = [f"{c} {roles[c]}" for c in names if c in roles]
    if misplaced:
        raise DataError(
            f"{info.dataset}: {'; '.join(misplaced)}, not a feature; features are "
            f"measurements such as {', '.join(info.features[:3])}"
        )
    return from_dataframe(
        df,
        label=info.label or "ApplicationName",
        features=names,
        categorical=info.categorical,
        layout=info.layout,
        dataset=info.dataset,
    )


def _warn_added_columns(df: pd.DataFrame) -> None:
    """Say so when numeric columns were added to a loaded table: they are not features."""
    info = frame_info(df)
    if not info.columns:
        return
    added = [
        str(c) for c in df.columns if c not in info.columns and pd.api.types.is_numeric_dtype(df[c])
    ]
    if added:
        warn(
            f"{info.dataset}: column(s) {added} were added after the table was loaded and "
            f"are not features; name every feature to use them (features=[...])"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreparedData:
    """Model-ready arrays and everything needed to describe how they were made.

    Attributes:
        x_train, y_train, x_val, y_val, x_test, y_test: Inputs (float32) and class
            indices (int32); the test arrays may be empty.
        preprocessor: Fitted on the training rows only.
        split: Row positions of each side, in the cleaned table.
        cleaning: What cleaning did.
        info: The source table's description.
        table: The cleaned table the split positions refer to.
        data_spec: The run spec's data section (``DataSpec.to_dict()``) the rows were
            loaded and prepared by (``appsleuth.run.prepare_run_data``), or None when
            they were prepared from a table given in Python. Defaults to None.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessor: Preprocessor
    split: DataSplit
    cleaning: CleaningReport
    info: FrameInfo
    table: pd.DataFrame
    data_spec: dict[str, Any] | None = None

    @property
    def classes(self) -> list[str]:
        """Class names, index i = class i."""
        return list(self.preprocessor.classes)

    def __repr__(self) -> str:
        # The default repr printed every array and the whole table; shapes say enough.
        return (
            f"PreparedData(x_train={self.x_train.shape}, x_val={self.x_val.shape}, "
            f"x_test={self.x_test.shape}, classes={len(self.classes)}, "
            f"split={self.split.spec.kind!r}, preprocessor={self.preprocessor!r})"
        )

    def describe(self) -> dict[str, Any]:
        """Summary for metadata: dataset, split, sizes, features, classes."""
        return {
            "dataset": self.info.dataset,
            "synthetic": self.info.synthetic,
            "split": self.split.describe(),
            "features": self.preprocessor.output_columns,
            "classes": self.classes,
            "cleaning": self.cleaning.to_dict(),
        }


def prepare_data(
    df: pd.DataFrame,
    *,
    split: SplitSpec | None = None,
    apps: Sequence[str] | str | None = None,
    positive: str | None = None,
    features: Sequence[str] | str | None = None,
    missing: MissingPolicy = "drop",
    drop_duplicates: bool = False,
    scaling: Scaling = "standard",
) -> PreparedData:
    """Choose the task, clean, split and fit the preprocessing on the training rows.

    Args:
        df: A loaded table.
        split: How to split: a SplitSpec or a mapping of its fields. Defaults to the
            teaching split (random, 20 %, seed 34).
        apps: Keep only these apps (a list, or one comma-separated string). Defaults to
            all.
        positive: Make a binary task of this app against all others (after ``apps``,
            which are relabelled ``other``); with exactly two apps it only makes this
            app class 1. Defaults to None (one class per app).
        features: Use only these feature columns (a list, or one comma-separated
            string). Defaults to the table's features.
        missing: ``drop`` (default) or ``impute`` incomplete rows. Imputation fills
            each feature with its median (most frequent value for categories) over the
            training rows of the split, in training, validation and test rows alike;
            the values are kept in the preprocessor, which fills new data with them.
        drop_duplicates: Drop exact duplicate rows. Defaults to False.
        scaling: Feature scaling. Defaults to ``standard``.

    Returns:
        The :class:`PreparedData`.

    Raises:
        DataError: Nothing usable remains after cleaning, or a feature to impute has
            no value in any training row.
    """
    if features is None:
        _warn_added_columns(df)
    info = frame_info(df)
    if info.label is not None and info.label in df.columns:
        check_label_spellings(df[info.label], info.label, info.dataset)
    df, rest = _choose_task(df, apps=apps, positive=positive, features=features)
    # Imputation waits for the split: its fill values come from the training rows only.
    table, cleaning = clean_table(
        df,
        drop_empty_columns=True,
        drop_constant_columns=True,
        missing=missing,
        drop_duplicates=drop_duplicates,
        fill=False,
    )
    if features is not None:
        # A named feature without a single value cannot be used (nor imputed); training
        # on the others while the spec lists it would misreport the model's inputs.
        empty = [
            c
            for step in cleaning.steps
            if step.action == "drop all-missing columns"
            for c in step.columns
        ]
        if empty:
            raise DataError(
                f"{frame_info(df).dataset}: feature(s) {empty} named in features have no "
                f"value in any row; leave them out of features or fill them"
            )
    _check_classes_after_cleaning(table, cleaning)
    parts = split_data(table, split)
    fills: dict[str, Any] = {}
    if missing == "impute":
        table, fills = _impute_from_training(table, parts)
    train, val, test = parts.frames(table)
    _check_training_classes(table, train, parts)
    pre = Preprocessor(scaling=scaling, positive_class=positive).fit(train)
    pre.rest_class = rest
    pre.set_fill_values(fills)

    def arrays(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == 0:
            return (np.zeros((0, pre.n_outputs), np.float32), np.zeros(0, np.int32))
        return pre.transform(rows), pre.encode_labels(rows[pre.label])

    x_train, y_train = arrays(train)
    dataset = frame_info(table).dataset
    x_val, y_val = _unknown_safe(arrays, val, pre, dataset, parts.spec.kind)
    x_test, y_test = _unknown_safe(arrays, test, pre, dataset, parts.spec.kind)
    return PreparedData(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        preprocessor=pre,
        split=parts,
        cleaning=cleaning,
        info=frame_info(table),
        table=table,
    )


def check_task(
    df: pd.DataFrame,
    *,
    apps: Sequence[str] | str | None = None,
    positive: str | None = None,
    features: Sequence[str] | str | None = None,
) -> None:
    """Check that a table holds the apps, positive app and features a task names.

    The checks and messages of :func:`prepare_data`, without cleaning or splitting: a
    stand-in of the table (its columns and one row per app) gives the same answer, so a
    sweep is checked when planned rather than failing in every trial.

    Raises:
        DataError: An app or feature is not in the table, as :func:`prepare_data` says.
        SpecError: ``positive`` is not one of ``apps``.
    """
    _choose_task(df, apps=apps, positive=positive, features=features)


def _choose_task(
    df: pd.DataFrame,
    *,
    apps: Sequence[str] | str | None,
    positive: str | None,
    features: Sequence[str] | str | None,
) -> tuple[pd.DataFrame, str | None]:
    """The table restricted to the task's features and apps, relabelled one-vs-rest
    where ``positive`` asks for it; and the label of the rest (None when not merged)."""
    if features is not None:
        df = select_features(df, features)
    if apps is not None:
        if positive is not None and positive not in as_name_list("apps", apps):
            raise SpecError(
                f"positive must be one of apps ({', '.join(as_name_list('apps', apps))}); "
                f"received positive={positive!r}"
            )
        df = select_apps(df, apps)
    # With two apps, `positive` only says which is class 1; with more, the rest are merged.
    if positive is not None and df[frame_info(df).label].nunique() > 2:
        return one_vs_rest(df, positive), _REST
    return df, None


def _impute_from_training(table: pd.DataFrame, parts: DataSplit) -> tuple[pd.DataFrame, dict]:
    """Fill every row's gaps with values computed on the training rows of ``parts``.

    Returns:
        The filled table (same rows, index and attrs) and the fill value of each feature.

    Raises:
        DataError: A feature has gaps but no value in any training row.
    """
    train = table.iloc[parts.train]
    fills = fill_values(train)
    info = frame_info(table)
    gappy = [f for f in info.features if table[f].isna().any()]
    unfillable = [f for f in gappy if f not in fills]
    if unfillable:
        raise DataError(
            f"{info.dataset}: feature(s) {unfillable} have no value in any of the "
            f"{len(train)} training rows of the {parts.spec.kind} split, so missing='impute' "
            f"has nothing to fill them from; leave them out (features=...) or use "
            f"missing='drop'"
        )
    if gappy:
        attrs = table.attrs
        table = table.fillna({f: fills[f] for f in gappy})
        table.attrs = attrs
    return table, fills


def _check_classes_after_cleaning(table: pd.DataFrame, cleaning: CleaningReport) -> None:
    info = frame_info(table)
    if info.label is None or info.label not in table.columns:
        return  # the preprocessor names the missing label column
    classes = sorted(str(c) for c in table[info.label].unique())
    if len(classes) < 2:
        dropped = cleaning.rows_before - cleaning.rows_after
        raise DataError(
            f"{info.dataset}: after cleaning ({cleaning.rows_after} of "
            f"{cleaning.rows_before} rows kept, {dropped} dropped for missing values), the "
            f"label column {info.label!r} holds a single class, {classes[0]!r}; a "
            f"classifier needs at least two classes (see 'appsleuth data check')"
        )


def _check_training_classes(table: pd.DataFrame, train: pd.DataFrame, parts: DataSplit) -> None:
    info = frame_info(table)
    if info.label is None or info.label not in table.columns:
        return
    found = sorted(str(c) for c in train[info.label].unique())
    if len(found) == 1:
        every = sorted(str(c) for c in table[info.label].unique())
        raise DataError(
            f"{info.dataset}: the training rows of the {parts.spec.kind} split "
            f"({len(train)} of {len(table)} rows) hold a single class, {found[0]!r} "
            f"(the table has {len(every)}: {', '.join(map(repr, every))}); a classifier "
            f"needs at least two classes in training: use more rows, or another split"
        )


def _unknown_safe(
    arrays: Any, rows: pd.DataFrame, pre: Preprocessor, dataset: str, kind: str
) -> Any:
    """Validation/test rows whose class is absent from training cannot be scored."""
    if len(rows):
        missing = sorted(set(rows[pre.label].astype(str)) - set(pre.classes))
        if missing:
            other = (
                "a smaller val_fraction/test_fraction"
                if kind == "random"
                else "the random split, which keeps every class in training where it can"
            )
            raise DataError(
                f"{dataset}: class(es) {missing} appear in validation/test rows but not in "
                f"training rows of the {kind} split (too few rows of them for the split); "
                f"use more rows of those apps, leave them out (apps=...), or use {other}"
            )
    return arrays(rows)
