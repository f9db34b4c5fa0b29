"""Read SherLock tables (CSV, gzip'd CSV, Parquet) into pandas, recognising their layout.

The loader is the boundary where a file becomes a table appsleuth trusts: every problem
with the file is reported here as a :class:`~appsleuth.errors.DataError` that names the
file, the column or row, what was expected and what was found.

What the loader learned about a table (its layout, label, features, id columns) travels
with the DataFrame in ``df.attrs["appsleuth"]`` and can be read back with
:func:`frame_info`.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from appsleuth._fields import repeated
from appsleuth._files import not_regular, refuse_nul
from appsleuth.data._record import as_record
from appsleuth.data.layouts import (
    CATEGORICAL_FEATURES,
    ID_COLUMNS,
    LABEL_COLUMN,
    RAW_COLUMNS,
    SHERLOCK18_FEATURES,
    Layout,
)
from appsleuth.errors import DataError, SpecError

__all__ = [
    "FrameInfo",
    "as_name_list",
    "category_text",
    "check_feature_dtypes",
    "check_label_spellings",
    "check_name_matches_content",
    "check_text_content",
    "check_unique_names",
    "csv_line_numbers",
    "frame_info",
    "from_dataframe",
    "infinite_mask",
    "label_number",
    "label_text",
    "load_sherlock",
    "no_header_problem",
    "nonfinite_values",
    "not_a_data_file",
    "numeric_columns_as_numbers",
    "parse_numbers",
    "same_number_labels",
    "separator_hint",
    "table_row_names",
]

_NULL_STRINGS = ["NULL", "null", "", "NA", "N/A", "NaN", "nan", "None"]
# The words the CSV reader takes for true and false ("1" and "0" are numbers anyway): a
# column of only these is read as booleans, 1 and 0, so they are 1 and 0 wherever a
# feature value is read from text (a column that mixes them with other numbers, a
# prediction file read in chunks).
_TRUE_WORDS = [w for w in pa_csv.ConvertOptions().true_values if w != "1"]
_FALSE_WORDS = [w for w in pa_csv.ConvertOptions().false_values if w != "0"]
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
# File names that promise a format: the content must keep the promise.
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_GZIP_SUFFIXES = (".gz", ".gzip")
# How many bytes of a file are looked at to tell what it is.
_SNIFF_BYTES = 256
# How many rows a message or the non-finite record names, at most.
_ROWS_SHOWN = 5
_KNOWN_FEATURES = frozenset(SHERLOCK18_FEATURES) | frozenset(RAW_COLUMNS)
# Text columns of the raw table: descriptive, never numeric features (the app's name
# too, when another column is the label).
_RAW_TEXT_COLUMNS = frozenset({LABEL_COLUMN, "PackageName", "tcomm", "Version_Name", "wchan"})
# A label that spells a plain decimal number ("1", "01", "1.0", "-2", "1e3"): such labels
# are compared as numbers, since "1.0" is how pandas writes a whole-number label column
# once it has held a missing value. Other spellings ("0x1A", "1_000", "inf") stay names.
_DECIMAL_LABEL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
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
        columns: Every column the table had when it was described (to tell columns
            added later). Empty in records from before it was kept.
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
    columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form, for ``df.attrs`` and JSON."""
        d = dataclasses.asdict(self)
        for key in ("features", "categorical", "id_columns", "columns"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameInfo:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        for key in ("features", "categorical", "id_columns", "columns"):
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
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"expected a table (a pandas DataFrame from load_sherlock, embedded_data or "
            f"from_dataframe); received {type(df).__name__}"
        )
    recorded = df.attrs.get("appsleuth")
    if isinstance(recorded, dict):
        info = FrameInfo.from_dict(recorded)
        # pandas keeps attrs through concat too, which may have repeated a column since.
        check_unique_names([str(c) for c in df.columns], f"table {info.dataset!r}")
        if any(c not in df.columns for c in info.features):
            # pandas keeps attrs through drop/rename and column selection: a feature
            # dropped since loading is simply not one any more.
            present = tuple(c for c in info.features if c in df.columns)
            categorical = tuple(c for c in info.categorical if c in df.columns)
            info = dataclasses.replace(info, features=present, categorical=categorical)
        return info
    return _describe(
        df,
        source="dataframe",
        label=LABEL_COLUMN,
        features=None,
        categorical=CATEGORICAL_FEATURES,
        layout=None,
        require_label=False,
    )


