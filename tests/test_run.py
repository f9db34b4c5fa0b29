"""Training runs: the run-directory contract, reproducibility, safety, loading, evaluation."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from appsleuth.cli import main
from appsleuth.data.synth import generate_sherlock
from appsleuth.errors import AppSleuthError, DataError, SpecError
from appsleuth.run import (
    HISTORY,
    METADATA,
    MODEL,
    PREPROCESSOR,
    RunExistsError,
    evaluate_run,
    load_run,
    predict_proba,
    prepare_run_data,
    read_metadata,
    run_status,
    train,
    validate_name,
)
from appsleuth.spec import DataSpec, ModelSpec, RunSpec, TrainSpec

# The teaching material's post-processing reads exactly these metadata keys.
TEACHING_KEYS = {
    "dataset",
    "keras_version",
    "SLURM_JOB_ID",
    "timestamp",
    "model_code",
    "optimizer",
    "hidden_neurons",
    "learning_rate",
    "batch_size",
    "epochs",
    "last_results",
}
OUR_KEYS = {
    "status",
    "engine",
    "backend",
    "seed",
    "split",
    "data_fingerprint",
    "split_fingerprint",
    "data_source",
    "wall_time_s",
    "seconds_per_epoch",
    "hardware",
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return generate_sherlock(3000, seed=1, with_ids=True)


def _spec(engine: str = "auto", epochs: int = 3, **train) -> RunSpec:
    return RunSpec(
        model=ModelSpec(hidden=(8,)),
        train=TrainSpec(epochs=epochs, batch_size=64, learning_rate=0.003, engine=engine, **train),
    )


@pytest.fixture(scope="module")
def run(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(_spec(), data=table, out=out, verbose=False, log=lambda m: None)


def test_run_directory_contract(run) -> None:
    d = run.run_dir
    assert d.name == "model_1H8N_lr0.003_bs64_e3"
    for name in (
        "model_history.csv",
        "model_metadata.json",
        "model.keras",
        "preprocessor.json",
        "metrics.json",
        "spec.yaml",
        "loss_acc_plot.png",
        "confusion_matrix.png",
    ):
        assert (d / name).is_file(), name
    # Read as the teaching material's post-processing does.
    last = pd.read_csv(d / "model_history.csv").iloc[-1]
    history = pd.read_csv(d / "model_history.csv")
    assert len(history) == 3  # row i = epoch i + 1
    assert list(history.columns)[:4] == ["loss", "accuracy", "val_loss", "val_accuracy"]
    meta = json.loads((d / "model_metadata.json").read_text())
    assert set(meta) >= TEACHING_KEYS | OUR_KEYS
    assert meta["status"] == "complete"
    assert meta["hidden_neurons"] == [8]
    assert meta["learning_rate"] == 0.003 and meta["batch_size"] == 64 and meta["epochs"] == 3
    assert meta["model_code"] == d.name
    assert meta["dataset"] == "synthetic-sherlock18(seed=1)" and meta["synthetic"] is True
    assert meta["engine"] == "fused" and meta["backend"] == "jax"
    import jax

    assert meta["backend_version"] == jax.__version__
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert meta["last_results"][key] == pytest.approx(last[key])
    assert meta["split"]["kind"] == "random" and meta["split"]["n_val"] == meta["n_val"]
    assert meta["SLURM_JOB_ID"] is None
    assert meta["hardware"]["cores_available"] >= 1
    # Trained on a data frame, which its spec.yaml (path: null) cannot name.
    assert meta["data_source"] == {"kind": "data frame", "path": None, "rows": 3000}
    assert run_status(d) == "complete"


def test_the_metadata_records_the_versions_of_the_software(run) -> None:
    # Only appsleuth, Keras and the backend were recorded: a number could not be
    # reproduced without guessing NumPy and scikit-learn (they draw the split), pandas...
    import platform
    from importlib.metadata import version

    import jax

    from appsleuth import __version__

    software = read_metadata(run.run_dir)["software"]
    assert software["appsleuth"] == __version__
    assert software["python"] == platform.python_version()
    assert software["platform"] == platform.platform()
    assert software["jax"] == jax.__version__
    for name in ("jaxlib", "keras", "numpy", "pandas", "scikit-learn", "pyarrow"):
        assert software[name] == version(name), name


def test_the_data_source_records_the_file_a_relative_path_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # spec.yaml keeps data.path as given, relative to where train ran; the metadata
    # recorded no file name beyond "dataset", so a run could not be retrained elsewhere.
    from types import SimpleNamespace

    from appsleuth.run import _data_source

    monkeypatch.chdir(tmp_path)
    prepared = SimpleNamespace(
        cleaning=SimpleNamespace(rows_before=1234),
        info=SimpleNamespace(synthetic=True),
        data_spec=RunSpec().data.to_dict(),  # what train's own loading records
    )
    spec = RunSpec(data=DataSpec(path="data/mine.csv"))
    assert _data_source(spec, from_frame=False, prepared=prepared) == {
        "kind": "file",
        "path": str(tmp_path / "data" / "mine.csv"),
        "rows": 1234,
    }
    embedded = _data_source(RunSpec(), from_frame=False, prepared=prepared)
    assert embedded == {"kind": "embedded", "path": None, "rows": 1234}


def test_real_rows_prepared_in_python_are_recorded_as_a_frame() -> None:
    # train(spec, prepared=prepare_data(frame)) gives no data=, and its real rows were
    # recorded as the embedded data.
    from types import SimpleNamespace

    from appsleuth.run import _data_source

    prepared = SimpleNamespace(
        cleaning=SimpleNamespace(rows_before=50),
        info=SimpleNamespace(synthetic=False),
        data_spec=None,
    )
    source = _data_source(RunSpec(), from_frame=False, prepared=prepared)
    assert source == {"kind": "data frame", "path": None, "rows": 50}


def test_generated_rows_prepared_in_python_are_recorded_as_a_frame() -> None:
    # train(spec, prepared=prepare_data(embedded_data(300))) was recorded as the embedded
    # data, whose spec.yaml (rows: null) names the 273,129 default rows: `train --config`
    # of the run then retrained on those without a word.
    from appsleuth.data.prepare import prepare_data
    from appsleuth.data.tables import embedded_data
    from appsleuth.run import _data_source, load_data, prepare_run_data

    prepared = prepare_data(embedded_data(300))
    assert prepared.data_spec is None
    source = _data_source(RunSpec(), from_frame=False, prepared=prepared)
    assert source == {"kind": "data frame", "path": None, "rows": 300}
    # What the spec loads itself (train without data=, a sweep worker) is the embedded data.
    spec = RunSpec(data=DataSpec(rows=300))
    own = prepare_run_data(spec, load_data(spec), from_spec=True)
    assert own.data_spec == spec.data.to_dict()
    assert _data_source(spec, from_frame=False, prepared=own)["kind"] == "embedded"
    # ... for that spec only: another spec's data section names other rows.
    assert _data_source(RunSpec(), from_frame=False, prepared=own)["kind"] == "data frame"


def test_metrics_file(run, table) -> None:
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "validation"
    assert len(metrics["per_class"]) == 18
    assert "Moriarty" in metrics["per_class"]
    assert metrics["malware"]["app"] == "Moriarty"
    # Moriarty's score on the validation rows: P(Moriarty) ranks them, and each chosen
    # operating point's counts are those of its threshold.
    malware = metrics["malware"]
    assert 0 <= malware["roc_auc"] <= 1 and 0 <= malware["average_precision"] <= 1
    points = {p["false_alarm_target"]: p for p in malware["operating_points"]}
    assert set(points) == {0.1, 0.01, 0.001}
    benign = metrics["n"] - malware["support"]
    assert benign < 1000 and "not measurable" in points[0.001]["reason"]
    prepared = prepare_run_data(_spec(), table)
    m = prepared.classes.index("Moriarty")
    score = predict_proba(load_run(run.run_dir).model, prepared.x_val, 18)[:, m]
    is_malware = prepared.y_val == m
    for target in (0.1, 0.01):
        point = points[target]
        # No threshold: none catches a Moriarty row within the target, so none is raised.
        alarms = score >= (np.inf if point["threshold"] is None else point["threshold"])
        assert point["detected"] == (alarms & is_malware).sum()
        assert point["false_alarms"] == (alarms & ~is_malware).sum() <= target * benign
    assert metrics["fit"]["diagnosis"] in ("good fit", "overfitting", "underfitting")
    assert metrics["fit"]["rule"]
    assert metrics["accuracy"] == pytest.approx(
        run.metadata["last_results"]["val_accuracy"], abs=1e-4
    )


def test_fit_engine_writes_the_same_contract(run, table, tmp_path: Path) -> None:
    result = train(_spec(engine="fit"), data=table, out=tmp_path, verbose=False, log=print)
    assert result.metadata["engine"] == "fit"
    assert sorted(p.name for p in result.run_dir.iterdir()) == sorted(
        p.name for p in run.run_dir.iterdir()
    )
    assert set(result.metadata) == set(run.metadata)
    assert list(result.history.columns) == list(run.history.columns)


def test_reproducible(table, tmp_path: Path) -> None:
    a = train(_spec(epochs=2), data=table, out=tmp_path / "a", verbose=False, log=print)
    b = train(_spec(epochs=2), data=table, out=tmp_path / "b", verbose=False, log=print)
    pd.testing.assert_frame_equal(a.history, b.history)
    c = train(_spec(epochs=2, seed=5), data=table, out=tmp_path / "c", verbose=False, log=print)
    assert not np.allclose(a.history["loss"], c.history["loss"])
    assert a.metadata["data_fingerprint"] == c.metadata["data_fingerprint"]
    assert a.metadata["split_fingerprint"] == c.metadata["split_fingerprint"]


def test_the_split_fingerprint_changes_with_the_rows_on_each_side() -> None:
    # The data fingerprint hashes the table and the split's settings only: a library that
    # drew other rows from the same settings left it unchanged.
    from types import SimpleNamespace

    from appsleuth.run import _split_fingerprint

    def fingerprint(train: list[int], val: list[int], data: str = "ab12") -> str:
        split = SimpleNamespace(train=np.array(train), val=np.array(val), test=np.array([]))
        return _split_fingerprint(SimpleNamespace(split=split), data)

    same = fingerprint([0, 1, 2], [3])
    assert re.fullmatch(r"[0-9a-f]{16}", same) and fingerprint([0, 1, 2], [3]) == same
    assert fingerprint([0, 1, 3], [2]) != same
    assert fingerprint([0, 1], [2, 3]) != same
    assert fingerprint([0, 1, 2], [3], data="cd34") != same


def test_only_the_final_history_waits_for_the_disk(
    table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The per-epoch progress rewrites of model_history.csv each waited for the disk
    # (fsync, ~6 ms here: as long as a short epoch); a run cut short is redone anyway.
    from appsleuth import _atomic

    flushed: list[str | None] = []
    flush = _atomic.flush_to_disk
    monkeypatch.setattr(
        _atomic,
        "flush_to_disk",
        lambda path: flushed.append(_atomic.target_of_temporary(path.name)) or flush(path),
    )
    result = train(_spec(epochs=3), data=table, out=tmp_path, verbose=False, log=print)
    assert flushed.count("model_history.csv") == 1
    assert flushed[-1] == "model_metadata.json"
    assert len(pd.read_csv(result.run_dir / "model_history.csv")) == 3


def test_binary_task_and_roc_auc(table, tmp_path: Path) -> None:
    spec = RunSpec(
        data=DataSpec(apps=("Facebook", "WhatsApp")),
        model=ModelSpec(hidden=(4,)),
        train=TrainSpec(epochs=2),
    )
    result = train(spec, data=table, out=tmp_path, verbose=False, log=print)
    assert result.metadata["task"] == "binary"
    assert result.metadata["classes"] == ["Facebook", "WhatsApp"]
    assert 0.0 <= result.metrics["roc_auc"] <= 1.0


def test_moriarty_vs_rest_with_class_weights(table, tmp_path: Path) -> None:
    spec = RunSpec(
        data=DataSpec(positive="Moriarty", split={"kind": "random", "test_fraction": 0.25}),
        model=ModelSpec(hidden=(4,)),
        train=TrainSpec(epochs=2, class_weight="balanced"),
    )
    result = train(spec, data=table, out=tmp_path, verbose=False, log=print)
    assert result.metadata["classes"] == ["other", "Moriarty"]
    assert result.metrics["malware"]["app"] == "Moriarty"
    # The score is P(Moriarty) as in the 18-app model: its AUC is the task's own.
    assert result.metrics["malware"]["roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    assert len(result.metrics["malware"]["operating_points"]) == 3
    # The held-out test rows measure the thresholds chosen on the validation rows.
    test = result.metrics["test"]["malware"]
    assert test["thresholds_chosen_on"] == "validation"
    prepared = prepare_run_data(spec, table)
    score = predict_proba(load_run(result.run_dir).model, prepared.x_test, 2)[:, 1]
    is_malware = prepared.y_test == 1
    for chosen, measured in zip(
        result.metrics["malware"]["operating_points"], test["operating_points"], strict=True
    ):
        assert measured["threshold"] == chosen["threshold"]
        if chosen["threshold"] is None:
            assert measured["detection_rate"] is None
            assert measured["reason"].startswith("no threshold was chosen: ")
            continue
        alarms = score >= chosen["threshold"]
        assert measured["detected"] == (alarms & is_malware).sum()
        assert measured["false_alarms"] == (alarms & ~is_malware).sum()


def test_unknown_class_weight_app(table, tmp_path: Path) -> None:
    spec = _spec(class_weight={"Tetris": 2.0})
    with pytest.raises(SpecError, match=r"class_weight names app\(s\) \['Tetris'\]"):
        train(spec, data=table, out=tmp_path, verbose=False, log=print)


def test_complete_run_is_not_overwritten(run, table) -> None:
    before = (run.run_dir / METADATA).read_text()
    with pytest.raises(
        RunExistsError, match="already holds a complete run of this spec and data; pass --force"
    ):
        train(_spec(), data=table, out=run.run_dir.parent, verbose=False, log=print)
    assert (run.run_dir / METADATA).read_text() == before
    again = train(_spec(), data=table, out=run.run_dir.parent, skip_complete=True)
    assert again.skipped and again.metadata == json.loads(before)
    # The same columns, in the same order, whether the run was trained or skipped.
    assert list(again.history.columns) == list(run.history.columns)
    assert list(run.history.columns[:4]) == ["loss", "accuracy", "val_loss", "val_accuracy"]


def test_a_skipped_runs_unreadable_history_is_named(run, table, tmp_path: Path) -> None:
    import os
    import shutil

    # The bounded reader's reason alone ("it is a named pipe, not a regular file")
    # reached the user, naming no file (a pipe was read for ever before).
    copy = tmp_path / run.run_dir.name
    shutil.copytree(run.run_dir, copy)
    (copy / HISTORY).unlink()
    os.mkfifo(copy / HISTORY)
    with pytest.raises(
        DataError,
        match=rf"{copy / HISTORY} of the complete run in {copy} cannot be read: it is a "
        r"named pipe, not a regular file; train with force=True",
    ):
        train(_spec(), data=table, out=tmp_path, skip_complete=True, verbose=False, log=print)


@pytest.mark.parametrize("skip_complete", [True, False])
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("seed", r"of another spec \(differs in train.seed\); name the run differently"),
        ("data", r"of other data \(data fingerprint [0-9a-f]{16} there, [0-9a-f]{16} here\)"),
        ("positive", r"of another spec \(differs in data.positive\)"),
    ],
)
def test_complete_run_of_another_experiment_is_never_returned(
    run, table, change, expected, skip_complete
) -> None:
    before = (run.run_dir / METADATA).read_text()
    spec, data = _spec(), table
    if change == "seed":
        spec = _spec(seed=5)
    elif change == "data":
        data = table.iloc[: len(table) // 2]
    else:
        spec = RunSpec.from_dict({**_spec().to_dict(), "data": {"positive": "Moriarty"}})
    with pytest.raises(RunExistsError, match=expected) as info:
        train(
            spec, data=data, out=run.run_dir.parent, name=run.run_dir.name,
            skip_complete=skip_complete, verbose=False, log=print,
        )  # fmt: skip
    # The other experiment's run is not to be replaced on this run's account.
    assert "--force (force=True) would replace that run" in str(info.value)
    assert (run.run_dir / METADATA).read_text() == before


def test_incomplete_run_is_redone(table, tmp_path: Path) -> None:
    # What a killed job leaves: a run directory with a partial history and no metadata.
    run_dir = tmp_path / _spec(epochs=2).run_name()
    run_dir.mkdir()
    (run_dir / ".appsleuth-run").write_text("")  # the marker every run directory starts with
    (run_dir / HISTORY).write_text("loss,accuracy,val_loss,val_accuracy\n9,0,9,0\n")
    (run_dir / "stale.txt").write_text("left over")
    assert run_status(run_dir) == "incomplete"
    result = train(_spec(epochs=2), data=table, out=tmp_path, verbose=False, log=print)
    assert run_status(run_dir) == "complete"
    assert not (run_dir / "stale.txt").exists()
    assert len(pd.read_csv(run_dir / HISTORY)) == 2
    assert result.history["loss"].iloc[0] != 9


def test_force_retrains(run, table) -> None:
    again = train(_spec(), data=table, out=run.run_dir.parent, force=True, verbose=False, log=print)
    assert not again.skipped and run_status(again.run_dir) == "complete"
    assert not (run.run_dir.parent / f".{run.run_dir.name}.replaced").exists()


def test_a_directory_appsleuth_did_not_make_is_never_replaced(table, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    with pytest.raises(RunExistsError, match=r"notes exists but is not an appsleuth run directory"):
        train(_spec(epochs=1), data=table, out=tmp_path, name="notes", verbose=False, log=print)
    assert (notes / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in notes.iterdir()) == ["thesis.txt"]
    # An empty directory holds nothing to lose.
    (tmp_path / "empty").mkdir()
    result = train(_spec(epochs=1), data=table, out=tmp_path, name="empty", verbose=False)
    assert run_status(result.run_dir) == "complete"
    # Only run files (a partial run from before the marker): redone.
    old = tmp_path / "old"
    old.mkdir()
    (old / HISTORY).write_text("loss,accuracy,val_loss,val_accuracy\n9,0,9,0\n")
    (old / ".model.keras.tmp-123").write_text("partial")
    assert run_status(train(_spec(epochs=1), data=table, out=tmp_path, name="old").run_dir) == (
        "complete"
    )
    # A run file beside a file of the user's: left alone.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / HISTORY).write_text("x")
    (mixed / "notes.md").write_text("mine")
    with pytest.raises(RunExistsError, match=r"mixed exists but is not an appsleuth run"):
        train(_spec(epochs=1), data=table, out=tmp_path, name="mixed", verbose=False)
    assert (mixed / "notes.md").read_text() == "mine"


def test_a_partial_run_left_with_temporaries_of_suffixed_files_is_redone(tmp_path: Path) -> None:
    from appsleuth.run import _prepare_run_dir

    # A deletion of a killed run, itself killed after the marker went: run files and the
    # temporaries a kill left (the model and the plots keep their suffix) remain.
    old = tmp_path / "old"
    old.mkdir()
    (old / HISTORY).write_text("loss\n9\n")
    (old / ".model.tmp-123.keras").write_text("partial")
    (old / ".loss_acc_plot.tmp-123.png").write_text("partial")
    _, lock = _prepare_run_dir(old, force=False)
    lock.release()
    assert [p.name for p in old.iterdir()] == [".appsleuth-run"]


def test_a_failed_forced_retrain_keeps_the_complete_run(table, tmp_path: Path) -> None:
    said: list[str] = []
    first = train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=said.append)
    assert " after 1 epoch (" in said[-1]  # it read "after 1 epochs"
    before = (first.run_dir / METADATA).read_text()
    bad = _spec(epochs=1, class_weight={"Nope": 2.0})
    with pytest.raises(SpecError, match="Nope"):
        train(bad, data=table, out=tmp_path, name=first.run_dir.name, force=True, verbose=False)
    assert (first.run_dir / METADATA).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.run_dir.name]


def test_an_interrupted_forced_retrain_puts_the_old_run_back(table, tmp_path: Path) -> None:
    first = train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=print)
    before = (first.run_dir / METADATA).read_text()
    # What a forced retrain killed mid-way leaves: the old run set aside, a partial new one.
    backup = tmp_path / f".{first.run_dir.name}.replaced"
    first.run_dir.rename(backup)
    first.run_dir.mkdir()
    (first.run_dir / ".appsleuth-run").write_text("")
    with pytest.raises(RunExistsError, match="already holds a complete run"):
        train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=print)
    assert (first.run_dir / METADATA).read_text() == before and not backup.exists()


def test_loading_names_the_run_a_killed_forced_retrain_set_aside(run, tmp_path: Path) -> None:
    backup = tmp_path / f".{run.run_dir.name}.replaced"
    shutil.copytree(run.run_dir, backup)
    partial = tmp_path / run.run_dir.name
    partial.mkdir()
    (partial / ".appsleuth-run").write_text("")
    with pytest.raises(
        DataError,
        match=r"not a complete run \(status incomplete\); its complete run was set aside in "
        r"\S+\.replaced by a 'train --force' that was killed; run the same train command "
        r"without --force to put it back",
    ):
        load_run(partial)
    shutil.rmtree(partial)  # killed before the new directory was made
    with pytest.raises(DataError, match=r"\(status missing\); its complete run was set aside"):
        load_run(partial)


def test_a_run_name_too_long_for_a_directory_is_refused(table, tmp_path: Path) -> None:
    spec = RunSpec(train=TrainSpec(learning_rate=1e300, epochs=1))
    with pytest.raises(SpecError, match=r"run name is 3\d\d characters long, more than the 245"):
        train(spec, data=table, out=tmp_path, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_a_run_name_leaves_room_for_the_name_force_sets_it_aside_under() -> None:
    # 255 characters trained, but 'train --force' then failed: .<name>.replaced is 265.
    assert validate_name("n" * 245) == "n" * 245
    with pytest.raises(SpecError, match=r"246 characters long, more than the 245 appsleuth allo"):
        validate_name("n" * 246)


@pytest.mark.parametrize("name", ["", 0])
def test_an_empty_run_name_is_refused_not_replaced_by_the_default(
    name, table, tmp_path: Path
) -> None:
    # name="" (--name "") trained silently under the spec's default name.
    with pytest.raises(SpecError, match=rf"run name must use only .*received run name={name!r}"):
        train(_spec(epochs=1), data=table, out=tmp_path, name=name, verbose=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "..", "-rf", "name with space"])
def test_run_names_are_validated(bad: str) -> None:
    with pytest.raises(SpecError, match=r"run name must use only letters, digits"):
        validate_name(bad)


def test_load_and_evaluate(run, table) -> None:
    loaded = load_run(run.run_dir)
    assert loaded.preprocessor.classes == run.metadata["classes"]
    metrics = evaluate_run(loaded, table.iloc[:500])
    assert metrics["n"] + metrics["rows_skipped"] == 500
    assert 0 <= metrics["accuracy"] <= 1
    with pytest.raises(DataError, match="has no label column"):
        evaluate_run(loaded, table.drop(columns="ApplicationName"))


def test_load_refuses_incomplete_and_tampered(run, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_run(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match=r"is not a complete run \(status incomplete\)"):
        load_run(tmp_path / "half")
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(run.run_dir, copy)
    with open(copy / MODEL, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(DataError, match="does not match the checksum recorded"):
        load_run(copy)
    meta = read_metadata(copy)
    meta["format_version"] = 99
    (copy / METADATA).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="has format_version 99"):
        load_run(copy)


def _rechecksum(run_dir: Path, name: str) -> None:
    import hashlib

    meta = read_metadata(run_dir)
    meta["files"][name] = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
    (run_dir / METADATA).write_text(json.dumps(meta))


def test_edited_and_rechecksummed_files_that_disagree_are_refused(run, tmp_path: Path) -> None:
    import shutil

    from appsleuth._keras import import_keras

    keras = import_keras()
    fewer = tmp_path / "fewer-classes"
    shutil.copytree(run.run_dir, fewer)
    pre = json.loads((fewer / PREPROCESSOR).read_text())
    n_classes = len(pre["classes"])
    pre["classes"] = pre["classes"][:-1]
    (fewer / PREPROCESSOR).write_text(json.dumps(pre))
    _rechecksum(fewer, PREPROCESSOR)
    with pytest.raises(
        DataError,
        match=rf"has {n_classes} output\(s\) but .*names {n_classes - 1} classes .*do not belong",
    ):
        load_run(fewer)

    wider = tmp_path / "other-inputs"
    shutil.copytree(run.run_dir, wider)
    n_inputs = load_run(run.run_dir).preprocessor.n_outputs
    other = keras.Sequential(
        [keras.Input(shape=(n_inputs + 2,)), keras.layers.Dense(n_classes, activation="softmax")]
    )
    other.save(wider / MODEL)
    _rechecksum(wider, MODEL)
    with pytest.raises(
        DataError, match=rf"takes {n_inputs + 2} input column\(s\) but .* produces {n_inputs}"
    ):
        load_run(wider)


def test_lambda_layer_is_refused_in_safe_mode(run, tmp_path: Path) -> None:
    # A crafted model whose checksum was updated too: only safe mode stands in the way.
    import hashlib
    import shutil

    from appsleuth._keras import import_keras

    keras = import_keras()
    crafted = tmp_path / "crafted"
    shutil.copytree(run.run_dir, crafted)
    n_inputs = load_run(run.run_dir).preprocessor.n_outputs
    evil = keras.Sequential(
        [
            keras.Input(shape=(n_inputs,)),
            keras.layers.Lambda(lambda x: x * 2),
            keras.layers.Dense(18, activation="softmax"),
        ]
    )
    evil.save(crafted / MODEL)
    with zipfile.ZipFile(crafted / MODEL) as zf:
        assert "lambda" in zf.read("config.json").decode().lower()
    meta = read_metadata(crafted)
    meta["files"][MODEL] = hashlib.sha256((crafted / MODEL).read_bytes()).hexdigest()
    (crafted / METADATA).write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"contains arbitrary code .*safe mode"):
        load_run(crafted)


def test_a_run_directory_that_is_a_symbolic_link_is_left_alone(table, tmp_path: Path) -> None:
    # An incomplete run of appsleuth elsewhere, linked in as this run's directory:
    # redoing it would delete what the link points to (rmtree refused with a riddle).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".appsleuth-run").write_text("")
    (elsewhere / "notes.txt").write_text("keep")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "r").symlink_to(elsewhere)
    with pytest.raises(RunExistsError, match=r"out/r is a symbolic link \(to .*elsewhere\); "):
        train(_spec(epochs=1), data=table, out=tmp_path / "out", name="r", verbose=False)
    assert sorted(p.name for p in elsewhere.iterdir()) == [".appsleuth-run", "notes.txt"]


def test_a_model_file_that_is_no_regular_file_is_refused(run, tmp_path: Path) -> None:
    crafted = tmp_path / "crafted"
    shutil.copytree(run.run_dir, crafted)
    (crafted / MODEL).unlink()
    (crafted / MODEL).symlink_to("/dev/zero")  # its checksum was read for ever
    with pytest.raises(DataError, match=r"model.keras is not a regular file; refusing to use"):
        load_run(crafted)
    (crafted / METADATA).unlink()
    (crafted / METADATA).symlink_to("/dev/zero")
    assert run_status(crafted) == "incomplete"


def test_metadata_nested_past_pythons_limit_reads_as_absent(tmp_path: Path) -> None:
    # Nested past Python's limit: json.loads raises RecursionError, no ValueError
    (tmp_path / METADATA).write_text("[" * 100_000 + "]" * 100_000)
    assert read_metadata(tmp_path) is None and run_status(tmp_path) == "incomplete"


def test_the_keras_floor_is_a_release_whose_safe_mode_holds() -> None:
    # load_run's safe_mode=True is the only guard against code in a crafted model.keras,
    # and older Keras let such files run code anyway: module names in config.json before
    # 3.9 (CVE-2025-1550), a config that turns safe mode off before 3.11 (CVE-2025-9906),
    # a TFSMLayer before 3.12.1 / 3.13.2 (CVE-2026-1462), archive paths before 3.14.
    import tomllib

    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (keras,) = [d for d in deps if re.match(r"keras\b", d)]
    floor = re.fullmatch(r"keras>=(\d+)\.(\d+)(?:\.\d+)?", keras.replace(" ", ""))
    assert floor, keras
    assert (int(floor.group(1)), int(floor.group(2))) >= (3, 14), keras


def test_cli_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))
    args = [
        "train",
        "--hidden",
        "6,4",
        "--lr",
        "0.01",
        "--batch-size",
        "64",
        "--epochs",
        "2",
        "--rows",
        "2000",
        "--out",
        str(tmp_path / "exp"),
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    run_dir = tmp_path / "exp" / "model_2H6N4N_lr0.01_bs64_e2"
    assert run_status(run_dir) == "complete"
    assert "Moriarty" in out.out and "detection rate" in out.out
    assert "val_accuracy" in out.err  # the one-line summary
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a complete run" in err
    # skip_complete is an argument of train() in Python, not an option of the command.
    assert "--force (force=True) to train it again; from Python, skip_complete=True" in err
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: {hidden: [5]}\ntrain: {epochs: 1, learning_rate: 0.002}\n"
        "data: {apps: [Facebook, WhatsApp]}\n"
    )
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--rows",
                "2000",
                "--quiet",
                "--out",
                str(tmp_path / "exp"),
            ]
        )
        == 0
    )
    meta = read_metadata(tmp_path / "exp" / "model_1H5N_lr0.002_bs32_e1")
    assert meta["task"] == "binary"
    assert main(["train", "--lr", "-1", "--rows", "2000"]) == 2
    assert (
        "learning_rate must be a positive number; received learning_rate=-1"
        in capsys.readouterr().err
    )


def test_cli_threads_limit_takes_effect_in_the_training_process(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "APPSLEUTH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "appsleuth",
            "train",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--rows",
            "2000",
            "--epochs",
            "1",
            "--hidden",
            "4",
            "--quiet",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    meta = read_metadata(tmp_path / "model_1H4N_lr0.0003_bs32_e1")
    assert meta["hardware"]["cores_available"] == 1  # pinned to one core
    assert meta["hardware"]["device"] == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spec": "x"}, r"spec must be a RunSpec .*received str"),
        ({"spec": {"train": {}}}, r"spec must be a RunSpec .*received dict"),
        ({"data": "d.csv"}, r"data must be a pandas DataFrame .*received str"),
        ({"out": 5}, r"out must be a directory path; received out=5"),
    ],
)
def test_train_arguments_are_checked(kwargs: dict, match: str, tmp_path: Path) -> None:
    kwargs = {"out": tmp_path, **kwargs}
    with pytest.raises(SpecError, match=match):
        train(**kwargs)
    assert not [p for p in tmp_path.iterdir()]


def test_the_specs_label_is_honoured_for_a_table_given(table, tmp_path: Path) -> None:
    spec = RunSpec(data=DataSpec(label="state"), train=TrainSpec(epochs=1))
    with pytest.raises(SpecError, match=r"data.label is 'state' but the table given was loaded "
                       r"with the label 'ApplicationName'"):  # fmt: skip
        train(spec, data=table, out=tmp_path, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_restored_best_weights_are_what_the_results_report(table, tmp_path: Path) -> None:
    from appsleuth.spec import EarlyStoppingSpec

    spec = RunSpec(
        model=ModelSpec(hidden=(8,)),
        train=TrainSpec(
            epochs=8,
            batch_size=64,
            learning_rate=0.3,  # erratic on purpose: the best epoch is rarely the last
            early_stopping=EarlyStoppingSpec(monitor="val_accuracy", patience=2),
        ),
    )
    said: list[str] = []
    result = train(spec, data=table, out=tmp_path, verbose=False, log=said.append)
    history = result.history
    best = int(history["val_accuracy"].to_numpy().argmax())
    meta = result.metadata
    assert meta["results_epoch"] == best + 1
    # The summary line names the epoch its numbers come from, here not the last.
    assert best + 1 < len(history)
    restored = f"(epoch {best + 1}, whose weights early stopping restored) after {len(history)}"
    assert restored in said[-1]
    assert said[0].startswith("appsleuth: data ")  # what it trained on, before training
    assert meta["last_results"]["val_accuracy"] == pytest.approx(history["val_accuracy"][best])
    # The saved model is the restored one: its accuracy is what the results say.
    assert result.metrics["accuracy"] == pytest.approx(meta["last_results"]["val_accuracy"])


def test_training_leaves_the_callers_random_generators_alone(table, tmp_path: Path) -> None:
    import random

    np.random.seed(123)
    random.seed(123)
    expected = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=lambda m: None)
    assert (np.random.rand(), random.random()) == expected


def test_results_and_wrong_arguments_at_the_run_boundary(run, table, tmp_path: Path) -> None:
    from appsleuth.predict import predict

    assert len(predict(run, table.head(5))) == 5  # a RunResult is a run
    assert (
        evaluate_run(run, table.head(50))["n"] + evaluate_run(run, table.head(50))["rows_skipped"]
        == 50
    )
    with pytest.raises(DataError, match=r"a run must be given as a run .*received NoneType"):
        load_run(None)
    with pytest.raises(DataError, match=r"evaluate_run needs a labelled DataFrame; received nd"):
        evaluate_run(run, np.zeros((3, 3)))
    with pytest.raises(SpecError, match=r"callbacks must be keras.callbacks.Callback objects"):
        train(_spec(epochs=1), data=table, out=tmp_path, callbacks=[print])
    with pytest.raises(SpecError, match=r"log must be a function taking one text"):
        train(_spec(epochs=1), data=table, out=tmp_path, log="x")
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_a_run_directory_in_use_is_not_taken_over(table, tmp_path: Path) -> None:
    from appsleuth.run import RunInUseError, _RunLock

    run_dir = tmp_path / _spec(epochs=1).run_name()
    run_dir.mkdir()
    other = _RunLock.create(run_dir / ".appsleuth-run")  # as another process would hold it
    (run_dir / "model_history.csv").write_text("loss\n1.0\n")
    try:
        with pytest.raises(RunInUseError, match=r"is being trained by another process right now"):
            train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=lambda m: None)
        assert (run_dir / "model_history.csv").exists()  # its work was left alone
    finally:
        other.release()
    result = train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=lambda m: None)
    assert result.metadata["status"] == "complete"


def test_two_processes_starting_one_run_at_once_never_both_train_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appsleuth import run as run_module
    from appsleuth.run import RunInUseError, _prepare_run_dir

    run_dir = tmp_path / "r"
    real_try = run_module._RunLock._try
    other: list = []

    def other_arrives_before_the_lock(self):
        # Between this process making the run directory's marker and locking it,
        # another starts the same run (two sweep runs on one directory).
        if not other:
            other.append(None)
            try:
                other[0] = _prepare_run_dir(run_dir, force=False)[1]
            except RunInUseError as exc:
                other[0] = exc
        return real_try(self)

    monkeypatch.setattr(run_module._RunLock, "_try", other_arrives_before_the_lock)
    try:
        mine = _prepare_run_dir(run_dir, force=False)[1]
    except RunInUseError as exc:
        mine = exc
    holders = [x for x in (mine, other[0]) if not isinstance(x, RunInUseError)]
    for holder in holders:
        holder.release()
    assert len(holders) == 1, "both processes would train into one directory"
    assert any(isinstance(x, RunInUseError) for x in (mine, other[0]))


def test_forced_retrain_that_cannot_start_keeps_the_complete_run(
    run, table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import shutil

    from appsleuth import run as run_module

    copy = tmp_path / run.run_dir.name
    shutil.copytree(run.run_dir, copy)
    before = (copy / METADATA).read_text()

    def full_disk(marker: Path):
        raise OSError(errno.ENOSPC, "No space left on device", str(marker))

    monkeypatch.setattr(run_module._RunLock, "create", staticmethod(full_disk))
    with pytest.raises(OSError, match=r"No space left on device") as caught:
        train(_spec(), data=table, out=tmp_path, force=True, verbose=False, log=lambda m: None)
    assert caught.value.filename.endswith(".appsleuth-run")
    assert (copy / METADATA).read_text() == before  # the complete run is back in place
    assert not (tmp_path / f".{copy.name}.replaced").exists()


def test_a_full_disk_is_reported_for_the_file_it_stopped_not_the_failure_record(
    table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import appsleuth.engines
    from appsleuth import run as run_module

    def full_disk(path: Path, *args) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def history_stops(engine, model, *args, **kwargs):
        full_disk(tmp_path / _spec(epochs=1).run_name() / HISTORY)

    monkeypatch.setattr(appsleuth.engines, "run_engine", history_stops)
    monkeypatch.setattr(run_module, "atomic_write_text", full_disk)
    with pytest.raises(
        OSError, match=r"No space left on device: '\S+model_history\.csv'"
    ) as caught:
        train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=lambda m: None)
    # The record of the failure could not be written either: the run stays incomplete.
    assert Path(caught.value.filename).name == HISTORY
    assert run_status(tmp_path / _spec(epochs=1).run_name()) == "incomplete"


def test_the_model_file_is_written_whole_or_not_at_all(
    table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import keras

    import appsleuth.engines

    def one_epoch(engine, model, *args, **kwargs):  # the model as built: no need to train it
        history = keras.callbacks.History()
        history.history = {k: [0.5] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        return history

    monkeypatch.setattr(appsleuth.engines, "run_engine", one_epoch)

    def full_disk(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"PK half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")  # Keras names no file

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(OSError, match=r"No space left on device: '\S+model\.keras'") as caught:
        train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=lambda m: None)
    run_dir = tmp_path / _spec(epochs=1).run_name()
    assert caught.value.filename == str(run_dir / MODEL)
    assert not (run_dir / MODEL).exists()
    assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name]


def test_lock_is_skipped_where_the_file_system_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    from appsleuth.run import _prepare_run_dir

    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    run_dir = tmp_path / "r"
    _, lock = _prepare_run_dir(run_dir, force=False)
    lock.release()
    (run_dir / "model_history.csv").write_text("loss\n1\n")  # an incomplete run: redone
    _, lock = _prepare_run_dir(run_dir, force=False)
    lock.release()
    assert not (run_dir / "model_history.csv").exists()


def test_evaluate_run_skips_blank_labels(run, table) -> None:
    rows = table.head(10).copy()
    rows.loc[rows.index[0], "ApplicationName"] = "   "
    result = evaluate_run(run, rows)
    assert result["rows_skipped"] == 1 and result["n"] == 9


def test_evaluate_run_measures_the_runs_thresholds_on_new_rows(run, table) -> None:
    recorded = json.loads((run.run_dir / "metrics.json").read_text())["malware"]
    rows = generate_sherlock(3000, seed=7)  # new rows: nothing is chosen on them
    result = evaluate_run(run, rows)["malware"]
    assert result["thresholds_chosen_on"] == "validation"
    points = {p["false_alarm_target"]: p for p in result["operating_points"]}
    for point in recorded["operating_points"]:
        assert points[point["false_alarm_target"]]["threshold"] == point["threshold"]
    # A run from before operating points were recorded: chosen on these rows, as before.
    old = dict(json.loads((run.run_dir / "metrics.json").read_text()))
    del old["malware"]["operating_points"]
    copy = run.run_dir.parent / "before-operating-points"
    shutil.copytree(run.run_dir, copy)
    (copy / "metrics.json").write_text(json.dumps(old))
    result = evaluate_run(copy, rows)["malware"]
    assert "thresholds_chosen_on" not in result and len(result["operating_points"]) == 3


@pytest.mark.parametrize("damaged", ["high", float("nan"), 7])
def test_evaluate_run_refuses_a_recorded_threshold_that_is_no_score(
    run, table, damaged: Any
) -> None:
    # A damaged metrics.json: 'high' was a TypeError traceback, NaN flagged no row and
    # reported a detection rate of 0 as if measured.
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    metrics["malware"]["operating_points"][0]["threshold"] = damaged
    copy = run.run_dir.parent / f"damaged-threshold-{damaged}"
    shutil.copytree(run.run_dir, copy)
    (copy / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(AppSleuthError, match=r"metrics\.json records threshold=.* for a "):
        evaluate_run(copy, table.head(50))


def test_training_leaves_the_users_matplotlib_alone(table, tmp_path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # stands for a notebook's widget or inline backend
    try:
        plt.close("all")
        result = train(_spec(epochs=1), data=table, out=tmp_path, verbose=False, log=print)
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == []  # the run's figures were saved, never shown
        assert (result.run_dir / "confusion_matrix.png").stat().st_size > 1000
    finally:
        matplotlib.use(before)


def test_run_status_of_something_that_is_no_run(run) -> None:
    assert run_status(run) == "complete"  # the result of train() names its directory
    with pytest.raises(DataError, match=r"a run must be given as a run \(or sweep\) directory"):
        run_status(3)


def test_public_names_cover_what_the_api_raises_and_returns() -> None:
    import appsleuth

    names = ("RunExistsError", "RunInUseError", "TrainingDivergedError", "LoadedRun", "FitRule")
    names += ("PredictionSummary",)  # what predict_file returns
    for name in names:
        assert name in appsleuth.__all__ and hasattr(appsleuth, name)
    assert issubclass(appsleuth.RunInUseError, appsleuth.RunExistsError)
    assert issubclass(appsleuth.RunExistsError, appsleuth.AppSleuthError)


def test_loading_a_directory_that_holds_runs_names_them(run, tmp_path: Path) -> None:
    # load_run and evaluate_run on the experiment directory (``out``) said "not a complete
    # run (status incomplete); train it again", as if a run there had been interrupted.
    experiment = tmp_path / "runs"
    shutil.copytree(run.run_dir, experiment / run.run_dir.name)
    said = rf"{experiment} is not a run directory but holds 1 complete run\(s\) below it, e.g. "
    for call in (load_run, lambda d: evaluate_run(d, pd.DataFrame())):
        with pytest.raises(DataError, match=said + r"\S+model_1H8N.*predict and predict_file"):
            call(experiment)
    # A run that was started and interrupted is still called incomplete.
    (experiment / "started").mkdir()
    (experiment / "started" / ".appsleuth-run").write_text("")
    with pytest.raises(DataError, match=r"not a complete run \(status incomplete\); train it"):
        load_run(experiment / "started")


@pytest.mark.parametrize(
    ("values", "dtype_text"),
    [
        (pd.Timestamp("2020-01-01"), r"datetime64\[\w+\] \(dates/times\)"),
        (pd.Timedelta("1s"), r"timedelta64\[\w+\] \(durations\)"),
        (1 + 2j, r"complex128 \(complex numbers\)"),
    ],
)
def test_evaluate_run_refuses_date_duration_complex_features(run, table, values, dtype_text):
    # predict refused them, but evaluate_run scaled dates as their nanoseconds (and
    # dropped the imaginary part) and returned an accuracy for them.
    data = table.head(20).assign(CPU_USAGE=values)
    with pytest.raises(
        DataError,
        match=rf"the table given to evaluate_run: feature column 'CPU_USAGE' has dtype "
        rf"{dtype_text}, but a numeric column is expected",
    ):
        evaluate_run(run, data)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"rss": 1e300}, r"evaluate_run: nothing to evaluate: each of its 20 row\(s\) lacks its "
         r"label or a usable value in a feature column \(missing, infinite, or too large"),
        ({"ApplicationName": None}, r"each of its 20 row\(s\) lacks its label or a usable"),
        (None, r"the table given to evaluate_run has no rows; nothing to evaluate"),
    ],
)  # fmt: skip
def test_evaluate_run_says_why_no_row_can_be_scored(run, table, change, said) -> None:
    # It said "every row misses a feature value or its label" for rows whose values were
    # all there (too large for the model's float32 inputs), and for a table of no rows.
    data = table.head(20).assign(**change) if change else table.head(0)
    with pytest.raises(DataError, match=said):
        evaluate_run(run, data)


def test_train_refuses_an_out_that_is_a_file_and_a_dataset_name_that_is_no_text(
    table, tmp_path: Path
) -> None:
    # out=<a file> ended in NotADirectoryError from mkdir; dataset_name=3 was recorded
    # as the metadata's dataset.
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SpecError, match=r"out must be a directory .*notes\.txt is a file"):
        train(_spec(epochs=1), data=table, out=tmp_path / "notes.txt", log=lambda m: None)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(SpecError, match=r"dataset_name must be a non-empty text .*received "):
        train(_spec(epochs=1), data=table, out=tmp_path, dataset_name=3, log=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_model_file_given_for_its_run_directory_is_named_as_a_file(run, table) -> None:
    # load_run, evaluate_run, predict and predict_file said the model.keras they were
    # given "does not exist".
    from appsleuth.predict import predict

    model_file = run.run_dir / MODEL
    said = rf"{model_file} is a file, not a run directory; give the directory that holds it"
    for call in (load_run, lambda p: evaluate_run(p, table.head(5)), lambda p: predict(p, table)):
        with pytest.raises(DataError, match=said):
            call(model_file)


def test_train_refuses_data_prepared_with_another_split(table, tmp_path: Path) -> None:
    # The run recorded the spec's split (blocked) in spec.yaml and its metadata's spec
    # while its numbers came from the random split the data was prepared with.
    from appsleuth.data.prepare import prepare_data

    spec = RunSpec(
        data=DataSpec(split={"kind": "blocked"}), train=TrainSpec(epochs=1, batch_size=64)
    )
    prepared = prepare_data(table, split={"kind": "random"})
    with pytest.raises(SpecError, match=r"prepared was split with \{'kind': 'random'.*data\.split"):
        train(spec, prepared=prepared, out=tmp_path, log=lambda m: None)
    with pytest.raises(SpecError, match=r"prepared must be the PreparedData .*received dict"):
        train(spec, prepared={}, out=tmp_path, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_loading_a_failed_run_says_why_it_failed(run, table, tmp_path: Path) -> None:
    # load_run and evaluate_run said only "status failed; train it again", although the
    # run had recorded its error (predict's message already showed it).
    failed = tmp_path / "failed"
    shutil.copytree(run.run_dir, failed)
    error = "TrainingDivergedError: training diverged: loss is nan at epoch 2"
    meta = {**read_metadata(failed), "status": "failed", "error": error}
    (failed / METADATA).write_text(json.dumps(meta))
    said = r"not a complete run \(status failed\); it failed with TrainingDivergedError: training"
    for call in (load_run, lambda d: evaluate_run(d, table.head(5))):
        with pytest.raises(DataError, match=said + r" diverged: loss is nan at epoch 2; train"):
            call(failed)


def test_a_loaded_run_names_its_directory_to_run_status_and_load_run(run) -> None:
    # run_status(load_run(...)) and load_run(load_run(...)) refused the loaded run as
    # "neither a path nor the result of train()", although predict and evaluate_run take it.
    loaded = load_run(run)
    assert run_status(loaded) == "complete"
    assert load_run(loaded).run_dir == run.run_dir


@pytest.mark.parametrize("column", ["rss", "ApplicationName"])
def test_train_names_a_repeated_column(table, tmp_path: Path, column) -> None:
    # A table with two columns of one name ended in a pandas ValueError or AttributeError.
    doubled = pd.concat([table, table[[column]]], axis=1)
    said = rf"the table given to train has repeated column names \W*{column}\W"
    with pytest.raises(DataError, match=said):
        train(_spec(epochs=1), data=doubled, out=tmp_path, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_run_results_print_their_headline_not_every_number(tmp_path: Path) -> None:
    # In a notebook a bare `result` printed the whole metadata, history and metrics.
    from appsleuth.run import LoadedRun, RunResult

    metadata = {
        "status": "complete",
        "last_results": {"val_accuracy": 0.97671, "val_loss": 0.07123, "loss": 0.1},
        "epochs_run": 30,
        "engine": "fused",
        "fit_diagnosis": "good fit",
        "classes": [f"app{i}" for i in range(18)],
    }
    history = pd.DataFrame({"loss": np.linspace(1, 0.1, 30), "val_loss": np.linspace(1, 0.1, 30)})
    result = RunResult(run_dir=tmp_path, metadata=metadata, history=history, metrics={"n": 5})
    text = repr(result)
    assert text == (
        f"RunResult(run_dir={tmp_path!r}, status='complete', val_accuracy=0.9767, "
        "val_loss=0.0712, epochs_run=30, engine='fused', fit_diagnosis='good fit', "
        "skipped=False)"
    )
    loaded = LoadedRun(run_dir=tmp_path, model=None, preprocessor=None, metadata=metadata)
    assert "app17" not in repr(loaded)
    failed = RunResult(run_dir=tmp_path, metadata={"status": "failed"}, history=history, metrics={})
    assert "status='failed', skipped=False" in repr(failed)


def test_training_shows_its_epochs_in_a_notebook_by_default(monkeypatch) -> None:
    # verbose=None meant "stdout is a terminal": a notebook trained for minutes in silence.
    import rich.console

    from appsleuth import run

    assert not run._watched()  # pytest captures stdout: nobody watches
    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    assert run._watched()


def test_fit_diagnosis_weighs_accuracy_against_the_most_common_class(monkeypatch) -> None:
    import appsleuth.run as run_module
    from appsleuth.data.prepare import prepare_data

    prepared = prepare_data(generate_sherlock(600, seed=1), positive="Moriarty")

    def always_other(model, x, n_classes):  # the model: it always says "other"
        return np.tile([0.9, 0.1], (len(x), 1))

    monkeypatch.setattr(run_module, "predict_proba", always_other)
    share = float(np.mean(prepared.y_val == 0))
    assert prepared.classes[0] == "other" and share > 0.9
    history = pd.DataFrame(
        {"loss": [0.3, 0.2, 0.1], "accuracy": [share] * 3, "val_loss": [0.3, 0.2, 0.1],
         "val_accuracy": [share] * 3}
    )  # fmt: skip
    metrics = run_module._evaluate_prepared(None, prepared, history)
    assert metrics["accuracy"] == pytest.approx(share)
    assert metrics["malware"]["detection_rate"] == 0.0
    # Accuracy above 0.9 alone was called a good fit.
    assert metrics["fit"]["diagnosis"] == "underfitting"
    assert "no higher than always predicting 'other'" in metrics["fit"]["reason"]


def test_train_says_how_many_rows_cleaning_dropped_and_why(shared_data) -> None:
    from appsleuth.data.load import load_sherlock
    from appsleuth.run import _data_line, prepare_run_data

    # The 2-app teaching file misses cminflt in 48 of its 200 rows: cleaning drops them,
    # which went unsaid, and a quarter of the data vanished from training.
    df = load_sherlock(shared_data / "sherlock_mystery.csv")
    prepared = prepare_run_data(_spec(), df)
    line = _data_line(prepared)
    assert "152 of 200 rows kept, 48 dropped for a missing value in cminflt" in line
    sizes = f"{len(prepared.x_train)} training / {len(prepared.x_val)} validation rows"
    assert f"{sizes} (random split)" in line


def test_tensorflow_predicts_without_a_new_tf_function_per_model(monkeypatch) -> None:
    # On TensorFlow, Model.predict traced a tf.function for each model: from a sweep
    # worker's fifth trial on, TensorFlow warned about "excessive retracing".
    import types

    import appsleuth.run as run_module

    class Model:
        def __init__(self) -> None:
            self.calls: list[tuple[int, bool]] = []

        def predict(self, *args, **kwargs):
            raise AssertionError("Model.predict traces a tf.function per model")

        def __call__(self, x, training):
            self.calls.append((len(x), training))
            return np.stack([x.sum(axis=1), -x.sum(axis=1)], axis=1)

    tf_keras = types.SimpleNamespace(
        backend=types.SimpleNamespace(backend=lambda: "tensorflow"),
        ops=types.SimpleNamespace(convert_to_numpy=np.asarray),
    )
    monkeypatch.setattr(run_module, "import_keras", lambda: tf_keras)
    model = Model()
    x = np.arange(10, dtype=np.float64).reshape(5, 2)
    p = predict_proba(model, x, 2, batch_size=2)
    assert model.calls == [(2, False), (2, False), (1, False)]
    assert p.dtype == np.float32 and p.tolist() == [[1, -1], [5, -5], [9, -9], [13, -13], [17, -17]]


def test_a_sigterm_python_dropped_still_stops_training(
    table, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appsleuth._interrupt import sigterm_interrupts
    from appsleuth._keras import import_keras
    from tests.test_interrupt import sigterm_in_a_weakref_callback

    keras = import_keras()

    class Killed(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 0:  # `kill` while the engine runs: the handler lands in a callback
                assert sigterm_in_a_weakref_callback(monkeypatch) == [KeyboardInterrupt]

    # The dropped interrupt let a killed `train` run all its epochs and record the run
    # complete; it now stops after the epoch in which it came, and the run is not complete.
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        train(
            _spec(),  # the `run` fixture's spec and data: compiled already
            data=table,
            out=tmp_path,
            callbacks=[Killed()],
            verbose=False,
            log=lambda m: None,
        )
    run_dir = tmp_path / _spec().run_name()
    assert run_status(run_dir) == "incomplete"
    assert len(pd.read_csv(run_dir / "model_history.csv")) == 1


def test_epoch_seconds_run_from_one_epochs_end_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fused engine may start an epoch's work before its on_epoch_begin: a timer from
    # on_epoch_begin would leave that out, so each epoch is timed from the one before.
    import types

    import appsleuth.run as run_module
    from appsleuth.engines import EpochTimer, epoch_timer

    clock = iter([10.0, 13.0, 16.0])  # training begins, epoch 1 ends, epoch 2 ends
    monkeypatch.setattr(
        epoch_timer, "time", types.SimpleNamespace(perf_counter=lambda: next(clock))
    )
    callbacks, timing = run_module._callbacks(tmp_path, _spec(epochs=2), verbose=False)
    timer = next(c for c in callbacks if isinstance(c, EpochTimer))
    timer.on_train_begin()
    for epoch in range(2):
        timer.on_epoch_begin(epoch)
        timer.on_epoch_end(epoch)
    assert timing["epoch_seconds"] == [3.0, 3.0]  # 10 -> 13, 13 -> 16
