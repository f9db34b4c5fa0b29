"""The data-quality report: what is in a table, what is wrong with it, and what to do.

Each :class:`Finding` carries numbers and a short recommendation. The most important
one for SherLock is the **leakage rate** of a split: the share of validation rows that
have an exact feature-duplicate among the training rows. Consecutive 5-second samples
of an app are mostly identical, so a random split leaks heavily and its accuracy is
optimistic; a blocked split leaks far less.

A part of the report that cannot be computed for a table (a tiny table, a single
class, a split that cannot be made) is shown as not computable, with the reason,
rather than failing the whole report.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

import numpy as np
import pandas as pd

from appsleuth.data.clean import clean_sherlock, duplicate_rows, is_constant
from appsleuth.data.layouts import MALWARE_APP
from appsleuth.data.load import (
    as_name_list,
    frame_info,
    infinite_mask,
    label_text,
    nonfinite_values,
    same_number_labels,
    table_row_names,
)
from appsleuth.data.split import DataSplit, SplitSpec, held_share, split_data, time_order
from appsleuth.errors import DataError

__all__ = ["Finding", "QualityReport", "Severity", "check_data", "leakage_advice", "leakage_rate"]

Severity = Literal["ok", "info", "warning", "problem"]

# Counters that cannot be negative; the network deltas can (documented: -1 after a reboot).
_NON_NEGATIVE = (
    "CPU_USAGE", "UidRxBytes", "UidRxPackets", "UidTxBytes", "UidTxPackets", "cutime",
    "guest_time", "importance", "lru", "num_threads", "otherPrivateDirty", "rss", "stime",
    "utime", "vsize", "cminflt",
)  # fmt: skip
_NETWORK = ("UidRxBytes", "UidRxPackets", "UidTxBytes", "UidTxPackets")
_IMBALANCE_WARN = 5.0
_LEAK_WARN = 0.2
_ROWS_SHOWN = 5


@dataclasses.dataclass(frozen=True, kw_only=True)
class Finding:
    """One observation about the data.

    Attributes:
        key: Stable identifier, e.g. ``leakage``.
        title: Short heading.
        severity: ``ok``, ``info``, ``warning`` or ``problem``.
        summary: One sentence with the numbers.
        recommendation: What to do about it (empty when nothing).
        data: The numbers, for JSON.
    """

    key: str
    title: str
    severity: Severity
    summary: str
    recommendation: str = ""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class QualityReport:
    """All findings about one table, in reading order."""

    dataset: str
    synthetic: bool
    layout: str
    n_rows: int
    n_columns: int
    findings: tuple[Finding, ...]

    def __getitem__(self, key: str) -> Finding:
        for f in self.findings:
            if f.key == key:
                return f
        raise KeyError(key)

    def __repr__(self) -> str:
        # The default repr printed every finding's numbers as one long line; this reads
        # like the table render() draws, one finding per line.
        label = " (synthetic)" if self.synthetic else ""
        head = (
            f"QualityReport({self.dataset}{label}: {self.n_rows:,} rows x "
            f"{self.n_columns} columns, {self.layout} layout)"
        )
        width = max((len(f.title) for f in self.findings), default=0)
        return "\n".join(
            [head, *(f"  {f.severity:<8} {f.title:<{width}}  {f.summary}" for f in self.findings)]
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON."""
        return {
            "dataset": self.dataset,
            "synthetic": self.synthetic,
            "layout": self.layout,
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    def render(self, console: Any = None) -> None:
        """Print the report as a table on a rich console (stdout by default)."""
        from rich.console import Console
        from rich.table import Table

        from appsleuth.display import plain_text

        console = console or Console()
        label = " (synthetic)" if self.synthetic else ""
        table = Table(
            title=plain_text(
                f"Data quality: {self.dataset}{label}: {self.n_rows:,} rows x "
                f"{self.n_columns} columns, {self.layout} layout"
            ),
            show_lines=True,
            title_justify="left",
        )
        table.add_column("finding", style="bold", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("what was found")
        table.add_column("recommendation", style="cyan")
        marks = {
            "ok": "[green]ok[/]",
            "info": "[blue]info[/]",
            "warning": "[yellow]warn[/]",
            "problem": "[red]PROBLEM[/]",
        }
        for f in self.findings:
            # App and column names, file names: data, never markup.
            texts = (plain_text(f.title), plain_text(f.summary), plain_text(f.recommendation))
            table.add_row(texts[0], marks[f.severity], *texts[1:])
        console.print(table)


def leakage_rate(train: pd.DataFrame, val: pd.DataFrame, features: list[str] | str) -> float:
    """Share of validation rows with an exact feature-duplicate among training rows.

    Args:
        train: Training rows.
        val: Validation rows.
        features: Columns compared (missing values compare equal to each other): a
            list, or one comma-separated string.

    Returns:
        A number in [0, 1]; 0 for an empty validation set.
    """
    features = list(as_name_list("features", features))
    for name, rows in (("train", train), ("val", val)):
        if not isinstance(rows, pd.DataFrame):
            raise DataError(f"{name} must be a DataFrame of rows; received {type(rows).__name__}")
        absent = [f for f in features if f not in rows.columns]
        if absent:
            raise DataError(
                f"{name} lacks the feature column(s) {absent} to compare; columns found: "
                f"{[str(c) for c in rows.columns][:30]}"
            )
    if len(val) == 0:
        return 0.0
    train_keys = pd.util.hash_pandas_object(_comparable(train, features), index=False)
    val_keys = pd.util.hash_pandas_object(_comparable(val, features), index=False)
    return float(np.isin(val_keys.to_numpy(), train_keys.to_numpy()).mean())


def leakage_advice(kind: str | None) -> str:
    """What to report beside a split of ``kind`` whose validation rows leak into training.

    A blocked or group split that leaks was told to try a blocked or group split: the
    advice names what the split in use does not already do.
    """
    if kind == "blocked":
        return (
            "identical rows recur in other time blocks: also report a group split by "
            "device (--split group), or a copy without exact duplicates (data clean "
            "--drop-duplicates)"
        )
    if kind == "group":
        return (
            "identical rows recur across the groups: also report a copy without exact "
            "duplicates (data clean --drop-duplicates)"
        )
    return "also report a blocked split (--split blocked) or a group split by device"


def _comparable(rows: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """``rows[features]`` with numeric columns as float64, so that equal values hash alike.

    Hashes depend on the numeric dtype: 5 in an int64 column and 5.0 in a float64 one
    (the same counter, read from a file where it has a gap) hash apart, so a copy would
    not count as leaked. Text and categorical columns already hash by their values.
    """
    columns = {}
    for f in features:
        values = rows[f]
        if pd.api.types.is_numeric_dtype(values.dtype):
            values = pd.Series(values.to_numpy(dtype=np.float64, na_value=np.nan))
        columns[f] = values.reset_index(drop=True)
    return pd.DataFrame(columns)


def _share_text(asked: float, held: int, total: int) -> str:
    """``0.2``, or ``0.05 asked, 0.100 held`` where whole blocks or groups moved it."""
    share = held_share(asked, held, total)
    if share is None:
        return f"{asked:g}"
    return f"{asked:g} asked, {share:.3f} held: whole blocks or groups"


def check_data(df: pd.DataFrame, *, split: SplitSpec | None = None) -> QualityReport:
    """Examine a loaded table.

    Infinite feature values are missing values (as the loader and cleaning treat them)
    and are listed per column by the ``infinite_values`` finding.

    Args:
        df: A table from :func:`~appsleuth.data.load.load_sherlock` or the generator.
        split: The split whose leakage rate is measured. Defaults to the teaching split
            (random, 20 % validation, seed 34); a random split is also compared with a
            blocked one.

    Returns:
        The :class:`QualityReport`. Parts that cannot be computed for this table (for
        example the blocked comparison of a tiny table) say so, and why.

    Raises:
        DataError: The split names a group or time column the table lacks.
    """
    info = frame_info(df)
    split = SplitSpec.coerce(split)
    df, infinite = _infinite_as_missing(df, info.numeric_features)
    findings = [
        _classes(df, info.label),
        _missing(df, list(info.features)),
        _infinite(infinite),
        _empty_and_constant(df, list(info.features)),
        _incomplete_rows(df, list(info.features)),
        _negative_values(df, list(info.numeric_features)),
        _duplicates(df, info.label, list(info.features)),
        _time_structure(df, info, split),
        _leakage(df, split),
        _feature_notes(list(info.features)),
    ]
    return QualityReport(
        dataset=info.dataset,
        synthetic=info.synthetic,
        layout=info.layout,
        n_rows=len(df),
        n_columns=len(df.columns),
        findings=tuple(f for f in findings if f is not None),
    )


def _classes(df: pd.DataFrame, label: str | None) -> Finding:
    if label is None:
        return Finding(
            key="classes",
            title="classes",
            severity="problem",
            summary="no label column",
            recommendation="name the label column",
        )
    # As the model will see them: text, stripped, and only the classes that have rows
    # (a categorical label's unused categories are none).
    counts = label_text(df[label]).value_counts()
    counts = counts[counts > 0]
    if len(counts) < 2:
        only = (
            f"one class, {counts.index[0]} ({counts.iloc[0]:,} rows)" if len(counts) else "no rows"
        )
        return Finding(
            key="classes",
            title="classes",
            severity="problem",
            summary=f"{only}; a classifier needs at least two classes",
            recommendation="add rows of other apps (or check the label column)",
            data={"counts": {str(k): int(v) for k, v in counts.items()}, "n_classes": len(counts)},
        )
    ratio = float(counts.iloc[0] / counts.iloc[-1])
    data: dict[str, Any] = {
        "counts": {str(k): int(v) for k, v in counts.items()},
        "n_classes": len(counts),
        "imbalance_ratio": ratio,
    }
    summary = (
        f"{len(counts)} classes; largest {counts.index[0]} ({counts.iloc[0]:,}), "
        f"smallest {counts.index[-1]} ({counts.iloc[-1]:,}); imbalance ratio "
        f"{ratio:.1f}"
    )
    if MALWARE_APP in counts.index:
        share = float(counts[MALWARE_APP] / counts.sum())
        data["malware"] = {"app": MALWARE_APP, "rows": int(counts[MALWARE_APP]), "share": share}
        summary += f"; malware {MALWARE_APP}: {counts[MALWARE_APP]:,} rows ({share:.1%})"
    imbalanced = ratio >= _IMBALANCE_WARN
    recs = (
        [
            "imbalanced: read per-class recall and precision (Moriarty's above all), "
            "consider class_weight='balanced'"
        ]
        if imbalanced
        else []
    )
    # "Facebook" and "FACEBOOK" are two classes to a model: most likely one app spelt twice.
    spellings: dict[str, list[str]] = {}
    for name in counts.index:
        spellings.setdefault(str(name).casefold(), []).append(str(name))
    alike = [names for names in spellings.values() if len(names) > 1]
    if alike:
        data["differ_only_in_case"] = alike
        summary += "; labels that differ only in case: " + ", ".join(" / ".join(n) for n in alike)
        recs.append("write each app's name one way (they are separate classes as they are)")
    # "1" and "1.0": files joined where one wrote its labels as floats. Training refuses it.
    same = same_number_labels(str(name) for name in counts.index)
    if same:
        data["same_number"] = same
        summary += "; labels that are one number written differently: " + ", ".join(
            " / ".join(n) for n in same
        )
        recs.append("write each label one way: training refuses a number written two ways")
    return Finding(
        key="classes",
        title="classes",
        severity="problem" if same else "warning" if imbalanced or alike else "ok",
        summary=summary,
        recommendation="; ".join(recs),
        data=data,
    )


def _missing(df: pd.DataFrame, features: list[str]) -> Finding:
    gaps = df[features].isna().sum()
    gaps = gaps[gaps > 0]
    data = {"per_column": {str(k): int(v) for k, v in gaps.items()}}
    if gaps.empty:
        return Finding(
            key="missing",
            title="missing values",
            severity="ok",
            summary="no missing values in the features",
            data=data,
        )
    listed = ", ".join(f"{k} {v:,}" for k, v in gaps.items())
    return Finding(
        key="missing",
        title="missing values",
        severity="warning",
        summary=f"missing values per column: {listed}",
        recommendation="see the findings below",
        data=data,
    )


def _infinite_as_missing(
    df: pd.DataFrame, numeric: tuple[str, ...]
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The loader's record of infinite values, plus any still in ``df`` (made missing)."""
    found = {c: v for c, v in nonfinite_values(df).items() if c in numeric}
    masks = {c: infinite_mask(df[c]) for c in numeric}
    masks = {c: m for c, m in masks.items() if m.any()}
    if not masks:
        return df, found
    df = df.copy()
    for col, mask in masks.items():
        values = df[col].to_numpy(dtype=np.float64, na_value=np.nan)
        rows = np.flatnonzero(mask)
        earlier = found.get(col, {"count": 0, "positive": 0, "rows": [], "where": []})
        shown = [int(r) for r in rows[: max(_ROWS_SHOWN - len(earlier["rows"]), 0)]]
        found[col] = {
            "count": earlier["count"] + len(rows),
            "positive": earlier["positive"] + int((values[mask] > 0).sum()),
            "rows": [*earlier["rows"], *shown],
            "where": [*earlier["where"], *table_row_names(df.index, shown)],
        }
        df[col] = df[col].where(~mask)
    return df, found


def _infinite(found: dict[str, dict[str, Any]]) -> Finding:
    data = {"per_column": found}
    if not found:
        return Finding(
            key="infinite_values",
            title="infinite values",
            severity="ok",
            summary="no infinite values in the features",
            data=data,
        )
    parts = []
    for col, v in found.items():
        n = int(v["count"])
        where = list(v.get("where") or [])
        more = n - len(where)
        rows = ", ".join(where) + (f" and {more:,} more" if more > 0 and where else "")
        plural = "value" if n == 1 else "values"
        parts.append(f"{col}: {n:,} infinite {plural}{f' in {rows}' if rows else ''}")
    return Finding(
        key="infinite_values",
        title="infinite values",
        severity="warning",
        summary="; ".join(parts) + "; treated as missing",
        recommendation=(
            "they count as missing values: cleaning drops their rows like incomplete rows "
            "(or imputes them with missing='impute'); check how the file was exported"
        ),
        data=data,
    )


def _empty_and_constant(df: pd.DataFrame, features: list[str]) -> Finding:
    empty = [f for f in features if df[f].isna().all()]
    constant = [f for f in features if f not in empty and is_constant(df[f])]
    identical = _identical_columns(df, [f for f in features if f not in empty + constant])
    data = {"all_missing": empty, "constant": constant, "identical": identical}
    if not empty and not constant and not identical:
        return Finding(
            key="useless_columns",
            title="empty/constant columns",
            severity="ok",
            summary="every feature varies, and no two are identical",
            data=data,
        )
    parts, recs = [], []
    if empty:
        parts.append(f"all missing: {', '.join(empty)}")
    if constant:
        parts.append(f"constant: {', '.join(constant)}")
    if empty or constant:
        recs.append("drop them (cleaning does so by default)")
    if identical:
        parts.append("identical: " + ", ".join(" = ".join(group) for group in identical))
        recs.append("keep one column of each identical group (select_features or features:)")
    return Finding(
        key="useless_columns",
        title="empty/constant columns",
        severity="warning",
        summary="; ".join(parts),
        recommendation="; ".join(recs),
        data=data,
    )


def _feature_notes(features: list[str]) -> Finding | None:
    """What SherLock's documentation says about some features' meaning (None: none here)."""
    notes = []
    if "CPU_USAGE" in features:
        notes.append(
            "CPU_USAGE is deprecated upstream; utime, stime and cutime are the recommended "
            "activity measures"
        )
    cumulative = [f for f in ("utime", "stime") if f in features]
    if cumulative:
        notes.append(
            f"{' and '.join(cumulative)} {'are' if len(cumulative) > 1 else 'is'} cumulative "
            f"since process start, so {'they' if len(cumulative) > 1 else 'it'} also "
            f"tell{'' if len(cumulative) > 1 else 's'} how long a process has run"
        )
    if not notes:
        return None
    return Finding(
        key="feature_notes",
        title="feature meanings",
        severity="info",
        summary="; ".join(notes),
        recommendation="keep them in mind when reading feature importance or choosing features",
        data={"notes": notes},
    )


def _identical_columns(df: pd.DataFrame, features: list[str]) -> list[list[str]]:
    """Groups of features equal in every row (``Mem`` and ``vsize`` in some files)."""
    groups: dict[int, list[str]] = {}
    for f in features:
        key = int(pd.util.hash_pandas_object(df[f], index=False).sum())
        groups.setdefault(key, []).append(f)
    found = []
    for names in groups.values():
        # A hash match is checked value by value; what stays together is truly equal.
        while len(names) > 1:
            first, rest = names[0], names[1:]
            same = [n for n in rest if df[first].equals(df[n])]
            if same:
                found.append([first, *same])
            names = [n for n in rest if n not in same]
    return found


def _incomplete_rows(df: pd.DataFrame, features: list[str]) -> Finding:
    usable = [f for f in features if not df[f].isna().all()]
    gaps = df[usable].isna()
    incomplete = gaps.any(axis=1)
    n = int(incomplete.sum())
    data: dict[str, Any] = {"rows": n, "share": n / max(len(df), 1)}
    if not n:
        return Finding(
            key="incomplete_rows",
            title="incomplete rows",
            severity="ok",
            summary="every row has all (non-empty) features",
            data=data,
        )
    top_cols, top_n = _most_common_gap(gaps.to_numpy()[incomplete.to_numpy()], usable)
    data["most_common_pattern"] = {"columns": list(top_cols), "rows": top_n}
    recommendation = "drop them (default) or impute with missing='impute'"
    if len(top_cols) == 1 and top_n == n:
        # One partly empty column (cminflt in the 2-app teaching file) costs a quarter of
        # the rows when they are dropped; leaving that column out keeps them all.
        recommendation = (
            f"drop them (default), impute with missing='impute', or leave {top_cols[0]} "
            f"out of the features (features: in a spec, --features) to keep these rows"
        )
    return Finding(
        key="incomplete_rows",
        title="incomplete rows",
        severity="warning",
        summary=(
            f"{n:,} rows ({n / len(df):.2%}) miss a value; {top_n:,} of them miss the "
            f"same {len(top_cols)} column(s) ({', '.join(top_cols)})"
        ),
        recommendation=recommendation,
        data=data,
    )


def _most_common_gap(gaps: np.ndarray, columns: list[str]) -> tuple[tuple[str, ...], int]:
    """The most frequent set of missing columns among incomplete rows, and its row count.

    Ties go to the pattern seen first. Patterns are compared as packed bit rows, not
    built per row in Python: a large file with a sparsely filled column has millions of
    incomplete rows.

    Args:
        gaps: One row per incomplete row, one boolean column per feature (True: missing).
        columns: The features' names, in the order of ``gaps``' columns.

    Returns:
        The pattern's column names and how many rows have exactly that pattern.
    """
    packed = np.packbits(gaps, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    # Most rows first, then the earliest first occurrence.
    best = np.lexsort((first, -counts))[0]
    row = gaps[first[best]]
    return tuple(c for c, missing in zip(columns, row, strict=True) if missing), int(counts[best])


def _negative_values(df: pd.DataFrame, numeric: list[str]) -> Finding:
    found: dict[str, dict[str, float | int]] = {}
    for col in numeric:
        if col in _NON_NEGATIVE:
            neg = df[col] < 0
            if neg.any():
                found[col] = {"rows": int(neg.sum()), "worst": _num(df.loc[neg, col].min())}
    if not found:
        return Finding(
            key="negative_values",
            title="impossible values",
            severity="ok",
            summary="no negative counters",
            data={"columns": found},
        )
    listed = ", ".join(f"{c} {v['rows']:,} rows (worst {v['worst']:g})" for c, v in found.items())
    only_network = set(found) <= set(_NETWORK)
    rec = (
        (
            "network counters are deltas and read -1 after a reboot: harmless for "
            "classification, or clip at 0"
        )
        if only_network
        else ("check the collection; negative values of these counters are impossible")
    )
    return Finding(
        key="negative_values",
        title="impossible values",
        severity="info" if only_network else "warning",
        summary=f"negative values: {listed}",
        recommendation=rec,
        data={"columns": found},
    )


def _duplicates(df: pd.DataFrame, label: str | None, features: list[str]) -> Finding:
    cols = [c for c in (label, *features) if c is not None]
    dup = duplicate_rows(df, cols)
    n = int(dup.sum())
    share = n / max(len(df), 1)
    data = {"rows": n, "share": share}
    return Finding(
        key="duplicates",
        title="duplicate rows",
        severity="info" if n else "ok",
        summary=f"{n:,} rows ({share:.1%}) repeat an earlier row exactly (label and features)",
        recommendation=(
            "expected for 5-second telemetry; they are what makes a random split leak (see leakage)"
        )
        if n
        else "",
        data=data,
    )


def _time_structure_missing(df: pd.DataFrame, info: Any) -> str:
    """Why consecutive samples cannot be compared (empty when they can)."""
    if info.label is None:
        return "the table has no label column"
    if len(df) < 2:
        return f"the table has {len(df)} row(s)"
    if all(df[c].isna().all() for c in info.numeric_features):
        return "no numeric feature has a value"
    return ""


def _time_structure(df: pd.DataFrame, info: Any, split: SplitSpec) -> Finding:
    why = _time_structure_missing(df, info)
    if why:
        return _not_computable("time_structure", "consecutive samples", why)
    time_column = split.time_column or info.time_column
    present = time_column if time_column and time_column in df.columns else None
    order = time_order(df, present, info.dataset)
    ordered = df.iloc[order]
    # One process of one app on one phone: a raw table's rows of one snapshot are the
    # phone's processes, and rows of other phones are no neighbours.
    keys = [info.label] + [c for c in ("UserId", "pid") if c in df.columns]
    numeric = [c for c in info.numeric_features if not ordered[c].isna().all()]
    # Consecutive samples of one app: compare each row with the previous row of that app.
    grouped = ordered.groupby(keys, sort=False, observed=True, dropna=False)
    prev = grouped[numeric].shift(1)
    has_prev = prev.notna().any(axis=1).to_numpy().copy()
    if time_column and time_column in df.columns:
        # Two rows of one snapshot are not one sample after another.
        previous_time = grouped[time_column].shift(1).to_numpy()
        has_prev &= ordered[time_column].to_numpy() != previous_time
    cur = ordered[numeric].to_numpy(dtype=np.float64)
    prv = prev.to_numpy(dtype=np.float64)
    equal = (cur == prv) | (np.isnan(cur) & np.isnan(prv))
    equal = equal[has_prev]
    n_pairs = int(has_prev.sum())
    if not n_pairs:
        return _not_computable(
            "time_structure",
            "consecutive samples",
            "no app has two samples with values to compare",
        )
    row_identical = float(equal.all(axis=1).mean())
    feature_identical = float(equal.mean())
    data = {
        "pairs": n_pairs,
        "identical_rows_share": row_identical,
        "unchanged_features_share": feature_identical,
        "order": split.time_column or info.time_column or "file order",
    }
    near_copies = feature_identical >= 0.5
    return Finding(
        key="time_structure",
        title="consecutive samples",
        severity="warning" if near_copies else "ok",
        summary=(
            f"between consecutive samples of the same app, {feature_identical:.0%} of "
            f"numeric feature values are unchanged and {row_identical:.0%} of rows are "
            f"identical ({n_pairs:,} pairs, {data['order']}"
            + (
                ""
                if "UserId" in df.columns
                else "; no device ids: neighbours may be "
                "samples of different phones, so the share is a lower bound"
            )
            + ")"
        ),
        recommendation=(
            "samples are near copies of their neighbours: a random split puts "
            "copies of validation rows into training"
        )
        if near_copies
        else "",
        data=data,
    )


def _leakage(df: pd.DataFrame, split: SplitSpec) -> Finding:
    if frame_info(df).label is None:
        return _not_computable("leakage", "leakage", "the table has no label column")
    try:
        table, _ = clean_sherlock(df)
    except DataError as exc:
        return _not_computable(
            "leakage",
            "leakage",
            f"nothing is left to split after cleaning ({exc})",
            severity="problem",
            recommendation="training would fail the same way: see the findings above",
        )
    _check_split_columns(table, split)
    data: dict[str, Any] = {"split": split.to_dict(), "rate": None, "rates": {}}
    try:
        parts = split_data(table, split)
    except DataError as exc:
        data["not_computable"] = {split.kind: str(exc)}
        return Finding(
            key="leakage",
            title="leakage",
            severity="problem",
            summary=f"not computable: the {split.kind} split cannot be made ({exc})",
            recommendation=(
                "training on this split would fail the same way: use a larger table or "
                "another split"
            ),
            data=data,
        )
    rates = {split.kind: _split_leakage(table, parts)}
    not_computable: dict[str, str] = {}
    if split.kind == "random":
        # A comparison the user did not ask for: if it cannot be made, the report says so.
        try:
            blocked = split_data(table, dataclasses.replace(split, kind="blocked", stratify=False))
        except DataError as exc:
            not_computable["blocked"] = str(exc)
        else:
            rates["blocked"] = _split_leakage(table, blocked)
    rate = rates[split.kind]
    summary = (
        f"{rate:.1%} of validation rows of the {split.kind} split "
        f"(val {_share_text(split.val_fraction, len(parts.val), len(table))}, seed "
        f"{split.seed}) have an exact copy in training"
    )
    if "blocked" in rates and split.kind != "blocked":
        summary += f"; a blocked split: {rates['blocked']:.1%}"
    elif "blocked" in not_computable:
        summary += f"; a blocked split: not computable ({not_computable['blocked']})"
    leaky = rate >= _LEAK_WARN
    rec = f"accuracy on this split is optimistic: {leakage_advice(split.kind)}" if leaky else ""
    severity: Severity = "warning" if leaky else "ok"
    trouble = _training_trouble(table, parts)
    if trouble:
        summary += f"; {trouble}"
        severity = "problem"
        rec = "training on this split would fail: use a larger table or another split"
    data.update(rate=rate, rates=rates)
    if not_computable:
        data["not_computable"] = not_computable
    return Finding(
        key="leakage",
        title="leakage",
        severity=severity,
        summary=summary,
        recommendation=rec,
        data=data,
    )


def _check_split_columns(table: pd.DataFrame, split: SplitSpec) -> None:
    """A column the chosen split names but the table lacks is the user's error: raised."""
    named = {"group": split.group_column, "blocked": split.time_column}.get(split.kind)
    if named is not None and named not in table.columns:
        split_data(table, split)  # raises the split's own message


def _training_trouble(table: pd.DataFrame, parts: DataSplit) -> str:
    """Why training on this split would fail (empty when it would not)."""
    label = frame_info(table).label
    if label is None:
        return ""
    train, val, test = parts.frames(table)
    trained = {str(c) for c in train[label].unique()}
    if len(trained) < 2:
        return (
            f"its training rows hold a single class, {min(trained)!r}, and a classifier "
            f"needs at least two"
        )
    unseen = sorted({str(c) for c in pd.concat([val[label], test[label]]).unique()} - trained)
    if unseen:
        return f"class(es) {unseen} are in validation/test rows but not in training rows"
    return ""


def _not_computable(
    key: str, title: str, why: str, *, severity: Severity = "info", recommendation: str = ""
) -> Finding:
    return Finding(
        key=key,
        title=title,
        severity=severity,
        summary=f"not computable: {why}",
        recommendation=recommendation,
        data={"not_computable": why},
    )


def _split_leakage(table: pd.DataFrame, parts: DataSplit) -> float:
    features = list(frame_info(table).features)
    train, val, _ = parts.frames(table)
    return leakage_rate(train, val, features)


def _num(v: Any) -> float | int:
    v = v.item() if isinstance(v, np.generic) else v
    return int(v) if float(v).is_integer() else float(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