def nonfinite_values(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The infinite feature values the loader found and turned into missing values.

    ``inf``, ``-inf``, ``Infinity`` or an overflowing number such as ``1e999`` in a
    numeric feature is not a measurement: :func:`load_sherlock` and
    :func:`from_dataframe` treat it as a missing value (so that cleaning drops its row
    like an incomplete row, and it never reaches a model) and record it here.

    Args:
        df: A table from :func:`load_sherlock` or :func:`from_dataframe`.

    Returns:
        Feature column -> ``{"count": n, "positive": n_plus_inf, "rows": [positions],
        "where": [descriptions]}``, with at most the first 5 rows listed (positions
        count from 0 over the rows as loaded; a description names the file line where it
        is known). Empty when there were none.
    """
    recorded = df.attrs.get("appsleuth")
    found = recorded.get("nonfinite") if isinstance(recorded, dict) else None
    return {str(k): dict(v) for k, v in found.items()} if isinstance(found, dict) else {}


def as_name_list(
    name: str, value: Any, *, allow_empty: bool = False, unique: bool = False
) -> tuple[str, ...]:
    """A list of column or app names given as a list, or as one comma-separated string.

    The rule of :class:`~appsleuth.spec.DataSpec`: ``"CPU_USAGE, rss"`` is
    ``("CPU_USAGE", "rss")`` (a single string is never split into its characters).

    Args:
        name: The argument's name, for messages.
        value: A string, or a list (any sequence or iterable) of strings.
        allow_empty: Whether an empty list is valid.
        unique: Whether a name may appear only once.

    Returns:
        The names, in order.

    Raises:
        DataError: ``value`` is not text or a list of non-empty texts, is empty (unless
            allowed), or repeats a name (when ``unique``).
    """
    received = value
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")] if value.strip() else []
    elif isinstance(value, bytes | Mapping | pd.DataFrame) or not isinstance(value, Iterable):
        raise DataError(
            f"{name} must be a list of names or one comma-separated string; received "
            f"{name}={received!r} ({type(received).__name__})"
        )
    names = list(value)
    bad = [v for v in names if not isinstance(v, str) or not v]
    if bad:
        raise DataError(
            f"{name} must be a list of non-empty names (text); received {name}={received!r}, "
            f"which holds {bad[0]!r} ({type(bad[0]).__name__})"
        )
    if not names and not allow_empty:
        raise DataError(f"{name} must name at least one column; received {name}={received!r}")
    if unique:
        twice = repeated(names)
        if twice:
            raise DataError(
                f"{name} names {_list(twice)} more than once (received {name}={received!r}); "
                f"name each column once"
            )
    return tuple(str(v) for v in names)


def _check_path(path: Any) -> Path:
    """The path of a data file, refusing what is not one (a DataFrame, None, a number)."""
    if isinstance(path, pd.DataFrame):
        raise DataError(
            "load_sherlock reads a data file, but received a DataFrame; to check a table "
            "that is already in memory, use from_dataframe(df)"
        )
    if not isinstance(path, str | os.PathLike):
        raise DataError(
            f"path must be the path of a data file (a str or a path-like object); "
            f"received path={path!r} ({type(path).__name__})"
        )
    text = os.fspath(path)
    if not isinstance(text, str):
        raise DataError(
            f"path must be the path of a data file as text; received path={path!r} "
            f"({type(text).__name__})"
        )
    refuse_nul(text, "path")
    if not text.strip():
        raise DataError(
            f"path must name a data file (a CSV, gzip'd CSV or Parquet file); "
            f"received path={path!r}, which names none"
        )
    return Path(text)


def load_sherlock(
    path: str | os.PathLike[str],
    *,
    label: str = LABEL_COLUMN,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = CATEGORICAL_FEATURES,
    layout: Layout | None = None,
    require_label: bool = True,
    single_class: bool = False,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a SherLock table from CSV (plain or gzip) or Parquet.

    The layout is recognised from the columns: the ``sherlock_18apps`` layout (an index
    column, the label and 18 features), the raw SherLock Applications table (58 columns,
    UTF-8 byte-order mark, ``NULL`` for missing, quoted numbers), the 2-app teaching
    layouts, and any other table with a label column and numeric features (``generic``).

    Infinite values of numeric features (``inf``, ``-inf``, ``Infinity``, ``1e999``) are
    treated as missing values and recorded (see :func:`nonfinite_values`).

    Args:
        path: The file. Gzip and Parquet are recognised by content; a name that
            promises one of them (``.gz``, ``.parquet``) must be kept by the content.
        label: The label column. Defaults to ``ApplicationName``.
        features: Feature columns to use; defaults to the layout's features (for
            ``generic`` and ``teaching`` tables: every numeric column that is not the
            label, an index or an id column, plus the categorical columns present).
        categorical: Columns treated as categories. Defaults to ``("state",)``.
        layout: Force a layout instead of recognising it. Defaults to recognising it.
        require_label: If True (default), a missing label column or a label with a
            single class is an error. Prediction passes False.
        single_class: With ``require_label``, accept a label column that holds a single
            class (the quality report does). Defaults to False.
        encoding: The text encoding of a CSV file. Defaults to UTF-8 (a BOM is skipped).

    Returns:
        The table, with the file's index column (if any) as its index, the features
        numeric (``state`` as text) and ``df.attrs["appsleuth"]`` describing it.

    Raises:
        DataError: The file is missing, empty, not a table, not decodable, not in the
            format its name promises, lacks the label column, has a non-numeric value in
            a numeric feature, or a single class.
    """
    if not isinstance(encoding, str) or not encoding:
        raise SpecError(
            f"encoding must be the name of a text encoding, such as 'utf-8' or 'latin-1'; "
            f"received encoding={encoding!r}"
        )
    file = _check_path(path)
    df, rows = _read_table(file, encoding=encoding, label=label)
    info = _describe(
        df,
        source=str(file),
        label=label,
        features=features,
        categorical=categorical,
        layout=layout,
        require_label=require_label,
    )
    two_classes = require_label and not single_class
    return _finish(df, info, where=f"file {file}", require_label=two_classes, rows=rows)


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

    Infinite feature values become missing values, as in :func:`load_sherlock`.

    Args:
        df: The table. It is not modified; a checked copy is returned.
        label: The label column. Defaults to ``ApplicationName``.
        features: Feature columns; defaults as in :func:`load_sherlock`.
        categorical: Columns treated as categories. Defaults to ``("state",)``.
        layout: Force a layout instead of recognising it. Defaults to recognising it.
        require_label: Whether the label column must exist with two or more classes.
            Defaults to True.
        dataset: Name for reports. Defaults to ``"dataframe"``.

    Returns:
        A copy of ``df`` with numeric features and ``attrs["appsleuth"]`` set.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"from_dataframe needs a pandas DataFrame; received {type(df).__name__}")
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
    return _finish(
        df.copy(),
        info,
        where=f"table {info.dataset!r}",
        require_label=require_label,
        rows=_RowNames(kind="table", index=df.index),
        earlier=nonfinite_values(df),
    )


