"""Atomic table writing and the cached embedded data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from appsleuth.data.load import frame_info, load_sherlock
from appsleuth.data.tables import embedded_data, write_table
from appsleuth.errors import AppSleuthError
from tests.conftest import make_sherlock18


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet"])
def test_write_then_load(tmp_path: Path, name: str) -> None:
    df = make_sherlock18()
    path = write_table(df, tmp_path / name)
    back = load_sherlock(path)
    assert back.index.tolist() == df.index.tolist()
    pd.testing.assert_series_equal(back["rss"], df["rss"], check_names=False)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_no_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("precious")
    with pytest.raises(AppSleuthError, match=r"already exists; pass --force"):
        write_table(make_sherlock18(), path)
    assert path.read_text() == "precious"
    write_table(make_sherlock18(), path, force=True)
    assert len(load_sherlock(path)) == 180


def test_bad_extension(tmp_path: Path) -> None:
    with pytest.raises(
        AppSleuthError,
        match=r"must end in \.csv, \.csv\.gz or \.parquet; "
        r"received 't\.xlsx'",
    ):
        write_table(make_sherlock18(), tmp_path / "t.xlsx")


def test_embedded_data_is_cached_and_marked_synthetic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))
    first = embedded_data(500, seed=3)
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1
    second = embedded_data(500, seed=3)
    pd.testing.assert_frame_equal(first, second, check_dtype=False)
    info = frame_info(second)
    assert info.synthetic and info.dataset == "synthetic-sherlock18(seed=3)"
    assert info.time_column == "UUID"
    # A damaged cache entry is rebuilt, never trusted.
    cached[0].write_bytes(b"PAR1 broken")
    third = embedded_data(500, seed=3)
    assert len(third) == 500


def test_embedded_data_cached_by_another_generator_is_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After an upgrade that changes the generator, the same rows and seed must give the
    # new generator's data, not the old cached copy.
    from appsleuth.data import tables

    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tables, "_generator_key", lambda: "older")
    embedded_data(50, seed=1)
    (old,) = (tmp_path / "cache").iterdir()
    pd.DataFrame({"ApplicationName": ["stale", "data"], "rss": [1, 2]}).to_parquet(old)
    monkeypatch.setattr(tables, "_generator_key", lambda: "newer")
    assert "stale" not in set(embedded_data(50, seed=1)["ApplicationName"])
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_damaged_entry_of_a_read_only_cache_is_regenerated_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))
    embedded_data(60, seed=1)
    (cached,) = (tmp_path / "cache").iterdir()
    cached.write_bytes(b"PAR1 broken")  # e.g. damaged by a disk fault

    def read_only(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    assert len(embedded_data(60, seed=1)) == 60


def test_write_table_refuses_what_is_not_a_table(tmp_path) -> None:
    with pytest.raises(AppSleuthError, match=r"needs a pandas DataFrame; received list"):
        write_table([1], tmp_path / "x.csv")
    assert not list(tmp_path.iterdir())
