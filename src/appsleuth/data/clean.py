"""Clean a SherLock table the way the teaching material does, reporting every step.

Default steps, in order: drop feature columns that are entirely missing (``cminflt``)
or constant (``guest_time``), drop rows with any missing feature, and note that the
categorical ``state`` column will be one-hot encoded (the encoding itself is learned by
the :class:`~appsleuth.data.preprocess.Preprocessor` from the training rows only).

Infinite feature values count as missing values, as the loader treats them: a table
that did not come through the loader has them turned into missing values here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import pandas as pd

from appsleuth.data._record import as_record
from appsleuth.data.load import (
    frame_info,
    infinite_mask,
    label_text,
    numeric_columns_as_numbers,
)
from appsleuth.errors import DataError, SpecError

__all__ = ["CleaningReport", "CleaningStep", "clean_sherlock", "fill_values"]

MissingPolicy = Literal["drop", "impute"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CleaningStep:
    """One cleaning step and what it did.

    Attributes:
        action: What was done, e.g. ``drop all-missing columns``.
        columns: The columns it concerned.
        rows_before: Row count before the step.
        rows_after: Row count after the step.
        detail: A sentence for people.
    """

    action: str
    columns: tuple[str, ...] = ()
    rows_before: int
    rows_after: int
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        d = dataclasses.asdict(self)
        d["columns"] = list(self.columns)
        return d


@dataclasses.dataclass(frozen=True, kw_only=True)
class CleaningReport:
    """The steps :func:`clean_sherlock` took, in order."""

    steps: tuple[CleaningStep, ...]
    rows_before: int
    rows_after: int
    features_before: tuple[str, ...]
    features_after: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        return {
            "steps": [s.to_dict() for s in self.steps],
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "features_before": list(self.features_before),
            "features_after": list(self.features_after),
        }

    def lines(self) -> list[str]:
        """One line per step, for terminals and logs."""
        return [f"{s.action}: {s.detail}" for s in self.steps]

    def __repr__(self) -> str:
        # One line per step, as the CLI prints them, rather than every field of every step.
        head = (
            f"CleaningReport(rows {self.rows_before:,} -> {self.rows_after:,}, "
            f"features {len(self.features_before)} -> {len(self.features_after)})"
        )
        return "\n".join([head, *(f"  {line}" for line in self.lines())])


def clean_sherlock(
    df: pd.DataFrame,
    *,
    drop_empty_columns: bool = True,
    drop_constant_columns: bool = True,
    missing: MissingPolicy = "drop",
    drop_duplicates: bool = False,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Clean a loaded table; the input is left unchanged.

    For training, :func:`~appsleuth.data.prepare.prepare_data` cleans with the same
    steps but imputes only after the split, from the training rows (see ``missing``).

    Args:
        df: A table from :func:`~appsleuth.data.load.load_sherlock` (or the generator).
        drop_empty_columns: Drop features with no value at all. Defaults to True.
        drop_constant_columns: Drop features with a single value. Defaults to True.
        missing: ``"drop"`` (default) removes rows with a missing feature; ``"impute"``
            fills numeric features with the column median and categories with the most
            frequent value, computed over the whole table given here (there is no split
            yet). :func:`~appsleuth.data.prepare.prepare_data` instead computes them
            from the training rows only, after the split, and applies them to every row.
        drop_duplicates: Remove exact duplicate rows (label and features). Defaults
            to False: SherLock's duplicates are real repeated samples.

    Returns:
        The cleaned table (only the label, id and kept feature columns, same index) and
        the report of each step.

    Raises:
        DataError: Nothing usable remains (no feature column, or no row).
        SpecError: ``missing`` is not ``drop`` or ``impute``.
    """
    return _clean(
        df,
        drop_empty_columns=drop_empty_columns,
        drop_constant_columns=drop_constant_columns,
        missing=missing,
        drop_duplicates=drop_duplicates,
        fill=True,
    )