# --- naming rows ---------------------------------------------------------------------


@dataclasses.dataclass
class _RowNames:
    """How messages name a row: its position, and its file line where that is known.

    ``csv`` rows are named ``data row 9 (line 13)``: the line is found by reading the
    file again (only when a message needs it), because the CSV reader skips blank lines
    and a quoted value may span lines, so a line is not simply the row plus 2. When
    the lines cannot be told for sure, the message names the data row only.
    ``file`` rows (Parquet) are ``data row 9``; ``table`` rows (a DataFrame) are
    ``row 9``, with the index label when it differs from the position.
    """

    kind: str  # "csv", "file" or "table"
    source: Path | bytes | None = None
    encoding: str = "utf-8"
    n_rows: int = 0  # rows the table reader found: the line count must agree
    index: pd.Index | None = None
    _lines: dict[int, int] | None = None

    def name(self, row: int) -> str:
        """``data row 9 (line 13)``, ``data row 9`` or ``row 9 (index 45)``."""
        return self.names([row])[0]

    def names(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """:meth:`name` of each row, reading the file once for all of them."""
        rows = [int(r) for r in rows]
        if self.kind == "table":
            return [self._table_row(r) for r in rows]
        lines = self._line_numbers(rows) if self.kind == "csv" else {}
        return [f"data row {r} (line {lines[r]})" if r in lines else f"data row {r}" for r in rows]

    def _table_row(self, row: int) -> str:
        return table_row_names(self.index, [row])[0]

    def _line_numbers(self, rows: list[int]) -> dict[int, int]:
        if self._lines is None:
            self._lines = {}
        wanted = {r for r in rows if r not in self._lines}
        if wanted and self.source is not None:
            self._lines.update(
                _csv_data_lines(self.source, self.encoding, wanted, n_rows=self.n_rows)
            )
        return {r: self._lines[r] for r in rows if r in self._lines}


def table_row_names(index: pd.Index | None, rows: Sequence[int] | np.ndarray) -> list[str]:
    """Names of rows of an in-memory table: ``row 9``, or ``row 9 (index 45)``.

    The index label is added when the index is not simply the row positions.
    """
    plain = index is None or (
        isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    )
    names = []
    for row in (int(r) for r in rows):
        if plain or index is None or not 0 <= row < len(index):
            names.append(f"row {row}")
        else:
            names.append(f"row {row} (index {_plain(index[row])!r})")
    return names


def _csv_records(source: Path | bytes, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """``(first line, fields)`` of each non-blank record of a CSV file, the header first.

    Blank lines are skipped as the table reader skips them; a quoted value may span
    lines. Lines count from 1; ``\\n``, ``\\r\\n`` and ``\\r`` end a line.
    """
    raw = io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")
    with io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="") as text:
        reader = csv.reader(text)
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            if fields:
                yield start, fields


def csv_line_numbers(
    path: str | os.PathLike[str],
    rows: Sequence[int],
    *,
    encoding: str = "utf-8",
    n_rows: int | None = None,
) -> dict[int, int]:
    """The file line on which each data row of a CSV file (plain or gzip) starts.

    Data row 0 is the first row after the header. The CSV reader skips blank lines and a
    quoted value may span lines, so a row's line is not simply the row plus 2: messages
    that name a line should take it from here (prediction's streaming reader too).

    Args:
        path: The CSV file; gzip is recognised by content.
        rows: The data rows wanted.
        encoding: The file's text encoding. Defaults to UTF-8.
        n_rows: The number of data rows the table reader found, if known: when the
            file's count disagrees, no line is returned rather than a wrong one.

    Returns:
        Data row -> line (from 1) for each row that could be placed.
    """
    file = Path(path)
    try:
        with file.open("rb") as fh:
            compressed = fh.read(2) == _GZIP_MAGIC
        source: Path | bytes = gzip.decompress(file.read_bytes()) if compressed else file
    except (OSError, EOFError, zlib.error):
        return {}
    return _csv_data_lines(source, encoding, {int(r) for r in rows}, n_rows=n_rows)


def _csv_data_lines(
    source: Path | bytes, encoding: str, rows: set[int], *, n_rows: int | None
) -> dict[int, int]:
    """File line of each wanted data row (0 = the first row after the header).

    Reads the whole file, and returns nothing unless its count of data rows agrees with
    the table reader's ``n_rows`` (when given), so that a line number is never a guess.
    """
    found: dict[int, int] = {}
    row = -1  # the header is not a data row
    try:
        for line, _ in _csv_records(source, encoding):
            if row in rows:
                found[row] = line
            row += 1
    except (csv.Error, OSError, LookupError, UnicodeError, ValueError):
        return {}
    return found if n_rows is None or row == n_rows else {}


def _first_ragged_line(source: Path | bytes, encoding: str) -> tuple[int, int, int] | None:
    """``(line, fields, header fields)`` of the first record whose width differs."""
    try:
        records = _csv_records(source, encoding)
        _, header = next(records, (0, []))
        for line, fields in records:
            if len(fields) != len(header):
                return line, len(fields), len(header)
    except (csv.Error, OSError, LookupError, UnicodeError, ValueError):
        return None
    return None


# --- reading -------------------------------------------------------------------------


def _read_table(file: Path, *, encoding: str, label: str) -> tuple[pd.DataFrame, _RowNames]:
    if not file.exists():
        raise DataError(f"data file {file} does not exist")
    if file.is_dir():
        raise DataError(f"data file {file} is a directory, expected a CSV or Parquet file")
    kind = not_regular(file)
    if kind is not None:
        raise DataError(not_a_data_file(file, kind))
    try:
        with file.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"data file {file} cannot be read: {exc.strerror or exc}") from exc
    if not head:
        raise DataError(f"data file {file} is empty: expected a header line and rows")
    check_name_matches_content(file, head)
    if head.startswith(_PARQUET_MAGIC):
        return _read_parquet(file), _RowNames(kind="file")
    check_text_content(file, head, encoding, inside="")
    if head.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(file, "rb") as fh:
                data = fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"data file {file} looks gzip-compressed but cannot be decompressed: {exc}"
            ) from exc
        if not data:
            raise DataError(f"data file {file} is empty once decompressed")
        if data.startswith(_PARQUET_MAGIC):
            raise DataError(
                f"data file {file} is a gzip-compressed Parquet file, which is not read: "
                f"decompress it (gunzip); Parquet compresses its own content"
            )
        check_text_content(file, data[:_SNIFF_BYTES], encoding, inside=" once decompressed")
        df = _read_csv(io.BytesIO(data), file, encoding=encoding, lines_of=data, label=label)
        return df, _RowNames(kind="csv", source=data, encoding=encoding, n_rows=len(df))
    df = _read_csv(file, file, encoding=encoding, lines_of=file, label=label)
    return df, _RowNames(kind="csv", source=file, encoding=encoding, n_rows=len(df))


