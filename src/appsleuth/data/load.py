"""Read SherLock tables (CSV, gzip'd CSV, Parquet) into pandas, recognising their layout.

The loader is the boundary where a file becomes a table appsleuth trusts: every problem
with the file is reported here as a :class:`~appsleuth.errors.DataError` that names the
file, the column or row, what was expected and what was found.

What the loader learned about a table (its layout, label, features, id columns) travels
with the DataFrame in ``df.attrs["appsleuth"]`` and can be read back with
:func:`frame_info`.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from appsleuth.data.layouts import (
    CATEGORICAL_FEATURES,
    ID_COLUMNS,
    LABEL_COLUMN,
    RAW_COLUMNS,
    SHERLOCK18_FEATURES,
    Layout,
)
from appsleuth.errors import DataError

__all__ = ["FrameInfo", "frame_info", "from_dataframe", "load_sherlock"]

_NULL_STRINGS = ["NULL", "null", "", "NA", "N/A", "NaN", "nan", "None"]
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_KNOWN_FEATURES = frozenset(SHERLOCK18_FEATURES) | frozenset(RAW_COLUMNS)
# Text columns of the raw table: descriptive, never numeric features.
_RAW_TEXT_COLUMNS = frozenset({"PackageName", "tcomm", "Version_Name", "wchan"})
# A text column whose values are at least this share numbers is a numeric column with bad
# values in it, not a text column: reported, never silently dropped from the features.
_NUMERIC_SHARE = 0.9


@dataclasses.dataclass(frozen=True, kw_only=True)
class FrameInfo:
    """What appsleuth knows about a table: where it came from and the role of each column.

    Attributes:
        source: The file it was read from, or ``"synthetic"`` / ``"dataframe"``.
        dataset: A short name for reports and metadata.
        synthetic: True for generated data.
        layout: One of ``sherlock18``, ``raw``, ``teaching``, ``generic``.
        label: The label column, or None when the table has none.
        features: Feature columns, in order.
        categorical: The features that are categories (one-hot encoded later).
        id_columns: Columns that identify a sample (never features).
        time_column: The column giving time order, or None for file order.
    """

    source: str
    dataset: str
    synthetic: bool = False
    layout: Layout = "generic"
    label: str | None = LABEL_COLUMN
    features: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    id_columns: tuple[str, ...] = ()
    time_column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, for ``df.attrs`` and JSON."""
        d = dataclasses.asdict(self)
        for key in ("features", "categorical", "id_columns"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameInfo:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        for key in ("features", "categorical", "id_columns"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @property
    def numeric_features(self) -> tuple[str, ...]:
        """Features that are not categorical."""
        return tuple(f for f in self.features if f not in self.categorical)


def frame_info(df: pd.DataFrame) -> FrameInfo:
    """Return what the loader recorded about ``df``, or detect it now.

    Args:
        df: A table from :func:`load_sherlock`, the generator, or any DataFrame.

    Returns:
        The table's :class:`FrameInfo`.
    """
    recorded = df.attrs.get("appsleuth")
    if isinstance(recorded, dict):
        return FrameInfo.from_dict(recorded)
    return _describe(
        df,
        source="dataframe",
        label=LABEL_COLUMN,
        features=None,
        categorical=CATEGORICAL_FEATURES,
        layout=None,
        require_label=False,
    )


def load_sherlock(
    path: str | os.PathLike[str],
    *,
    label: str = LABEL_COLUMN,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = CATEGORICAL_FEATURES,
    layout: Layout | None = None,
    require_label: bool = True,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a SherLock table from CSV (plain or gzip) or Parquet.

    The layout is recognised from the columns: the ``sherlock_18apps`` layout (an index
    column, the label and 18 features), the raw SherLock Applications table (58 columns,
    UTF-8 byte-order mark, ``NULL`` for missing, quoted numbers), the 2-app teaching
    layouts, and any other table with a label column and numeric features (``generic``).

    Args:
        path: The file. Gzip and Parquet are recognised by content, not by name.
        label: The label column. Defaults to ``ApplicationName``.
        features: Feature columns to use; defaults to the layout's features (for
            ``generic`` and ``teaching`` tables: every numeric column that is not the
            label, an index or an id column, plus the categorical columns present).
        categorical: Columns treated as categories. Defaults to ``("state",)``.
        layout: Force a layout instead of recognising it.
        require_label: If True (default), a missing label column or a label with a
            single class is an error. Prediction passes False.
        encoding: The text encoding of a CSV file. Defaults to UTF-8 (a BOM is skipped).

    Returns:
        The table, with the file's index column (if any) as its index, the features
        numeric (``state`` as text) and ``df.attrs["appsleuth"]`` describing it.

    Raises:
        DataError: The file is missing, empty, not a table, not decodable, lacks the
            label column, has a non-numeric value in a numeric feature, or a single class.
    """
    file = Path(path)
    df = _read_table(file, encoding=encoding)
    info = _describe(
        df,
        source=str(file),
        label=label,
        features=features,
        categorical=categorical,
        layout=layout,
        require_label=require_label,
    )
    return _finish(df, info, where=f"file {file}", require_label=require_label)


def from_dataframe(
    df: pd.DataFrame,
    *,
    label: str = LABEL_COLUMN,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = CATEGORICAL_FEATURES,
    layout: Layout | None = None,
    require_label: bool = True,
    dataset: str | None = None,
) -> pd.DataFrame:
    """Validate an in-memory table as :func:`load_sherlock` validates a file.

    Args:
        df: The table. It is not modified; a checked copy is returned.
        label: The label column. Defaults to ``ApplicationName``.
        features: Feature columns; defaults as in :func:`load_sherlock`.
        categorical: Columns treated as categories. Defaults to ``("state",)``.
        layout: Force a layout instead of recognising it.
        require_label: Whether the label column must exist with two or more classes.
        dataset: Name for reports. Defaults to ``"dataframe"``.

    Returns:
        A copy of ``df`` with numeric features and ``attrs["appsleuth"]`` set.
    """
    recorded = df.attrs.get("appsleuth") if isinstance(df.attrs.get("appsleuth"), dict) else {}
    info = _describe(
        df,
        source=recorded.get("source", "dataframe"),
        label=label,
        features=features,
        categorical=categorical,
        layout=layout,
        require_label=require_label,
    )
    if dataset is not None or recorded.get("dataset"):
        info = dataclasses.replace(
            info,
            dataset=dataset or recorded["dataset"],
            synthetic=bool(recorded.get("synthetic", False)),
        )
    return _finish(df.copy(), info, where=f"table {info.dataset!r}", require_label=require_label)


# --- reading -------------------------------------------------------------------------


def _read_table(file: Path, *, encoding: str) -> pd.DataFrame:
    if not file.exists():
        raise DataError(f"data file {file} does not exist")
    if file.is_dir():
        raise DataError(f"data file {file} is a directory, expected a CSV or Parquet file")
    try:
        head = file.open("rb").read(4)
    except OSError as exc:
        raise DataError(f"data file {file} cannot be read: {exc.strerror or exc}") from exc
    if not head:
        raise DataError(f"data file {file} is empty: expected a header line and rows")
    if head == _PARQUET_MAGIC:
        return _read_parquet(file)
    if head[:2] == _GZIP_MAGIC:
        try:
            with gzip.open(file, "rb") as fh:
                data = fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"data file {file} looks gzip-compressed but cannot be decompressed: {exc}"
            ) from exc
        if not data:
            raise DataError(f"data file {file} is empty once decompressed")
        return _read_csv(io.BytesIO(data), file, encoding=encoding)
    return _read_csv(file, file, encoding=encoding)


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        table = pa_parquet.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"data file {file} starts like Parquet but cannot be read: {exc}") from exc
    df = table.to_pandas()
    if len(df.columns) == 0:
        raise DataError(f"data file {file} has no columns")
    return df


def _read_csv(source: Path | io.BytesIO, file: Path, *, encoding: str) -> pd.DataFrame:
    read_options = pa_csv.ReadOptions(encoding=encoding)
    convert_options = pa_csv.ConvertOptions(null_values=_NULL_STRINGS, strings_can_be_null=True)
    try:
        table = _arrow_read(source, read_options, convert_options)
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "conversion error" not in message:
            raise DataError(_csv_problem(file, message)) from exc
        # Type inference looks at the start of the file only; a column that turns from
        # numbers into text further down is re-read as text and diagnosed below.
        names = _header_names(source, read_options)
        convert_options = pa_csv.ConvertOptions(
            null_values=_NULL_STRINGS,
            strings_can_be_null=True,
            column_types={name: pa.string() for name in names},
        )
        try:
            table = _arrow_read(source, read_options, convert_options)
        except pa.ArrowException as exc2:
            raise DataError(_csv_problem(file, str(exc2))) from exc2
    except (pa.ArrowException, LookupError, UnicodeError) as exc:
        raise DataError(_csv_problem(file, str(exc))) from exc

    try:
        names = [field.name for field in table.schema]
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data file {file}: the header line is not valid {encoding} text; "
            f"pass the file's encoding or convert the file to UTF-8"
        ) from exc
    del names
    for field in table.schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            raise DataError(
                f"data file {file}: column {field.name!r} is not valid {encoding} text; "
                f"pass the file's encoding (for example encoding='latin-1' or "
                f"--encoding latin-1) or convert the file to UTF-8"
            )
    if table.num_columns == 0:
        raise DataError(f"data file {file} has no columns")
    _check_unique_names([str(n) for n in table.column_names], f"data file {file}")
    df = table.to_pandas()
    df = _text_columns_to_numbers(df)
    return _use_index_column(df)


def _arrow_read(
    source: Path | io.BytesIO,
    read_options: pa_csv.ReadOptions,
    convert_options: pa_csv.ConvertOptions,
) -> pa.Table:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return pa_csv.read_csv(source, read_options=read_options, convert_options=convert_options)


def _header_names(source: Path | io.BytesIO, read_options: pa_csv.ReadOptions) -> list[str]:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    reader = pa_csv.open_csv(source, read_options=read_options)
    return list(reader.schema.names)


def _csv_problem(file: Path, message: str) -> str:
    message = message.strip().splitlines()[0] if message.strip() else "unknown problem"
    if "Empty CSV file" in message:
        return f"data file {file} is empty: expected a header line and rows"
    if "Expected" in message and "columns" in message:
        return (
            f"data file {file} is not a regular table: a row has a different number of "
            f"fields than the header ({message.removeprefix('CSV parse error: ')})"
        )
    if "codec" in message or "decode" in message.lower() or "encoding" in message.lower():
        return f"data file {file} cannot be decoded: {message}"
    return f"data file {file} cannot be read as CSV: {message}"


def _text_columns_to_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Turn text columns that hold only numbers into numbers (quoted numbers, re-reads)."""
    for name in df.columns:
        col = df[name]
        if not _is_text(col):
            continue
        present = col.dropna()
        # A cheap look at the first values first: most text columns are plainly text.
        if present.empty or pd.to_numeric(present.iloc[:64], errors="coerce").isna().any():
            continue
        converted = pd.to_numeric(col, errors="coerce")
        if converted.notna().sum() == len(present):
            df[name] = converted
    return df


def _use_index_column(df: pd.DataFrame) -> pd.DataFrame:
    first = df.columns[0]
    is_index_name = first == "" or str(first).startswith("Unnamed: ")
    if is_index_name and pd.api.types.is_integer_dtype(df[first]) and df[first].is_unique:
        df = df.set_index(first)
        df.index.name = None
    return df


# --- recognising and validating ------------------------------------------------------


def _check_unique_names(columns: list[str], where: str) -> None:
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(
            f"{where} has repeated column names {_list(repeated)}; every column "
            f"needs its own name (is the first line a header?)"
        )


def _is_text(col: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(col) or col.dtype == object


def _detect_layout(columns: Sequence[str], label: str) -> Layout:
    cols = set(columns)
    if label != LABEL_COLUMN or LABEL_COLUMN not in cols:
        return "generic"
    if {"UserId", "UUID"} <= cols and len(cols & set(RAW_COLUMNS)) >= 50:
        return "raw"
    if set(SHERLOCK18_FEATURES) <= cols:
        return "sherlock18"
    if len(cols & set(SHERLOCK18_FEATURES)) >= 2:
        return "teaching"
    return "generic"


def _describe(
    df: pd.DataFrame,
    *,
    source: str,
    label: str,
    features: Sequence[str] | None,
    categorical: Sequence[str],
    layout: Layout | None,
    require_label: bool,
) -> FrameInfo:
    where = f"file {source}" if source not in ("dataframe", "synthetic") else "the table"
    columns = [str(c) for c in df.columns]
    _check_unique_names(columns, where)
    if layout is None:
        layout = _detect_layout(columns, label)
    elif layout not in ("sherlock18", "raw", "teaching", "generic"):
        raise DataError(
            f"layout must be one of sherlock18, raw, teaching, generic; received layout={layout!r}"
        )
    has_label = label in columns
    if require_label and not has_label:
        raise DataError(
            f"{where} has no label column {label!r}; columns found: {_list(columns)}. "
            f"Name the label column with label=... (CLI: --label)"
        )
    id_columns = tuple(c for c in ID_COLUMNS if c in columns)
    if features is not None:
        features = tuple(str(f) for f in features)
        if not features:
            raise DataError("features must name at least one column; received features=[]")
        missing = [f for f in features if f not in columns]
        if missing:
            raise DataError(
                f"{where} lacks the feature column(s) {_list(missing)}; "
                f"columns found: {_list(columns)}"
            )
        if label in features:
            raise DataError(f"the label column {label!r} cannot also be a feature")
    elif layout in ("sherlock18", "raw"):
        features = tuple(f for f in SHERLOCK18_FEATURES if f in columns)
    else:
        features = tuple(
            c
            for c in columns
            if c != label and c not in id_columns and _usable_as_feature(df[c], c, categorical)
        )
        if not features:
            raise DataError(
                f"{where} has no numeric feature columns besides the label {label!r}; "
                f"columns found: {_list(columns)}"
            )
    cats = tuple(c for c in categorical if c in features)
    time_column = "UUID" if "UUID" in columns else None
    name = Path(source).name if source not in ("dataframe", "synthetic") else source
    return FrameInfo(
        source=source,
        dataset=name,
        layout=layout,
        label=label if has_label else None,
        features=features,
        categorical=cats,
        id_columns=id_columns,
        time_column=time_column,
    )


def _usable_as_feature(col: pd.Series, name: str, categorical: Sequence[str]) -> bool:
    if name in categorical or not _is_text(col):
        return True
    present = col.dropna()
    if present.empty:
        return True  # all missing: kept so the quality report can say so
    if name in _KNOWN_FEATURES:
        return name not in _RAW_TEXT_COLUMNS
    numeric_share = pd.to_numeric(present, errors="coerce").notna().mean()
    return bool(numeric_share >= _NUMERIC_SHARE)


def _finish(df: pd.DataFrame, info: FrameInfo, *, where: str, require_label: bool) -> pd.DataFrame:
    for name in info.numeric_features:
        df[name] = _as_numeric(df[name], name, where)
    for name in info.categorical:
        col = df[name]
        if not _is_text(col):  # e.g. numeric codes: categories are compared as text
            df[name] = col.astype(str).where(col.notna())
    if info.label is not None:
        labels = df[info.label]
        if labels.isna().any():
            row = int(np.flatnonzero(labels.isna().to_numpy())[0])
            raise DataError(
                f"{where}: label column {info.label!r} is missing a value in data row {row} "
                f"(line {row + 2}); every row needs a label"
            )
        df[info.label] = labels.astype(str)
        if len(df) == 0:
            raise DataError(f"{where} has a header but no rows")
        n_classes = df[info.label].nunique()
        if n_classes < 2 and require_label:
            only = df[info.label].iloc[0]
            raise DataError(
                f"{where}: label column {info.label!r} has a single class ({only!r}); "
                f"a classifier needs at least two"
            )
    elif len(df) == 0:
        raise DataError(f"{where} has a header but no rows")
    df.attrs["appsleuth"] = info.to_dict()
    return df


def _as_numeric(col: pd.Series, name: str, where: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        return col.astype(np.int64)
    if pd.api.types.is_numeric_dtype(col):
        return col
    if col.isna().all():
        return pd.Series(np.nan, index=col.index, dtype=np.float64, name=col.name)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = col.iloc[row]
        raise DataError(
            f"{where}: feature column {name!r} must be numeric, but data row {row} "
            f"(line {row + 2}) holds {value!r} ({int(bad.sum())} such value(s) in all); "
            f"fix the value, or leave the column out of the features"
        )
    return converted


def _list(names: Sequence[str], limit: int = 25) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}{more}]"
