"""Split a table into training, validation and (optionally) test rows.

Three kinds of split:

- ``random``: seeded, the teaching default (20 % validation, seed 34): the same rows as
  the teaching material's ``train_test_split(..., test_size=0.2, random_state=34)``,
  which is not stratified; ``stratify=True`` keeps each class's share on both sides.
  SherLock samples are 5 s apart and mostly identical to their neighbours, so this split
  puts near-copies of validation rows into training: its accuracy is optimistic.
- ``blocked``: per class, rows in time order (``UUID`` when present, else file order)
  are cut into contiguous blocks and whole blocks go to validation, so near-duplicates
  stay on one side (except at the few block borders).
- ``group``: whole groups of a column (e.g. ``UserId``, a device) go to one side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from appsleuth._fields import check_seed, did_you_mean, fields_from_mapping, plain_fields
from appsleuth.data.load import frame_info
from appsleuth.errors import DataError, SpecError

__all__ = ["DataSplit", "SplitKind", "SplitSpec", "held_share", "split_data", "time_order"]

SplitKind = Literal["random", "blocked", "group"]
_KINDS = ("random", "blocked", "group")
_DEFAULT_BLOCKS = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitSpec:
    """How to split rows; validated on construction.

    Attributes:
        kind: ``random`` (default), ``blocked`` or ``group``.
        val_fraction: Share of rows for validation. Defaults to 0.2.
        test_fraction: Share of rows held out for a final test. Defaults to 0.
        seed: Seed of the random choices. Defaults to 34 (the teaching material's).
        n_blocks: Blocks per class for ``blocked``. Defaults to 10. Each class keeps
            at least one block in training, so a ``val_fraction`` that rounds to every
            block of a class (0.95 of 10) holds one block fewer; the quality report
            and the HTML report show the share held.
        group_column: Column whose groups stay together for ``group``. Defaults to
            ``UserId``.
        time_column: Column giving time order for ``blocked``; None uses ``UUID`` when
            the table has it, else file order.
        stratify: For ``random``, keep each class's share on both sides (when every
            class has rows enough). Defaults to False: the teaching material's split is
            not stratified, and with seed 34 this one holds the same rows.
    """

    kind: SplitKind = "random"
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 34
    n_blocks: int = _DEFAULT_BLOCKS
    group_column: str = "UserId"
    time_column: str | None = None
    stratify: bool = False

    def __post_init__(self) -> None:
        plain_fields(self)
        if not isinstance(self.stratify, bool):
            raise SpecError(f"stratify must be true or false; received stratify={self.stratify!r}")
        if self.stratify and self.kind != "random":
            raise SpecError(
                f"stratify applies to the random split only (a blocked split is cut per "
                f"class already); received kind={self.kind!r}, stratify=True"
            )
        if self.kind not in _KINDS:
            raise SpecError(
                f"split kind must be one of {', '.join(_KINDS)}; received kind={self.kind!r}"
                f"{did_you_mean(self.kind, _KINDS)}"
            )
        for name, bounds in (("val_fraction", "(0, 1)"), ("test_fraction", "[0, 1)")):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0 <= value < 1)  # also false for NaN
                or (name == "val_fraction" and value == 0)
            ):
                raise SpecError(f"{name} must be a number in {bounds}; received {name}={value!r}")
        if self.val_fraction + self.test_fraction >= 1:
            raise SpecError(
                f"val_fraction + test_fraction must leave training rows; received "
                f"val_fraction={self.val_fraction!r}, test_fraction={self.test_fraction!r}"
            )
        check_seed("seed", self.seed)
        for name in ("group_column", "time_column"):
            value = getattr(self, name)
            if not (isinstance(value, str) and value) and not (
                name == "time_column" and value is None
            ):
                empty = " or null" if name == "time_column" else ""
                raise SpecError(f"{name} must be a column name{empty}; received {name}={value!r}")
        if (
            isinstance(self.n_blocks, bool)
            or not isinstance(self.n_blocks, int)
            or (self.n_blocks < 2)
        ):
            raise SpecError(
                f"n_blocks must be an integer >= 2; received n_blocks={self.n_blocks!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (YAML/JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitSpec:
        """Build from :meth:`to_dict` output; unknown keys are an error."""
        return cls(**fields_from_mapping(cls, d, "split"))

    @classmethod
    def coerce(cls, value: SplitSpec | Mapping[str, Any] | None, **changes: Any) -> SplitSpec:
        """``value`` as a SplitSpec: None is the default, a mapping holds its fields.

        Args:
            value: A SplitSpec, a mapping of its fields, or None (the teaching split).
            **changes: Fields to change.

        Raises:
            SpecError: ``value`` is none of these, or a field is unknown or invalid.
        """
        if value is None:
            value = {}
        elif isinstance(value, SplitSpec):
            value = value.to_dict()
        elif not isinstance(value, Mapping):
            raise SpecError(
                f"split must be a SplitSpec or a mapping of its fields (kind, val_fraction, "
                f"...); received split={value!r}"
            )
        return cls.from_dict({**value, **changes})


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSplit:
    """Positions (``iloc``) of the rows on each side of a split.

    Attributes:
        spec: The spec that produced it.
        train: Row positions for training, sorted.
        val: Row positions for validation, sorted.
        test: Row positions for the held-out test, sorted (may be empty).
    """

    spec: SplitSpec
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __repr__(self) -> str:
        # The default repr printed the row positions: thousands of numbers in a notebook.
        return (
            f"DataSplit(spec={self.spec!r}, train={len(self.train):,} rows, "
            f"val={len(self.val):,} rows, test={len(self.test):,} rows)"
        )

    def frames(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Return ``(train, val, test)`` sub-tables of ``df``."""
        return df.iloc[self.train], df.iloc[self.val], df.iloc[self.test]

    def describe(self) -> dict[str, Any]:
        """Sizes and settings, for metadata and reports."""
        return {
            **self.spec.to_dict(),
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
        }


