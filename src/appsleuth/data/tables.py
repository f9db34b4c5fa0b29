"""Write tables safely, and give every command the embedded default data.

Tables are written to a temporary name and renamed, so a killed process never leaves a
half-written file under the real name. The embedded data is generated once per
(rows, seed) and cached, because every command without ``--data`` uses it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from appsleuth._atomic import atomic_output
from appsleuth._files import refuse_nul
from appsleuth.data._record import as_record
from appsleuth.data.load import FrameInfo, frame_info, load_sherlock
from appsleuth.errors import AppSleuthError, DataError, SpecError

__all__ = [
    "cache_dir",
    "check_table_output",
    "embedded_data",
    "embedded_stand_in",
    "write_table",
]

_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write a table as CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``), atomically.

    The index is written as the first, unnamed CSV column (the ``sherlock_18apps``
    layout); Parquet keeps it as its index.

    Args:
        df: The table.
        path: Target file; the format follows its extension.
        force: Overwrite an existing file. Defaults to False.

    Returns:
        The path written.

    Raises:
        AppSleuthError: The file exists and ``force`` is False, or the extension is not
            one of ``.csv``, ``.csv.gz``, ``.parquet``.
    """
    if not isinstance(df, pd.DataFrame):
        raise AppSleuthError(f"write_table needs a pandas DataFrame; received {type(df).__name__}")
    path = check_table_output(path, force=force)
    name = path.name.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        if name.endswith(".parquet"):
            df.to_parquet(tmp, index=True)
        else:
            df.to_csv(tmp, index=True, compression="gzip" if name.endswith(".gz") else None)
    return path


def check_table_output(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """The checks :func:`write_table` makes before writing, for callers that want them
    before a long computation rather than after it.

    Args:
        path: Target file.
        force: Whether an existing file may be overwritten. Defaults to False.

    Returns:
        ``path`` as a Path.

    Raises:
        AppSleuthError: The file exists and ``force`` is False, or the extension is not
            one of ``.csv``, ``.csv.gz``, ``.parquet``.
    """
    refuse_nul(path, "path", AppSleuthError)
    path = Path(path)
    if not path.name.lower().endswith(_SUFFIXES):
        raise AppSleuthError(
            f"output file {path} must end in .csv, .csv.gz or .parquet; received {path.name!r}"
        )
    if path.exists() and not force:
        raise AppSleuthError(
            f"output file {path} already exists; pass --force (force=True) to overwrite it"
        )
    return path


def cache_dir() -> Path:
    """Where generated data is cached: ``$APPSLEUTH_CACHE`` or ``~/.cache/appsleuth``."""
    env = os.environ.get("APPSLEUTH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "appsleuth"


def embedded_data(
    rows: int | None = None, *, seed: int = 0, with_ids: bool = True, cache: bool = True
) -> pd.DataFrame:
    """The embedded default data: synthetic SherLock-like telemetry for the 18 apps.

    Args:
        rows: Number of rows. Defaults to 273,129, the size of the real file.
        seed: Generator seed. Defaults to 0.
        with_ids: Include ``UserId`` and ``UUID`` so that blocked and group splits work.
            Defaults to True.
        cache: Reuse (and store) a Parquet copy in :func:`cache_dir`. Defaults to True.

    Returns:
        The table, marked synthetic in ``attrs["appsleuth"]``.
    """
    from appsleuth.data.synth import check_row_count, generate_sherlock

    kwargs = {"seed": seed, "with_ids": with_ids}
    if rows is not None:
        if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
            raise SpecError(f"rows must be a positive integer; received rows={rows!r}")
        check_row_count("rows", rows)
        kwargs["n_rows"] = rows
    if not cache:
        return generate_sherlock(**kwargs)
    n = rows if rows is not None else "default"
    path = (
        cache_dir()
        / f"synthetic-sherlock18-n{n}-seed{seed}-ids{int(with_ids)}-{_generator_key()}.parquet"
    )
    if path.exists():
        try:
            df = load_sherlock(path)
        except DataError:
            # A damaged cache entry is rebuilt, not trusted (and left where it cannot be
            # removed: a read-only cache serves fresh data, as when none was cached).
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        else:
            info = FrameInfo.from_dict(
                {**frame_info(df).to_dict(), **_synthetic_marks(seed, with_ids)}
            )
            df.attrs["appsleuth"] = as_record(info.to_dict())
            return df
    df = generate_sherlock(**kwargs)
    with contextlib.suppress(OSError):  # a read-only home gets its data, just not cached
        write_table(df, path, force=True)
    return df


def embedded_stand_in(*, seed: int = 0) -> pd.DataFrame:
    """A stand-in for :func:`embedded_data`: its columns, metadata and one row per app.

    Enough to check the apps and features a task names against the embedded data
    (:func:`~appsleuth.data.prepare.check_task`) without generating it: the embedded
    data holds every one of the 18 apps at any size it may be given.

    Args:
        seed: The embedded data's seed, which names it in messages. Defaults to 0.
    """
    from appsleuth.data.layouts import APPS_18, LABEL_COLUMN, SHERLOCK18_FEATURES

    n = len(APPS_18)
    cols: dict[str, object] = {"UserId": ["0"] * n, "UUID": np.arange(n, dtype=np.int64)}
    cols[LABEL_COLUMN] = list(APPS_18)
    for name in SHERLOCK18_FEATURES:
        cols[name] = ["S"] * n if name == "state" else np.ones(n)
    df = pd.DataFrame(cols)
    df.attrs["appsleuth"] = as_record(
        {
            **_synthetic_marks(seed, True),
            "label": LABEL_COLUMN,
            "features": list(SHERLOCK18_FEATURES),
            "categorical": ["state"],
            "id_columns": ["UserId", "UUID"],
            "columns": list(df.columns),
        }
    )
    return df


@functools.cache
def _generator_key() -> str:
    """A digest of the generator's code, part of each cache file's name: data cached by
    another version of appsleuth is never served for this one's (same rows and seed)."""
    from appsleuth.data import synth

    return hashlib.sha256(Path(synth.__file__).read_bytes()).hexdigest()[:12]


def _synthetic_marks(seed: int, with_ids: bool) -> dict[str, object]:
    return {
        "source": "synthetic",
        "dataset": f"synthetic-sherlock18(seed={seed})",
        "synthetic": True,
        "layout": "sherlock18",
        "time_column": "UUID" if with_ids else None,
    }