def not_a_data_file(file: Path, kind: str) -> str:
    """The message for a data path that names a device, pipe or socket (``kind``).

    Such a path is refused before it is read: ``/dev/urandom`` never ends, and a pipe
    cannot be read twice (once to tell the format, once for the table).
    """
    return (
        f"data file {file} is {kind}, not a regular file: expected a CSV (plain or gzip) "
        f"or Parquet file; save a stream to a file first"
    )


def check_text_content(file: Path, head: bytes, encoding: str, *, inside: str) -> None:
    """Refuse content that is not CSV text in the given encoding.

    Args:
        file: The file's path, for the message.
        head: The first bytes of its (decompressed) content.
        encoding: The encoding it will be read with.
        inside: Where ``head`` came from, for the message: ``""`` or ``" once decompressed"``.

    Raises:
        DataError: A zip archive, or UTF-16 text read as another encoding.
    """
    if head.startswith(b"PK\x03\x04"):
        raise DataError(
            f"data file {file} is a zip archive{inside}, which is not read: unzip it, or "
            f"compress the CSV with gzip (file.csv.gz is read as it is)"
        )
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and not encoding.lower().startswith("utf-16"):
        raise DataError(
            f"data file {file} is UTF-16 text{inside} (it starts with a UTF-16 byte order "
            f"mark); pass encoding='utf-16' (--encoding utf-16) or convert the file to UTF-8"
        )


def separator_hint(columns: Sequence[str]) -> str:
    """Advice when the header was read as one column holding ``;``/tab-separated names.

    Returns:
        The advice, or ``""`` when ``columns`` do not look like that.
    """
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")):
        # One column whose name holds the separator: a label and a single feature.
        one = len(columns) == 1 and sep in columns[0]
        if one or (len(columns) <= 2 and any(c.count(sep) >= 2 for c in columns)):
            return (
                f"The file seems to separate its fields with {name}; appsleuth reads "
                f"comma-separated files: convert it (e.g. pandas.read_csv(path, "
                f"sep={sep!r}).to_csv(new_path, index=False))"
            )
    return ""


def check_name_matches_content(file: Path, head: bytes) -> None:
    """A name that promises Parquet or gzip must be kept by the content.

    Content that is Parquet or gzip is read as such whatever the name (the signatures
    are unambiguous); but a file named ``.parquet`` or ``.gz`` whose content is not
    would otherwise be read as CSV and fail in confusing ways.

    Args:
        file: The file's path (only its name is used).
        head: Its first bytes (256 give the best message; 4 are enough to decide).

    Raises:
        DataError: ``x.parquet is not a Parquet file (...)``, or ``x.csv.gz is not
            gzip-compressed (...)``, saying what the content looks like.
    """
    suffix = file.suffix.lower()
    if suffix in _PARQUET_SUFFIXES and not head.startswith(_PARQUET_MAGIC):
        raise DataError(
            f"data file {file} is not a Parquet file ({_content_of(head)}, while a Parquet "
            f"file starts with the bytes 'PAR1'); write it again as Parquet, or give it "
            f"the name of its content (for example {file.stem}.csv for a CSV table)"
        )
    if suffix in _GZIP_SUFFIXES and not head.startswith(_GZIP_MAGIC):
        raise DataError(
            f"data file {file} is not gzip-compressed ({_content_of(head)}, while a gzip "
            f"file starts with the bytes 1f 8b); compress it again, or give it the name "
            f"of its content (for example {file.stem} for a plain CSV table)"
        )


