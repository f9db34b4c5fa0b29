"""Prediction: every layout, missing values, bad values, streaming in chunks, the CLI."""

from __future__ import annotations

import gzip
import importlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from appsleuth.cli import main
from appsleuth.data.load import load_sherlock
from appsleuth.data.prepare import prepare_data
from appsleuth.data.synth import generate_sherlock
from appsleuth.errors import AppSleuthError, AppSleuthWarning, DataError
from appsleuth.evaluate import roc_auc
from appsleuth.predict import best_run_dir, predict, predict_file
from appsleuth.run import evaluate_run, load_run, predict_proba, train
from appsleuth.spec import DataSpec, ModelSpec, RunSpec, TrainSpec

# The numeric columns the real 2-app teaching file shares with the 18-app layout.
MYSTERY_FEATURES = (
    "CPU_USAGE",
    "cutime",
    "lru",
    "num_threads",
    "otherPrivateDirty",
    "priority",
    "utime",
    "vsize",
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return generate_sherlock(4000, seed=2)


@pytest.fixture(scope="module")
def run_dir(table, tmp_path_factory) -> Path:
    spec = RunSpec(
        model=ModelSpec(hidden=(16,)),
        train=TrainSpec(epochs=3, batch_size=64, learning_rate=0.01, engine="auto"),
    )
    out = tmp_path_factory.mktemp("runs")
    return train(spec, data=table, out=out, verbose=False, log=lambda m: None).run_dir


@pytest.fixture(scope="module")
def fb_wa_run_dir(tmp_path_factory) -> Path:
    spec = RunSpec(
        data=DataSpec(apps=("Facebook", "WhatsApp"), features=MYSTERY_FEATURES),
        model=ModelSpec(hidden=(8,)),
        train=TrainSpec(epochs=3, batch_size=32, learning_rate=0.01, engine="auto"),
    )
    out = tmp_path_factory.mktemp("fbwa")
    data = generate_sherlock(3000, apps=["Facebook", "WhatsApp"], seed=3)
    return train(spec, data=data, out=out, verbose=False, log=lambda m: None).run_dir


def test_predict_in_memory(run_dir, table) -> None:
    preds = predict(run_dir, table.iloc[:300], top_k=3)
    assert list(preds.columns[:3]) == ["row_id", "predicted_app", "probability"]
    assert {"top1_app", "top3_probability", "true_app", "correct"} <= set(preds.columns)
    assert (preds["predicted_app"] == preds["top1_app"]).all()
    assert (preds["top1_probability"] >= preds["top2_probability"]).all()
    assert np.allclose(preds["probability"], preds["top1_probability"])
    assert (
        preds["row_id"].tolist()
        == table.index[:300][~table.iloc[:300][["CPU_USAGE", "rss"]].isna().any(axis=1)].tolist()
    )
    assert (preds["correct"] == (preds["true_app"] == preds["predicted_app"])).all()
    assert preds["correct"].mean() > 0.5


def test_predict_without_labels(run_dir, table) -> None:
    preds = predict(run_dir, table.drop(columns="ApplicationName").iloc[:50], top_k=1)
    assert "true_app" not in preds.columns and "top2_app" not in preds.columns


def test_file_chunks_match_memory(run_dir, table, tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    table.iloc[:1000].to_csv(path)
    one = predict_file(run_dir, path, tmp_path / "one.csv", chunk_rows=10_000)
    many = predict_file(run_dir, path, tmp_path / "many.csv", chunk_rows=97)
    a, b = pd.read_csv(one.out), pd.read_csv(many.out)
    pd.testing.assert_frame_equal(a, b)
    memory = predict(run_dir, load_sherlock(path))
    np.testing.assert_allclose(a["probability"], memory["probability"], rtol=1e-5)
    assert a["row_id"].tolist() == memory["row_id"].tolist()
    assert one.metrics is not None and one.metrics["accuracy"] == pytest.approx(a["correct"].mean())


def test_a_killed_predictions_leftovers_are_removed_by_the_rerun(
    run_dir, table, tmp_path: Path
) -> None:
    import os

    from tests.test_atomic import _dead_pid

    path = tmp_path / "new.csv"
    table.iloc[:100].to_csv(path)
    pid = _dead_pid()
    leftovers = [tmp_path / f".p.csv.tmp-{pid}", tmp_path / f".p.skipped.csv.tmp-{pid}"]
    for leftover in leftovers:
        leftover.write_text("row_id,app\n1,Gm")  # As a kill -9 mid-write leaves it.
        os.utime(leftover, (0, 0))
    predict_file(run_dir, path, tmp_path / "p.csv")
    assert not any(leftover.exists() for leftover in leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "p.csv"]


def test_a_kill_python_dropped_leaves_no_predictions(
    run_dir, table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appsleuth._interrupt import sigterm_interrupts
    from tests.test_interrupt import sigterm_in_a_weakref_callback

    predict_module = importlib.import_module("appsleuth.predict")  # the package has predict()
    path = tmp_path / "new.csv"
    table.iloc[:200].to_csv(path)
    frame_predictions = predict_module._frame_predictions

    def killed_while_predicting(*args, **kwargs):
        # As a kill of predict landed in JAX's garbage-collector callback: dropped.
        assert sigterm_in_a_weakref_callback(monkeypatch) == [KeyboardInterrupt]
        return frame_predictions(*args, **kwargs)

    monkeypatch.setattr(predict_module, "_frame_predictions", killed_while_predicting)
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        predict_file(run_dir, path, tmp_path / "p.csv", chunk_rows=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


def test_a_read_only_output_directory_is_named_not_the_temporary_file(
    run_dir, table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import errno
    import pathlib

    path = tmp_path / "new.csv"
    table.iloc[:50].to_csv(path)
    real_open = builtins.open

    def read_only(file, *args, **kwargs):
        if ".tmp-" in str(file):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, *args, **kwargs)

    def unlink(self, missing_ok=False):
        # Linux refuses even to remove a file that is not there on a read-only mount.
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(builtins, "open", read_only)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    with pytest.raises(OSError, match=r"Read-only file system: '\S+p\.csv'") as caught:
        predict_file(run_dir, path, tmp_path / "p.csv")
    assert caught.value.errno == errno.EROFS
    assert caught.value.filename == str(tmp_path / "p.csv")


def test_a_full_disk_while_predicting_names_the_output_file(
    run_dir, table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import sys

    predict_module = sys.modules["appsleuth.predict"]  # the package's name is the function
    path = tmp_path / "new.csv"
    table.iloc[:50].to_csv(path)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as write() says it
        yield

    monkeypatch.setattr(predict_module, "_chunks", full_disk)
    with pytest.raises(OSError, match=r"No space left on device: '\S+p\.csv'") as caught:
        predict_file(run_dir, path, tmp_path / "p.csv")
    assert caught.value.filename == str(tmp_path / "p.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


def test_predictions_reach_the_disk_before_they_take_their_name(
    run_dir, table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    path = tmp_path / "new.csv"
    table.iloc[:50].to_csv(path)
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    def replace(src, dst) -> None:
        assert Path(src).name in synced, f"{src} renamed before it reached the disk"
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    predict_file(run_dir, path, tmp_path / "p.csv")
    assert (tmp_path / "p.csv").exists()


def test_an_unfinished_run_or_sweep_says_how_to_finish_it(tmp_path: Path) -> None:
    from appsleuth.run import RUN_MARKER, _RunLock

    run = tmp_path / "model_1H18N_lr0.0003_bs32_e30"  # what a killed train leaves
    run.mkdir()
    (run / RUN_MARKER).write_text("")
    (run / "model_history.csv").write_text("loss\n2.9\n")
    with pytest.raises(DataError, match=r"training was stopped before it finished.*run the same"):
        best_run_dir(run)
    (tmp_path / "busy").mkdir()
    lock = _RunLock.create(tmp_path / "busy" / RUN_MARKER)  # as a process training it holds it
    try:
        with pytest.raises(DataError, match=r"no complete run yet: it is being trained right now"):
            best_run_dir(tmp_path / "busy")
    finally:
        lock.release()
    sweep = tmp_path / "scan"
    sweep.mkdir()
    (sweep / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match=r"a sweep with no complete trial yet; 'appsleuth sweep"):
        best_run_dir(sweep)
    # A sweep whose trials all failed: running 'sweep run' again would skip them.
    (sweep / "model_1H2N").mkdir()
    (sweep / "model_1H2N" / "model_metadata.json").write_text(
        '{"status": "failed", "error": "DataError: too few rows"}'
    )
    with pytest.raises(
        DataError,
        match=r"no complete trial: 1 failed \(e.g. model_1H2N: DataError: too few rows\); "
        r".*--retry-failed",
    ):
        best_run_dir(sweep)


def test_missing_values_are_skipped_and_listed(run_dir, table, tmp_path: Path) -> None:
    data = table.iloc[:200].copy()
    holes = data.index[[3, 50, 51]]
    data.loc[holes, "rss"] = np.nan
    data.to_csv(tmp_path / "holes.csv")
    summary = predict_file(run_dir, tmp_path / "holes.csv", tmp_path / "p.csv", chunk_rows=40)
    incomplete = data[["rss", "CPU_USAGE", "state"]].isna().any(axis=1)
    assert summary.skipped == int(incomplete.sum()) >= 3
    assert summary.predicted + summary.skipped == summary.rows == 200
    listed = pd.read_csv(summary.skipped_file)["row_id"].tolist()
    assert set(holes) <= set(listed)
    assert set(pd.read_csv(summary.out)["row_id"]).isdisjoint(listed)


def _as_text(data: pd.DataFrame, column: str) -> pd.DataFrame:
    """A hand-built table: ``column`` holds its numbers as text."""
    out = data.copy()
    out.attrs = {}
    out[column] = out[column].map(lambda v: "nan" if pd.isna(v) else repr(float(v)))
    return out


def test_numbers_as_text_are_read_as_numbers(run_dir, table) -> None:
    data = table.iloc[:200].dropna(subset=["rss"])
    want = predict(run_dir, data)
    text = _as_text(data, "rss")
    holes = text.index[[2, 7, 8]]
    text.loc[holes[:2], "rss"] = "nan"
    text.loc[holes[2], "rss"] = "NULL"  # the CSV reader's word for a missing value
    got = predict(run_dir, text)
    # Rows with "nan" or "NULL" are left out and listed, never fed to the model.
    assert got.attrs["skipped_row_ids"] == holes.tolist()
    kept = want[~want["row_id"].isin(holes)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, kept)
    evaluation = evaluate_run(run_dir, text)
    assert evaluation["rows_skipped"] == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("16,086", r"holds '16,086' \(a thousands separator is not read: write 16086\)"),
        ("lots", r"holds 'lots' \(1 such value\(s\) in all\)"),
    ],
)
def test_text_that_is_no_number_is_named(run_dir, table, value, expected) -> None:
    text = _as_text(table.iloc[:50].dropna(subset=["rss"]), "rss")
    text.loc[text.index[4], "rss"] = value
    for call in (
        lambda: predict(run_dir, text),
        lambda: evaluate_run(run_dir, text),
        lambda: prepare_data(text),
    ):
        with pytest.raises(DataError, match=r"feature column 'rss' must be numeric, but row 4"):
            call()
        with pytest.raises(DataError, match=expected):
            call()


@pytest.mark.parametrize("kind", ["parquet", "gzip"])
def test_parquet_and_gzip(run_dir, table, tmp_path: Path, kind: str) -> None:
    plain = tmp_path / "x.csv"
    table.iloc[:300].to_csv(plain)
    if kind == "parquet":
        path = tmp_path / "x.parquet"
        table.iloc[:300].to_parquet(path)
    else:
        path = tmp_path / "x.csv.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
    got = pd.read_csv(predict_file(run_dir, path, tmp_path / "p.csv", chunk_rows=64).out)
    want = pd.read_csv(predict_file(run_dir, plain, tmp_path / "q.csv").out)
    pd.testing.assert_frame_equal(got, want)


def test_raw_layout(run_dir, shared_data: Path, tmp_path: Path) -> None:
    # Real raw rows: the 18 features are there among 58 columns; most apps are unknown.
    summary = predict_file(run_dir, shared_data / "sherlock_raw_sample.csv", tmp_path / "p.csv")
    assert summary.rows == 40 and summary.predicted == 40
    preds = pd.read_csv(summary.out)
    assert preds["row_id"].tolist() == list(range(40))
    assert summary.metrics is not None and summary.metrics["rows_with_unknown_label"] > 0


def test_real_mystery_file(fb_wa_run_dir, shared_data: Path, tmp_path: Path) -> None:
    summary = predict_file(fb_wa_run_dir, shared_data / "sherlock_mystery.csv", tmp_path / "p.csv")
    preds = pd.read_csv(summary.out)
    assert summary.rows == 200 and summary.skipped == 0  # cminflt is not a model feature
    assert preds["row_id"].iloc[:2].tolist() == [434, 1881]
    assert set(preds["predicted_app"]) <= {"Facebook", "WhatsApp"}
    assert summary.metrics["n"] == 200


def test_a_device_as_data_is_named_as_such(run_dir, tmp_path: Path) -> None:
    (tmp_path / "data.csv").symlink_to("/dev/urandom")  # it said "does not exist"
    with pytest.raises(DataError, match=r"data.csv is a character device .*, not a regular"):
        predict_file(run_dir, tmp_path / "data.csv", tmp_path / "p.csv")


def test_missing_feature_column(run_dir, table, tmp_path: Path) -> None:
    table.drop(columns="rss").iloc[:20].to_csv(tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"lacks the feature column\(s\) \['rss'\]"):
        predict_file(run_dir, tmp_path / "x.csv", tmp_path / "p.csv")
    with pytest.raises(DataError, match=r"lacks feature column\(s\) \['rss'\]"):
        predict(run_dir, table.drop(columns="rss"))
    assert not (tmp_path / "p.csv").exists()
    # Both say what to do: a run trained on the columns the data has.
    retrain = r"use a run trained on feature columns the data has \(train --features"
    with pytest.raises(DataError, match=retrain):
        predict_file(run_dir, tmp_path / "x.csv", tmp_path / "p.csv")
    with pytest.raises(DataError, match=retrain):
        predict(run_dir, table.drop(columns="rss"))


def test_bad_value_named_with_row(run_dir, table, tmp_path: Path) -> None:
    data = table.iloc[:500].copy()
    data["utime"] = data["utime"].astype(object)
    data.iloc[321, data.columns.get_loc("utime")] = "lots"
    data.to_csv(tmp_path / "x.csv")
    with pytest.raises(
        DataError,
        match=r"'utime' must be numeric, but data row 321 \(line 323\) "
        r"holds 'lots'",
    ):
        predict_file(run_dir, tmp_path / "x.csv", tmp_path / "p.csv", chunk_rows=100)
    assert not list(tmp_path.glob("*p.csv*"))  # nothing half-written is left


@pytest.mark.parametrize("words", [("True", "False"), ("true", "false"), ("TRUE", "FALSE")])
def test_true_false_words_in_a_feature_are_read_as_training_reads_them(
    run_dir, table, tmp_path: Path, words
) -> None:
    # Loading reads a column of true/false words as 1 and 0: a file of the same layout is
    # predicted as the one that writes 1 and 0, by each reader of prediction.
    data = table.iloc[::100].copy()  # several apps: loading needs two classes
    flags = np.arange(len(data)) % 2
    data["lru"] = flags
    data.to_csv(tmp_path / "numbers.csv")
    numbers = data.copy()
    data["lru"] = np.where(flags == 1, *words)
    data.to_csv(tmp_path / "words.csv")
    data.to_parquet(tmp_path / "words.parquet")
    assert load_sherlock(tmp_path / "words.csv")["lru"].tolist() == flags.tolist()
    predict_file(run_dir, tmp_path / "numbers.csv", tmp_path / "expected.csv")
    expected = pd.read_csv(tmp_path / "expected.csv")
    for name in ("words.csv", "words.parquet"):
        predict_file(run_dir, tmp_path / name, tmp_path / f"{name}.csv")
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / f"{name}.csv"), expected)
    pd.testing.assert_frame_equal(predict(run_dir, data), predict(run_dir, numbers))
    # Read on as text, a value that is no number is named with its row and line.
    data["utime"] = data["utime"].astype(object)
    data.iloc[7, data.columns.get_loc("utime")] = "lots"
    data.to_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"'utime' must be numeric, but data row 7 \(line 9\)"):
        predict_file(run_dir, tmp_path / "bad.csv", tmp_path / "c.csv")
    assert not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize("blank_lines", [False, True], ids=["rows-only", "blank-lines"])
def test_true_false_words_after_the_first_block_are_read_from_that_row_on(
    run_dir, table, tmp_path: Path, blank_lines: bool
) -> None:
    # The first block (1 MiB) reads as numbers: the file is read on as text from the first
    # row not yet predicted, without losing or repeating a row. Blank lines are no rows,
    # but Arrow's skip_rows_after_names counted them: one row was repeated per blank line.
    # A wide column no model reads makes the file long in bytes, not in rows to predict.
    data = table.assign(note="x" * 200)
    flags = np.arange(len(data)) % 2
    data["lru"] = flags
    data.to_csv(tmp_path / "numbers.csv")
    last = data.index[-5:]
    data["lru"] = data["lru"].astype(object)
    data.loc[last, "lru"] = np.where(flags[-5:] == 1, "true", "false")
    lines = data.to_csv().splitlines()
    if blank_lines:  # three, in the first block
        lines = [lines[0], "", *lines[1:10], "", "", *lines[10:]]
    (tmp_path / "words.csv").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "words.csv").stat().st_size > 1 << 20
    predict_file(run_dir, tmp_path / "numbers.csv", tmp_path / "a.csv", chunk_rows=1000)
    predict_file(run_dir, tmp_path / "words.csv", tmp_path / "b.csv", chunk_rows=1000)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b.csv"), pd.read_csv(tmp_path / "a.csv"))


def test_line_numbers_count_blank_lines_and_names_are_checked(
    run_dir, table, tmp_path: Path
) -> None:
    data = table.iloc[:20].copy()
    data["utime"] = data["utime"].astype(object)
    data.iloc[9, data.columns.get_loc("utime")] = "X"
    lines = data.to_csv().splitlines()
    (tmp_path / "blank.csv").write_text("\n".join([lines[0], "", "", *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"data row 9 \(line 13\) holds 'X'"):
        predict_file(run_dir, tmp_path / "blank.csv", tmp_path / "p.csv")
    (tmp_path / "x.parquet").write_text("hello world\n1\n")
    with pytest.raises(DataError, match=r"x.parquet is not a Parquet file"):
        predict_file(run_dir, tmp_path / "x.parquet", tmp_path / "p.csv")


def test_infinite_values_are_skipped_not_predicted(run_dir, table, tmp_path: Path) -> None:
    data = table.dropna(subset=["rss", "CPU_USAGE", "state"]).iloc[:10].copy()
    data.iloc[4, data.columns.get_loc("CPU_USAGE")] = np.inf
    data.to_csv(tmp_path / "inf.csv")
    summary = predict_file(run_dir, tmp_path / "inf.csv", tmp_path / "p.csv")
    assert (summary.predicted, summary.skipped) == (9, 1)
    assert pd.read_csv(summary.skipped_file)["row_id"].tolist() == [data.index[4]]
    out = pd.read_csv(tmp_path / "p.csv")
    assert out.notna().all().all() and data.index[4] not in set(out.iloc[:, 0])


def test_output_not_overwritten(run_dir, table, tmp_path: Path) -> None:
    table.iloc[:20].to_csv(tmp_path / "x.csv")
    (tmp_path / "p.csv").write_text("keep me")
    with pytest.raises(AppSleuthError, match="already exists; pass --force"):
        predict_file(run_dir, tmp_path / "x.csv", tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text() == "keep me"


def test_damaged_or_failed_run_directory_is_named(run_dir, table, tmp_path: Path) -> None:
    table.iloc[:20].to_csv(tmp_path / "x.csv")
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "model_metadata.json").write_text('{"status": "compl')  # torn by hand
    with pytest.raises(DataError, match=r"broken/model_metadata.json is damaged"):
        predict_file(broken, tmp_path / "x.csv", tmp_path / "p.csv")
    (broken / "model_metadata.json").write_text('{"status": "failed", "error": "DataError: x"}')
    with pytest.raises(DataError, match=r"holds a failed run \(DataError: x\)"):
        predict_file(broken, tmp_path / "x.csv", tmp_path / "p.csv")


def test_side_file_and_data_file_are_not_overwritten(run_dir, table, tmp_path: Path) -> None:
    table.iloc[:20].to_csv(tmp_path / "x.csv")
    (tmp_path / "p.skipped.csv").write_text("keep me too")
    with pytest.raises(AppSleuthError, match=r"p.skipped.csv already exists; pass --force"):
        predict_file(run_dir, tmp_path / "x.csv", tmp_path / "p.csv")
    assert (tmp_path / "p.skipped.csv").read_text() == "keep me too"
    before = (tmp_path / "x.csv").read_text()
    with pytest.raises(AppSleuthError, match=r"x.csv is the data file itself"):
        predict_file(run_dir, tmp_path / "x.csv", tmp_path / "x.csv", force=True)
    assert (tmp_path / "x.csv").read_text() == before
    # With --force, a stale side file of an earlier run is removed, not left misleading.
    summary = predict_file(run_dir, tmp_path / "x.csv", tmp_path / "p.csv", force=True)
    assert summary.skipped == 0 and not (tmp_path / "p.skipped.csv").exists()


def test_a_run_or_sweep_file_is_never_the_output(run_dir, table, tmp_path: Path) -> None:
    # --out RUN/model_history.csv --force replaced the run's learning curves.
    table.iloc[:20].to_csv(tmp_path / "x.csv")
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    history = (run / "model_history.csv").read_text()
    with pytest.raises(AppSleuthError, match=r"model_history.csv is the run directory's own"):
        predict_file(run, tmp_path / "x.csv", run / "model_history.csv", force=True)
    assert (run / "model_history.csv").read_text() == history
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "results.csv").write_text("keep")
    with pytest.raises(AppSleuthError, match=r"results.csv is the sweep directory's own"):
        predict_file(run, tmp_path / "x.csv", tmp_path / "results.csv", force=True)
    assert (tmp_path / "results.csv").read_text() == "keep"
    # A file of another name in the run directory (an earlier prediction) is the user's.
    predict_file(run, tmp_path / "x.csv", run / "preds.csv")
    assert predict_file(run, tmp_path / "x.csv", run / "preds.csv", force=True).rows == 20


def test_encoding_of_a_csv(run_dir, table, tmp_path: Path) -> None:
    data = table.iloc[:30].copy()
    data["ApplicationName"] = data["ApplicationName"].astype(object)
    data.iloc[0, data.columns.get_loc("ApplicationName")] = "Caf\u00e9"
    data.to_csv(tmp_path / "latin.csv", encoding="latin-1")
    with pytest.raises(DataError, match=r"latin.csv is not valid utf-8 text .*--encoding latin-1"):
        predict_file(run_dir, tmp_path / "latin.csv", tmp_path / "p.csv")
    summary = predict_file(run_dir, tmp_path / "latin.csv", tmp_path / "p.csv", encoding="latin-1")
    assert summary.rows == 30
    assert "Caf\u00e9" in (tmp_path / "p.csv").read_text(encoding="utf-8")
    with pytest.raises(DataError, match=r"encoding must be a text encoding .*encoding='klingon'"):
        predict_file(run_dir, tmp_path / "latin.csv", tmp_path / "q.csv", encoding="klingon")


def test_parquet_feature_stored_as_text(run_dir, table, tmp_path: Path) -> None:
    data = table.iloc[:50].copy()
    data["utime"] = data["utime"].astype(str)
    data.to_parquet(tmp_path / "ok.parquet")
    assert predict_file(run_dir, tmp_path / "ok.parquet", tmp_path / "ok.csv").predicted == len(
        data.dropna(subset=["rss", "CPU_USAGE", "state"])
    )
    data.iloc[7, data.columns.get_loc("utime")] = "abc"
    data.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"'utime' must be numeric, but data row 7 holds 'abc'"):
        predict_file(run_dir, tmp_path / "bad.parquet", tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def _set_results(run: Path, *, val_accuracy: float, val_loss_added: float = 0.0) -> None:
    """Edit a run's recorded final validation accuracy and loss."""
    path = run / "model_metadata.json"
    meta = json.loads(path.read_text())
    meta["last_results"]["val_accuracy"] = val_accuracy
    meta["last_results"]["val_loss"] += val_loss_added
    path.write_text(json.dumps(meta))


def test_sweep_directory_uses_best_run(run_dir, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(run_dir, sweep / "model_a")
    shutil.copytree(run_dir, sweep / "model_b")
    _set_results(sweep / "model_b", val_accuracy=0.999)
    assert best_run_dir(sweep) == sweep / "model_b"
    # A tie in accuracy goes to the lower validation loss, not to the first name.
    _set_results(sweep / "model_b", val_accuracy=0.999, val_loss_added=1.0)
    _set_results(sweep / "model_a", val_accuracy=0.999)
    assert best_run_dir(sweep) == sweep / "model_a"
    _set_results(sweep / "model_a", val_accuracy=0.999, val_loss_added=2.0)
    assert best_run_dir(sweep) == sweep / "model_b"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds none below it"):
        best_run_dir(empty)


def test_cli_predict(
    fb_wa_run_dir, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mystery_preds.csv"
    code = main(
        [
            "predict",
            str(fb_wa_run_dir),
            str(shared_data / "sherlock_mystery.csv"),
            "--out",
            str(out),
            "--top-k",
            "2",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "predicted 200 of 200 rows" in text and "accuracy" in text
    assert "top2_app" in pd.read_csv(out).columns
    assert main(["predict", str(fb_wa_run_dir), str(tmp_path / "none.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_round_trip_equals_the_models_own_outputs_on_validation(run_dir, table) -> None:
    from appsleuth.run import load_run, prepare_run_data
    from appsleuth.spec import RunSpec

    loaded = load_run(run_dir)
    spec = RunSpec.from_dict(loaded.metadata["spec"])
    prepared = prepare_run_data(spec, table)
    _, val, _ = prepared.split.frames(prepared.table)
    preds = predict(loaded, val, top_k=len(prepared.classes))
    direct = np.asarray(loaded.model.predict(prepared.x_val, verbose=0))
    assert preds["row_id"].tolist() == val.index.tolist()
    np.testing.assert_allclose(preds["probability"], direct.max(axis=1), rtol=1e-5)
    expected = np.asarray(prepared.classes)[direct.argmax(axis=1)]
    assert (preds["predicted_app"].to_numpy() == expected).all()


# --- review fixes: feature dtypes, rows with nothing to predict, damaged files ----------


@pytest.mark.parametrize(
    ("values", "dtype_text"),
    [
        (pd.Timestamp("2020-01-01"), r"datetime64\[\w+\] \(dates/times\)"),
        (pd.Timedelta("1s"), r"timedelta64\[\w+\] \(durations\)"),
        (1 + 2j, r"complex128 \(complex numbers\)"),
    ],
)
def test_predict_refuses_date_duration_complex_features(
    run_dir, table, values, dtype_text: str
) -> None:
    data = table.iloc[:20].copy()
    data["CPU_USAGE"] = values
    with pytest.raises(
        DataError,
        match=rf"the table given to predict: feature column 'CPU_USAGE' has dtype {dtype_text}, "
        r"but a numeric column is expected",
    ):
        predict(run_dir, data)


def test_predict_parquet_date_feature_is_refused(run_dir, table, tmp_path: Path) -> None:
    data = table.iloc[:20].copy()
    data["rss"] = pd.Timestamp("2020-01-01")
    data.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"d\.parquet: feature column 'rss' has dtype datetime64"):
        predict_file(run_dir, tmp_path / "d.parquet", tmp_path / "p.csv")


def test_predict_names_a_feature_missing_in_every_row(run_dir, table, tmp_path: Path) -> None:
    data = table.iloc[:30].copy()
    data["rss"] = np.nan
    with pytest.raises(
        DataError,
        match=r"the table given to predict: no row could be predicted: the feature column\(s\) "
        r"\['rss'\] are missing \(empty\) in every one of the 30 row\(s\)",
    ):
        predict(run_dir, data)
    data.to_csv(tmp_path / "empty_rss.csv")
    with pytest.raises(
        DataError,
        match=r"data file .*empty_rss\.csv: no row could be predicted: the feature "
        r"column\(s\) \['rss'\] are missing \(empty\) in every one of the 30 row\(s\)",
    ):
        predict_file(run_dir, tmp_path / "empty_rss.csv", tmp_path / "p.csv", chunk_rows=8)
    assert not (tmp_path / "p.csv").exists()


def test_predict_when_every_row_lacks_some_value(run_dir, table) -> None:
    data = table.dropna(subset=["rss", "CPU_USAGE", "vsize", "state"]).iloc[:6].copy()
    data.iloc[:2, data.columns.get_loc("rss")] = np.nan
    data.iloc[2:4, data.columns.get_loc("CPU_USAGE")] = np.inf
    data.iloc[4:, data.columns.get_loc("vsize")] = 1e300  # Finite, but not as float32.
    with pytest.raises(
        DataError,
        match=r"each of the 6 row\(s\) lacks a usable value in at least one feature column "
        r"\(missing, infinite, or too large for the model's float32 inputs: 'CPU_USAGE' in 2 "
        r"row\(s\), 'rss' in 2 row\(s\), 'vsize' in 2 row\(s\)\)",
    ):
        predict(run_dir, data)
    # A few skipped rows stay a count and a list.
    assert len(predict(run_dir, table.iloc[:50]).attrs["skipped_row_ids"]) < 50


def test_truncated_gzip_is_named_as_a_damaged_data_file(run_dir, table, tmp_path: Path) -> None:
    packed = gzip.compress(table.to_csv().encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    with pytest.raises(
        DataError,
        match=r"data file .*cut\.csv\.gz cannot be read: truncated compressed stream.*damaged "
        r"or incomplete",
    ):
        predict_file(run_dir, path, tmp_path / "p.csv", chunk_rows=50)
    assert not (tmp_path / "p.csv").exists()


@pytest.fixture(scope="module")
def moriarty_run_dir(table, tmp_path_factory) -> Path:
    spec = RunSpec(
        data=DataSpec(positive="Moriarty"),
        model=ModelSpec(hidden=(8,)),
        train=TrainSpec(epochs=2, batch_size=64, learning_rate=0.01),
    )
    out = tmp_path_factory.mktemp("moriarty")
    return train(spec, data=table, out=out, verbose=False, log=lambda m: None).run_dir


def test_one_vs_rest_run_scores_apps_as_its_rest_class(moriarty_run_dir, table, tmp_path):
    from appsleuth.run import evaluate_run

    frame = predict(moriarty_run_dir, table)
    assert set(frame["true_app"].unique()) == {"Moriarty", "other"}
    in_memory = float(frame["correct"].mean())
    assert in_memory > 0.9  # Moriarty is rare: "other" is right for most rows
    assert evaluate_run(moriarty_run_dir, table)["accuracy"] == pytest.approx(in_memory)
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    summary = predict_file(moriarty_run_dir, path, tmp_path / "p.csv")
    assert summary.metrics["rows_with_unknown_label"] == 0
    assert summary.metrics["accuracy"] == pytest.approx(in_memory)


def test_rows_without_a_label_are_neither_right_nor_wrong(run_dir, table, tmp_path):
    from appsleuth.run import evaluate_run

    rows = table.head(20).copy()
    rows.loc[rows.index[:2], "ApplicationName"] = None
    frame = predict(run_dir, rows)
    assert frame["correct"].isna().tolist() == [True, True] + [False] * 18
    assert frame["true_app"].isna().sum() == 2
    assert evaluate_run(run_dir, rows)["rows_skipped"] == 2
    path = tmp_path / "holes.csv"
    rows.to_csv(path, index=False)
    summary = predict_file(run_dir, path, tmp_path / "p.csv")
    assert summary.predicted == 20 and summary.metrics["n"] == 18
    # They were left out of the accuracy without a word: the table said n 18, no more.
    assert summary.unlabelled_rows == summary.metrics["rows_without_label"] == 2


def test_cli_says_which_rows_its_metrics_cover(run_dir, table, tmp_path, capsys) -> None:
    rows = table.head(20).copy()
    rows.loc[rows.index[:2], "ApplicationName"] = None
    path = tmp_path / "holes.csv"
    rows.to_csv(path, index=False)
    assert main(["predict", str(run_dir), str(path), "--out", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert "2 predicted rows have no label; left out of the metrics" in out
    assert "metrics over 18 of the 20 rows: the predicted rows labelled with an app" in out


def test_predict_file_gives_a_two_class_models_roc_auc(fb_wa_run_dir, tmp_path, capsys) -> None:
    rows = generate_sherlock(400, apps=["Facebook", "WhatsApp"], seed=7)
    rows.loc[rows.index[:3], "ApplicationName"] = None  # unlabelled: not scored
    path = tmp_path / "fbwa.csv"
    rows.to_csv(path, index=False)
    # Small chunks: the scores of every chunk make one curve.
    summary = predict_file(fb_wa_run_dir, path, tmp_path / "p.csv", chunk_rows=64, progress=False)
    preds = predict(fb_wa_run_dir, rows)
    scored = preds[preds["true_app"].notna()]
    p_whatsapp = np.where(
        scored["top1_app"] == "WhatsApp", scored["top1_probability"], scored["top2_probability"]
    )
    expected = roc_auc_score(scored["true_app"] == "WhatsApp", p_whatsapp)
    assert summary.metrics["roc_auc"] == pytest.approx(expected, abs=1e-6)
    assert main(["predict", str(fb_wa_run_dir), str(path), "--out", str(tmp_path / "q.csv")]) == 0
    assert f"ROC AUC {expected:.4f}" in capsys.readouterr().out


def test_roc_auc_of_scores_that_are_not_all_finite_is_none() -> None:
    assert roc_auc(np.array([0, 1, 1]), np.array([0.2, np.nan, 0.9])) is None
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.9])) is None  # one class
    assert roc_auc(np.array([0, 1]), np.array([0.2, 0.9])) == 1.0


def test_two_apps_with_positive_keep_both_names(tmp_path):
    data = generate_sherlock(1500, apps=["Facebook", "WhatsApp"], seed=4)
    spec = RunSpec(
        data=DataSpec(apps=("WhatsApp", "Facebook"), positive="WhatsApp"),
        train=TrainSpec(epochs=1),
    )
    result = train(spec, data=data, out=tmp_path, verbose=False, log=lambda m: None)
    assert result.metadata["classes"] == ["Facebook", "WhatsApp"]  # WhatsApp is class 1


def test_best_run_refuses_runs_of_different_tasks(run_dir, fb_wa_run_dir, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(run_dir, mixed / "all-apps")
    shutil.copytree(fb_wa_run_dir, mixed / "two-apps")
    with pytest.raises(DataError, match=r"holds runs of 2 different tasks .*2 classes: Facebook"):
        best_run_dir(mixed)
    shutil.copytree(run_dir, mixed / "two-apps-gone", dirs_exist_ok=True)
    shutil.rmtree(mixed / "two-apps")
    assert best_run_dir(mixed).parent == mixed  # one task again: the best of its runs


def test_best_run_refuses_runs_validated_on_other_data(run_dir, table, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(run_dir, mixed / "random-split")
    blocked = RunSpec(
        data=DataSpec(split={"kind": "blocked"}),
        model=ModelSpec(hidden=(16,)),
        train=TrainSpec(epochs=1, batch_size=64, learning_rate=0.01),
    )
    train(blocked, data=table, out=mixed, name="blocked-split", verbose=False, log=lambda m: None)
    with pytest.raises(
        DataError,
        match=r"holds runs trained and validated on 2 different data sets or splits .*"
        r"blocked-split \(data synthetic-sherlock18\(seed=2\), blocked split, fingerprint "
        r"[0-9a-f]{16}\); .*random-split \(.*, random split,",
    ):
        predict(mixed, table.iloc[:10])
    shutil.rmtree(mixed / "blocked-split")
    preds = predict(mixed, table.iloc[:10])
    assert preds.attrs["run_dir"] == str(mixed / "random-split")


def test_predict_file_takes_a_loaded_run(run_dir, table, tmp_path):
    path = tmp_path / "t.csv"
    table.iloc[:30].to_csv(path)
    loaded = predict_file(load_run(run_dir), path, tmp_path / "a.csv")
    by_dir = predict_file(run_dir, path, tmp_path / "b.csv")
    assert loaded.run_dir == by_dir.run_dir == run_dir
    pd.testing.assert_frame_equal(pd.read_csv(loaded.out), pd.read_csv(by_dir.out))


@pytest.mark.parametrize(
    ("out", "kwargs", "message"),
    [
        ("p.parquet", {}, r"must end in \.csv; received 'p\.parquet'"),
        ("p.csv.gz", {}, r"must end in \.csv; received 'p\.csv\.gz'"),
        (".", {}, r"is a directory; name a \.csv file in it"),
        ("p.csv", {"chunk_rows": 0}, r"chunk_rows must be a positive integer; received chunk_r"),
        ("p.csv", {"chunk_rows": 1.5}, r"chunk_rows must be a positive integer; received chunk"),
    ],
)
def test_predict_file_refuses_bad_outputs_and_chunks(
    run_dir, table, tmp_path, out, kwargs, message
):
    path = tmp_path / "t.csv"
    table.head(50).to_csv(path, index=False)
    with pytest.raises(AppSleuthError, match=message):
        predict_file(run_dir, path, tmp_path / out, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("n.csv", b"\n\n", r"n\.csv is empty: expected a header line and rows"),
        # mtime=0: the bytes are the test id, which both xdist processes must collect alike.
        ("n.csv.gz", gzip.compress(b"\n\n", mtime=0), r"n\.csv\.gz is empty: expected a header"),
        ("b.csv", b"\x00\x01\x02\xff" * 100, r"b\.csv holds binary data, not a CSV table"),
        ("h.csv", b"ApplicationName,CPU_USAGE", r"h\.csv has no complete header line"),
    ],
)
def test_predict_file_says_why_a_file_has_no_header(run_dir, tmp_path, name, content, message):
    # The reader's own "Empty CSV file or block: cannot infer number of columns" was shown.
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        predict_file(run_dir, path, tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04" + b"\x90\x1b[2J,\n" * 50, r"z\.csv is a zip archive, which is not read"),
        (b"a,b\n" + b"\x1b[2J\x07" * 10 + b"\n", r"cannot be read as CSV: .*\?\[2J\?"),
    ],
)
def test_a_zip_or_binary_row_is_named_without_its_raw_bytes(
    run_dir, tmp_path, content, message
) -> None:
    # A model.keras given as DATA ended in Arrow's parse error, which quoted the row's
    # raw bytes (terminal control sequences included).
    path = tmp_path / "z.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        predict_file(run_dir, path, tmp_path / "p.csv")
    assert "\x1b" not in str(caught.value)


def test_cli_names_labels_the_model_does_not_know(
    fb_wa_run_dir, tmp_path, monkeypatch, capsys
) -> None:
    data = generate_sherlock(300, apps=["Facebook", "WhatsApp", "Gmail"], seed=5)
    path = tmp_path / "m.2016.csv"
    data.to_csv(path)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(fb_wa_run_dir), str(path)]) == 0
    out = capsys.readouterr().out
    n_gmail = int((data["ApplicationName"] == "Gmail").sum())
    assert f"{n_gmail} predicted rows are labelled with apps the model was not trained on " in out
    assert "(Gmail); left out of the metrics" in out
    assert (tmp_path / "m.2016.predictions.csv").exists()  # the name up to its format suffix


@pytest.mark.filterwarnings("default::appsleuth.errors.AppSleuthWarning")
def test_predict_file_refuses_repeated_columns_and_says_unseen_categories(
    run_dir, table, tmp_path, capsys
) -> None:
    rows = table.head(20)
    feature = next(c for c in rows.columns if c not in ("ApplicationName", "state"))
    text = rows.to_csv(index=False).splitlines()
    header = text[0].split(",")
    text[0] = ",".join(feature if i == 0 and c != feature else c for i, c in enumerate(header))
    path = tmp_path / "dup.csv"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=rf"repeated column names \['{feature}'\]"):
        predict_file(run_dir, path, tmp_path / "p.csv")
    rows.assign(state="X").to_csv(tmp_path / "unseen.csv", index=False)
    out = tmp_path / "unseen.predictions.csv"
    assert main(["predict", str(run_dir), str(tmp_path / "unseen.csv"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "appsleuth: warning: column 'state' has value(s) ['X'] not seen" in err


def _killed_forced_retrain(run_dir: Path, out: Path, name: str) -> Path:
    """What a 'train --force' killed mid-way leaves: the complete run set aside, a partial one."""
    shutil.copytree(run_dir, out / f".{name}.replaced")
    (out / name).mkdir()
    (out / name / ".appsleuth-run").write_text("")
    return out / name


def test_a_run_set_aside_by_a_killed_forced_retrain_is_named(run_dir, tmp_path: Path) -> None:
    partial = _killed_forced_retrain(run_dir, tmp_path / "runs", "model_x")
    said = r"set aside in \S+\.model_x\.replaced by a 'train --force' that was killed; run the same"
    for where in (partial, tmp_path / "runs"):
        with pytest.raises(DataError, match=said):
            best_run_dir(where)
    # Another complete run is picked, but the set-aside one (maybe the best) is not kept quiet.
    shutil.copytree(run_dir, tmp_path / "runs" / "model_y")
    with pytest.warns(AppSleuthWarning, match=r"not considered: \S+model_x: its complete run"):
        assert best_run_dir(tmp_path / "runs") == tmp_path / "runs" / "model_y"


def test_evaluate_run_copies_only_the_models_columns_of_a_wide_table(run_dir, table, monkeypatch):
    # evaluate_run dropped skipped rows from the whole table: every extra column of a
    # wide table was copied (gigabytes for millions of rows), to be ignored.
    from appsleuth.data.preprocess import Preprocessor

    narrow = table.copy()
    narrow.loc[narrow.index[:3], "rss"] = np.nan
    narrow.loc[narrow.index[3], "ApplicationName"] = None
    extra = pd.DataFrame(
        np.random.default_rng(0).normal(size=(len(table), 40)),
        index=table.index,
        columns=[f"x{i}" for i in range(40)],
    )
    wide = pd.concat([narrow, extra], axis=1)
    expected = evaluate_run(run_dir, narrow)
    seen: list[list[str]] = []
    transform = Preprocessor.transform

    def recording(self, df):
        seen.append([str(c) for c in df.columns])
        return transform(self, df)

    monkeypatch.setattr(Preprocessor, "transform", recording)
    assert evaluate_run(run_dir, wide) == expected
    assert expected["rows_skipped"] >= 4
    assert seen and all(not any(c.startswith("x") for c in cols) for cols in seen)


def test_a_run_that_imputed_fills_new_rows_with_its_training_values(run_dir, table, tmp_path):
    # A run trained with missing='impute' keeps its training rows' fill values in
    # preprocessor.json (saved and loaded: test_preprocess); predict, predict_file and
    # evaluate_run fill new gaps with them.
    import dataclasses

    from appsleuth.data.preprocess import Preprocessor

    run = load_run(run_dir)
    pre = Preprocessor.from_dict(run.preprocessor.to_dict())
    imputed = dataclasses.replace(
        run, preprocessor=pre.set_fill_values({"rss": 5000.0, "state": "R"})
    )
    data = table.dropna(subset=["rss", "CPU_USAGE", "state"]).iloc[:40].copy()
    filled = data.copy()
    data.iloc[[1, 2], data.columns.get_loc("rss")] = [np.nan, np.inf]
    data.iloc[3, data.columns.get_loc("state")] = None
    filled.iloc[[1, 2], filled.columns.get_loc("rss")] = 5000.0
    filled.iloc[3, filled.columns.get_loc("state")] = "R"
    expected = predict(imputed, filled)
    got = predict(imputed, data)
    assert got.attrs["skipped_row_ids"] == []
    # Filled rows are counted, never passed off as measured ones.
    assert (got.attrs["filled_rows"], expected.attrs["filled_rows"]) == (3, 0)
    pd.testing.assert_frame_equal(got, expected)
    data.to_csv(tmp_path / "holes.csv")
    summary = predict_file(imputed, tmp_path / "holes.csv", tmp_path / "p.csv", chunk_rows=16)
    assert (summary.predicted, summary.skipped, summary.filled) == (40, 0, 3)
    with_holes, without = evaluate_run(imputed, data), evaluate_run(imputed, filled)
    assert (with_holes.pop("rows_filled"), without.pop("rows_filled")) == (3, 0)
    assert with_holes == without
    # The same file through the run that dropped incomplete rows in training: skipped.
    assert predict(run_dir, data).attrs["skipped_row_ids"] == data.index[[1, 2, 3]].tolist()


def test_cli_predict_says_how_many_rows_it_filled(
    run_dir, table, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses
    import importlib

    from appsleuth.data.preprocess import Preprocessor

    predict_module = importlib.import_module("appsleuth.predict")  # not the function
    run = load_run(run_dir)
    pre = Preprocessor.from_dict(run.preprocessor.to_dict()).set_fill_values({"rss": 5000.0})
    imputed = dataclasses.replace(run, preprocessor=pre)
    data = table.dropna(subset=list(pre.input_columns)).iloc[:30].copy()
    data.iloc[[4, 7], data.columns.get_loc("rss")] = np.nan
    data.iloc[9, data.columns.get_loc("CPU_USAGE")] = np.nan  # no fill value: skipped
    data.to_csv(tmp_path / "holes.csv")
    args = ["predict", str(run_dir), str(tmp_path / "holes.csv"), "--out", str(tmp_path / "p.csv")]
    assert main(args) == 0  # the run as trained (dropping incomplete rows): nothing filled
    assert "filled" not in capsys.readouterr().out
    monkeypatch.setattr(predict_module, "load_run", lambda path: imputed)
    assert main([*args, "--force"]) == 0
    out = capsys.readouterr().out
    assert "predicted 29 of 30 rows" in out and "skipped 1 rows" in out
    assert (
        "filled missing or infinite feature values in 2 predicted rows with the run's fill "
        "values (it was trained with missing='impute')" in out
    )


def test_evaluate_run_scores_known_apps_and_names_unknown_ones_as_predict_file_does(
    fb_wa_run_dir, tmp_path: Path
) -> None:
    data = generate_sherlock(300, apps=["Facebook", "WhatsApp", "Gmail"], seed=5)
    n_gmail = int((data["ApplicationName"] == "Gmail").sum())
    data.to_csv(tmp_path / "m.csv")
    summary = predict_file(fb_wa_run_dir, tmp_path / "m.csv", tmp_path / "p.csv")
    with pytest.warns(
        AppSleuthWarning,
        match=rf"evaluate_run: {n_gmail} row\(s\) are labelled with app\(s\) the model was not "
        rf"trained on \(Gmail\); they are left out of the metrics, which cover the "
        rf"{300 - n_gmail} row\(s\) of its classes",
    ):
        result = evaluate_run(fb_wa_run_dir, data)
    assert (result["rows_with_unknown_label"], result["unknown_labels"]) == (n_gmail, ["Gmail"])
    assert result["accuracy"] == pytest.approx(summary.metrics["accuracy"])
    assert result["n"] == 300 - n_gmail
    # In memory too: a Gmail row is neither right nor wrong, so the mean is the same.
    frame = predict(fb_wa_run_dir, data)
    gmail = (frame["true_app"] == "Gmail").to_numpy()
    assert gmail.sum() == n_gmail and frame["correct"][gmail].isna().all()
    assert frame["correct"][~gmail].notna().all()
    assert float(frame["correct"].mean()) == pytest.approx(result["accuracy"])
    with pytest.raises(
        DataError,
        match=r"nothing to evaluate: every row with its feature values is labelled with an app "
        r"the model was not trained on \(Gmail\); the model's classes are \['Facebook', "
        r"'WhatsApp'\]",
    ):
        evaluate_run(fb_wa_run_dir, data[data["ApplicationName"] == "Gmail"])


@pytest.mark.parametrize("column", ["rss", "state", "ApplicationName"])
def test_predict_and_evaluate_name_a_repeated_column_the_model_reads(run_dir, table, column):
    # A table with two columns of one name (a careless concat or merge) reached pandas
    # as a DataFrame where a column was expected: an AttributeError or ValueError
    # traceback that named neither the column nor the remedy.
    run = load_run(run_dir)
    rows = table.head(30)
    doubled = pd.concat([rows, rows[[column]]], axis=1)
    for call in (predict, evaluate_run):
        with pytest.raises(DataError, match=rf"more than one column named '{column}'.*rename"):
            call(run, doubled)
    # A repeated column the model does not read is harmless.
    note = pd.DataFrame({"note": ["a"] * len(rows)}, index=rows.index)
    spare = pd.concat([rows, note, note], axis=1)
    assert len(predict(run, spare)) == len(predict(run, rows))


@pytest.mark.parametrize(("value", "chunk_rows"), [(np.inf, 200_000), (1e300, 7)])
def test_a_feature_with_values_but_none_usable_is_not_called_empty(
    run_dir, table, tmp_path, value, chunk_rows
) -> None:
    # A column of infinite values, or of values too large for the model's float32
    # inputs, was reported as "missing (empty)": the user looked for empty cells and
    # found a number in every row.
    data = table.iloc[:30].assign(rss=value, vsize=np.nan)
    said = (
        r"no row could be predicted: the feature column\(s\) \['vsize'\] are missing \(empty\) "
        r"in every one of the 30 row\(s\); the feature column\(s\) \['rss'\] hold no usable "
        r"value \(missing, infinite, or too large for the model's float32 inputs\) in any of "
        r"the 30 row\(s\)"
    )
    with pytest.raises(DataError, match=said):
        predict(run_dir, data)
    data.to_csv(tmp_path / "d.csv")
    with pytest.raises(DataError, match=said):
        predict_file(run_dir, tmp_path / "d.csv", tmp_path / "p.csv", chunk_rows=chunk_rows)


def test_top_k_and_chunk_rows_take_numpy_integers_but_not_bools(run_dir, table, tmp_path):
    # top_k=np.int64(2) (a k computed with NumPy) was refused as "not a positive integer".
    rows = table.head(40)
    assert [c for c in predict(run_dir, rows, top_k=np.int64(2)) if c.startswith("top")] == [
        "top1_app", "top1_probability", "top2_app", "top2_probability"
    ]  # fmt: skip
    rows.to_csv(tmp_path / "t.csv")
    done = predict_file(run_dir, tmp_path / "t.csv", tmp_path / "p.csv", chunk_rows=np.int32(9))
    assert done.predicted == 40
    with pytest.raises(AppSleuthError, match=r"top_k must be a positive integer; received top_k=T"):
        predict(run_dir, rows, top_k=True)


@pytest.mark.parametrize("index", ["row", None])
def test_predict_file_names_parquet_rows_by_the_index_pandas_stored(
    run_dir, table, tmp_path, index
) -> None:
    # A DataFrame indexed by a named column and saved with to_parquet got positional row
    # ids from predict_file, where predict on the same DataFrame gave the index values.
    rows = table.head(25).copy()
    rows.index = pd.Index(np.arange(1000, 1025), name=index)
    rows.to_parquet(tmp_path / "t.parquet")
    predict_file(run_dir, tmp_path / "t.parquet", tmp_path / "p.csv")
    from_file = pd.read_csv(tmp_path / "p.csv")
    assert from_file["row_id"].tolist() == predict(run_dir, rows)["row_id"].tolist()
    assert from_file["row_id"].tolist() == list(range(1000, 1025))


def test_predict_file_names_a_data_directory_as_one(run_dir, table, tmp_path) -> None:
    # A partitioned Parquet data set (a directory) was reported as "does not exist".
    table.head(20).to_parquet(tmp_path / "parts", partition_cols=["ApplicationName"])
    with pytest.raises(DataError, match=r"parts is a directory; predict_file reads one CSV or"):
        predict_file(run_dir, tmp_path / "parts", tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolons"), ("\t", "tabs")])
def test_predict_file_says_a_file_is_not_comma_separated(run_dir, table, tmp_path, sep, name):
    # load_sherlock said so, but predict_file only listed the one column it had read.
    table.head(10).to_csv(tmp_path / "t.csv", sep=sep)
    with pytest.raises(
        DataError, match=rf"lacks the feature column.*seems to separate its fields with {name}"
    ):
        predict_file(run_dir, tmp_path / "t.csv", tmp_path / "p.csv")


def test_warnings_name_the_users_line_not_appsleuths(run_dir, table) -> None:
    # predict warns from the preprocessing, a few calls down: the warning used to show
    # predict.py's source line under the message in a notebook.
    rows = table.head(50).copy()
    rows["state"] = "Q"  # no process state: not a category the run knows
    with pytest.warns(AppSleuthWarning, match="not seen in training") as caught:
        predict(run_dir, rows)
    assert [w.filename for w in caught] == [__file__]


def test_prediction_summary_prints_counts_and_accuracy_not_every_class(tmp_path: Path) -> None:
    from appsleuth.predict import PredictionSummary

    per_class = {f"app{i}": {"precision": 0.5, "recall": 0.5, "f1": 0.5} for i in range(18)}
    summary = PredictionSummary(
        run_dir=tmp_path, out=tmp_path / "p.csv", skipped_file=None, rows=10, predicted=9,
        skipped=1, metrics={"accuracy": 0.88888, "per_class": per_class}, unknown_label_rows=2,
    )  # fmt: skip
    assert repr(summary) == (
        f"PredictionSummary(run_dir={tmp_path!r}, out={tmp_path / 'p.csv'!r}, rows=10, "
        "predicted=9, skipped=1, filled=0, accuracy=0.8889, unknown_label_rows=2)"
    )


def test_top_k_breaks_ties_by_class_order() -> None:
    # A saturated softmax gives many apps probability 0 exactly; which of them fill the
    # top-k columns must not change from run to run.
    from appsleuth.predict import _top_k

    proba = np.array([[0.0, 0.5, 0.0, 0.5], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert _top_k(proba, 3).tolist() == [[1, 3, 0], [0, 1, 2], [0, 1, 2]]


class _Stopped(BaseException):
    """A process stopped at that point (as by kill -9), simulated."""


@pytest.mark.parametrize("new_skips", [True, False], ids=["new-side-file", "no-new-side-file"])
def test_predictions_replaced_with_force_never_sit_beside_an_old_side_file(
    run_dir, table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_skips: bool
) -> None:
    import os

    old = table.iloc[:60].copy()
    old.loc[old.index[[3, 5]], "rss"] = np.nan
    old.to_csv(tmp_path / "old.csv")
    new = table.iloc[60:120].copy()
    if new_skips:
        new.loc[new.index[[7]], "rss"] = np.nan
    new.to_csv(tmp_path / "new.csv")
    out, side = tmp_path / "p.csv", tmp_path / "p.skipped.csv"
    predict_file(run_dir, tmp_path / "old.csv", out)
    pair = (out.read_text(), side.read_text())

    # Stop the process at the step that brings the new side file in (or removes the old one).
    real_replace, real_unlink = os.replace, Path.unlink

    def replace(src, dst, *args, **kwargs):
        if Path(dst) == side:
            raise _Stopped
        return real_replace(src, dst, *args, **kwargs)

    def unlink(self, *args, **kwargs):
        if self == side:
            raise _Stopped
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(_Stopped):
        predict_file(run_dir, tmp_path / "new.csv", out, force=True)
    monkeypatch.undo()
    # Predictions, if any, are the earlier run's with its own side file: never the new
    # predictions beside the side file that names the earlier run's skipped rows.
    assert not out.exists() or (out.read_text(), side.read_text()) == pair
    summary = predict_file(run_dir, tmp_path / "new.csv", out, force=True)  # the same command
    assert summary.rows == 60 and side.exists() == new_skips


# --- Moriarty's score and alarm -------------------------------------------------------------


def _moriarty_probability(run_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    run = load_run(run_dir)
    m = run.preprocessor.classes.index("Moriarty")
    x, _ = run.preprocessor.transform_complete(frame)
    return predict_proba(run.model, x, len(run.preprocessor.classes))[:, m]


def test_a_model_that_knows_moriarty_gives_its_score(run_dir, moriarty_run_dir, table) -> None:
    rows = table.iloc[:300]
    for directory in (run_dir, moriarty_run_dir):
        preds = predict(directory, rows, top_k=1)
        np.testing.assert_array_equal(
            preds["moriarty_score"], _moriarty_probability(directory, rows)
        )
        assert "moriarty_alarm" not in preds.columns
        assert preds.attrs["alarm_threshold"] is None
    moriarty = preds["predicted_app"] == "Moriarty"
    np.testing.assert_array_equal(preds["moriarty_score"][moriarty], preds["probability"][moriarty])


def test_a_model_without_moriarty_gives_no_score_column(fb_wa_run_dir, table) -> None:
    preds = predict(fb_wa_run_dir, table[table["ApplicationName"].isin(["Facebook"])].iloc[:20])
    assert not any(c.startswith("moriarty") for c in preds.columns)


def test_the_alarm_flags_the_rows_whose_score_reaches_the_threshold(run_dir, table) -> None:
    preds = predict(run_dir, table.iloc[:300], alarm_threshold=0.05)
    assert preds.attrs["alarm_threshold"] == 0.05
    assert preds["moriarty_alarm"].dtype == bool
    score = preds["moriarty_score"].to_numpy(np.float64)
    np.testing.assert_array_equal(preds["moriarty_alarm"], score >= 0.05)


def test_predict_file_reports_the_alarms_rates_on_labelled_rows(run_dir, table, tmp_path) -> None:
    path = tmp_path / "t.csv"
    table.iloc[:1500].to_csv(path)
    summary = predict_file(run_dir, path, tmp_path / "p.csv", alarm_threshold=0.02, chunk_rows=400)
    out = pd.read_csv(summary.out)
    flagged, malware = out["moriarty_alarm"], out["true_app"] == "Moriarty"
    assert summary.alarm == {
        "threshold": 0.02,
        "false_alarm_target": None,
        "alarms": int(flagged.sum()),
        "detection_rate": pytest.approx((flagged & malware).sum() / malware.sum()),
        "false_alarm_rate": pytest.approx((flagged & ~malware).sum() / (~malware).sum()),
        "detected": int((flagged & malware).sum()),
        "moriarty_rows": int(malware.sum()),
        "false_alarms": int((flagged & ~malware).sum()),
        "benign_rows": int((~malware).sum()),
    }
    assert malware.sum() > 0 and "alarms=" in repr(summary)
    unlabelled = tmp_path / "u.csv"
    table.drop(columns="ApplicationName").iloc[:200].to_csv(unlabelled)
    summary = predict_file(run_dir, unlabelled, tmp_path / "u_p.csv", alarm_threshold=0.02)
    assert set(summary.alarm) == {"threshold", "false_alarm_target", "alarms"}
    plain = predict_file(run_dir, unlabelled, tmp_path / "plain.csv")
    assert plain.alarm is None and "moriarty_score" in pd.read_csv(plain.out).columns


def test_the_alarm_false_rate_takes_the_threshold_the_run_recorded(
    run_dir, table, tmp_path
) -> None:
    points = json.loads((run_dir / "metrics.json").read_text())["malware"]["operating_points"]
    (ten,) = [p for p in points if p["false_alarm_target"] == 0.1]
    assert ten["threshold"] is not None
    preds = predict(run_dir, table.iloc[:200], alarm_false_rate=0.1)
    assert preds.attrs["alarm_threshold"] == ten["threshold"]
    score = preds["moriarty_score"].to_numpy(np.float64)
    np.testing.assert_array_equal(preds["moriarty_alarm"], score >= ten["threshold"])
    path = tmp_path / "t.csv"
    table.iloc[:200].to_csv(path)
    summary = predict_file(run_dir, path, tmp_path / "p.csv", alarm_false_rate=0.1)
    assert summary.alarm["false_alarm_target"] == 0.1
    assert summary.alarm["threshold"] == ten["threshold"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"alarm_threshold": "fast"},
            r"alarm_threshold must be a number between 0 and 1 \(exclusive\); received "
            r"alarm_threshold='fast'",
        ),
        ({"alarm_threshold": 0}, r"received alarm_threshold=0$"),
        ({"alarm_threshold": 1.0}, r"received alarm_threshold=1\.0$"),
        ({"alarm_threshold": True}, r"received alarm_threshold=True$"),
        ({"alarm_threshold": float("nan")}, r"received alarm_threshold=nan$"),
        ({"alarm_false_rate": -0.01}, r"alarm_false_rate must be a number between 0 and 1"),
        (
            {"alarm_threshold": 0.5, "alarm_false_rate": 0.01},
            r"give alarm_threshold or alarm_false_rate, not both",
        ),
        (
            {"alarm_false_rate": 0.05},
            r"alarm_false_rate=0\.05 is not a false-alarm rate .*metrics\.json records a "
            r"threshold for; it records 0\.1, 0\.01, 0\.001",
        ),
    ],
)
def test_bad_alarm_options_are_refused_before_anything_is_written(
    run_dir, table, tmp_path, options, match
) -> None:
    with pytest.raises(AppSleuthError, match=match):
        predict(run_dir, table.iloc[:20], **options)
    path = tmp_path / "t.csv"
    table.iloc[:20].to_csv(path)
    with pytest.raises(AppSleuthError, match=match):
        predict_file(run_dir, path, tmp_path / "p.csv", **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_a_model_without_moriarty_refuses_the_alarm_naming_its_classes(
    fb_wa_run_dir, table
) -> None:
    rows = table[table["ApplicationName"] == "Facebook"].iloc[:20]
    for options in ({"alarm_threshold": 0.5}, {"alarm_false_rate": 0.01}):
        with pytest.raises(
            AppSleuthError,
            match=r"flags rows as Moriarty, but the model of .* does not know Moriarty: its "
            r"classes are \['Facebook', 'WhatsApp'\]",
        ):
            predict(fb_wa_run_dir, rows, **options)


def test_a_rate_without_a_recorded_threshold_is_refused_with_the_reason(run_dir, table) -> None:
    # The module's run has a few hundred benign validation rows: 0.1 % is not measurable.
    with pytest.raises(
        AppSleuthError,
        match=r"alarm_false_rate=0\.001: .*metrics\.json records no threshold for that "
        r"false-alarm rate \(not measurable: .* benign sample\(s\) cannot resolve",
    ):
        predict(run_dir, table.iloc[:20], alarm_false_rate=0.001)


def test_a_run_from_before_operating_points_predicts_but_has_no_recorded_rates(
    run_dir, table, tmp_path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    metrics = json.loads((old / "metrics.json").read_text())
    for key in ("roc_auc", "average_precision", "score_reason", "operating_points"):
        del metrics["malware"][key]
    (old / "metrics.json").write_text(json.dumps(metrics))
    preds = predict(old, table.iloc[:50], alarm_threshold=0.5)
    assert "moriarty_alarm" in preds.columns
    with pytest.raises(
        AppSleuthError,
        match=r"alarm_false_rate: .*old.metrics\.json records no thresholds chosen for "
        r"false-alarm rates \(the run was trained before appsleuth recorded them",
    ):
        predict(old, table.iloc[:50], alarm_false_rate=0.01)


def test_cli_alarm_threshold_with_and_without_labels(run_dir, table, tmp_path, capsys) -> None:
    labelled, unlabelled = tmp_path / "l.csv", tmp_path / "u.csv"
    rows = pd.concat([table.iloc[:500], table[table["ApplicationName"] == "Moriarty"].iloc[:40]])
    rows.to_csv(labelled)
    rows.drop(columns="ApplicationName").to_csv(unlabelled)
    args = ["predict", str(run_dir), "--alarm-threshold", "0.02", "--out"]
    assert main([*args, str(tmp_path / "lp.csv"), str(labelled)]) == 0
    out = pd.read_csv(tmp_path / "lp.csv")
    caught = int((out["moriarty_alarm"] & (out["true_app"] == "Moriarty")).sum())
    text = capsys.readouterr().out
    assert re.search(
        rf"Moriarty alarm at score >= 0\.02: {int(out['moriarty_alarm'].sum()):,} rows "
        rf"flagged; detection rate [0-9.]+ \({caught:,} of "
        rf"{int((out['true_app'] == 'Moriarty').sum()):,} Moriarty rows caught\), "
        rf"false-alarm rate [0-9.]+ \([0-9,]+ of [0-9,]+ benign rows flagged\)",
        text,
    )
    assert main([*args, str(tmp_path / "up.csv"), str(unlabelled)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"Moriarty alarm at score >= 0\.02: [0-9,]+ rows flagged\n", text)
    assert "detection rate" not in text


def test_cli_alarm_false_rate_and_its_refusals(run_dir, fb_wa_run_dir, table, tmp_path, capsys):
    path = tmp_path / "l.csv"
    table.iloc[:300].to_csv(path)
    first = ["predict", str(run_dir), str(path), "--out", str(tmp_path / "first.csv")]
    assert main([*first, "--alarm-false-rate", "0.1"]) == 0
    assert re.search(
        r"Moriarty alarm at score >= [0-9.e-]+ \(chosen on the run's validation rows for a "
        r"false-alarm rate of 0\.1\): [0-9,]+ rows flagged; detection rate",
        capsys.readouterr().out,
    )
    out = tmp_path / "p.csv"
    refusals = [
        (run_dir, "--alarm-false-rate", "0.02", "it records 0.1, 0.01, 0.001"),
        (run_dir, "--alarm-threshold", "1.5", "--alarm-threshold"),
        (fb_wa_run_dir, "--alarm-threshold", "0.5", "its classes are ['Facebook', 'WhatsApp']"),
    ]
    for directory, option, value, said in refusals:
        assert main(["predict", str(directory), str(path), "--out", str(out), option, value]) == 2
        assert said in capsys.readouterr().err
    assert not out.exists()


def test_a_score_is_compared_with_the_threshold_exactly() -> None:
    from appsleuth.predict import _alarms

    # float32(0.02) is 0.0199999996: below 0.02, though NumPy's float32 comparison says not.
    assert not _alarms(np.array([np.float32(0.02)]), 0.02).any()
    assert _alarms(np.array([np.float32(0.5)], np.float32), 0.5).all()
