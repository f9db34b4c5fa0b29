"""Loading every supported layout, and a clear DataError for every kind of bad input."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appsleuth.data.clean import clean_sherlock
from appsleuth.data.layouts import RAW_COLUMNS, SHERLOCK18_FEATURES
from appsleuth.data.load import (
    FrameInfo,
    check_name_matches_content,
    csv_line_numbers,
    frame_info,
    from_dataframe,
    load_sherlock,
    nonfinite_values,
)
from appsleuth.errors import DataError, SpecError
from tests.conftest import MYSTERY, RAW_SAMPLE, make_sherlock18

# --- the real files ---------------------------------------------------------------------


def test_raw_sample_layout(shared_data: Path) -> None:
    df = load_sherlock(shared_data / "sherlock_raw_sample.csv")
    info = frame_info(df)
    assert info.layout == "raw"
    assert list(df.columns) == list(RAW_COLUMNS)  # the BOM is not part of the first name
    assert len(df) == 40
    assert info.features == SHERLOCK18_FEATURES
    assert info.id_columns == ("UserId", "UUID")
    assert info.time_column == "UUID"
    # NULL strings are missing values, quoted numbers are numbers.
    assert df["cminflt"].isna().all()
    assert pd.api.types.is_integer_dtype(df["rsslim"])
    assert df["rsslim"].iloc[0] == 4294967295
    assert df["UUID"].iloc[0] == 1461792776014
    assert df["UserId"].iloc[0] == "97bb95f55a"
    for col in info.numeric_features:
        assert pd.api.types.is_numeric_dtype(df[col]), col


def test_raw_sample_keeps_non_ascii_app_names(tmp_path: Path) -> None:
    # Real raw files contain Hebrew app names; they must survive loading unchanged.
    text = RAW_SAMPLE.read_text(encoding="utf-8-sig").splitlines()
    text[1] = text[1].replace(",Gmail,", ",ג'ימייל,")
    path = tmp_path / "hebrew.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(text) + "\n").encode("utf-8"))
    df = load_sherlock(path)
    assert df["ApplicationName"].iloc[0] == "ג'ימייל"


def test_mystery_teaching_layout(shared_data: Path) -> None:
    df = load_sherlock(shared_data / "sherlock_mystery.csv")
    info = frame_info(df)
    assert info.layout == "teaching"
    assert len(df) == 200
    assert df.index[:2].tolist() == [434, 1881]  # the index column became the index
    assert "Unnamed: 0" not in df.columns
    assert set(df["ApplicationName"]) == {"Facebook", "WhatsApp"}
    assert info.features == (
        "CPU_USAGE",
        "cutime",
        "lru",
        "num_threads",
        "otherPrivateDirty",
        "priority",
        "utime",
        "vsize",
        "cminflt",
        "guest_time",
        "Mem",
        "queue",
    )
    assert df["cminflt"].isna().sum() == 48


def test_sherlock18_layout_roundtrip(sherlock18_csv: Path) -> None:
    df = load_sherlock(sherlock18_csv)
    info = frame_info(df)
    assert info.layout == "sherlock18"
    assert info.features == SHERLOCK18_FEATURES
    assert info.categorical == ("state",)
    assert df.index.is_monotonic_increasing
    original = pd.read_csv(sherlock18_csv, index_col=0)
    assert df.index.tolist() == original.index.tolist()
    np.testing.assert_allclose(df["rss"].to_numpy(), original["rss"].to_numpy())


@pytest.mark.parametrize("suffix", [".csv.gz", ".data"])
def test_gzip_is_recognised_by_content(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"small{suffix}"
    with gzip.open(path, "wb") as fh:
        fh.write(MYSTERY.read_bytes())
    df = load_sherlock(path)
    assert len(df) == 200
    assert frame_info(df).layout == "teaching"


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "small.parquet"
    make_sherlock18().to_parquet(path)
    df = load_sherlock(path)
    assert frame_info(df).layout == "sherlock18"
    assert len(df) == 180


def test_generic_layout_with_configured_label_and_features(tmp_path: Path) -> None:
    path = tmp_path / "generic.csv"
    pd.DataFrame(
        {
            "app": ["a", "b", "a", "b"],
            "x": [1, 2, 3, 4],
            "y": [0.1, 0.2, 0.3, 0.4],
            "note": ["p", "q", "r", "s"],
        }
    ).to_csv(path, index=False)
    df = load_sherlock(path, label="app")
    info = frame_info(df)
    assert info.layout == "generic"
    assert info.label == "app"
    assert info.features == ("x", "y")  # the text column is not a feature
    df = load_sherlock(path, label="app", features=["y"])
    assert frame_info(df).features == ("y",)


def test_app_names_are_no_feature_when_another_column_is_the_label(tmp_path: Path) -> None:
    # A raw table labelled by a column of the user's (malware or not): the app's name
    # is text that describes the row, not a numeric feature with bad values.
    path = tmp_path / "labelled.csv"
    pd.DataFrame(
        {
            "ApplicationName": ["Gmail", "Moriarty", "Chrome", "Moriarty"],
            "is_malware": ["no", "yes", "no", "yes"],
            "rss": [1, 2, 3, 4],
        }
    ).to_csv(path, index=False)
    info = frame_info(load_sherlock(path, label="is_malware"))
    assert (info.layout, info.features) == ("generic", ("rss",))


def test_text_column_that_is_mostly_numbers_is_an_error_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "generic.csv"
    values = [str(i) for i in range(30)]
    values[17] = "12a"
    pd.DataFrame({"app": ["a", "b"] * 15, "x": values}).to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"'x' must be numeric, but data row 17 \(line 19\) "
        r"holds '12a'",
    ):
        load_sherlock(path, label="app")


def test_bad_value_late_in_a_large_file_names_row(tmp_path: Path) -> None:
    # pyarrow infers types from the first block; a bad value far down must still be named.
    n = 200_000
    df = pd.DataFrame(
        {
            "ApplicationName": np.where(np.arange(n) % 2, "a", "b"),
            "CPU_USAGE": np.arange(n, dtype=float).astype(str),
            "num_threads": np.arange(n),
        }
    )
    df.loc[n - 3, "CPU_USAGE"] = "high"
    path = tmp_path / "big.csv"
    df.to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=rf"'CPU_USAGE' must be numeric, but data row {n - 3} "
        rf"\(line {n - 1}\) holds 'high'",
    ):
        load_sherlock(path)


def test_prediction_data_without_label(tmp_path: Path) -> None:
    path = tmp_path / "unlabelled.csv"
    make_sherlock18().drop(columns="ApplicationName").to_csv(path)
    df = load_sherlock(path, require_label=False)
    assert frame_info(df).label is None
    assert frame_info(df).features == SHERLOCK18_FEATURES


def test_single_class_allowed_without_label_requirement(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    make_sherlock18(apps=("Gmail",)).to_csv(path)
    assert len(load_sherlock(path, require_label=False)) == 60


# --- bad input --------------------------------------------------------------------------


def _write(tmp_path: Path, content: bytes, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data file .*nope\.csv does not exist"):
        load_sherlock(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory"):
        load_sherlock(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"bad\.csv is empty"):
        load_sherlock(_write(tmp_path, b""))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\n\n\n", r"bad\.csv is empty: expected a header line and rows"),
        (b"\x00\x01\x02\xff" * 100, r"bad\.csv holds binary data, not a CSV table \(it has NUL"),
        (b"ApplicationName,CPU_USAGE", r"bad\.csv has no complete header line \(no line end "),
    ],
)
def test_files_without_a_header_line_say_why(tmp_path: Path, content: bytes, message) -> None:
    # All three were called "empty", the last two holding hundreds of bytes.
    with pytest.raises(DataError, match=message):
        load_sherlock(_write(tmp_path, content))


def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has a header but no rows"):
        load_sherlock(_write(tmp_path, b"ApplicationName,CPU_USAGE,utime\n"))


def test_ragged_rows_are_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a regular table: a row has a different number"):
        load_sherlock(_write(tmp_path, b"ApplicationName,CPU_USAGE\nGmail,1\nChrome,2,3,4\n"))


def test_not_a_table(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    with pytest.raises(DataError, match=r"bad\.csv"):
        load_sherlock(_write(tmp_path, png))


def test_no_label_column_lists_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, b"app,CPU_USAGE,utime\nGmail,1,2\nChrome,2,3\n")
    with pytest.raises(
        DataError,
        match=r"has no label column 'ApplicationName'; columns "
        r"found: \['app', 'CPU_USAGE', 'utime'\]",
    ):
        load_sherlock(path)


def test_non_numeric_feature_names_column_value_and_row(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE,utime\nGmail,1,2\nChrome,fast,3\n")
    with pytest.raises(
        DataError,
        match=r"feature column 'CPU_USAGE' must be numeric, but "
        r"data row 1 \(line 3\) holds 'fast'",
    ):
        load_sherlock(path)


def test_single_class(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE,utime\nGmail,1,2\nGmail,2,3\n")
    with pytest.raises(DataError, match=r"has a single class \('Gmail'\)"):
        load_sherlock(path)


@pytest.mark.parametrize("blank", [b"NULL", b"   ", b'" "'])
def test_missing_label_value(tmp_path: Path, blank: bytes) -> None:
    content = b"ApplicationName,CPU_USAGE,utime\nGmail,1,2\n" + blank + b",2,3\nChrome,1,1\n"
    path = _write(tmp_path, content)
    with pytest.raises(
        DataError,
        match=r"label column 'ApplicationName' is missing a value \(empty or blank\) "
        r"in data row 1 \(line 3\)",
    ):
        load_sherlock(path)


def test_labels_lose_surrounding_spaces(tmp_path: Path) -> None:
    content = b"ApplicationName,CPU_USAGE,utime\n Gmail,1,2\nGmail ,2,3\nChrome,1,1\n"
    path = _write(tmp_path, content)
    assert sorted(load_sherlock(path)["ApplicationName"].unique()) == ["Chrome", "Gmail"]


def test_unreadable_encoding(tmp_path: Path) -> None:
    content = "ApplicationName,CPU_USAGE\nGmail,1\nCaf\xe9,2\n".encode("latin-1")
    path = _write(tmp_path, content)
    with pytest.raises(
        DataError,
        match=r"column 'ApplicationName' is not valid utf-8 text; "
        r"pass the file's encoding",
    ):
        load_sherlock(path)
    df = load_sherlock(path, encoding="latin-1")
    assert df["ApplicationName"].tolist() == ["Gmail", "Café"]


def test_a_header_and_a_value_not_in_the_encoding(tmp_path: Path) -> None:
    # Naming the column of the bad value read the header too, which failed in turn: a
    # UnicodeDecodeError traceback (found by the fuzz test below).
    content = b"\x80x,ApplicationName,CPU_USAGE\n1,Gmail,1\n2,\x80Chrome,2\n"
    with pytest.raises(DataError, match=r"the header line is not valid utf-8 text; pass the"):
        load_sherlock(_write(tmp_path, content))


def test_unknown_encoding_name(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE\nGmail,1\nChrome,2\n")
    with pytest.raises(DataError, match=r"bad\.csv"):
        load_sherlock(path, encoding="no-such-codec")


@pytest.mark.parametrize("encoding", [5, None, "", b"utf-8"])
def test_encoding_must_be_a_name(tmp_path: Path, encoding: object) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE\nGmail,1\nChrome,2\n")
    with pytest.raises(
        SpecError,
        match=rf"encoding must be the name of a text encoding, such as 'utf-8' or 'latin-1'; "
        rf"received encoding={re.escape(repr(encoding))}$",
    ):
        load_sherlock(path, encoding=encoding)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = _write(tmp_path, b"\x1f\x8b\x08\x00garbage-not-deflate", "bad.csv.gz")
    with pytest.raises(DataError, match="looks gzip-compressed but cannot be decompressed"):
        load_sherlock(path)


def test_true_false_words_are_one_and_zero_whichever_way_the_column_is_read() -> None:
    # The CSV reader reads a column of only such words as booleans (1 and 0); written as
    # text (a table read with dtype=str, a file read again as text, mixed with numbers)
    # the same words mean the same, and count as numbers when features are picked.
    df = pd.DataFrame(
        {
            "ApplicationName": ["a", "b", "a", "b"],
            "rss": ["true", "False", "TRUE", None],
            "mixed": ["True", "2.5", "false", "7"],
        }
    )
    loaded = from_dataframe(df)
    assert loaded.attrs["appsleuth"]["features"] == ["rss", "mixed"]
    assert loaded["rss"].tolist()[:3] == [1, 0, 1] and np.isnan(loaded["rss"].iloc[3])
    assert loaded["mixed"].tolist() == [1, 2.5, 0, 7]
    with pytest.raises(DataError, match=r"feature column 'rss' must be numeric, .* 'yes'"):
        from_dataframe(df.assign(rss=["yes", "no", "1", "0"]), features=["rss"])


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([1000, None, 1002, 1003], "Int64"),
        ([0.5, None, 1.5, 2.5], "Float64"),
        ([True, None, False, True], "boolean"),
    ],
)
def test_parquet_nullable_numbers_read_with_nan(tmp_path: Path, values, dtype) -> None:
    # pandas' nullable dtypes, as Parquet files written from pandas often hold: their
    # missing value is NaN like any other, so a median fills it (it used to raise
    # "cannot convert NA to integer" or "Invalid value '1001.5' for dtype 'Int64'").
    path = tmp_path / "nullable.parquet"
    pd.DataFrame(
        {
            "ApplicationName": ["a", "b", "a", "b"],
            "rss": [1, 2, 3, 4],
            "x": pd.array(values, dtype=dtype),
        }
    ).to_parquet(path)
    df = load_sherlock(path)
    assert df["x"].dtype == np.float64
    assert df["x"].isna().tolist() == [False, True, False, False]
    filled, _ = clean_sherlock(df, missing="impute")
    assert filled["x"].notna().all()


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = _write(tmp_path, b"PAR1" + b"\x00" * 40, "bad.parquet")
    with pytest.raises(DataError, match="starts like Parquet but cannot be read"):
        load_sherlock(path)


def test_missing_feature_column(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE\nGmail,1\nChrome,2\n")
    with pytest.raises(DataError, match=r"lacks the feature column\(s\) \['rss'\]"):
        load_sherlock(path, features=["CPU_USAGE", "rss"])


def test_label_cannot_be_a_feature(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE\nGmail,1\nChrome,2\n")
    with pytest.raises(DataError, match="cannot also be a feature"):
        load_sherlock(path, features=["ApplicationName"])


def test_no_numeric_feature(tmp_path: Path) -> None:
    path = _write(tmp_path, b"label,text\na,x\nb,y\n")
    with pytest.raises(DataError, match="has no numeric feature columns besides the label"):
        load_sherlock(path, label="label")


def test_bad_layout_name(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE\nGmail,1\nChrome,2\n")
    with pytest.raises(DataError, match=r"layout must be one of .*received layout='excel'"):
        load_sherlock(path, layout="excel")  # type: ignore[arg-type]


# --- in-memory tables and the attrs contract --------------------------------------------


def test_from_dataframe_validates_and_copies() -> None:
    raw = make_sherlock18()
    raw["CPU_USAGE"] = raw["CPU_USAGE"].astype(str)
    df = from_dataframe(raw)
    assert pd.api.types.is_float_dtype(df["CPU_USAGE"])
    assert raw["CPU_USAGE"].dtype != df["CPU_USAGE"].dtype  # the input is untouched
    assert frame_info(df).source == "dataframe"


def test_frame_info_roundtrip() -> None:
    info = FrameInfo(source="x.csv", dataset="x", features=("a", "b"), categorical=("b",))
    assert FrameInfo.from_dict(info.to_dict()) == info
    assert info.numeric_features == ("a",)


def test_frame_info_detects_when_attrs_are_missing() -> None:
    df = make_sherlock18()
    df.attrs.clear()
    assert frame_info(df).layout == "sherlock18"


# --- fuzzing: anything either loads or raises DataError ---------------------------------

_FUZZ = settings(
    max_examples=int(os.environ.get("APPSLEUTH_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _load_or_data_error(path: Path) -> None:
    try:
        df = load_sherlock(path)
    except DataError as exc:
        assert str(exc), "a DataError must say what is wrong"
        assert str(path) in str(exc) or "features" in str(exc) or "layout" in str(exc)
    else:
        assert isinstance(df, pd.DataFrame)
        assert frame_info(df).label == "ApplicationName"


@_FUZZ
@given(content=st.binary(max_size=400))
def test_fuzz_random_bytes(tmp_path: Path, content: bytes) -> None:
    _load_or_data_error(_write(tmp_path, content, "fuzz.csv"))


_REAL_LINES = [
    line for f in (RAW_SAMPLE, MYSTERY) if f.exists() for line in f.read_bytes().splitlines()[:8]
]


@st.composite
def _mutated_real_file(draw: st.DrawFn) -> bytes:
    source = draw(st.sampled_from([RAW_SAMPLE, MYSTERY]))
    lines = source.read_bytes().splitlines()[: draw(st.integers(1, 12))]
    n_mutations = draw(st.integers(1, 4))
    for _ in range(n_mutations):
        i = draw(st.integers(0, len(lines) - 1))
        line = bytearray(lines[i])
        kind = draw(st.sampled_from(["cut", "insert", "field", "drop", "swap"]))
        pos = draw(st.integers(0, max(len(line) - 1, 0)))
        if kind == "cut":
            line = line[:pos]
        elif kind == "insert":
            line[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "field":
            fields = bytes(line).split(b",")
            j = draw(st.integers(0, len(fields) - 1))
            fields[j] = draw(
                st.sampled_from(
                    [b"", b"NULL", b"abc", b"-1", b'"1"', b"1e999", b"\xff\xfe", b'"', b"1,2"]
                )
            )
            line = bytearray(b",".join(fields))
        elif kind == "drop":
            del lines[i]
            if not lines:
                lines = [b""]
            continue
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            continue
        lines[i] = bytes(line)
    return b"\n".join(lines) + b"\n"


@_FUZZ
@given(content=_mutated_real_file())
def test_fuzz_mutated_real_rows(tmp_path: Path, content: bytes) -> None:
    _load_or_data_error(_write(tmp_path, content, "mutated.csv"))


def test_repeated_column_names(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,x,x\nGmail,1,2\nChrome,2,3\n")
    with pytest.raises(DataError, match=r"has repeated column names \['x'\]"):
        load_sherlock(path)


# --- infinite values: treated as missing, recorded -------------------------------------

_SMALL = b"ApplicationName,CPU_USAGE,utime\nGmail,1,2\nChrome,2,3\nGmail,3,4\nChrome,4,5\n"


@pytest.mark.parametrize(
    ("text", "positive"),
    [("inf", 1), ("-inf", 0), ("Infinity", 1), ("-Infinity", 0), ("INF", 1), ("1e999", 1)],
)
def test_infinite_value_is_missing_and_recorded(tmp_path: Path, text: str, positive: int) -> None:
    content = _SMALL.replace(b"Chrome,4,5", b"Chrome," + text.encode() + b",5")
    df = load_sherlock(_write(tmp_path, content))
    assert df["CPU_USAGE"].isna().tolist() == [False, False, False, True]
    assert nonfinite_values(df) == {
        "CPU_USAGE": {
            "count": 1,
            "positive": positive,
            "rows": [3],
            "where": ["data row 3 (line 5)"],
        }
    }


def test_infinite_value_in_a_column_re_read_as_text(tmp_path: Path) -> None:
    # A bad text far down makes the reader re-read every column as text: "inf" must still
    # become an infinite number, then a missing value.
    n = 5000
    values = [str(i) for i in range(n)]
    values[10] = "Infinity"
    values[n - 1] = "1.5"
    frame = pd.DataFrame({"ApplicationName": ["a", "b"] * (n // 2), "x": values})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    df = load_sherlock(path)
    assert np.isnan(df["x"].iloc[10])
    assert nonfinite_values(df)["x"]["where"] == ["data row 10 (line 12)"]


def test_many_infinite_values_list_the_first_rows(tmp_path: Path) -> None:
    rows = "".join(f"{'ab'[i % 2]},{'inf' if i % 3 == 0 else i},1\n" for i in range(30))
    path = _write(tmp_path, ("ApplicationName,CPU_USAGE,utime\n" + rows).encode())
    record = nonfinite_values(load_sherlock(path))["CPU_USAGE"]
    assert record["count"] == 10
    assert record["rows"] == [0, 3, 6, 9, 12]
    assert record["where"][1] == "data row 3 (line 5)"


def test_infinite_values_in_parquet_name_data_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    df = make_sherlock18()
    df.iloc[7, df.columns.get_loc("rss")] = -np.inf
    df.to_parquet(path)
    loaded = load_sherlock(path)
    assert loaded["rss"].isna().sum() == 1
    assert nonfinite_values(loaded)["rss"]["where"] == ["data row 7"]


def test_from_dataframe_treats_infinite_values_as_missing() -> None:
    raw = make_sherlock18()
    raw.iloc[2, raw.columns.get_loc("CPU_USAGE")] = np.inf
    df = from_dataframe(raw)
    assert np.isnan(df["CPU_USAGE"].iloc[2])
    assert np.isinf(raw["CPU_USAGE"].iloc[2])  # the input is untouched
    record = nonfinite_values(df)["CPU_USAGE"]
    assert record["count"] == 1 and record["rows"] == [2]
    assert record["where"] == [f"row 2 (index {raw.index[2]})"]


def test_from_dataframe_keeps_the_loaders_record(tmp_path: Path) -> None:
    content = _SMALL.replace(b"Chrome,4,5", b"Chrome,inf,5")
    df = from_dataframe(load_sherlock(_write(tmp_path, content)))
    assert nonfinite_values(df)["CPU_USAGE"]["where"] == ["data row 3 (line 5)"]
    assert nonfinite_values(make_sherlock18()) == {}


def test_infinite_values_outside_the_features_are_left_alone(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE,utime\nGmail,1,inf\nChrome,2,3\n")
    df = load_sherlock(path, features=["CPU_USAGE"])
    assert np.isinf(df["utime"].iloc[0])
    assert nonfinite_values(df) == {}


# --- line numbers: blank lines and multi-line values ------------------------------------


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    # The reviewer's case: two blank lines after the header put row 9 on line 13.
    rows = [f"{'ab'[i % 2]},{i},1" for i in range(12)]
    rows[9] = "b,X,1"
    text = "ApplicationName,CPU_USAGE,utime\n\n\n" + "\n".join(rows) + "\n"
    with pytest.raises(DataError, match=r"data row 9 \(line 13\) holds 'X'"):
        load_sherlock(_write(tmp_path, text.encode()))


def test_line_numbers_with_crlf_quoted_newlines_and_gzip(tmp_path: Path) -> None:
    text = (
        'ApplicationName,note,CPU_USAGE\r\n\r\nGmail,"two\r\nlines",1\r\n'
        "Chrome,x,2\r\n\r\nGmail,y,fast\r\n"
    )
    with pytest.raises(DataError, match=r"data row 2 \(line 7\) holds 'fast'"):
        load_sherlock(_write(tmp_path, text.encode()), features=["CPU_USAGE"])
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(DataError, match=r"data row 2 \(line 7\) holds 'fast'"):
        load_sherlock(path, features=["CPU_USAGE"])


def test_missing_label_line_counts_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE\n\nGmail,1\n\n\nNULL,2\nChrome,3\n")
    with pytest.raises(DataError, match=r"\(empty or blank\) in data row 1 \(line 6\)"):
        load_sherlock(path)


def test_ragged_row_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE\nGmail,1\n\n\nChrome,2,3\n")
    with pytest.raises(
        DataError,
        match=r"a row has a different number of fields than the header "
        r"\(line 5 has 3 field\(s\), the header 2\)",
    ):
        load_sherlock(path)


def test_parquet_and_dataframe_rows_claim_no_line(tmp_path: Path) -> None:
    df = make_sherlock18()
    df["CPU_USAGE"] = df["CPU_USAGE"].astype(str)
    df.iloc[3, df.columns.get_loc("CPU_USAGE")] = "fast"
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    with pytest.raises(DataError, match=r"but data row 3 holds 'fast'") as err:
        load_sherlock(path)
    assert "line" not in str(err.value)
    with pytest.raises(DataError, match=rf"but row 3 \(index {df.index[3]}\) holds 'fast'"):
        from_dataframe(df)
    with pytest.raises(DataError, match=r"but row 3 holds 'fast'"):
        from_dataframe(df.reset_index(drop=True))


@st.composite
def _table_with_blank_lines(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """CSV text with blank lines anywhere after the header, one bad value; its row, line."""
    n = draw(st.integers(2, 30))
    bad = draw(st.integers(0, n - 1))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = ["ApplicationName,CPU_USAGE,utime"]
    bad_line = 0
    for i in range(n):
        lines += [""] * draw(st.integers(0, 3))
        value = "oops" if i == bad else str(i)
        lines.append(f"{'ab'[i % 2]},{value},{i}")
        if i == bad:
            bad_line = len(lines)
    lines += [""] * draw(st.integers(0, 2))
    return newline.join(lines).encode() + newline.encode(), bad, bad_line


@_FUZZ
@given(case=_table_with_blank_lines())
def test_fuzz_line_numbers_with_blank_lines(tmp_path: Path, case: tuple[bytes, int, int]) -> None:
    content, row, line = case
    with pytest.raises(DataError, match=rf"data row {row} \(line {line}\) holds 'oops'"):
        load_sherlock(_write(tmp_path, content, "blank.csv"))


# --- the name and the content of a file must agree --------------------------------------


@pytest.mark.parametrize("name", ["x.parquet", "x.PQ"])
def test_text_named_parquet_is_not_read_as_csv(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, b"hello world\n", name)
    with pytest.raises(
        DataError,
        match=re.escape(name)
        + r" is not a Parquet file \(it is text starting with 'hello world', while a "
        r"Parquet file starts with the bytes 'PAR1'\)",
    ):
        load_sherlock(path)


def test_csv_named_parquet_suggests_its_real_name(tmp_path: Path) -> None:
    path = _write(tmp_path, MYSTERY.read_bytes() if MYSTERY.exists() else _SMALL, "x.parquet")
    with pytest.raises(DataError, match=r"for example x\.csv for a CSV table"):
        load_sherlock(path)


def test_gzip_named_parquet_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, gzip.compress(_SMALL), "x.parquet")
    with pytest.raises(DataError, match=r"is not a Parquet file \(its content is gzip"):
        load_sherlock(path)


def test_binary_named_parquet_shows_its_first_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path, b"\x00\x01\xfe\xffjunk", "x.parquet")
    with pytest.raises(DataError, match=r"it starts with the bytes 00 01 fe ff 6a"):
        load_sherlock(path)


def test_plain_text_named_gz_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, _SMALL, "x.csv.gz")
    with pytest.raises(
        DataError,
        match=r"x\.csv\.gz is not gzip-compressed \(it is text starting with "
        r"'ApplicationName,CPU_USAGE,utime', while a gzip file starts with the bytes 1f 8b\)",
    ):
        load_sherlock(path)


def test_parquet_content_is_read_whatever_the_name(tmp_path: Path) -> None:
    path = tmp_path / "really-parquet.csv"
    make_sherlock18().to_parquet(path)
    assert len(load_sherlock(path)) == 180


def test_no_line_is_claimed_when_the_line_count_disagrees() -> None:
    from appsleuth.data.load import _RowNames

    text = b"a,b\n1,2\n\n3,4\n"
    assert _RowNames(kind="csv", source=text, n_rows=2).names([0, 1]) == [
        "data row 0 (line 2)",
        "data row 1 (line 4)",
    ]
    # A reader that saw another number of rows: the lines cannot be trusted.
    assert _RowNames(kind="csv", source=text, n_rows=3).name(1) == "data row 1"


def test_csv_line_numbers_for_streaming_readers(tmp_path: Path) -> None:
    text = b"a,b\n\n1,2\n\n\n3,4\n5,6\n"
    plain = _write(tmp_path, text, "t.csv")
    packed = _write(tmp_path, gzip.compress(text), "t.csv.gz")
    for path in (plain, packed):
        assert csv_line_numbers(path, [0, 1, 2]) == {0: 3, 1: 6, 2: 7}
        assert csv_line_numbers(path, [2], n_rows=3) == {2: 7}
        assert csv_line_numbers(path, [2], n_rows=4) == {}
    assert csv_line_numbers(tmp_path / "nope.csv", [0]) == {}


def test_check_name_matches_content_for_other_readers(tmp_path: Path) -> None:
    check_name_matches_content(tmp_path / "x.parquet", b"PAR1\x15")
    check_name_matches_content(tmp_path / "x.csv", b"PAR1\x15")  # the content decides
    with pytest.raises(DataError, match=r"x\.parquet is not a Parquet file"):
        check_name_matches_content(tmp_path / "x.parquet", b"a,b\n")


@_FUZZ
@given(content=st.binary(max_size=400), name=st.sampled_from(["f.parquet", "f.csv.gz", "f.pq"]))
def test_fuzz_files_named_parquet_or_gzip(tmp_path: Path, content: bytes, name: str) -> None:
    _load_or_data_error(_write(tmp_path, content, name))


# --- review fixes: feature dtypes, lists of names, paths ---------------------------------


@pytest.mark.parametrize(
    ("values", "dtype_text"),
    [
        (pd.to_datetime(["2020-01-01"] * 60 * 3), r"datetime64\[\w+\] \(dates/times\)"),
        (pd.to_timedelta(["1s"] * 60 * 3), r"timedelta64\[\w+\] \(durations\)"),
        (np.full(60 * 3, 1 + 2j), r"complex128 \(complex numbers\)"),
    ],
)
def test_from_dataframe_refuses_date_duration_complex_features(values, dtype_text: str) -> None:
    df = make_sherlock18()
    df["CPU_USAGE"] = values
    with pytest.raises(
        DataError,
        match=rf"feature column 'CPU_USAGE' has dtype {dtype_text}, but a numeric column is "
        r"expected",
    ):
        from_dataframe(df)


def test_dates_are_not_picked_as_features_of_a_generic_table() -> None:
    df = pd.DataFrame(
        {
            "ApplicationName": ["a", "b"] * 5,
            "x": np.arange(10.0),
            "when": pd.date_range("2020-01-01", periods=10),
        }
    )
    assert frame_info(from_dataframe(df)).features == ("x",)
    with pytest.raises(DataError, match=r"feature column 'when' has dtype datetime64"):
        from_dataframe(df, features=["x", "when"])


def test_parquet_date_feature_is_refused(tmp_path: Path) -> None:
    df = make_sherlock18()
    df["utime"] = pd.Timestamp("2020-01-01")
    df.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"d\.parquet: feature column 'utime' has dtype datetime"):
        load_sherlock(tmp_path / "d.parquet")


def test_features_as_a_comma_separated_string(sherlock18_csv: Path) -> None:
    df = load_sherlock(sherlock18_csv, features="CPU_USAGE")
    assert frame_info(df).features == ("CPU_USAGE",)
    df = load_sherlock(sherlock18_csv, features="CPU_USAGE, utime", categorical="")
    assert frame_info(df).features == ("CPU_USAGE", "utime")
    df = from_dataframe(make_sherlock18(), features="CPU_USAGE,utime")
    assert frame_info(df).features == ("CPU_USAGE", "utime")


def test_bad_lists_of_names_are_refused(sherlock18_csv: Path) -> None:
    with pytest.raises(
        DataError, match=r"features must name at least one column; received features=''"
    ):
        load_sherlock(sherlock18_csv, features="")
    with pytest.raises(
        DataError,
        match=r"features must be a list of names or one comma-separated string; "
        r"received features=5 \(int\)",
    ):
        load_sherlock(sherlock18_csv, features=5)
    with pytest.raises(
        DataError,
        match=r"features must be a list of non-empty names \(text\); "
        r"received features='CPU_USAGE,,utime', which holds ''",
    ):
        load_sherlock(sherlock18_csv, features="CPU_USAGE,,utime")
    with pytest.raises(DataError, match=r"holds 3 \(int\)"):
        from_dataframe(make_sherlock18(), features=["CPU_USAGE", 3])


def test_repeated_feature_names_are_refused(sherlock18_csv: Path) -> None:
    with pytest.raises(DataError, match=r"features names \['CPU_USAGE'\] more than once"):
        load_sherlock(sherlock18_csv, features=["CPU_USAGE", "CPU_USAGE"])
    with pytest.raises(DataError, match=r"features names \['utime'\] more than once"):
        from_dataframe(make_sherlock18(), features="utime, CPU_USAGE, utime")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", r"path must name a data file .*; received path='', which names none"),
        ("  ", r"received path='  ', which names none"),
        (None, r"path must be the path of a data file .*; received path=None \(NoneType\)"),
        (5, r"received path=5 \(int\)"),
        (b"x.csv", r"received path=b'x.csv' \(bytes\)"),
    ],
)
def test_load_refuses_what_is_not_a_path(path: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_sherlock(path)  # type: ignore[arg-type]


def test_load_given_a_dataframe_points_to_from_dataframe() -> None:
    with pytest.raises(DataError, match=r"received a DataFrame; .* use from_dataframe\(df\)"):
        load_sherlock(make_sherlock18())  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, [1, 2], {"a": [1]}])
def test_non_tables_are_named(bad) -> None:
    from appsleuth.data.load import frame_info

    with pytest.raises(DataError, match=rf"expected a table .*received {type(bad).__name__}"):
        frame_info(bad)
    name = type(bad).__name__
    with pytest.raises(DataError, match=rf"needs a pandas DataFrame; received {name}"):
        from_dataframe(bad)


@pytest.mark.parametrize(("sep", "name"), [(b";", "semicolons"), (b"\t", "tabs")])
@pytest.mark.parametrize("n_features", [1, 2])
def test_other_separators_get_a_hint(
    tmp_path: Path, sep: bytes, name: str, n_features: int
) -> None:
    # One feature too: the header is then one name holding a single separator.
    rows = [b"ApplicationName", b"CPU_USAGE", b"utime"], [b"Gmail", b"1", b"2"]
    rows = tuple(r[: 1 + n_features] for r in rows)
    path = _write(tmp_path, b"\n".join(sep.join(r) for r in rows) + b"\n")
    with pytest.raises(DataError, match=rf"seems to separate its fields with {name}"):
        load_sherlock(path)


@pytest.mark.parametrize("damage", ["repeat", "blank", "float"])
def test_unnamed_first_column_is_the_index_never_a_feature(tmp_path: Path, damage: str) -> None:
    lines = MYSTERY.read_text().splitlines()
    first, second = lines[1].split(",", 1), lines[2].split(",", 1)
    if damage == "repeat":
        lines[2] = f"{first[0]},{second[1]}"  # the previous row's index again
    elif damage == "blank":
        lines[2] = f",{second[1]}"
    else:
        lines[2] = f"{second[0]}.0,{second[1]}"
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    clean = load_sherlock(MYSTERY)
    df = load_sherlock(path)
    assert not any(str(c).startswith("Unnamed") for c in df.columns)
    assert frame_info(df).features == frame_info(clean).features
    assert len(df) == len(clean)


def test_labels_that_look_like_numbers_stay_as_written(tmp_path: Path) -> None:
    path = tmp_path / "numbered.csv"
    rows = ["ApplicationName,CPU_USAGE,rss"]
    rows += [f"{label},{i}.5,{100 + i}" for i, label in enumerate(["01", "1", "1.0", "2"] * 3)]
    path.write_text("\n".join(rows) + "\n")
    df = load_sherlock(path)
    assert sorted(df["ApplicationName"].unique()) == ["01", "1", "1.0", "2"]
    assert df["CPU_USAGE"].dtype.kind == "f"  # features are still numbers


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"PK\x03\x04rest of a zip", r"is a zip archive, which is not read: unzip it, or"),
        (
            "ApplicationName,rss\nGmail,1\nChrome,2\n".encode("utf-16"),
            r"is UTF-16 text .*pass encoding='utf-16' \(--encoding utf-16\)",
        ),
    ],
)
def test_zip_and_utf16_files_are_named(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        load_sherlock(path)


def _wide_frame(n_extra: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    extra = {f"x{i:03d}": rng.normal(size=12) for i in range(n_extra)}
    return pd.DataFrame({"ApplicationName": ["Gmail", "Chrome"] * 6, **extra})


def _records() -> dict[str, pd.DataFrame]:
    from appsleuth.data.clean import clean_sherlock
    from appsleuth.data.synth import generate_sherlock

    wide = from_dataframe(_wide_frame())
    return {
        "from_dataframe": wide,
        "generator": generate_sherlock(50, seed=1),
        "cleaned": clean_sherlock(wide)[0],
    }


@pytest.mark.parametrize("source", ["from_dataframe", "generator", "cleaned"])
def test_the_record_in_attrs_copies_as_deepcopy_does(source: str) -> None:
    import copy

    df = _records()[source]
    record = df.attrs["appsleuth"]
    copied = copy.deepcopy(record)
    assert copied == record and isinstance(copied, dict)
    # A deep copy: changing the copy's lists leaves the table's record as it was.
    before = list(record["features"])
    copied["features"].append("changed")
    assert record["features"] == before
    # Derived frames and columns carry the same record.
    assert df[df.columns[-1]].attrs["appsleuth"] == record
    assert frame_info(df.iloc[:3]) == frame_info(df)


def test_column_access_on_a_wide_table_does_not_deep_copy_its_column_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pandas deep-copies attrs on every column access: with copy.deepcopy that costs
    # time in the number of columns per access, the square of it for a loop over them.
    import copy

    df = from_dataframe(_wide_frame())
    calls: list[int] = []
    deepcopy_list = copy._deepcopy_dispatch[list]  # type: ignore[attr-defined]

    def counting(x, memo, deepcopy=copy.deepcopy):
        calls.append(len(x))
        return deepcopy_list(x, memo, deepcopy)

    monkeypatch.setitem(copy._deepcopy_dispatch, list, counting)  # type: ignore[attr-defined]
    for column in df.columns:
        attrs = df[column].attrs  # pandas 2 gives a column no attrs (and copies none)
        assert not attrs or attrs["appsleuth"]["features"] == list(df.columns[1:])
    assert calls == []


@pytest.mark.parametrize("source", ["from_dataframe", "generator", "cleaned"])
def test_column_access_costs_no_python_step_per_column(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One Python step per listed column on every access made a loop over the columns of
    # a 10,000-column table take minutes in the quality report; the lists of names are
    # copied whole now, so the steps do not grow with the table's width.
    from appsleuth.data import _record

    df = _records()[source]
    looked_at: list[type] = []

    class Counting(tuple):
        def __contains__(self, kind: object) -> bool:
            looked_at.append(kind)  # type: ignore[arg-type]
            return tuple.__contains__(self, kind)

    monkeypatch.setattr(_record, "_ATOMIC", Counting(_record._ATOMIC))
    column = df[df.columns[-1]]
    assert column.attrs["appsleuth"] == df.attrs["appsleuth"]
    # A look at each key and at each value of the record, none at each listed column.
    assert len(looked_at) <= 2 * len(df.attrs["appsleuth"])


@pytest.mark.parametrize("recorded", [True, False])
@pytest.mark.parametrize("step", ["check_data", "clean_sherlock", "prepare_data"])
def test_a_table_with_a_repeated_column_is_named_by_every_step(step: str, recorded: bool) -> None:
    # pd.concat keeps the loader's attrs, so a column repeated after loading must be caught
    # where the table is read again, not end in a pandas error about truth values.
    import appsleuth

    df = from_dataframe(make_sherlock18(400))
    assert df.attrs["appsleuth"]
    twice = pd.concat([df, df[["CPU_USAGE"]]], axis=1)
    if not recorded:
        twice.attrs = {}
    with pytest.raises(DataError, match=r"has repeated column names \['CPU_USAGE'\]"):
        getattr(appsleuth, step)(twice)


def test_a_header_repeated_inside_the_file_is_named_as_such(tmp_path: Path) -> None:
    # Two exports joined with `cat`: the second header is a row of the table.
    part = b"ApplicationName,rss,vsize\na,1,2\nb,3,4\n"
    path = _write(tmp_path, part + part, "joined.csv")
    with pytest.raises(
        DataError,
        match=r"data row 2 \(line 4\) holds 'rss' \(the header line again: were files "
        r"joined with their headers\? keep one\)",
    ):
        load_sherlock(path)


def test_gzip_compressed_parquet_or_utf16_is_named_as_such(tmp_path: Path) -> None:
    # Read as CSV, both used to end in "a row has a different number of fields".
    parquet = tmp_path / "t.parquet"
    make_sherlock18(n_per_app=5).to_parquet(parquet)
    packed = _write(tmp_path, gzip.compress(parquet.read_bytes()), "t.parquet.gz")
    with pytest.raises(DataError, match=r"t\.parquet\.gz is a gzip-compressed Parquet file"):
        load_sherlock(packed)
    text = "ApplicationName,rss\na,1\nb,2\n".encode("utf-16")
    wide = _write(tmp_path, gzip.compress(text), "t.csv.gz")
    with pytest.raises(DataError, match=r"t\.csv\.gz is UTF-16 text once decompressed"):
        load_sherlock(wide)
    assert len(load_sherlock(wide, encoding="utf-16")) == 2


@pytest.mark.parametrize("compress", [False, True])
def test_a_hexadecimal_value_among_whole_numbers_is_named_not_read(
    tmp_path: Path, compress: bool
) -> None:
    rows = [b"ApplicationName,CPU_USAGE,rss", b"Gmail,1,0x1A"]
    rows += [b"%s,%d,%d" % (app, i, i) for i, app in enumerate([b"Gmail", b"Chrome"] * 10)]
    content = b"\n".join(rows) + b"\n"
    path = _write(tmp_path, gzip.compress(content, mtime=0) if compress else content)
    # The CSV reader's integer inference would read it as 26, silently.
    with pytest.raises(
        DataError,
        match=r"feature column 'rss' must be numeric, but data row 0 \(line 2\) holds '0x1A'",
    ):
        load_sherlock(path)


def test_hexadecimal_text_elsewhere_leaves_whole_numbers_as_they_are(tmp_path: Path) -> None:
    path = _write(tmp_path, b"ApplicationName,CPU_USAGE,rss\n0xGmail,1,10\nChrome,2,20\n")
    df = load_sherlock(path)
    assert df["rss"].tolist() == [10, 20] and df["rss"].dtype.kind == "i"
    assert df["ApplicationName"].tolist() == ["0xGmail", "Chrome"]


def test_hexadecimal_text_leaves_other_whole_number_columns_as_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appsleuth.data import load

    # "0x" anywhere in the file had every whole-number column read again as text, to be
    # parsed once more: a 273,129-row file with one "0x1f" in a note column took 4x as
    # long to load. Only the whole-number column that holds it becomes text now.
    path = _write(
        tmp_path,
        b"ApplicationName,CPU_USAGE,rss,vsize,note\nGmail,1,10,0x1A,0x1f\nChrome,2,20,5,ok\n",
    )
    # The columns as the reader gave them, before text that holds numbers is parsed.
    monkeypatch.setattr(load, "_text_columns_to_numbers", lambda df, keep: df)
    df = load._read_csv(path, path, encoding="utf-8", lines_of=path, label="ApplicationName")
    assert df["rss"].dtype.kind == "i" and df["CPU_USAGE"].dtype.kind == "i"
    assert df["vsize"].tolist() == ["0x1A", "5"]


@pytest.mark.parametrize("row", [b"1,2", b"1,0x1A"])
def test_a_header_not_in_the_encoding_is_named_beside_whole_numbers(
    tmp_path: Path, row: bytes
) -> None:
    # Looking for whole-number columns (hexadecimal text) read the header's names, which
    # raised UnicodeDecodeError, a traceback, before the header check could name it.
    path = _write(tmp_path, b"\x80a,b\n" + row + b"\n")
    with pytest.raises(DataError, match=r"the header line is not valid utf-8 text"):
        load_sherlock(path)


@pytest.mark.parametrize("kind", ["device", "pipe"])
def test_a_device_or_pipe_is_refused_before_it_is_read(tmp_path: Path, kind: str) -> None:
    import os

    path = tmp_path / "data.csv"
    if kind == "device":
        path.symlink_to("/dev/urandom")  # read without end (data check hung)
        named = r"a character device \(such as /dev/zero\)"
    else:
        os.mkfifo(path)  # opening it would wait for a writer
        named = "a named pipe"
    with pytest.raises(DataError, match=rf"data file .*data.csv is {named}, not a regular file"):
        load_sherlock(path)