def _content_of(head: bytes) -> str:
    """A few words on what the first bytes of a file are."""
    if head.startswith(_PARQUET_MAGIC):
        return "its content is Parquet"
    if head.startswith(_GZIP_MAGIC):
        return "its content is gzip-compressed"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed bytes is still text.
        text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else ""
    first = next((line for line in text.lstrip("\ufeff").splitlines() if line.strip()), "")
    if first and first.isprintable():
        shown = first if len(first) <= 40 else first[:40] + "..."
        return f"it is text starting with {shown!r}"
    return f"it starts with the bytes {head[:8].hex(' ')}"


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        table = pa_parquet.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"data file {file} starts like Parquet but cannot be read: {exc}") from exc
    df = table.to_pandas()
    if len(df.columns) == 0:
        raise DataError(f"data file {file} has no columns")
    return df


def _read_csv(
    source: Path | io.BytesIO, file: Path, *, encoding: str, lines_of: Path | bytes, label: str
) -> pd.DataFrame:
    read_options = pa_csv.ReadOptions(encoding=encoding)
    # Labels are names, read as written: "01", "1" and "1.0" are three classes, never one
    # number renamed "1.0" by the other rows.
    convert_options = pa_csv.ConvertOptions(
        null_values=_NULL_STRINGS, strings_can_be_null=True, column_types={label: pa.string()}
    )
    try:
        table = _arrow_read(source, read_options, convert_options)
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "conversion error" not in message:
            raise DataError(_csv_problem(file, message, lines_of, encoding)) from exc
        undecodable = re.search(r"column #(\d+): CSV conversion error to string: invalid", message)
        if undecodable:
            names = _header_names(source, read_options, file, encoding)
            column = int(undecodable.group(1))
            raise DataError(
                _not_text(file, names[column] if column < len(names) else column, encoding)
            ) from exc
        # Type inference looks at the start of the file only; a column that turns from
        # numbers into text further down is re-read as text and diagnosed below.
        names = _header_names(source, read_options, file, encoding)
        convert_options = pa_csv.ConvertOptions(
            null_values=_NULL_STRINGS,
            strings_can_be_null=True,
            column_types={name: pa.string() for name in names},
        )
        try:
            table = _arrow_read(source, read_options, convert_options)
        except pa.ArrowException as exc2:
            raise DataError(_csv_problem(file, str(exc2), lines_of, encoding)) from exc2
    except (pa.ArrowException, LookupError, UnicodeError) as exc:
        raise DataError(_csv_problem(file, str(exc), lines_of, encoding)) from exc
    else:
        suspects = _integer_columns(table, label)
        if suspects and _mentions_hex(lines_of):
            table = _hex_as_text(table, suspects, source, read_options, file, lines_of, encoding)

    try:
        names = [field.name for field in table.schema]
    except UnicodeDecodeError as exc:
        raise DataError(_header_not_text(file, encoding)) from exc
    del names
    for field in table.schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            raise DataError(_not_text(file, field.name, encoding))
    if table.num_columns == 0:
        raise DataError(f"data file {file} has no columns")
    check_unique_names([str(n) for n in table.column_names], f"data file {file}")
    df = table.to_pandas()
    df = _text_columns_to_numbers(df, keep=label)
    return _use_index_column(df)


def _not_text(file: Path, column: Any, encoding: str) -> str:
    return (
        f"data file {file}: column {column!r} is not valid {encoding} text; pass the file's "
        f"encoding (for example encoding='latin-1' or --encoding latin-1) or convert the "
        f"file to UTF-8"
    )


def _integer_columns(table: pa.Table, label: str) -> list[str]:
    try:
        names = table.column_names
    except UnicodeDecodeError:
        return []  # a header not in the encoding: refused below, naming it
    types = table.schema.types
    return [n for n, t in zip(names, types, strict=True) if pa.types.is_integer(t) and n != label]


# Text such as "0x1A": searched in the file's bytes, then in the columns read as text.
_HEX_PATTERN = "0[xX][0-9a-fA-F]"
_HEX = re.compile(_HEX_PATTERN.encode())


def _hex_as_text(
    table: pa.Table,
    suspects: list[str],
    source: Path | io.BytesIO,
    read_options: pa_csv.ReadOptions,
    file: Path,
    lines_of: Path | bytes,
    encoding: str,
) -> pa.Table:
    """``table`` with the integer columns that hold hexadecimal text (``0x1A``) as text.

    The reader's integer inference takes "0x1A" for 26; as text, such a value is named as
    no number below, as prediction's reader names it. Only the integer columns are read
    again, and only those holding such text change: "0x" elsewhere in the file (in a text
    column) left every integer column to be parsed again from text, 4x the load's time.
    """
    names = table.column_names
    if len(set(names)) < len(names):
        return table  # refused below, naming the repeated names (none can be picked out)
    convert_options = pa_csv.ConvertOptions(
        null_values=_NULL_STRINGS,
        strings_can_be_null=True,
        column_types=dict.fromkeys(suspects, pa.string()),
        include_columns=suspects,
    )
    try:
        text = _arrow_read(source, read_options, convert_options)
    except pa.ArrowException as exc:
        raise DataError(_csv_problem(file, str(exc), lines_of, encoding)) from exc
    for name in suspects:
        column = text.column(name)
        if pc.any(pc.match_substring_regex(column, _HEX_PATTERN)).as_py():
            table = table.set_column(names.index(name), name, column)
    return table