def _clean(
    df: pd.DataFrame,
    *,
    drop_empty_columns: bool,
    drop_constant_columns: bool,
    missing: MissingPolicy,
    drop_duplicates: bool,
    fill: bool,
) -> tuple[pd.DataFrame, CleaningReport]:
    """:func:`clean_sherlock`; with ``fill=False``, ``missing="impute"`` keeps the
    incomplete rows unfilled (missing and infinite values as NaN) for the caller to fill
    from the training rows once the table is split."""
    if missing not in ("drop", "impute"):
        raise SpecError(f"missing must be 'drop' or 'impute'; received missing={missing!r}")
    info = frame_info(df)
    if len(df) == 0:
        raise DataError(f"{info.dataset}: the table has no rows; there is nothing to clean")
    keep = [c for c in (*info.id_columns, info.label) if c is not None and c in df.columns]
    out = numeric_columns_as_numbers(
        df[[*keep, *info.features]].copy(), info.numeric_features, where=info.dataset
    )
    if info.label in out.columns and not isinstance(df.attrs.get("appsleuth"), dict):
        # A table built by hand gets the loader's reading of labels: " A" is A.
        out[info.label] = label_text(out[info.label]).to_numpy()
    features = list(info.features)
    steps: list[CleaningStep] = []
    n = len(out)
    infinite = _infinite_to_missing(out, info.numeric_features)

    if drop_empty_columns:
        empty = [f for f in features if out[f].isna().all()]
        features = [f for f in features if f not in empty]
        steps.append(
            CleaningStep(
                action="drop all-missing columns",
                columns=tuple(empty),
                rows_before=n,
                rows_after=n,
                detail=(f"dropped {_names(empty)}" if empty else "none found"),
            )
        )
    if drop_constant_columns:
        # A column without any value is empty, not constant: kept when asked to keep
        # empty columns (drop_empty_columns=False), and it has no value to describe.
        constant = [f for f in features if is_constant(out[f]) and out[f].notna().any()]
        features = [f for f in features if f not in constant]
        steps.append(
            CleaningStep(
                action="drop constant columns",
                columns=tuple(constant),
                rows_before=n,
                rows_after=n,
                detail=(
                    ", ".join(f"{c} (always {_plain(out[c].dropna().iloc[0])!r})" for c in constant)
                    if constant
                    else "none found"
                ),
            )
        )
    if not features:
        raise DataError(
            f"{info.dataset}: no feature column is left after dropping "
            f"all-missing and constant columns"
        )
    out = out[[*keep, *features]]

    incomplete = out[features].isna().any(axis=1)
    n_incomplete = int(incomplete.sum())
    gappy = tuple(f for f in features if out[f].isna().any())
    if missing == "drop":
        out = out.loc[~incomplete]
        steps.append(
            CleaningStep(
                action="drop incomplete rows",
                columns=gappy,
                rows_before=n,
                rows_after=len(out),
                detail=(
                    f"dropped {n_incomplete} of {n} rows with a missing feature value"
                    f"{_infinite_note(infinite, features)}"
                ),
            )
        )
    else:
        # Only kept with drop_empty_columns=False: no value to fill them from.
        empty = [f for f in gappy if out[f].isna().all()]
        fillable = [f for f in gappy if f not in empty]
        n_filled = int(out[fillable].isna().any(axis=1).sum()) if fillable else 0
        if fill:
            for f in fillable:
                out[f] = out[f].fillna(_fill_value(out[f], f in info.categorical))
        source = "the whole table" if fill else "the training rows only"
        left = (
            f"; {_names(empty)} ha{'s' if len(empty) == 1 else 've'} no value in any row to "
            f"fill from and stay{'s' if len(empty) == 1 else ''} empty"
            if empty
            else ""
        )
        steps.append(
            CleaningStep(
                action="impute missing values",
                columns=gappy,
                rows_before=n,
                rows_after=n,
                detail=(
                    f"filled {n_filled} incomplete rows (median for numbers, most "
                    f"frequent value for categories, computed over {source}) in "
                    f"{_names(fillable)}{_infinite_note(infinite, features)}{left}"
                ),
            )
        )
    n = len(out)

    if drop_duplicates:
        subset = [c for c in (info.label, *features) if c is not None]
        dup = duplicate_rows(out, subset)
        out = out.loc[~dup]
        steps.append(
            CleaningStep(
                action="drop duplicate rows",
                rows_before=n,
                rows_after=len(out),
                detail=f"dropped {int(dup.sum())} exact duplicate rows",
            )
        )
        n = len(out)

    cats = [c for c in info.categorical if c in features]
    for c in cats:
        values = sorted(str(v) for v in out[c].dropna().unique())
        steps.append(
            CleaningStep(
                action="one-hot encode",
                columns=(c,),
                rows_before=n,
                rows_after=n,
                detail=(
                    f"{c} has {len(values)} categories ({', '.join(values)}): encoded as "
                    f"{len(values)} 0/1 columns, learned from the training rows"
                ),
            )
        )
    if len(out) == 0:
        raise DataError(
            f"{info.dataset}: no row is left after cleaning (every row misses "
            f"a feature value); try missing='impute'"
        )

    new_info = dataclasses.replace(info, features=tuple(features), categorical=tuple(cats))
    out.attrs = {**df.attrs, "appsleuth": as_record(new_info.to_dict())}
    report = CleaningReport(
        steps=tuple(steps),
        rows_before=len(df),
        rows_after=len(out),
        features_before=info.features,
        features_after=tuple(features),
    )
    return out, report


