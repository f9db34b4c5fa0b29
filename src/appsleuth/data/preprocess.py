"""The fitted preprocessing: feature order, scaling, categories and class names.

A :class:`Preprocessor` is fitted on the training rows only and then applied, unchanged,
to validation, test and new data. It is saved as JSON (never pickle) next to the model
so that prediction needs nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from appsleuth._atomic import atomic_output
from appsleuth._files import read_record_text
from appsleuth.data.load import (
    category_text,
    frame_info,
    infinite_mask,
    label_number,
    label_text,
    numeric_columns_as_numbers,
)
from appsleuth.errors import DataError, SpecError, warn

__all__ = ["RETRAIN_HINT", "Preprocessor", "Scaling"]

# A table of other columns (the 2-app teaching file given to an 18-app model) needs a
# model trained on what it has: the error says how to get one (prediction's too).
RETRAIN_HINT = (
    "To classify it, use a run trained on feature columns the data has (train --features "
    "A,B,...; features: in a spec)"
)

Scaling = Literal["standard", "minmax", "none"]
_SCALINGS = ("standard", "minmax", "none")
_FORMAT = "appsleuth.preprocessor"
_FORMAT_VERSION = 1


class Preprocessor:
    """Turns a table into the model's input matrix and labels into class indices.

    Args:
        scaling: ``standard`` (default: subtract the training mean, divide by the
            training standard deviation), ``minmax`` (to [0, 1] on the training range)
            or ``none``. Numeric features only: one-hot category columns stay 0/1. The
            teaching material's StandardScaler differs on purpose in two ways: it is fitted
            on all rows, validation included (a leak), and scales the one-hot columns too.
        positive_class: For two classes, the class predicted as 1 (e.g. ``Moriarty``).
            Defaults to the second class in sorted order.

    Attributes (after :meth:`fit`):
        numeric_features: Numeric input columns, in order.
        categories: For each categorical column, its categories (sorted).
        classes: Class names; index i is class i of the model's output.
        label: The label column name.
        rest_class: For a one-vs-rest task, the class every app other than
            ``positive_class`` was relabelled to (``other``); None otherwise. Set by
            :func:`~appsleuth.data.prepare.prepare_data`.
        fill_values: For a model trained with ``missing="impute"``, the value that
            fills each input column's missing (or infinite) values: the training rows'
            median, or most frequent category. Empty otherwise: rows with a missing
            value are then incomplete (prediction skips and counts them). Set by
            :func:`~appsleuth.data.prepare.prepare_data` via :meth:`set_fill_values`.
    """

    def __init__(self, *, scaling: Scaling = "standard", positive_class: str | None = None):
        if scaling not in _SCALINGS:
            raise SpecError(
                f"scaling must be one of {', '.join(_SCALINGS)}; received scaling={scaling!r}"
            )
        self.scaling: Scaling = scaling
        self.positive_class = positive_class
        self.rest_class: str | None = None
        self.numeric_features: list[str] = []
        self.categories: dict[str, list[str]] = {}
        self.classes: list[str] = []
        self.label: str | None = None
        self.fill_values: dict[str, float | str] = {}
        self._offset = np.zeros(0)
        self._scale = np.ones(0)

    # --- fitting ---------------------------------------------------------------------

    def fit(self, train: pd.DataFrame) -> Preprocessor:
        """Learn everything from the training rows.

        Args:
            train: Training rows of a cleaned table (no missing feature values).

        Returns:
            self.

        Raises:
            DataError: Missing values remain, or the label has fewer than two classes.
        """
        info = frame_info(train)
        if info.label is None or info.label not in train.columns:
            raise DataError(f"{info.dataset}: the preprocessor needs the label column")
        self.label = info.label
        self.numeric_features = list(info.numeric_features)
        train = self._numbers(train)
        self.categories = {
            c: sorted(str(v) for v in category_text(train[c]).dropna().unique())
            for c in info.categorical
        }
        self._check_complete(train, what="training rows")
        classes = sorted(str(v) for v in train[self.label].unique())
        if not classes:
            raise DataError(
                f"{info.dataset}: there are no training rows; a classifier needs rows of "
                f"at least two classes"
            )
        if len(classes) < 2:
            raise DataError(
                f"{info.dataset}: the training rows ({len(train)}) hold a single class, "
                f"{classes[0]!r}; a classifier needs at least two classes in training"
            )
        x = train[self.numeric_features].to_numpy(dtype=np.float64)
        if self.scaling == "standard":
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
                self._offset = x.mean(axis=0)
                std = x.std(axis=0)
            self._scale = np.where(std > 0, std, 1.0)
        elif self.scaling == "minmax":
            lo, hi = x.min(axis=0), x.max(axis=0)
            self._offset = lo
            with np.errstate(over="ignore"):
                self._scale = np.where(hi > lo, hi - lo, 1.0)
        else:
            self._offset = np.zeros(x.shape[1])
            self._scale = np.ones(x.shape[1])
        overflow = [
            c
            for c, o, s in zip(self.numeric_features, self._offset, self._scale, strict=True)
            if not (np.isfinite(o) and np.isfinite(s))
        ]
        if overflow:
            peak = {c: float(np.abs(train[c].to_numpy(dtype=np.float64)).max()) for c in overflow}
            raise DataError(
                f"{info.dataset}: feature(s) {overflow} hold values too large to scale "
                f"(largest magnitude {', '.join(f'{c} {v:.3g}' for c, v in peak.items())}); "
                f"their mean or spread overflows: remove those rows or rescale the column"
            )
        too_large = self.out_of_range_rows(train)
        if too_large:
            # Finite, so cleaning keeps them; refused here, where the table is named,
            # rather than as "rows have too large values" when the arrays are made.
            peak = {c: float(np.abs(train[c].to_numpy(dtype=np.float64)).max()) for c in too_large}
            advice = " or use scaling='standard'" if self.scaling == "none" else ""
            raise DataError(
                f"{info.dataset}: feature(s) {list(too_large)} hold values beyond the model's "
                f"float32 inputs (up to {np.finfo(np.float32).max:.3g}) with "
                f"scaling={self.scaling!r}: largest magnitude "
                f"{', '.join(f'{c} {v:.3g}' for c, v in peak.items())} in "
                f"{sum(int(m.sum()) for m in too_large.values())} value(s); remove those rows "
                f"or rescale the column (other units){advice}"
            )
        if self.positive_class is not None:
            if self.positive_class not in classes:
                raise DataError(
                    f"positive_class {self.positive_class!r} is not among the "
                    f"training classes {classes}"
                )
            if len(classes) == 2:
                classes = [c for c in classes if c != self.positive_class]
                classes.append(self.positive_class)
        self.classes = classes
        return self

    def set_fill_values(self, fills: dict[str, Any]) -> Preprocessor:
        """Impute missing input values with ``fills`` from now on (after :meth:`fit`).

        Args:
            fills: ``{input column: value}`` from the training rows; numbers for
                numeric columns, a category for categorical ones. Empty: no imputation.

        Returns:
            self.

        Raises:
            DataError: A column is not an input column, a number is not finite, or a
                category was not seen in training.
        """
        self._require_fitted()
        self.fill_values = self._checked_fills(fills, source="set_fill_values")
        return self

    def _checked_fills(self, fills: Any, *, source: str) -> dict[str, float | str]:
        if not isinstance(fills, dict):
            raise DataError(
                f"{source}: fill_values must map input columns to values; found {fills!r}"
            )
        unknown = [str(c) for c in fills if c not in self.input_columns]
        if unknown:
            raise DataError(
                f"{source}: fill_values name column(s) {unknown} that are not input columns "
                f"{self.input_columns}"
            )
        out: dict[str, float | str] = {}
        for col, value in fills.items():
            if col in self.categories:
                text = str(value)
                if text not in self.categories[col]:
                    raise DataError(
                        f"{source}: the fill value {value!r} of {col!r} is not one of its "
                        f"categories {self.categories[col]}"
                    )
                out[col] = text
            else:
                if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                    raise DataError(
                        f"{source}: the fill value of {col!r} must be a number; found {value!r}"
                    )
                if not np.isfinite(value):
                    raise DataError(
                        f"{source}: the fill value of {col!r} must be finite; found {value!r}"
                    )
                out[col] = float(value)
        return out

    # --- applying --------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """True once :meth:`fit` (or :meth:`from_dict`) has run."""
        return bool(self.classes)

    @property
    def task(self) -> Literal["binary", "multiclass"]:
        """``binary`` for two classes, else ``multiclass``."""
        return "binary" if len(self.classes) == 2 else "multiclass"

    @property
    def input_columns(self) -> list[str]:
        """Required input columns: numeric then categorical features."""
        return [*self.numeric_features, *self.categories]

    @property
    def output_columns(self) -> list[str]:
        """Names of the matrix columns :meth:`transform` returns."""
        onehot = [f"{c}_{v}" for c, values in self.categories.items() for v in values]
        return [*self.numeric_features, *onehot]

    @property
    def n_outputs(self) -> int:
        """Width of the matrix :meth:`transform` returns."""
        return len(self.output_columns)

    def missing_rows(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean mask of rows with a missing (or infinite) value in an input column."""
        self._require_fitted()
        self._check_columns(df)
        return self._incomplete(self._filled(self._numbers(df)))

    def filled_rows(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean mask of rows with a missing (or infinite) value that a fill value replaces.

        All False for a model without :attr:`fill_values`. Prediction and evaluation
        count these rows, so that a filled value is never passed off as a measured one.
        """
        self._require_fitted()
        self._check_columns(df)
        filled = np.zeros(len(df), dtype=bool)
        if not self.fill_values:
            return filled
        df = self._numbers(df)
        for col in self.fill_values:
            filled |= df[col].isna().to_numpy()
            if col in self.numeric_features:
                filled |= infinite_mask(df[col])
        return filled

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """The model's input matrix (float32) for ``df``.

        Unknown category values become all-zero columns, with a warning that names them.
        Missing and infinite values take the :attr:`fill_values`, if any.

        Raises:
            DataError: A required column is missing, or a value is missing or infinite
                (without a fill value).
        """
        self._require_fitted()
        self._check_columns(df)
        df = self._filled(self._numbers(df))
        self._check_complete(df, what="rows")
        return self._encode(df, np.zeros(len(df), dtype=bool))

    def transform_complete(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The input matrix of the rows with every input value, and the mask of the rest.

        Prediction uses it: incomplete rows are left out (and reported by the caller)
        without copying the table to drop them first. A row with an infinite numeric
        value is incomplete too (the loader treats infinite values as missing), so it
        never reaches the model. With :attr:`fill_values` (a model trained with
        ``missing="impute"``), missing and infinite values are filled instead, as the
        training rows were, and only values too large for the model leave a row out.

        Returns:
            ``(x, missing)``: float32 matrix of the complete rows, in order, and a boolean
            mask over ``df``'s rows that are left out.

        Raises:
            DataError: A required column is missing.
        """
        self._require_fitted()
        self._check_columns(df)
        df = self._filled(self._numbers(df))
        missing = self._incomplete(df)
        x = self._encode(df, missing)
        return (x[~missing] if missing.any() else x), missing

    def _encode(self, df: pd.DataFrame, ignore: np.ndarray) -> np.ndarray:
        """Scale and one-hot every row; ``ignore`` marks rows whose values do not matter."""
        x = np.array(df[self.numeric_features].to_numpy(dtype=np.float64), order="C", copy=True)
        x -= self._offset  # in place: no temporaries the size of the table
        x /= self._scale
        if ignore.any():
            x[ignore] = 0.0  # left out anyway; their values may not fit float32
        parts = [x.astype(np.float32)]
        for col, values in self.categories.items():
            # Category codes instead of string comparisons: fast on millions of rows.
            column = df[col]
            if not pd.api.types.is_string_dtype(column):
                column = category_text(column).astype(str)
            codes = pd.Index(values).get_indexer(column)  # -1: not seen in training
            unknown = codes < 0
            reported = unknown & ~ignore
            if reported.any():
                seen = sorted(set(df[col].astype(str).to_numpy()[reported].tolist()))
                warn(
                    f"column {col!r} has value(s) {seen} not seen in training "
                    f"({int(reported.sum())} rows); they are encoded as all-zero"
                )
            onehot = np.zeros((len(codes), len(values)), dtype=np.float32)
            known = np.flatnonzero(~unknown)
            onehot[known, codes[known]] = 1.0
            parts.append(onehot)
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def task_labels(self, labels: pd.Series | Sequence[str]) -> pd.Series:
        """Label values as the model's classes name them: text, missing values kept.

        For a one-vs-rest task every app other than the positive one becomes the rest
        class, as it was for training.
        """
        text = label_text(labels).astype(object)
        missing = text.isna()
        text = self._as_class_spelling(text, missing)
        if self.rest_class is not None:
            text = text.where(missing | (text == self.positive_class), self.rest_class)
        return text

    def _as_class_spelling(self, text: pd.Series, missing: pd.Series) -> pd.Series:
        """Labels that are a class's number written another way (``2.0`` for class
        ``2``, as pandas writes a whole-number column that held a gap) as that class."""
        foreign = ~missing & ~text.isin(self.classes)
        if not foreign.any():
            return text
        numbers: dict[Any, str | None] = {}
        for c in self.classes:
            number = label_number(c)
            if number is not None:
                # Two classes of one number (a model from before that was refused): no
                # spelling can say which of them a label means.
                numbers[number] = None if number in numbers else c
        if not any(numbers.values()):
            return text
        aliases = {}
        for value in pd.unique(text[foreign]):
            match = numbers.get(label_number(value))
            if match is not None:
                aliases[value] = match
        return text.replace(aliases) if aliases else text

    def encode_labels(self, labels: pd.Series | Sequence[str]) -> np.ndarray:
        """Class indices (int32) for label values.

        Raises:
            DataError: A label is not one of the fitted classes.
        """
        self._require_fitted()
        values = pd.Series(labels).astype(str)
        lookup = {c: i for i, c in enumerate(self.classes)}
        codes = values.map(lookup)
        if codes.isna().any():
            unknown = sorted(set(values[codes.isna()]), key=str)
            raise DataError(
                f"label value(s) {unknown} are not among the model's classes {self.classes}"
            )
        return codes.to_numpy(dtype=np.int32)

    def decode_labels(self, codes: Sequence[int] | np.ndarray) -> np.ndarray:
        """Class names for class indices.

        Raises:
            DataError: An index is not one of the classes' (0 to the number of classes - 1).
        """
        self._require_fitted()
        codes = np.asarray(codes)
        k = len(self.classes)
        if codes.size and (codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= k):
            raise DataError(
                f"class indices must be whole numbers from 0 to {k - 1}; received "
                f"{codes.ravel()[:5].tolist()}"
            )
        return np.asarray(self.classes, dtype=object)[codes.astype(np.int64)]

    # --- persistence -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :meth:`from_dict` restores it exactly."""
        self._require_fitted()
        return {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "scaling": self.scaling,
            "positive_class": self.positive_class,
            "rest_class": self.rest_class,
            "label": self.label,
            "numeric_features": list(self.numeric_features),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "classes": list(self.classes),
            "offset": [float(v) for v in self._offset],
            "scale": [float(v) for v in self._scale],
            # Only imputing models carry it: files of the others stay as they were.
            **({"fill_values": dict(self.fill_values)} if self.fill_values else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "preprocessor") -> Preprocessor:
        """Rebuild from :meth:`to_dict` output, checking that it is complete and coherent.

        Raises:
            DataError: The dictionary is not a preprocessor of this format, or is damaged.
        """
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise DataError(
                f"{source} is not an appsleuth preprocessor (format field "
                f"{d.get('format') if isinstance(d, dict) else None!r}, expected "
                f"{_FORMAT!r})"
            )
        if d.get("format_version") != _FORMAT_VERSION:
            raise DataError(
                f"{source} has format_version {d.get('format_version')!r}; this "
                f"appsleuth reads version {_FORMAT_VERSION}"
            )
        try:
            p = cls(scaling=d["scaling"], positive_class=d.get("positive_class"))
            p.label = str(d["label"])
            rest = d.get("rest_class")  # absent in files from before one-vs-rest was recorded
            p.rest_class = None if rest is None else str(rest)
            p.numeric_features = [str(c) for c in d["numeric_features"]]
            p.categories = {str(k): _names(vs) for k, vs in d["categories"].items()}
            p.classes = [str(c) for c in d["classes"]]
            p._offset = np.asarray(d["offset"], dtype=np.float64)
            p._scale = np.asarray(d["scale"], dtype=np.float64)
        except (KeyError, TypeError, ValueError, AttributeError, SpecError) as exc:
            raise DataError(f"{source} is damaged: {type(exc).__name__}: {exc}") from exc
        # Absent in files of models trained without imputation, and in files written
        # before the fill values were recorded: those models skip incomplete rows.
        p.fill_values = p._checked_fills(d.get("fill_values", {}), source=f"{source} is damaged")
        n = len(p.numeric_features)
        if (
            p._offset.shape != (n,)
            or p._scale.shape != (n,)
            or len(p.classes) < 2
            or len(set(p.classes)) != len(p.classes)
            or (p.positive_class is not None and p.positive_class not in p.classes)
            or (p.rest_class is not None and p.rest_class not in p.classes)
            or not (np.all(np.isfinite(p._offset)) and np.all(np.isfinite(p._scale)))
            or not np.all(p._scale > 0)
        ):
            raise DataError(
                f"{source} is damaged: its scaling does not match its "
                f"{n} numeric features (finite offsets, finite positive scales), or it has "
                f"fewer than two classes, a class named twice, or a positive or rest class "
                f"that is not one of its classes"
            )
        return p

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON atomically (temporary name, then rename)."""
        path = Path(path)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Preprocessor:
        """Read a file written by :meth:`save`.

        Raises:
            DataError: The file is missing, not JSON, or not a valid preprocessor.
        """
        path = Path(path)
        try:
            d = json.loads(read_record_text(path))
        except FileNotFoundError as exc:
            raise DataError(f"preprocessor file {path} does not exist") from exc
        except (OSError, ValueError, RecursionError) as exc:  # the last: nested too deep
            raise DataError(f"preprocessor file {path} is not readable JSON: {exc}") from exc
        return cls.from_dict(d, source=f"preprocessor file {path}")

    # --- checks ----------------------------------------------------------------------

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise DataError("the preprocessor is not fitted yet: call fit(train) first")

    def _check_columns(self, df: pd.DataFrame) -> None:
        missing = [c for c in self.input_columns if c not in df.columns]
        if missing:
            raise DataError(
                f"the data lacks feature column(s) {missing} that the model was trained on; "
                f"columns found: {[str(c) for c in df.columns]}. {RETRAIN_HINT}"
            )

    def _filled(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with missing and infinite input values replaced by :attr:`fill_values`.

        The table is copied only when it has something to fill.
        """
        if not self.fill_values:
            return df
        fills: dict[str, Any] = {}
        replace_infinite = []
        for col, value in self.fill_values.items():
            infinite = infinite_mask(df[col]) if col in self.numeric_features else None
            has_infinite = infinite is not None and bool(infinite.any())
            if has_infinite:
                replace_infinite.append((col, infinite))
            if has_infinite or df[col].isna().any():
                fills[col] = value
        if not fills:
            return df
        df = df.copy()
        for col, infinite in replace_infinite:
            df[col] = df[col].where(~infinite)
        for col in fills:
            if isinstance(df[col].dtype, pd.CategoricalDtype):
                # A pandas category column (e.g. from Parquet) refuses a value that is
                # not among its own categories: plain values take any fill.
                df[col] = df[col].astype(object)
        return df.fillna(fills)

    def _numbers(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with numbers written as text read as numbers (``"nan"``: missing)."""
        return numeric_columns_as_numbers(df, self.numeric_features, where="the data")

    def _incomplete(self, df: pd.DataFrame) -> np.ndarray:
        """Rows with a missing value in an input column, an infinite numeric value, or one
        too large for the model's float32 inputs once scaled."""
        incomplete = df[self.input_columns].isna().any(axis=1).to_numpy()
        for col in self.numeric_features:
            incomplete = incomplete | infinite_mask(df[col])
        for mask in self.out_of_range_rows(df).values():
            incomplete = incomplete | mask
        return incomplete

    def out_of_range_rows(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per numeric column, the rows whose scaled value overflows float32 (after fit).

        Such finite values cannot reach the model; prediction skips their rows like rows
        with missing values. Only columns with at least one such row are listed.
        """
        if len(self._scale) != len(self.numeric_features) or not self.numeric_features:
            return {}
        df = self._numbers(df)
        limit = np.float64(np.finfo(np.float32).max)
        found = {}
        for col, offset, scale in zip(
            self.numeric_features, self._offset, self._scale, strict=True
        ):
            values = df[col].to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore", over="ignore"):
                # Missing and infinite values are reported as such, not as too large.
                mask = np.isfinite(values) & (np.abs(values - offset) > limit * scale)
            if mask.any():
                found[col] = mask
        return found

    def _check_complete(self, df: pd.DataFrame, *, what: str) -> None:
        gaps = df[self.input_columns].isna().sum()
        gaps = gaps[gaps > 0]
        infinite = {c: int(infinite_mask(df[c]).sum()) for c in self.numeric_features}
        infinite = {c: n for c, n in infinite.items() if n}
        huge = {c: int(m.sum()) for c, m in self.out_of_range_rows(df).items()}
        parts = [
            f"{kind} values in " + ", ".join(f"{c} ({n})" for c, n in counts.items())
            for kind, counts in (
                ("missing", dict(gaps.items())),
                ("infinite", infinite),
                ("too large (beyond float32 once scaled)", huge),
            )
            if counts
        ]
        if parts:
            raise DataError(
                f"{what} have {' and '.join(parts)}; clean the data first "
                f"(drop or impute incomplete rows)"
            )

    def __repr__(self) -> str:
        if not self.is_fitted:
            return f"Preprocessor(scaling={self.scaling!r}, unfitted)"
        return (
            f"Preprocessor(scaling={self.scaling!r}, inputs={self.n_outputs}, "
            f"classes={len(self.classes)})"
        )


def _names(values: Any) -> list[str]:
    """A list of category names from a preprocessor file (a text is not a list of letters)."""
    if not isinstance(values, list):
        raise TypeError(f"categories must be lists of names; found {values!r}")
    return [str(v) for v in values]