def _mentions_hex(lines_of: Path | bytes) -> bool:
    """Whether the file holds text such as ``0x1A`` anywhere (a cheap byte scan)."""
    if isinstance(lines_of, bytes):
        return _HEX.search(lines_of) is not None
    tail = b""
    with lines_of.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            # Two bytes of the previous chunk: "0x" may be cut between chunks.
            if _HEX.search(tail + chunk):
                return True
            tail = chunk[-2:]
    return False


def _arrow_read(
    source: Path | io.BytesIO,
    read_options: pa_csv.ReadOptions,
    convert_options: pa_csv.ConvertOptions,
) -> pa.Table:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return pa_csv.read_csv(source, read_options=read_options, convert_options=convert_options)


def _header_names(
    source: Path | io.BytesIO, read_options: pa_csv.ReadOptions, file: Path, encoding: str
) -> list[str]:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    reader = pa_csv.open_csv(source, read_options=read_options)
    try:
        return list(reader.schema.names)
    except UnicodeDecodeError as exc:
        # Read while handling the reader's error about a value: the header is no better.
        raise DataError(_header_not_text(file, encoding)) from exc


def _header_not_text(file: Path, encoding: str) -> str:
    return (
        f"data file {file}: the header line is not valid {encoding} text; "
        f"pass the file's encoding or convert the file to UTF-8"
    )


def no_header_problem(file: Path, lines_of: Path | bytes) -> str:
    """Why the CSV reader found no header: an empty file, binary content, or no line end.

    The reader says "empty" for all three; a file of 400 bytes called empty sends the
    user looking in the wrong place.

    Args:
        file: The data file, as the message names it.
        lines_of: The file to look into, or its (decompressed) bytes.
    """
    if isinstance(lines_of, bytes):
        head = lines_of[:_SNIFF_BYTES]
    else:
        with lines_of.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    if not head.strip():
        return f"data file {file} is empty: expected a header line and rows"
    if b"\x00" in head:
        return (
            f"data file {file} holds binary data, not a CSV table (it has NUL bytes); "
            f"expected a CSV (plain or gzip) or Parquet file"
        )
    return (
        f"data file {file} has no complete header line (no line end after "
        f"{head.strip()[:40].decode('utf-8', 'replace')!r}); expected a header line and rows"
    )


def _csv_problem(file: Path, message: str, lines_of: Path | bytes, encoding: str) -> str:
    message = message.strip().splitlines()[0] if message.strip() else "unknown problem"
    if "Empty CSV file" in message:
        return no_header_problem(file, lines_of)
    if "Expected" in message and "columns" in message:
        ragged = _first_ragged_line(lines_of, encoding)
        where = (
            f"line {ragged[0]} has {ragged[1]} field(s), the header {ragged[2]}"
            if ragged is not None
            else message.removeprefix("CSV parse error: ")
        )
        return (
            f"data file {file} is not a regular table: a row has a different number of "
            f"fields than the header ({where})"
        )
    if "codec" in message or "decode" in message.lower() or "encoding" in message.lower():
        return f"data file {file} cannot be decoded: {message}"
    return f"data file {file} cannot be read as CSV: {message}"


def _text_columns_to_numbers(df: pd.DataFrame, *, keep: str) -> pd.DataFrame:
    """Turn text columns that hold only numbers into numbers (quoted numbers, re-reads),
    except the column ``keep`` (the label)."""
    for name in df.columns:
        col = df[name]
        if name == keep or not _is_text(col):
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
    # An unnamed first column is the row index pandas wrote (read_csv(index_col=0), as the
    # teaching material reads the file), whatever its values: repeated, blank or written
    # as floats, it is still a row number, and as a feature it would leak time order.
    first = df.columns[0]
    if first == "" or str(first).startswith("Unnamed: "):
        df = df.set_index(first)
        df.index.name = None
    return df


# --- recognising and validating ------------------------------------------------------


def check_unique_names(columns: list[str], where: str) -> None:
    """Raise DataError naming the column names that occur more than once."""
    twice = repeated(columns)
    if twice:
        raise DataError(
            f"{where} has repeated column names {_list(twice)}; every column "
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
    check_unique_names(columns, where)
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
            f"{separator_hint(columns) or 'Name the label column with label=... (CLI: --label)'}"
        )
    id_columns = tuple(c for c in ID_COLUMNS if c in columns)
    categorical = as_name_list("categorical", categorical, allow_empty=True)
    if features is not None:
        features = as_name_list("features", features, unique=True)
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
                f"columns found: {_list(columns)}. {separator_hint(columns)}".rstrip(". ")
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
        columns=tuple(columns),
    )


def _usable_as_feature(col: pd.Series, name: str, categorical: Sequence[str]) -> bool:
    if _not_a_number_kind(col) is not None:
        return False  # dates, durations, complex numbers: not numeric features
    if name in categorical or not _is_text(col):
        return True
    present = col.dropna()
    if present.empty:
        return True  # all missing: kept so the quality report can say so
    if name in _KNOWN_FEATURES:
        return name not in _RAW_TEXT_COLUMNS
    _, bad = parse_numbers(present, booleans=True)
    return bool(1 - len(bad) / len(present) >= _NUMERIC_SHARE)