def is_constant(col: pd.Series) -> bool:
    """Whether a column holds at most one distinct value (missing values aside).

    The same answer as ``col.nunique(dropna=True) <= 1``, without its hash table for
    numbers: on a wide table of measurements (every value distinct) that table costs
    tens of milliseconds a column, and the quality report and cleaning ask for every
    feature.

    Args:
        col: The column.

    Returns:
        True when the column has no value or a single one.
    """
    if pd.api.types.is_float_dtype(col.dtype) or pd.api.types.is_integer_dtype(col.dtype):
        # min == max says one value (-0.0 and 0.0 are one value to nunique as to ==);
        # both are missing when the column has no value at all.
        low, high = col.min(), col.max()
        return bool(pd.isna(low)) or bool(low == high)
    return col.nunique(dropna=True) <= 1


def duplicate_rows(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows that repeat an earlier row in ``columns``: ``df.duplicated(subset=columns)``.

    The same answer, found faster on wide tables: pandas factorizes every column (tens
    of milliseconds a column of distinct measurements), while a row can only repeat a
    row whose numeric values hash alike. Those candidates alone are compared exactly;
    the numeric hash treats values as ``duplicated`` does (``0.0`` is ``-0.0``, missing
    is missing), and a hash collision only adds a candidate.

    Args:
        df: The table.
        columns: The columns compared.

    Returns:
        A boolean Series on ``df``'s index, True for each repeat (the first one is not).
    """
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(df[c].dtype)]
    if not numeric or len(df) < 2:
        return df.duplicated(subset=columns)
    values = df[numeric]
    floats = [c for c in numeric if pd.api.types.is_float_dtype(values[c].dtype)]
    if floats:
        # -0.0 + 0.0 is 0.0: pandas 2.2's hash tells 0.0 from -0.0, which duplicated does not.
        values = values.copy()
        values[floats] = values[floats] + 0.0
    keys = pd.util.hash_pandas_object(values, index=False).to_numpy()
    candidates = pd.Series(keys).duplicated(keep=False).to_numpy()
    repeated = np.zeros(len(df), dtype=bool)
    if candidates.any():
        repeated[candidates] = df.loc[candidates, columns].duplicated().to_numpy()
    return pd.Series(repeated, index=df.index)


def _infinite_to_missing(out: pd.DataFrame, numeric: tuple[str, ...]) -> dict[str, int]:
    """Infinite values become missing values, in place; returns the count per column."""
    counts: dict[str, int] = {}
    for name in numeric:
        infinite = infinite_mask(out[name])
        if infinite.any():
            out[name] = out[name].where(~infinite)
            counts[name] = int(infinite.sum())
    return counts


def _infinite_note(infinite: dict[str, int], features: list[str]) -> str:
    shown = {c: n for c, n in infinite.items() if c in features}
    if not shown:
        return ""
    listed = ", ".join(f"{n} in {c}" for c, n in shown.items())
    return f" (infinite values, counted as missing: {listed})"


def fill_values(train: pd.DataFrame) -> dict[str, Any]:
    """The values that impute each feature of a cleaned table, from ``train``'s rows.

    Numeric features get their median and categorical ones their most frequent value,
    as ``clean_sherlock(missing="impute")`` fills them, but computed on the training
    rows only so that no statistic of validation or test rows reaches training.

    Args:
        train: Training rows of a table cleaned with ``missing="impute"``.

    Returns:
        ``{feature: value}`` for every feature (numbers as float, categories as found in
        the table); a feature without any value in ``train`` is left out.
    """
    info = frame_info(train)
    out: dict[str, Any] = {}
    for f in info.features:
        value = _fill_value(train[f], f in info.categorical)
        if not pd.isna(value):
            out[f] = _plain(value)
    return out


def _fill_value(col: pd.Series, categorical: bool) -> Any:
    present = col.dropna()
    if present.empty:
        return np.nan
    if categorical:
        return present.mode().iloc[0]
    return float(present.median())


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "nothing"