def split_data(df: pd.DataFrame, spec: SplitSpec | None = None, **kwargs: Any) -> DataSplit:
    """Split ``df`` into training, validation and test rows.

    Args:
        df: A loaded (and usually cleaned) table with a label column.
        spec: The split, or a mapping of its fields; None is the teaching split.
        **kwargs: Fields of :class:`SplitSpec` to set (``split_data(df, kind="blocked")``).

    Returns:
        The :class:`DataSplit`.

    Raises:
        DataError: The table cannot be split that way (too few rows or groups, a missing
            group or time column).
    """
    spec = SplitSpec.coerce(spec, **kwargs)
    info = frame_info(df)
    if info.label is None or info.label not in df.columns:
        raise DataError(f"{info.dataset}: cannot split a table without its label column")
    missing = df[info.label].isna().to_numpy()
    if missing.any():
        first = df.index[int(missing.argmax())]
        raise DataError(
            f"{info.dataset}: label column {info.label!r} is missing in {int(missing.sum())} "
            f"row(s) (the first at index {first}); every row needs a label: drop those "
            f"rows first (df.dropna(subset=[{info.label!r}]))"
        )
    labels = df[info.label].to_numpy()
    rng = np.random.default_rng(spec.seed)
    n = len(df)
    if n < 2:
        raise DataError(f"{info.dataset}: {n} row(s) cannot be split into training and validation")
    if spec.kind == "random":
        n_val, n_test = _shares(n, spec)
        if n_val + n_test >= n:
            raise DataError(
                f"{info.dataset}: val_fraction={spec.val_fraction!r} and "
                f"test_fraction={spec.test_fraction!r} of {n:,} rows take {n_val:,} "
                f"validation and {n_test:,} test rows (rounded up), leaving none for "
                f"training; use smaller fractions or more data"
            )
        side = _random_sides(labels, spec)
    elif spec.kind == "blocked":
        time_column = spec.time_column or info.time_column
        if time_column is not None and time_column not in df.columns:
            raise DataError(
                f"{info.dataset}: time column {time_column!r} for the blocked "
                f"split is not in the table"
            )
        largest = int(pd.Series(labels).value_counts().max())
        # Small classes get fewer blocks (at most one per row), as the default 10 needs on
        # small tables; but a count that cuts even the largest class into blocks of one
        # row makes the blocked split a random one, which leaks.
        most = max(_DEFAULT_BLOCKS, largest // 2)
        if spec.n_blocks > most:
            raise DataError(
                f"{info.dataset}: n_blocks={spec.n_blocks} blocks per class would cut even "
                f"the largest class ({largest:,} rows) into blocks of under two rows; the "
                f"blocked split keeps runs of neighbouring rows together: use n_blocks <= "
                f"{most}"
            )
        order = time_order(df, time_column, info.dataset)
        side = _blocked_sides(labels, order, spec, rng)
    else:
        if spec.group_column not in df.columns:
            raise DataError(
                f"{info.dataset}: group column {spec.group_column!r} for the group split is "
                f"not in the table; columns found: {', '.join(map(str, df.columns))}"
            )
        side = _group_sides(df[spec.group_column].to_numpy(), spec, rng, info.dataset)
    train, val, test = (np.flatnonzero(side == k) for k in (0, 1, 2))
    if len(train) == 0 or len(val) == 0:
        raise DataError(
            f"{info.dataset}: the {spec.kind} split left "
            f"{len(train)} training and {len(val)} validation rows; use more "
            f"data or another split"
        )
    return DataSplit(spec=spec, train=train, val=val, test=test)


def time_order(df: pd.DataFrame, time_column: str | None, dataset: str) -> np.ndarray:
    """Row positions in time order (stable; missing times last), or file order for None.

    Raises:
        DataError: The time column mixes values that cannot be ordered (numbers and text).
    """
    if time_column is None:
        return np.arange(len(df))
    try:
        # pandas puts missing times (None too, in a column of objects) last.
        times = df[time_column].reset_index(drop=True)
        return times.sort_values(kind="stable", na_position="last").index.to_numpy()
    except TypeError as exc:
        kinds = sorted({type(v).__name__ for v in df[time_column].dropna()})
        raise DataError(
            f"{dataset}: time column {time_column!r} mixes values that cannot be put in "
            f"order ({', '.join(kinds)}); expected one kind of value, such as epoch "
            f"milliseconds: convert the column (pd.to_numeric) or name another time column"
        ) from exc


def held_share(asked: float, held: int, total: int) -> float | None:
    """The validation share a split holds, when whole blocks or groups moved it from the
    share ``asked`` (more than rounding to a row or half a percent); else None."""
    if not total:
        return None
    share = held / total
    return share if abs(share - asked) > max(0.005, 1 / total) else None


def _shares(n: int, spec: SplitSpec) -> tuple[int, int]:
    """Validation and test counts for n items, rounding up like scikit-learn."""
    n_val = int(np.ceil(n * spec.val_fraction))
    n_test = int(np.ceil(n * spec.test_fraction)) if spec.test_fraction else 0
    return n_val, n_test


def _random_sides(labels: np.ndarray, spec: SplitSpec) -> np.ndarray:
    # scikit-learn's train_test_split, as the teaching material calls it: unstratified, the
    # permutation depends only on the row count and the seed, so seed 34 on the cleaned
    # 273,077 rows puts exactly the teaching material's rows in validation.
    from sklearn.model_selection import train_test_split

    n = len(labels)
    idx = np.arange(n)
    side = np.zeros(n, dtype=np.int8)
    # Integer codes in sorted-label order: the same split as the labels themselves give
    # (scikit-learn sorts classes too), without sorting hundreds of thousands of strings.
    labels = pd.Categorical(labels).codes
    n_val, n_test = _shares(n, spec)
    stratify = labels if spec.stratify and _can_stratify(labels, n_val) else None
    rest, val = train_test_split(idx, test_size=n_val, random_state=spec.seed, stratify=stratify)
    side[val] = 1
    if n_test:
        strat_rest = (
            labels[rest] if stratify is not None and _can_stratify(labels[rest], n_test) else None
        )
        _, test = train_test_split(
            rest, test_size=n_test, random_state=(spec.seed + 1) % 2**32, stratify=strat_rest
        )
        side[test] = 2
    return side


def _can_stratify(labels: np.ndarray, n_held: int) -> bool:
    """Whether ``n_held`` of ``labels`` can be drawn keeping each class's share: every
    class needs two rows, and both sides room for one row of each class."""
    counts = (
        np.bincount(labels)
        if labels.dtype.kind in "iu"
        else np.unique(labels, return_counts=True)[1]
    )
    counts = counts[counts > 0]
    # The held-out test is drawn from the rows left after validation, with its own
    # count: checking it against the validation count let scikit-learn fail on it.
    return bool(counts.min() >= 2 and n_held >= len(counts) and len(labels) - n_held >= len(counts))


def _blocked_sides(
    labels: np.ndarray, order: np.ndarray, spec: SplitSpec, rng: np.random.Generator
) -> np.ndarray:
    side = np.zeros(len(labels), dtype=np.int8)
    ordered_labels = labels[order]
    for cls in np.unique(labels):
        rows = order[ordered_labels == cls]  # this class's rows, in time order
        n_blocks = min(spec.n_blocks, len(rows))
        n_val = round(n_blocks * spec.val_fraction)
        n_test = round(n_blocks * spec.test_fraction) if spec.test_fraction else 0
        if n_blocks >= 2:
            n_val = max(n_val, 1)
        # Training keeps a block of every class (as test does below): a class wholly in
        # validation could not be scored, and all of them would leave nothing to train.
        n_val = min(n_val, n_blocks - 1)
        if n_val + n_test >= n_blocks:
            n_test = max(0, n_blocks - n_val - 1)
        blocks = np.array_split(rows, n_blocks)
        chosen = rng.permutation(n_blocks)
        for b in chosen[:n_val]:
            side[blocks[b]] = 1
        for b in chosen[n_val : n_val + n_test]:
            side[blocks[b]] = 2
    return side


def _group_sides(
    groups: np.ndarray, spec: SplitSpec, rng: np.random.Generator, dataset: str
) -> np.ndarray:
    absent = pd.isna(groups)
    if absent.any():
        raise DataError(
            f"{dataset}: group column {spec.group_column!r} is missing in "
            f"{int(absent.sum())} row(s) (the first at row {int(absent.argmax())}); every "
            f"row needs a group: fill or drop those rows, or use another split"
        )
    keys, inverse, counts = np.unique(
        pd.Series(groups).astype(str).to_numpy(), return_inverse=True, return_counts=True
    )
    needed = 3 if spec.test_fraction else 2
    if len(keys) < needed:
        raise DataError(
            f"{dataset}: the group split needs at least {needed} groups in "
            f"{spec.group_column!r}; found {len(keys)}"
        )
    n = len(groups)
    group_side = np.zeros(len(keys), dtype=np.int8)
    filled = {1: 0, 2: 0}
    targets = {1: spec.val_fraction * n, 2: spec.test_fraction * n}
    order = rng.permutation(len(keys))
    for g in order:
        for s in (1, 2):
            # A group goes to a side when it brings that side nearer its target share (a
            # group larger than twice the gap would overshoot: it stays in training), and
            # training always keeps at least one group.
            if filled[s] + counts[g] / 2 < targets[s] and (group_side == 0).sum() > 1:
                group_side[g] = s
                filled[s] += int(counts[g])
                break
    for s in (1, 2):
        if targets[s] and not filled[s]:
            # Every group is too large for the share asked: the smallest one still in
            # training stands in (the reports show the share it gives).
            free = [g for g in order if group_side[g] == 0]
            if len(free) > 1:
                g = min(free, key=lambda k: counts[k])
                group_side[g] = s
                filled[s] += int(counts[g])
    return group_side[inverse]