def _finish(
    df: pd.DataFrame,
    info: FrameInfo,
    *,
    where: str,
    require_label: bool,
    rows: _RowNames,
    earlier: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    check_feature_dtypes(df, info.numeric_features, where)
    for name in info.numeric_features:
        df[name] = _as_numeric(df[name], name, where, rows)
    nonfinite = {k: v for k, v in (earlier or {}).items() if k in info.numeric_features}
    nonfinite.update(_nonfinite_to_missing(df, info.numeric_features, rows))
    for name in info.categorical:
        col = df[name]
        if not _is_text(col):  # e.g. numeric codes: categories are compared as text
            df[name] = category_text(col)
    if info.label is not None:
        text = label_text(df[info.label])
        if text.isna().any():
            row = int(np.flatnonzero(text.isna().to_numpy())[0])
            raise DataError(
                f"{where}: label column {info.label!r} is missing a value (empty or "
                f"blank) in {rows.name(row)}; every row needs a label"
            )
        df[info.label] = text.astype(str)
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
    recorded = info.to_dict()
    if nonfinite:
        recorded["nonfinite"] = nonfinite
    df.attrs["appsleuth"] = as_record(recorded)
    return df


def category_text(col: pd.Series) -> pd.Series:
    """Category values as text, a number written the same whatever its column's dtype.

    A missing value turns a column of whole numbers into floats: without this, code 1
    would be the category ``"1.0"`` in a file with a gap and ``"1"`` in one without,
    and a model trained on one would not know the other's rows.

    Args:
        col: The column (text columns are returned as they are).

    Returns:
        The values as text; missing values stay missing.
    """
    if _is_text(col):
        return col
    if pd.api.types.is_float_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        present = values[~np.isnan(values)]
        if np.all(np.isfinite(present) & (present == np.round(present))) and (
            np.abs(present).max(initial=0) < 2**53
        ):
            col = col.astype("Int64")
    return col.astype(str).where(col.notna())


def label_text(labels: pd.Series | Sequence[Any]) -> pd.Series:
    """Label values as text: ``" Facebook"`` is Facebook (a space after the comma), and a
    missing or blank label is missing (NaN)."""
    values = pd.Series(labels)
    text = values.astype(str).str.strip()
    return text.where(values.notna() & (text != ""))


def label_number(label: str) -> Decimal | None:
    """The number a label spells (``"1.0"`` and ``"01"`` spell 1), or None for a name.

    Only plain decimal numbers count; the value is exact (no float rounding), so two
    labels are the same number only when they truly are.
    """
    return Decimal(label) if _DECIMAL_LABEL.fullmatch(label) else None


def same_number_labels(labels: Iterable[str]) -> list[list[str]]:
    """The groups of distinct labels that spell one number (``["1", "1.0"]``).

    Args:
        labels: Distinct label texts.

    Returns:
        Each group shortest spelling first, in the order their numbers first occur.
    """
    spellings: dict[Decimal, list[str]] = {}
    for value in labels:
        number = label_number(value)
        if number is not None:
            spellings.setdefault(number, []).append(value)
    return [sorted(g, key=lambda v: (len(v), v)) for g in spellings.values() if len(g) > 1]


def check_label_spellings(labels: pd.Series, column: str, where: str) -> None:
    """Refuse a label column that writes one number in several ways (``1`` and ``1.0``).

    Each spelling would become a class of its own (files joined where one wrote its
    labels as floats), and the model would be taught to tell a class from itself.

    Args:
        labels: The label values (missing and blank values are ignored).
        column: The label column's name, for the message.
        where: How the message names the table, e.g. ``file x.csv``.

    Raises:
        DataError: Two labels are the same number; names both spellings and their counts.
    """
    # As the classes are made (label_text): " 1.0", after a comma and a space, is "1.0".
    counts = label_text(labels).dropna().value_counts(sort=False)
    same = same_number_labels(counts.index)
    if same:
        shown = "; ".join(
            " and ".join(f"{v!r} ({_rows(int(counts[v]))})" for v in group) for group in same[:5]
        )
        raise DataError(
            f"{where}: label column {column!r} writes the same number in different ways: "
            f"{shown}; each spelling would be a class of its own. Write each label one way "
            f"(for example all as {same[0][0]!r}) in the file"
        )


def _rows(n: int) -> str:
    return f"{n:,} row{'s' * (n != 1)}"


def _not_a_number_kind(col: pd.Series) -> str | None:
    """What a column holds when its values look numeric to NumPy but are no measurement.

    Dates and durations would become nanosecond counts, complex numbers would lose their
    imaginary part: neither is a numeric feature.
    """
    dtype = col.dtype
    if isinstance(dtype, pd.PeriodDtype):
        return "periods of time"
    if isinstance(dtype, pd.IntervalDtype):
        return "intervals"
    kind = getattr(dtype, "kind", "O")
    return {"M": "dates/times", "m": "durations", "c": "complex numbers"}.get(kind)


def check_feature_dtypes(df: pd.DataFrame, features: Sequence[str], where: str) -> None:
    """Refuse date, duration and complex feature columns, naming the column and its dtype.

    Args:
        df: The table.
        features: Its numeric feature columns (absent ones are skipped).
        where: How messages name the table, e.g. ``file x.csv``.

    Raises:
        DataError: A feature column holds dates, durations, periods, intervals or
            complex numbers.
    """
    for name in features:
        if name not in df.columns:
            continue
        what = _not_a_number_kind(df[name])
        if what is not None:
            raise DataError(
                f"{where}: feature column {name!r} has dtype {df[name].dtype} ({what}), but "
                f"a numeric column is expected; convert it to numbers (for example "
                f"seconds) or leave it out of the features"
            )


def parse_numbers(col: pd.Series, *, booleans: bool = False) -> tuple[pd.Series, np.ndarray]:
    """``col`` read as numbers, and the positions of its present values that are none.

    Missing values stay missing and are not counted; every reader that must name the
    first value that is not a number (loading, prediction, published results) uses this.

    Args:
        col: The values.
        booleans: Read the words of a true/false value (``True``, ``false``, ...) as 1
            and 0, as the CSV reader reads a column of them. Feature readers pass True,
            so that such a value means the same in every path that reads a feature.
    """
    if booleans and _is_text(col):
        truth, falsity = col.isin(_TRUE_WORDS), col.isin(_FALSE_WORDS)
        if truth.any() or falsity.any():
            col = col.astype(object).mask(truth, 1).mask(falsity, 0)
    converted = pd.to_numeric(col, errors="coerce")
    return converted, np.flatnonzero((converted.isna() & col.notna()).to_numpy())


def numeric_columns_as_numbers(
    df: pd.DataFrame, columns: Sequence[str], *, where: str
) -> pd.DataFrame:
    """``df`` with each of ``columns`` held as numbers, as the loader reads them.

    A table built by hand can hold numbers as text (``"16086"``, ``"nan"``): they are
    read as numbers, ``"nan"`` and empty text as missing, so that such rows are counted
    as incomplete instead of reaching a model. ``df`` is returned as it is when every
    column is numeric already, else a copy.

    Raises:
        DataError: A value is text that is not a number; names the column and the row.
    """
    # Text and nullable numbers only: dates, durations and the like are refused by
    # check_feature_dtypes.
    todo = [
        c
        for c in columns
        if c in df.columns
        and (
            pd.api.types.is_object_dtype(df[c])
            or pd.api.types.is_string_dtype(df[c])
            or _is_nullable_number(df[c])
        )
    ]
    if not todo:
        return df
    rows = _RowNames(kind="table", index=df.index)
    return df.assign(**{c: _as_numeric(df[c], c, where, rows) for c in todo})


def _is_nullable_number(col: pd.Series) -> bool:
    """Whether ``col`` holds numbers or booleans of a pandas extension dtype (``Int64``,
    ``Float64``, ``boolean``, Arrow numbers), whose missing value is ``pd.NA``."""
    return isinstance(col.dtype, pd.api.extensions.ExtensionDtype) and (
        pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
    )


def _as_numeric(col: pd.Series, name: str, where: str, rows: _RowNames) -> pd.Series:
    if _is_nullable_number(col):
        # Nullable numbers (Parquet's Int64, Float64, boolean): a missing value as NaN,
        # as in every other column; pd.NA would break casts and median fills later.
        numpy_dtype = getattr(col.dtype, "numpy_dtype", np.dtype(np.float64))
        col = col.astype(np.float64 if col.isna().any() else numpy_dtype)
    if pd.api.types.is_bool_dtype(col):
        return col.astype(np.int64)
    if pd.api.types.is_numeric_dtype(col):
        return col
    # The words the CSV reader takes for a missing value mean the same in a table.
    col = col.mask(col.isin(_NULL_STRINGS))
    if col.isna().all():
        return pd.Series(np.nan, index=col.index, dtype=np.float64, name=col.name)
    converted, bad = parse_numbers(col, booleans=True)
    if len(bad):
        row = int(bad[0])
        value = col.iloc[row]
        hint = ""
        plain = value.replace(",", "") if isinstance(value, str) else None
        if plain and pd.notna(pd.to_numeric(plain, errors="coerce")):
            hint = f" (a thousands separator is not read: write {plain})"
        elif isinstance(value, str) and value.strip() == str(name):
            # `cat a.csv b.csv > both.csv` keeps b's header as a row of the table.
            hint = " (the header line again: were files joined with their headers? keep one)"
        raise DataError(
            f"{where}: feature column {name!r} must be numeric, but {rows.name(row)} "
            f"holds {value!r}{hint} ({len(bad)} such value(s) in all); "
            f"fix the value, or leave the column out of the features"
        )
    return converted


def _nonfinite_to_missing(
    df: pd.DataFrame, numeric: Sequence[str], rows: _RowNames
) -> dict[str, dict[str, Any]]:
    """Turn infinite values of numeric features into missing values; say where they were.

    An infinite reading is not a measurement: treated as missing, its row is counted by
    the quality report and dropped (or imputed) by cleaning like an incomplete row.
    """
    found: dict[str, dict[str, Any]] = {}
    for name in numeric:
        col = df[name]
        infinite = infinite_mask(col)
        if not infinite.any():
            continue
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        positions = np.flatnonzero(infinite)
        shown = positions[:_ROWS_SHOWN]
        found[name] = {
            "count": int(infinite.sum()),
            "positive": int((values[infinite] > 0).sum()),
            "rows": [int(r) for r in shown],
            "where": rows.names(shown),
        }
        df[name] = col.where(~infinite)
    return found


def infinite_mask(col: pd.Series) -> np.ndarray:
    """Boolean mask of the infinite values of a column (none for non-float columns).

    Cleaning, the quality report and the preprocessor use it to treat infinite values
    as missing in tables that did not come through the loader.
    """
    if not pd.api.types.is_float_dtype(col):
        return np.zeros(len(col), dtype=bool)  # integers, booleans, text: never infinite
    return np.isinf(col.to_numpy(dtype=np.float64, na_value=np.nan))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _list(names: Sequence[str], limit: int = 25) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}{more}]"
